//! `mesh-relay`: the agent-mesh relay, registry and PWA host, as a library.
//!
//! One process serves `/v1/ws` (the WebSocket relay that routes end-to-end
//! encrypted frames by `AgentId`), `/v1/agents…` (the registry of signed
//! Agent Cards), `/v1/revocations`, `/status`, `/metrics`, `/healthz`, and
//! the built PWA at `/`. Every protocol rule — auth, frames, signatures,
//! cards — comes from `mesh-core`; nothing of it is written again here.
//!
//! `main.rs` is a thin wrapper: tests run the real server in-process with
//! [`server::start`] on `127.0.0.1:0` and an in-memory or temporary SQLite
//! database.

#![warn(missing_docs)]

pub mod config;
pub mod conn;
pub mod defaults;
pub mod hub;
pub mod metrics;
pub mod registry;
pub mod server;
pub mod store;

use std::collections::HashSet;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mesh_core::auth::ResumeTokens;
use mesh_core::{AgentId, ErrorCode, Identity};
use tokio::sync::watch;

pub use config::Config;
pub use server::{start, RunningRelay};

/// Why the relay could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The database could not be opened or migrated.
    #[error("storage: {0}")]
    Store(#[from] store::StoreError),
    /// The relay key file could not be read or written.
    #[error("relay key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Binding or serving failed.
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// Everything the relay's tasks share.
pub struct Relay {
    /// The configuration it runs with.
    pub config: Config,
    /// Durable state.
    pub store: store::Store,
    /// Live connections.
    pub hub: hub::Hub,
    /// Exported metrics.
    pub metrics: metrics::Metrics,
    /// The relay's own key (its id is bound into every auth statement).
    pub identity: Identity,
    /// `identity.agent_id()`.
    pub relay_id: AgentId,
    /// Start time (monotonic clock origin for the protocol state machines).
    pub started: Instant,
    /// Live resume tokens.
    pub tokens: Mutex<ResumeTokens>,
    /// Per-agent frame rate.
    pub frame_limiter: DefaultKeyedRateLimiter<AgentId>,
    /// Per-agent byte rate.
    pub byte_limiter: DefaultKeyedRateLimiter<AgentId>,
    /// Per-address connection rate.
    pub conn_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Per-address registry write rate.
    pub http_write_limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Revoked keys (mirrors the store; checked on every auth and route).
    pub revoked: RwLock<HashSet<AgentId>>,
    /// Set to `true` to ask every connection to close (shutdown).
    pub shutdown: watch::Sender<bool>,
    /// Open WebSocket connections.
    pub open_sockets: AtomicUsize,
}

/// Cheaply cloneable handle to the shared [`Relay`].
#[derive(Clone)]
pub struct AppState(pub Arc<Relay>);

impl Deref for AppState {
    type Target = Relay;
    fn deref(&self) -> &Relay {
        &self.0
    }
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

impl Relay {
    /// Builds the shared state around an opened store.
    pub fn new(
        config: Config,
        store: store::Store,
        identity: Identity,
    ) -> Result<Self, RelayError> {
        let revoked: HashSet<AgentId> = store.revoked_all()?.into_iter().collect();
        let relay_id = identity.agent_id();
        let (shutdown, _) = watch::channel(false);
        Ok(Relay {
            frame_limiter: RateLimiter::keyed(quota(
                config.rate_frames_per_sec,
                config.rate_frames_burst,
            )),
            byte_limiter: RateLimiter::keyed(quota(
                config.rate_bytes_per_sec,
                config.rate_bytes_burst,
            )),
            conn_limiter: RateLimiter::keyed(quota(
                config.conn_per_ip_per_sec,
                config.conn_per_ip_burst,
            )),
            http_write_limiter: RateLimiter::keyed(quota(
                config.http_writes_per_ip_per_sec,
                config.http_writes_per_ip_burst,
            )),
            tokens: Mutex::new(ResumeTokens::new(mesh_core::limits::RESUME_TOKEN_TTL_MS)),
            revoked: RwLock::new(revoked),
            hub: hub::Hub::default(),
            metrics: metrics::Metrics::new(),
            started: Instant::now(),
            open_sockets: AtomicUsize::new(0),
            shutdown,
            relay_id,
            identity,
            store,
            config,
        })
    }

    /// Milliseconds on the relay's monotonic clock (for protocol timers).
    pub fn mono_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Wall-clock Unix milliseconds (for stored timestamps and presence).
    pub fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    /// Whether `agent`'s key is revoked.
    pub fn is_revoked(&self, agent: &AgentId) -> bool {
        self.revoked
            .read()
            .map(|s| s.contains(agent))
            .unwrap_or_else(|p| p.into_inner().contains(agent))
    }

    /// The resume token store.
    pub fn lock_tokens(&self) -> MutexGuard<'_, ResumeTokens> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a revocation already persisted by the store: refuse the key
    /// from now on and disconnect it at once.
    pub fn apply_revocation(&self, agent: AgentId) {
        match self.revoked.write() {
            Ok(mut s) => {
                s.insert(agent);
            }
            Err(p) => {
                p.into_inner().insert(agent);
            }
        }
        if let Some(conn) = self.hub.get(&agent) {
            conn.request_close(ErrorCode::Revoked, "this key has been revoked");
        }
    }
}

impl registry::RegistryState for AppState {
    fn store(&self) -> &store::Store {
        &self.0.store
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.0.metrics
    }

    fn now_ms(&self) -> u64 {
        self.wall_ms()
    }

    fn is_online(&self, agent: &AgentId) -> bool {
        self.hub.is_online(agent)
    }

    fn on_revoked(&self, agent: AgentId) {
        self.apply_revocation(agent);
    }
}
