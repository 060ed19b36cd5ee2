//! agent-mesh for JavaScript.
//!
//! The [`mesh_client`] driver compiled to WebAssembly, with a
//! `wasm-bindgen` API that the npm package in `pkg/` wraps with a thin
//! hand-written ESM entry per runtime (browser, Node, Deno, Workers). The
//! JavaScript surface and its TypeScript declarations are documented in
//! `pkg/README.md` and `pkg/index.d.ts`; this crate is its implementation:
//!
//! - [`identity::JsIdentity`] (`Identity` in JS): keys, did:key ids, safety
//!   numbers, IndexedDB persistence;
//! - [`client::JsClient`] (`MeshClient` in JS): requests, streams,
//!   handlers, chat, ACL and registry, with `AbortSignal` cancellation;
//! - [`convert`]: bodies (bytes, text, JSON) and errors (`Error` objects
//!   with a stable `code` from docs/PROTOCOL.md §10).
//!
//! Natively the crate is empty: everything here needs a JavaScript host.

#![cfg(target_arch = "wasm32")]
#![warn(missing_docs)]

pub mod client;
pub mod convert;
pub mod identity;

use wasm_bindgen::prelude::*;

/// The package version (the crate version).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Every error code an `Error` from this package may carry in `code`, as
/// listed in docs/PROTOCOL.md §10, `unrecognized` (a code from a newer relay
/// or peer), and the package's own `invalid_argument` and `storage`.
#[wasm_bindgen(js_name = errorCodes)]
pub fn error_codes() -> js_sys::Array {
    let codes = js_sys::Array::new();
    for code in mesh_core::code::ALL_CODES {
        codes.push(&JsValue::from_str(code.name()));
    }
    // A code from a newer relay or peer that this build does not know.
    codes.push(&JsValue::from_str(
        mesh_core::ErrorCode::Unrecognized(0).name(),
    ));
    codes.push(&JsValue::from_str(convert::INVALID_ARGUMENT));
    codes.push(&JsValue::from_str(convert::STORAGE));
    codes
}
