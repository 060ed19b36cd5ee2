//! A small key → bytes store on IndexedDB, for browsers and Web Workers:
//! where the PWA and the npm package keep an identity (and the PWA its
//! history) across reloads. One object store per database; every write
//! resolves only when its transaction has committed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), mesh_client::idb::StoreError> {
//! use mesh_client::idb::KvStore;
//! let store = KvStore::open("agent-mesh").await?;
//! store.put("greeting", b"hello").await?;
//! assert_eq!(store.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::rc::Rc;

use futures::channel::oneshot;
use mesh_core::Identity;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{
    IdbDatabase, IdbFactory, IdbOpenDbRequest, IdbRequest, IdbTransaction, IdbTransactionMode,
};
use zeroize::Zeroizing;

/// The object store inside each database.
const STORE: &str = "kv";
/// Schema version of the database.
const VERSION: u32 = 1;

/// Why the store could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// This runtime has no IndexedDB (Node, Deno, Workers, or a browser
    /// with storage disabled).
    #[error("IndexedDB is not available in this runtime")]
    Unavailable,
    /// IndexedDB refused or failed the operation.
    #[error("IndexedDB {operation} failed: {reason}")]
    Failed {
        /// What was attempted.
        operation: &'static str,
        /// What the runtime said.
        reason: String,
    },
    /// A stored identity could not be read back.
    #[error("the identity stored under {key:?} is damaged: {reason}")]
    BadIdentity {
        /// The key it is stored under.
        key: String,
        /// Why it could not be read.
        reason: String,
    },
}

fn failed(operation: &'static str, e: &JsValue) -> StoreError {
    let reason = js_sys::Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    StoreError::Failed { operation, reason }
}

/// An open IndexedDB database with one key → bytes object store.
#[derive(Debug, Clone)]
pub struct KvStore {
    db: IdbDatabase,
}

/// Waits for `request` to succeed (its `result`) or fail.
async fn settle(request: &IdbRequest, operation: &'static str) -> Result<JsValue, StoreError> {
    let (tx, rx) = oneshot::channel::<Result<(), JsValue>>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let ok = {
        let tx = tx.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_e: JsValue| {
            if let Some(t) = tx.borrow_mut().take() {
                let _ = t.send(Ok(()));
            }
        })
    };
    let err = {
        let tx = tx.clone();
        let req = request.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_e: JsValue| {
            let error = req
                .error()
                .ok()
                .flatten()
                .map(JsValue::from)
                .unwrap_or_else(|| JsValue::from_str("unknown error"));
            if let Some(t) = tx.borrow_mut().take() {
                let _ = t.send(Err(error));
            }
        })
    };
    request.set_onsuccess(Some(ok.as_ref().unchecked_ref()));
    request.set_onerror(Some(err.as_ref().unchecked_ref()));
    let outcome = rx.await;
    request.set_onsuccess(None);
    request.set_onerror(None);
    match outcome {
        Ok(Ok(())) => request.result().map_err(|e| failed(operation, &e)),
        Ok(Err(e)) => Err(failed(operation, &e)),
        Err(_) => Err(StoreError::Failed {
            operation,
            reason: "the request was dropped".into(),
        }),
    }
}

/// Waits for `tx` to commit (`complete`), or reports why it did not
/// (`error`, `abort`).
async fn committed(tx: &IdbTransaction, operation: &'static str) -> Result<(), StoreError> {
    let (done_tx, done_rx) = oneshot::channel::<Result<(), String>>();
    let done_tx = Rc::new(RefCell::new(Some(done_tx)));
    let finish = |outcome: fn(&IdbTransaction) -> Result<(), String>| {
        let done_tx = done_tx.clone();
        let tx = tx.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |_e: JsValue| {
            if let Some(t) = done_tx.borrow_mut().take() {
                let _ = t.send(outcome(&tx));
            }
        })
    };
    let complete = finish(|_| Ok(()));
    let error = finish(|tx| {
        Err(tx
            .error()
            .map(|e| e.message())
            .unwrap_or_else(|| "the transaction failed".into()))
    });
    let abort = finish(|tx| {
        Err(tx
            .error()
            .map(|e| e.message())
            .unwrap_or_else(|| "the transaction was aborted".into()))
    });
    tx.set_oncomplete(Some(complete.as_ref().unchecked_ref()));
    tx.set_onerror(Some(error.as_ref().unchecked_ref()));
    tx.set_onabort(Some(abort.as_ref().unchecked_ref()));
    let outcome = done_rx.await;
    tx.set_oncomplete(None);
    tx.set_onerror(None);
    tx.set_onabort(None);
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(StoreError::Failed { operation, reason }),
        Err(_) => Err(StoreError::Failed {
            operation,
            reason: "the transaction was dropped".into(),
        }),
    }
}

impl KvStore {
    /// Opens (creating if needed) the database `name`.
    pub async fn open(name: &str) -> Result<KvStore, StoreError> {
        let factory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
            .ok()
            .filter(|f| !f.is_undefined() && !f.is_null())
            .ok_or(StoreError::Unavailable)?
            .unchecked_into::<IdbFactory>();
        let request: IdbOpenDbRequest = factory
            .open_with_u32(name, VERSION)
            .map_err(|e| failed("open", &e))?;
        let upgrade = {
            let req = request.clone();
            Closure::<dyn FnMut(JsValue)>::new(move |_e: JsValue| {
                if let Ok(db) = req.result() {
                    let db: IdbDatabase = db.unchecked_into();
                    if !db.object_store_names().contains(STORE) {
                        let _ = db.create_object_store(STORE);
                    }
                }
            })
        };
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let db = settle(&request, "open").await;
        request.set_onupgradeneeded(None);
        Ok(KvStore {
            db: db?.unchecked_into(),
        })
    }

    fn transaction(
        &self,
        mode: IdbTransactionMode,
    ) -> Result<(IdbTransaction, web_sys::IdbObjectStore), StoreError> {
        let tx = self
            .db
            .transaction_with_str_and_mode(STORE, mode)
            .map_err(|e| failed("transaction", &e))?;
        let store = tx
            .object_store(STORE)
            .map_err(|e| failed("transaction", &e))?;
        Ok((tx, store))
    }

    fn store(&self, mode: IdbTransactionMode) -> Result<web_sys::IdbObjectStore, StoreError> {
        self.transaction(mode).map(|(_, store)| store)
    }

    /// The bytes stored under `key`, if any.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let request = self
            .store(IdbTransactionMode::Readonly)?
            .get(&JsValue::from_str(key))
            .map_err(|e| failed("get", &e))?;
        let value = settle(&request, "get").await?;
        if value.is_undefined() || value.is_null() {
            return Ok(None);
        }
        match value.dyn_into::<js_sys::Uint8Array>() {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(_) => Err(StoreError::Failed {
                operation: "get",
                reason: format!("the value under {key:?} is not bytes"),
            }),
        }
    }

    /// Stores `value` under `key`; resolves once the write has committed.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (tx, store) = self.transaction(IdbTransactionMode::Readwrite)?;
        store
            .put_with_key(&js_sys::Uint8Array::from(value), &JsValue::from_str(key))
            .map_err(|e| failed("put", &e))?;
        committed(&tx, "put").await
    }

    /// Removes `key` (nothing happens if it is absent).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let (tx, store) = self.transaction(IdbTransactionMode::Readwrite)?;
        store
            .delete(&JsValue::from_str(key))
            .map_err(|e| failed("delete", &e))?;
        committed(&tx, "delete").await
    }

    /// Every key in the store, sorted.
    pub async fn keys(&self) -> Result<Vec<String>, StoreError> {
        let request = self
            .store(IdbTransactionMode::Readonly)?
            .get_all_keys()
            .map_err(|e| failed("keys", &e))?;
        let keys = settle(&request, "keys").await?;
        Ok(js_sys::Array::from(&keys)
            .iter()
            .filter_map(|k| k.as_string())
            .collect())
    }

    /// Stores `identity`'s secret under `key` (in IndexedDB, which is as
    /// private as the browser profile; export it to back it up).
    pub async fn save_identity(&self, key: &str, identity: &Identity) -> Result<(), StoreError> {
        let secret = identity.to_secret_text();
        self.put(key, secret.as_bytes()).await
    }

    /// The identity stored under `key`, if any.
    pub async fn load_identity(&self, key: &str) -> Result<Option<Identity>, StoreError> {
        let Some(bytes) = self.get(key).await?.map(Zeroizing::new) else {
            return Ok(None);
        };
        let bad = |reason: String| StoreError::BadIdentity {
            key: key.to_string(),
            reason,
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| bad(e.to_string()))?;
        Identity::from_secret_text(text)
            .map(Some)
            .map_err(|e| bad(e.to_string()))
    }
}
