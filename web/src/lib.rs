//! The agent-mesh PWA: a person's identity, discovery and end-to-end
//! encrypted chat in the browser.
//!
//! A Leptos (client-side rendered) app compiled to WebAssembly and served
//! by `mesh-relay` at `/`. It speaks to the mesh only through `mesh-client`
//! — the same connection driver every other surface uses — so there is no
//! second protocol implementation here: this crate is screens and the
//! state that connects them.
//!
//! - [`state`]: the signals every screen reads;
//! - [`service`]: every side effect (mesh client, registry, IndexedDB);
//! - [`store`] and [`model`]: what is kept across reloads, and how;
//! - [`contacts_acl`]: the ACL rules accepting and blocking write;
//! - one module per screen: [`onboarding`], [`discovery`], [`chat`],
//!   [`settings`]; shared widgets in [`components`].
//!
//! Natively only the pure parts compile ([`model`], [`contacts_acl`]), so
//! their unit tests run with the workspace's; the app itself needs a
//! browser.

#![warn(missing_docs)]

pub mod contacts_acl;
pub mod model;

#[cfg(target_arch = "wasm32")]
pub mod app;
#[cfg(target_arch = "wasm32")]
pub mod chat;
#[cfg(target_arch = "wasm32")]
pub mod components;
#[cfg(target_arch = "wasm32")]
pub mod discovery;
#[cfg(target_arch = "wasm32")]
pub mod format;
#[cfg(target_arch = "wasm32")]
pub mod onboarding;
#[cfg(target_arch = "wasm32")]
pub mod service;
#[cfg(target_arch = "wasm32")]
pub mod settings;
#[cfg(target_arch = "wasm32")]
pub mod state;
#[cfg(target_arch = "wasm32")]
pub mod store;

/// Mounts the app (runs when the module is initialised).
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    leptos::mount::mount_to_body(app::App);
}
