//! Browser-only facilities, no network: identity generation draws on
//! WebCrypto, and the IndexedDB store keeps an identity across openings.

#![cfg(target_arch = "wasm32")]

use mesh_client::idb::{KvStore, StoreError};
use mesh_core::IdentityError;
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use wasm_tests::{new_identity, within};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
let original = null;
let calls = 0;
let bytes = 0;

// Replaces crypto.getRandomValues with a wrapper that counts its calls and
// then calls the real one (or, when `fail` is set, throws like a browser
// without WebCrypto would).
export function hook_get_random_values(fail) {
  const c = globalThis.crypto;
  if (original !== null) { throw new Error("getRandomValues is already hooked"); }
  original = c.getRandomValues;
  calls = 0;
  bytes = 0;
  c.getRandomValues = function (array) {
    calls += 1;
    bytes += array.byteLength;
    if (fail) { throw new DOMException("hooked to fail", "QuotaExceededError"); }
    return original.call(c, array);
  };
}

export function random_calls() { return calls; }
export function random_bytes() { return bytes; }

// Puts the real getRandomValues back; true if the one in force afterwards is
// the browser's own (Crypto.prototype's).
export function unhook_get_random_values() {
  const c = globalThis.crypto;
  delete c.getRandomValues;
  if (c.getRandomValues !== original) { c.getRandomValues = original; }
  original = null;
  return c.getRandomValues === Crypto.prototype.getRandomValues;
}
"#)]
extern "C" {
    fn hook_get_random_values(fail: bool);
    fn random_calls() -> u32;
    fn random_bytes() -> u32;
    fn unhook_get_random_values() -> bool;
}

#[wasm_bindgen_test]
fn identity_generation_uses_webcrypto_random_values() {
    // Counted: every identity draws its secret from getRandomValues.
    hook_get_random_values(false);
    let a = mesh_core::Identity::generate();
    let b = mesh_core::Identity::generate();
    let (calls, bytes) = (random_calls(), random_bytes());
    let restored = unhook_get_random_values();
    assert!(restored, "crypto.getRandomValues was not restored");
    let (a, b) = (a.expect("identity a"), b.expect("identity b"));
    assert!(
        calls >= 2,
        "two identities made only {calls} getRandomValues calls"
    );
    assert!(
        bytes >= 64,
        "two identities drew only {bytes} bytes from getRandomValues"
    );
    assert_ne!(
        a.agent_id(),
        b.agent_id(),
        "two identities are the same key"
    );
    assert_ne!(
        *a.to_secret_text(),
        *b.to_secret_text(),
        "two identities share a secret"
    );

    // And with WebCrypto failing, no identity is made (no fallback source).
    hook_get_random_values(true);
    let c = mesh_core::Identity::generate();
    let calls = random_calls();
    let restored = unhook_get_random_values();
    assert!(restored, "crypto.getRandomValues was not restored");
    assert!(calls >= 1, "getRandomValues was not consulted");
    match c {
        Err(IdentityError::Randomness(_)) => {}
        Err(other) => panic!("expected a randomness error, got {other}"),
        Ok(id) => panic!(
            "an identity ({}) was generated although getRandomValues threw",
            id.agent_id()
        ),
    }

    // Restored: generation works again.
    let d = new_identity();
    assert_ne!(d.agent_id(), a.agent_id());
}

/// A database name no earlier run used.
fn fresh_db_name(what: &str) -> String {
    format!(
        "wasm-tests-{what}-{:x}-{:x}",
        js_sys::Date::now() as u64,
        mesh_client::rt::random_u64()
    )
}

#[wasm_bindgen_test]
async fn indexeddb_keeps_an_identity_across_openings() {
    let name = fresh_db_name("identity");
    let me = new_identity();
    let store = within(5_000, "KvStore::open", KvStore::open(&name))
        .await
        .expect("open the store");
    assert_eq!(
        within(5_000, "keys of a new store", store.keys())
            .await
            .expect("keys"),
        Vec::<String>::new(),
        "a new database is not empty"
    );
    within(5_000, "save_identity", store.save_identity("me", &me))
        .await
        .expect("save_identity");
    drop(store);

    // A second, independent opening of the same database sees it.
    let again = within(5_000, "KvStore::open (again)", KvStore::open(&name))
        .await
        .expect("open the store again");
    let loaded = within(5_000, "load_identity", again.load_identity("me"))
        .await
        .expect("load_identity")
        .expect("the saved identity is missing after reopening");
    assert_eq!(loaded.agent_id(), me.agent_id());
    assert_eq!(*loaded.to_secret_text(), *me.to_secret_text());

    // A key never written reads as None.
    assert!(
        within(
            5_000,
            "load_identity(missing)",
            again.load_identity("nobody")
        )
        .await
        .expect("load_identity of a missing key")
        .is_none(),
        "a missing key gave an identity"
    );
    assert_eq!(
        within(5_000, "get(missing)", again.get("nobody"))
            .await
            .expect("get"),
        None
    );

    // Raw bytes, a second key, and sorted keys.
    within(5_000, "put", again.put("blob", &[0, 1, 2, 255]))
        .await
        .expect("put");
    assert_eq!(
        within(5_000, "get", again.get("blob")).await.expect("get"),
        Some(vec![0, 1, 2, 255])
    );
    assert_eq!(
        within(5_000, "keys", again.keys()).await.expect("keys"),
        vec!["blob".to_string(), "me".to_string()]
    );

    // Garbage under a key is reported as a damaged identity, not a panic.
    match within(5_000, "load_identity(blob)", again.load_identity("blob")).await {
        Err(StoreError::BadIdentity { key, .. }) => assert_eq!(key, "blob"),
        other => panic!("expected BadIdentity for non-identity bytes, got {other:?}"),
    }

    // Delete removes it, for this opening and for the next.
    within(5_000, "delete", again.delete("me"))
        .await
        .expect("delete");
    assert!(
        within(
            5_000,
            "load_identity after delete",
            again.load_identity("me")
        )
        .await
        .expect("load_identity")
        .is_none(),
        "the identity is still there after delete"
    );
    // Deleting what is absent is fine.
    within(5_000, "delete(missing)", again.delete("me"))
        .await
        .expect("delete of a missing key");
    let third = within(5_000, "KvStore::open (third)", KvStore::open(&name))
        .await
        .expect("open the store a third time");
    assert!(
        within(5_000, "load_identity (third)", third.load_identity("me"))
            .await
            .expect("load_identity")
            .is_none(),
        "a deleted identity came back after reopening"
    );
    assert_eq!(
        within(5_000, "keys (third)", third.keys())
            .await
            .expect("keys"),
        vec!["blob".to_string()]
    );
}
