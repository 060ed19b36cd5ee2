// Node ≥ 20 and Deno: the module is read from disk and instantiated on
// import, so `init()` is only needed for code shared with browsers.
import { readFileSync } from "node:fs";
import { initSync } from "../dist/mesh_wasm.js";

initSync({ module: readFileSync(new URL("../dist/mesh_wasm_bg.wasm", import.meta.url)) });

export * from "../lib.js";

/** Already initialised on import; kept for code shared with browsers. */
export async function init() {}

export default init;
