// Browsers (and any runtime that can fetch the .wasm by URL): call
// `await init()` once before using the package.
import initWasm from "../dist/mesh_wasm.js";

export * from "../lib.js";

/**
 * Loads the WebAssembly module. `source` may be a URL, a Response, bytes
 * or a compiled WebAssembly.Module; by default the .wasm next to this file.
 */
export async function init(source) {
  await initWasm({
    module_or_path: source ?? new URL("../dist/mesh_wasm_bg.wasm", import.meta.url),
  });
}

export default init;
