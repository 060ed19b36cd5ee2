// Cloudflare Workers / workerd: the bundler hands the .wasm over as a
// compiled WebAssembly.Module (wrangler does this by default; Miniflare
// needs a `CompiledWasm` module rule), instantiated on import.
import module from "../dist/mesh_wasm_bg.wasm";
import { initSync } from "../dist/mesh_wasm.js";

initSync({ module });

export * from "../lib.js";

/** Already initialised on import; kept for code shared with browsers. */
export async function init() {}

export default init;
