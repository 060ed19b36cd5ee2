//! `Identity`: an agent's Ed25519 key, from JavaScript.

use mesh_client::idb::{KvStore, StoreError};
use mesh_core::Identity;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

use crate::convert::{agent_id, error, invalid, STORAGE};

/// IndexedDB database the package keeps identities in.
pub const DATABASE: &str = "agent-mesh";
/// Key an identity is saved under when the caller names none.
pub const DEFAULT_KEY: &str = "identity";

/// An agent identity: an Ed25519 secret key. Its public half is the agent
/// id (`did:key:z6Mk…`). The secret never leaves except through
/// `exportSecret`; `free()` wipes it from wasm memory.
#[wasm_bindgen(js_name = Identity)]
pub struct JsIdentity {
    pub(crate) inner: Identity,
}

fn storage_error(e: StoreError) -> JsValue {
    error(STORAGE, &e.to_string())
}

#[wasm_bindgen(js_class = Identity)]
impl JsIdentity {
    /// A new identity from the platform's secure random source
    /// (`crypto.getRandomValues`).
    pub fn generate() -> Result<JsIdentity, JsValue> {
        Identity::generate()
            .map(|inner| JsIdentity { inner })
            .map_err(|e| error(STORAGE, &format!("no secure randomness: {e}")))
    }

    /// An identity from its secret: the 32 secret bytes, or the text form
    /// `exportSecret()` returns.
    #[wasm_bindgen(js_name = fromSecret)]
    pub fn from_secret(secret: JsValue) -> Result<JsIdentity, JsValue> {
        let inner = if let Some(text) = secret.as_string() {
            Identity::from_secret_text(text.trim())
                .map_err(|e| invalid(format!("not an identity secret: {e}")))?
        } else if let Some(bytes) = secret.dyn_ref::<js_sys::Uint8Array>() {
            let bytes = zeroize::Zeroizing::new(bytes.to_vec());
            Identity::from_secret_slice(&bytes)
                .map_err(|e| invalid(format!("not an identity secret: {e}")))?
        } else {
            return Err(invalid(
                "Identity.fromSecret takes a Uint8Array of 32 bytes or the text from exportSecret()",
            ));
        };
        Ok(JsIdentity { inner })
    }

    /// The secret in text form (`z3u2…`), to back the identity up. Whoever
    /// holds it *is* this agent.
    #[wasm_bindgen(js_name = exportSecret)]
    pub fn export_secret(&self) -> String {
        self.inner.to_secret_text().to_string()
    }

    /// The 32 secret bytes.
    #[wasm_bindgen(js_name = exportSecretBytes)]
    pub fn export_secret_bytes(&self) -> js_sys::Uint8Array {
        js_sys::Uint8Array::from(&self.inner.secret_bytes()[..])
    }

    /// The agent id, `did:key:z6Mk…`.
    #[wasm_bindgen(getter, js_name = agentId)]
    pub fn agent_id(&self) -> String {
        self.inner.agent_id().to_did()
    }

    /// A short form of the agent id, for display.
    #[wasm_bindgen(getter)]
    pub fn short(&self) -> String {
        self.inner.agent_id().short()
    }

    /// The safety number shared with `peerId` (the same on both sides):
    /// compare it out of band to rule out a man in the middle.
    #[wasm_bindgen(js_name = safetyNumber)]
    pub fn safety_number(&self, peer_id: &str) -> Result<String, JsValue> {
        Ok(self.inner.safety_number(&agent_id(peer_id)?).to_string())
    }

    /// Saves the identity in IndexedDB under `key` (default `"identity"`).
    /// Browsers and Web Workers only.
    pub fn save(&self, key: Option<String>) -> js_sys::Promise {
        let identity = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let key = key.unwrap_or_else(|| DEFAULT_KEY.to_string());
            let store = KvStore::open(DATABASE).await.map_err(storage_error)?;
            store
                .save_identity(&key, &identity)
                .await
                .map_err(storage_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The identity saved in IndexedDB under `key` (default `"identity"`),
    /// or `null`.
    pub fn load(key: Option<String>) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let key = key.unwrap_or_else(|| DEFAULT_KEY.to_string());
            let store = KvStore::open(DATABASE).await.map_err(storage_error)?;
            match store.load_identity(&key).await.map_err(storage_error)? {
                Some(inner) => Ok(JsIdentity { inner }.into()),
                None => Ok(JsValue::NULL),
            }
        })
    }

    /// The identity saved under `key` (default `"identity"`), or a new one
    /// that is saved there first.
    #[wasm_bindgen(js_name = loadOrCreate)]
    pub fn load_or_create(key: Option<String>) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let key = key.unwrap_or_else(|| DEFAULT_KEY.to_string());
            let store = KvStore::open(DATABASE).await.map_err(storage_error)?;
            if let Some(inner) = store.load_identity(&key).await.map_err(storage_error)? {
                return Ok(JsIdentity { inner }.into());
            }
            let fresh = JsIdentity::generate()?;
            store
                .save_identity(&key, &fresh.inner)
                .await
                .map_err(storage_error)?;
            Ok(fresh.into())
        })
    }

    /// Removes the identity saved under `key` (default `"identity"`).
    pub fn forget(key: Option<String>) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            let key = key.unwrap_or_else(|| DEFAULT_KEY.to_string());
            let store = KvStore::open(DATABASE).await.map_err(storage_error)?;
            store.delete(&key).await.map_err(storage_error)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// `"Identity(did:key:…)"`; never the secret.
    #[wasm_bindgen(js_name = toString)]
    pub fn to_string_js(&self) -> String {
        format!("Identity({})", self.agent_id())
    }
}
