//! Native only: keep a client's ACL in sync with a policy file.
//!
//! The file (TOML, or JSON when it ends in `.json`) is read at start and
//! again whenever its modification time or size changes (checked every
//! `interval`). A file that fails to parse is reported and ignored: the
//! policy in force stays in force, so a typo never opens the door.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mesh_core::acl::Policy;

use crate::MeshClient;

/// Why a policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    /// The file could not be read.
    #[error("cannot read ACL file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid policy.
    #[error("invalid ACL file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads a policy file (TOML, or JSON for `*.json`).
pub fn load(path: &Path) -> Result<Policy, AclFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| AclFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        Policy::from_json(&text).map_err(|e| e.to_string())
    } else {
        Policy::from_toml(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|message| AclFileError::Parse {
        path: path.to_path_buf(),
        message,
    })
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Loads `path` into `client` now, then reloads it whenever it changes,
/// until the client is closed. Returns the initial load's error, if any
/// (in which case nothing is watched).
pub fn watch(
    client: &MeshClient,
    path: impl Into<PathBuf>,
    interval: Duration,
) -> Result<(), AclFileError> {
    let path = path.into();
    client.set_acl(load(&path)?);
    let mut last = stamp(&path);
    let client = client.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            if matches!(
                client.state(),
                crate::ConnectionState::Closed(_) | crate::ConnectionState::Revoked
            ) {
                return;
            }
            let now = stamp(&path);
            if now == last {
                continue;
            }
            last = now;
            match load(&path) {
                Ok(policy) => {
                    tracing::info!(path = %path.display(), rules = policy.rules.len(), "ACL reloaded");
                    client.set_acl(policy);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ACL file not reloaded; keeping the policy in force")
                }
            }
        }
    });
    Ok(())
}
