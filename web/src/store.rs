//! Persistence: everything the app keeps across reloads, as JSON values in
//! one IndexedDB database through mesh-client's [`KvStore`]. Keys:
//!
//! - `identity` — the secret key (text form, as exported);
//! - `profile` — our display name;
//! - `acl` — the ACL policy (JSON, the format of `Policy::to_json`);
//! - `contacts` — every contact;
//! - `thread:<did>` — one conversation's entries (bounded, see
//!   [`crate::model::MAX_ENTRIES`]).
//!
//! One key per conversation keeps a write small: a new message rewrites its
//! own thread, not the whole history.

use std::collections::HashMap;

use mesh_client::idb::{KvStore, StoreError};
use mesh_core::{Identity, Policy};
use serde::{Deserialize, Serialize};

use crate::model::{Contact, Entry};

/// The database name.
pub const DB_NAME: &str = "agent-mesh-web";
/// Where the identity is kept.
pub const IDENTITY_KEY: &str = "identity";
const PROFILE_KEY: &str = "profile";
const ACL_KEY: &str = "acl";
const CONTACTS_KEY: &str = "contacts";
const THREAD_PREFIX: &str = "thread:";

/// Who we are, besides the key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Profile {
    /// Display name (published in our card).
    pub name: String,
    /// Topics we want to be found by (tags on our card's chat skill).
    #[serde(default)]
    pub topics: Vec<String>,
}

/// Everything read at startup.
pub struct Snapshot {
    /// Our identity, if we have one.
    pub identity: Option<Identity>,
    /// Our profile.
    pub profile: Profile,
    /// The ACL in force.
    pub policy: Policy,
    /// Contacts.
    pub contacts: Vec<Contact>,
    /// Conversations by peer did.
    pub threads: HashMap<String, Vec<Entry>>,
}

/// Why something read back is unusable: the value is skipped (and logged
/// in the banner), never fatal.
fn bad(key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed {
        operation: "read",
        reason: format!("{key}: {e}"),
    }
}

async fn get_json<T: for<'de> Deserialize<'de>>(
    store: &KvStore,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match store.get(key).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| bad(key, e)),
    }
}

/// Reads everything; `damaged` collects what could not be read (the rest
/// still loads).
pub async fn load(store: &KvStore, damaged: &mut Vec<String>) -> Result<Snapshot, StoreError> {
    let identity = match store.load_identity(IDENTITY_KEY).await {
        Ok(id) => id,
        Err(e @ StoreError::BadIdentity { .. }) => {
            damaged.push(e.to_string());
            None
        }
        Err(e) => return Err(e),
    };
    let profile = keep(damaged, get_json::<Profile>(store, PROFILE_KEY).await).unwrap_or_default();
    let contacts =
        keep(damaged, get_json::<Vec<Contact>>(store, CONTACTS_KEY).await).unwrap_or_default();
    let policy = match store.get(ACL_KEY).await? {
        None => Policy::default(),
        Some(bytes) => match Policy::from_json(&String::from_utf8_lossy(&bytes)) {
            Ok(p) => p,
            Err(e) => {
                damaged.push(format!("the saved ACL: {e}"));
                Policy::default()
            }
        },
    };
    let mut threads = HashMap::new();
    for key in store.keys().await? {
        if let Some(did) = key.strip_prefix(THREAD_PREFIX) {
            if let Some(entries) = keep(damaged, get_json::<Vec<Entry>>(store, &key).await) {
                threads.insert(did.to_string(), entries);
            }
        }
    }
    Ok(Snapshot {
        identity,
        profile,
        policy,
        contacts,
        threads,
    })
}

/// The value, or `None` with the reason noted in `damaged`.
fn keep<T>(damaged: &mut Vec<String>, r: Result<Option<T>, StoreError>) -> Option<T> {
    r.unwrap_or_else(|e| {
        damaged.push(e.to_string());
        None
    })
}

/// Saves the profile.
pub async fn save_profile(store: &KvStore, profile: &Profile) -> Result<(), StoreError> {
    put_json(store, PROFILE_KEY, profile).await
}

/// Saves the contacts.
pub async fn save_contacts(store: &KvStore, contacts: &[Contact]) -> Result<(), StoreError> {
    put_json(store, CONTACTS_KEY, contacts).await
}

/// Saves one conversation.
pub async fn save_thread(store: &KvStore, did: &str, entries: &[Entry]) -> Result<(), StoreError> {
    put_json(store, &format!("{THREAD_PREFIX}{did}"), entries).await
}

/// Saves the ACL.
pub async fn save_policy(store: &KvStore, policy: &Policy) -> Result<(), StoreError> {
    let text = policy.to_json().map_err(|e| bad(ACL_KEY, e))?;
    store.put(ACL_KEY, text.as_bytes()).await
}

/// Deletes everything this app stored.
pub async fn wipe(store: &KvStore) -> Result<(), StoreError> {
    for key in store.keys().await? {
        store.delete(&key).await?;
    }
    Ok(())
}

async fn put_json<T: Serialize + ?Sized>(
    store: &KvStore,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| bad(key, e))?;
    store.put(key, &bytes).await
}
