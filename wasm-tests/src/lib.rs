//! agent-mesh in a real browser.
//!
//! The suites in `tests/` are `wasm-bindgen-test` tests that run in
//! **headless Chrome** (`wasm_bindgen_test_configure!(run_in_browser)`) and
//! drive [`mesh_client`] exactly as the PWA and the npm package do: the
//! browser `WebSocket` transport, WebCrypto randomness, IndexedDB, and the
//! browser event loop as the only executor.
//!
//! - `tests/local.rs` — no network: identity generation draws on
//!   `crypto.getRandomValues`, and the IndexedDB store keeps an identity.
//! - `tests/live.rs` — against a **live relay** and a **live native agent**
//!   (`meshctl serve --echo --allow '*'`): connect, Noise handshake and
//!   requests, streaming, cancellation reaching the handler, offline
//!   delivery through the relay's inbox.
//!
//! The live endpoints are read at **compile time** (the tests run inside a
//! browser page, which has no environment):
//!
//! | variable | example |
//! |---|---|
//! | `MESH_TEST_RELAY_URL` | `ws://127.0.0.1:8080/v1/ws` |
//! | `MESH_TEST_HTTP_URL` | `http://127.0.0.1:8080` |
//! | `MESH_TEST_ECHO_AGENT` | the `did:key:…` of the echo agent |
//!
//! A live test whose variable was not set fails with a message naming it.
//! (`MESH_TEST_HTTP_URL` is checked against the relay URL, not fetched: the
//! runner's page is cross-origin isolated and the relay sends no CORS
//! headers, so Chrome would block the request.)
//! See `README.md` next to this crate for the commands that start the relay
//! and the agent and run the suites.
//!
//! Natively this crate is empty (everything is `cfg(target_arch =
//! "wasm32")`), so it costs nothing in `cargo test --workspace`.

#![cfg(target_arch = "wasm32")]
#![warn(missing_docs)]

use std::future::Future;

use futures::{FutureExt, Stream, StreamExt};
use mesh_client::{ClientOptions, MeshClient};
use mesh_core::acl::Policy;
use mesh_core::{AgentId, Identity};

/// The relay's WebSocket URL (`MESH_TEST_RELAY_URL`, compile time).
pub fn relay_url() -> &'static str {
    required(
        "MESH_TEST_RELAY_URL",
        option_env!("MESH_TEST_RELAY_URL"),
        "the relay's WebSocket URL, e.g. ws://127.0.0.1:8080/v1/ws",
    )
}

/// The relay's HTTP base URL (`MESH_TEST_HTTP_URL`, compile time).
pub fn http_url() -> &'static str {
    required(
        "MESH_TEST_HTTP_URL",
        option_env!("MESH_TEST_HTTP_URL"),
        "the relay's HTTP base URL, e.g. http://127.0.0.1:8080",
    )
    .trim_end_matches('/')
}

/// The native echo agent (`MESH_TEST_ECHO_AGENT`, compile time).
pub fn echo_agent() -> AgentId {
    let text = required(
        "MESH_TEST_ECHO_AGENT",
        option_env!("MESH_TEST_ECHO_AGENT"),
        "the did:key of an agent run as `meshctl serve --echo --allow '*'`",
    );
    text.trim().parse().unwrap_or_else(|e| {
        panic!("MESH_TEST_ECHO_AGENT={text:?} is not an agent id (did:key:z6Mk…): {e}")
    })
}

fn required(name: &str, value: Option<&'static str>, what: &str) -> &'static str {
    match value {
        Some(v) if !v.trim().is_empty() => v.trim(),
        _ => panic!(
            "{name} was not set when this test was compiled: set it to {what} \
             (it is read with option_env!, at compile time) and run the tests again"
        ),
    }
}

/// Runs `fut` for at most `ms` milliseconds; past that the test fails with
/// a message saying what was being waited for, instead of hanging the
/// runner.
pub async fn within<F: Future>(ms: u64, what: &str, fut: F) -> F::Output {
    let mut fut = Box::pin(fut.fuse());
    let mut timer = Box::pin(mesh_client::rt::sleep_ms(ms).fuse());
    futures::select! {
        out = fut => out,
        _ = timer => panic!("timed out after {ms} ms waiting for {what}"),
    }
}

/// The next item of `stream` within `ms` milliseconds (`None` if it ended).
pub async fn next_within<S: Stream + Unpin>(
    stream: &mut S,
    ms: u64,
    what: &str,
) -> Option<S::Item> {
    within(ms, what, stream.next()).await
}

/// A fresh identity from the browser's WebCrypto.
pub fn new_identity() -> Identity {
    Identity::generate().unwrap_or_else(|e| panic!("Identity::generate failed: {e}"))
}

/// Connects `identity` to the live relay with `acl`, failing the test
/// (bounded) if that does not work.
pub async fn connect(identity: Identity, acl: Policy) -> MeshClient {
    let options = ClientOptions {
        acl,
        connect_timeout_ms: 8_000,
        ..ClientOptions::default()
    };
    let url = relay_url();
    within(
        10_000,
        "MeshClient::connect to the relay",
        MeshClient::connect(url, identity, options),
    )
    .await
    .unwrap_or_else(|e| panic!("could not connect to the relay at {url}: {e}"))
}

/// Closes `client`, bounded.
pub async fn close(client: &MeshClient) {
    within(5_000, "MeshClient::close", client.close()).await;
}
