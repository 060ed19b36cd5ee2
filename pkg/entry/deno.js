// Deno: the module is read from disk (needs --allow-read for the package
// directory) and instantiated on import.
import { initSync } from "../dist/mesh_wasm.js";

initSync({ module: Deno.readFileSync(new URL("../dist/mesh_wasm_bg.wasm", import.meta.url)) });

export * from "../lib.js";

/** Already initialised on import; kept for code shared with browsers. */
export async function init() {}

export default init;
