//! Relay configuration: a TOML file, overridden by `MESH_*` environment
//! variables, overridden by command-line flags. Every option defaults to the
//! value in [`crate::defaults`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::defaults as d;

/// `mesh-relay` — the agent-mesh relay, registry and PWA host.
///
/// Routes end-to-end encrypted frames between agents by their key, keeps a
/// durable inbox for agents that are offline, publishes signed Agent Cards,
/// and serves the web app. Storage is one SQLite file (or `:memory:`).
///
/// Precedence: flags > MESH_* environment variables > --config file >
/// built-in defaults.
#[derive(Debug, Clone, Parser, Default)]
#[command(name = "mesh-relay", version, about, long_about)]
pub struct Cli {
    /// TOML configuration file (keys are the long flag names with `_`,
    /// e.g. `heartbeat_interval_ms = 20000`).
    #[arg(long, env = "MESH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "MESH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// SQLite database file, or `:memory:` [default: mesh-relay.db].
    #[arg(long, env = "MESH_DB")]
    pub db: Option<String>,
    /// File holding the relay's secret key (created with 0600 permissions
    /// if missing) [default: <db>.key, or a fresh key for :memory:].
    #[arg(long, env = "MESH_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Public URL clients dial (repeatable, e.g. wss://relay.example/v1/ws);
    /// when set, auth statements made for any other URL are refused.
    #[arg(long = "public-url", env = "MESH_PUBLIC_URLS", value_delimiter = ',')]
    pub public_urls: Vec<String>,
    /// Directory of the built PWA to serve at `/` [default: web/dist if it
    /// exists].
    #[arg(long, env = "MESH_WEB_ROOT")]
    pub web_root: Option<PathBuf>,
    /// Milliseconds an unauthenticated socket may take to answer the
    /// challenge [default: 5000].
    #[arg(long, env = "MESH_AUTH_TIMEOUT_MS")]
    pub auth_timeout_ms: Option<u64>,
    /// Heartbeat interval in ms [default: 15000].
    #[arg(long, env = "MESH_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Unanswered heartbeats before a connection is dropped [default: 3].
    #[arg(long, env = "MESH_HEARTBEAT_MISSES")]
    pub heartbeat_misses: Option<u32>,
    /// Frames per second one agent may send [default: 2000].
    #[arg(long, env = "MESH_RATE_FRAMES_PER_SEC")]
    pub rate_frames_per_sec: Option<u32>,
    /// Burst of frames above that rate [default: 4000].
    #[arg(long, env = "MESH_RATE_FRAMES_BURST")]
    pub rate_frames_burst: Option<u32>,
    /// Bytes per second one agent may send [default: 8388608].
    #[arg(long, env = "MESH_RATE_BYTES_PER_SEC")]
    pub rate_bytes_per_sec: Option<u32>,
    /// Burst of bytes above that rate [default: 16777216].
    #[arg(long, env = "MESH_RATE_BYTES_BURST")]
    pub rate_bytes_burst: Option<u32>,
    /// New connections per second from one IP [default: 20].
    #[arg(long, env = "MESH_CONN_PER_IP_PER_SEC")]
    pub conn_per_ip_per_sec: Option<u32>,
    /// Burst of new connections from one IP [default: 50].
    #[arg(long, env = "MESH_CONN_PER_IP_BURST")]
    pub conn_per_ip_burst: Option<u32>,
    /// Registry writes (PUT/DELETE/POST) per second from one IP [default: 5].
    #[arg(long, env = "MESH_HTTP_WRITES_PER_IP_PER_SEC")]
    pub http_writes_per_ip_per_sec: Option<u32>,
    /// Burst of registry writes from one IP [default: 30].
    #[arg(long, env = "MESH_HTTP_WRITES_PER_IP_BURST")]
    pub http_writes_per_ip_burst: Option<u32>,
    /// Concurrent connections in total [default: 20000].
    #[arg(long, env = "MESH_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Frames kept per offline agent [default: 10000].
    #[arg(long, env = "MESH_INBOX_MAX_FRAMES")]
    pub inbox_max_frames: Option<u64>,
    /// Bytes kept per offline agent [default: 67108864].
    #[arg(long, env = "MESH_INBOX_MAX_BYTES")]
    pub inbox_max_bytes: Option<u64>,
    /// Age in ms after which undelivered frames are discarded
    /// [default: 604800000, 7 days].
    #[arg(long, env = "MESH_INBOX_MAX_AGE_MS")]
    pub inbox_max_age_ms: Option<u64>,
    /// Frames queued per connection before new ones go to its inbox
    /// [default: 256].
    #[arg(long, env = "MESH_SEND_QUEUE_FRAMES")]
    pub send_queue_frames: Option<usize>,
    /// Unacknowledged frames per connection before new ones go to its inbox
    /// [default: 1024].
    #[arg(long, env = "MESH_MAX_UNACKED_FRAMES")]
    pub max_unacked_frames: Option<usize>,
    /// Time in ms one WebSocket write may take [default: 10000].
    #[arg(long, env = "MESH_WRITE_TIMEOUT_MS")]
    pub write_timeout_ms: Option<u64>,
    /// Time in ms a graceful shutdown waits for connections [default: 5000].
    #[arg(long, env = "MESH_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
    /// Log filter (tracing EnvFilter syntax) [default: info].
    #[arg(long, env = "MESH_LOG")]
    pub log: Option<String>,
}

/// The same options as read from a TOML file (all optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    db: Option<String>,
    key_file: Option<PathBuf>,
    #[serde(default)]
    public_urls: Vec<String>,
    web_root: Option<PathBuf>,
    auth_timeout_ms: Option<u64>,
    heartbeat_interval_ms: Option<u64>,
    heartbeat_misses: Option<u32>,
    rate_frames_per_sec: Option<u32>,
    rate_frames_burst: Option<u32>,
    rate_bytes_per_sec: Option<u32>,
    rate_bytes_burst: Option<u32>,
    conn_per_ip_per_sec: Option<u32>,
    conn_per_ip_burst: Option<u32>,
    http_writes_per_ip_per_sec: Option<u32>,
    http_writes_per_ip_burst: Option<u32>,
    max_connections: Option<usize>,
    inbox_max_frames: Option<u64>,
    inbox_max_bytes: Option<u64>,
    inbox_max_age_ms: Option<u64>,
    send_queue_frames: Option<usize>,
    max_unacked_frames: Option<usize>,
    write_timeout_ms: Option<u64>,
    drain_timeout_ms: Option<u64>,
    log: Option<String>,
}

/// Why the configuration could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these options.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid option {option}: {reason}")]
    Invalid {
        /// The option.
        option: &'static str,
        /// Why.
        reason: &'static str,
    },
}

/// The complete, validated relay configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: SocketAddr,
    /// SQLite path or `:memory:`.
    pub db: String,
    /// Relay key file; `None` means an ephemeral key.
    pub key_file: Option<PathBuf>,
    /// Accepted dialled URLs; empty accepts any.
    pub public_urls: Vec<String>,
    /// Built PWA directory, if any.
    pub web_root: Option<PathBuf>,
    /// Auth deadline (ms).
    pub auth_timeout_ms: u64,
    /// Heartbeat interval (ms).
    pub heartbeat_interval_ms: u64,
    /// Heartbeat misses before dropping.
    pub heartbeat_misses: u32,
    /// Per-agent frames/s.
    pub rate_frames_per_sec: u32,
    /// Per-agent frame burst.
    pub rate_frames_burst: u32,
    /// Per-agent bytes/s.
    pub rate_bytes_per_sec: u32,
    /// Per-agent byte burst.
    pub rate_bytes_burst: u32,
    /// Per-IP connections/s.
    pub conn_per_ip_per_sec: u32,
    /// Per-IP connection burst.
    pub conn_per_ip_burst: u32,
    /// Per-IP registry writes/s.
    pub http_writes_per_ip_per_sec: u32,
    /// Per-IP registry write burst.
    pub http_writes_per_ip_burst: u32,
    /// Total connections.
    pub max_connections: usize,
    /// Inbox frames per agent.
    pub inbox_max_frames: u64,
    /// Inbox bytes per agent.
    pub inbox_max_bytes: u64,
    /// Inbox frame age (ms).
    pub inbox_max_age_ms: u64,
    /// Per-connection send queue (frames).
    pub send_queue_frames: usize,
    /// Per-connection unacknowledged frames.
    pub max_unacked_frames: usize,
    /// WebSocket write timeout (ms).
    pub write_timeout_ms: u64,
    /// Graceful shutdown drain (ms).
    pub drain_timeout_ms: u64,
    /// Log filter.
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: d::LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            db: d::DB_PATH.into(),
            key_file: None,
            public_urls: Vec::new(),
            web_root: None,
            auth_timeout_ms: d::AUTH_TIMEOUT_MS,
            heartbeat_interval_ms: d::HEARTBEAT_INTERVAL_MS,
            heartbeat_misses: d::HEARTBEAT_MISSES,
            rate_frames_per_sec: d::RATE_FRAMES_PER_SEC,
            rate_frames_burst: d::RATE_FRAMES_BURST,
            rate_bytes_per_sec: d::RATE_BYTES_PER_SEC,
            rate_bytes_burst: d::RATE_BYTES_BURST,
            conn_per_ip_per_sec: d::CONN_PER_IP_PER_SEC,
            conn_per_ip_burst: d::CONN_PER_IP_BURST,
            http_writes_per_ip_per_sec: d::HTTP_WRITES_PER_IP_PER_SEC,
            http_writes_per_ip_burst: d::HTTP_WRITES_PER_IP_BURST,
            max_connections: d::MAX_CONNECTIONS,
            inbox_max_frames: d::INBOX_MAX_FRAMES,
            inbox_max_bytes: d::INBOX_MAX_BYTES,
            inbox_max_age_ms: d::INBOX_MAX_AGE_MS,
            send_queue_frames: d::SEND_QUEUE_FRAMES,
            max_unacked_frames: d::MAX_UNACKED_FRAMES,
            write_timeout_ms: d::WRITE_TIMEOUT_MS,
            drain_timeout_ms: d::DRAIN_TIMEOUT_MS,
            log: "info".into(),
        }
    }
}

impl Config {
    /// A configuration for tests: `127.0.0.1:0`, in-memory database,
    /// ephemeral key, defaults otherwise.
    pub fn for_tests() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            db: ":memory:".into(),
            ..Config::default()
        }
    }

    /// Assembles the configuration from flags, environment and file.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let mut c = Config::default();
        macro_rules! pick {
            ($field:ident) => {
                if let Some(v) = cli.$field.clone().or(file.$field.clone()) {
                    c.$field = v;
                }
            };
        }
        pick!(listen);
        pick!(db);
        pick!(auth_timeout_ms);
        pick!(heartbeat_interval_ms);
        pick!(heartbeat_misses);
        pick!(rate_frames_per_sec);
        pick!(rate_frames_burst);
        pick!(rate_bytes_per_sec);
        pick!(rate_bytes_burst);
        pick!(conn_per_ip_per_sec);
        pick!(conn_per_ip_burst);
        pick!(http_writes_per_ip_per_sec);
        pick!(http_writes_per_ip_burst);
        pick!(max_connections);
        pick!(inbox_max_frames);
        pick!(inbox_max_bytes);
        pick!(inbox_max_age_ms);
        pick!(send_queue_frames);
        pick!(max_unacked_frames);
        pick!(write_timeout_ms);
        pick!(drain_timeout_ms);
        pick!(log);
        c.key_file = cli.key_file.or(file.key_file);
        if c.key_file.is_none() && c.db != ":memory:" {
            c.key_file = Some(PathBuf::from(format!("{}.key", c.db)));
        }
        c.public_urls = if cli.public_urls.is_empty() {
            file.public_urls
        } else {
            cli.public_urls
        };
        c.web_root = cli.web_root.or(file.web_root).or_else(|| {
            let default = Path::new("web/dist");
            default
                .join("index.html")
                .exists()
                .then(|| default.to_path_buf())
        });
        c.validate()?;
        Ok(c)
    }

    /// Checks value ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("auth_timeout_ms", self.auth_timeout_ms),
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("heartbeat_misses", u64::from(self.heartbeat_misses)),
            ("rate_frames_per_sec", u64::from(self.rate_frames_per_sec)),
            ("rate_frames_burst", u64::from(self.rate_frames_burst)),
            ("rate_bytes_per_sec", u64::from(self.rate_bytes_per_sec)),
            ("conn_per_ip_per_sec", u64::from(self.conn_per_ip_per_sec)),
            ("conn_per_ip_burst", u64::from(self.conn_per_ip_burst)),
            (
                "http_writes_per_ip_per_sec",
                u64::from(self.http_writes_per_ip_per_sec),
            ),
            (
                "http_writes_per_ip_burst",
                u64::from(self.http_writes_per_ip_burst),
            ),
            ("max_connections", self.max_connections as u64),
            ("inbox_max_frames", self.inbox_max_frames),
            ("send_queue_frames", self.send_queue_frames as u64),
            ("max_unacked_frames", self.max_unacked_frames as u64),
            ("write_timeout_ms", self.write_timeout_ms),
        ];
        for (option, v) in positive {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    option,
                    reason: "must be greater than zero",
                });
            }
        }
        if (self.rate_bytes_burst as usize) < mesh_core::limits::MAX_FRAME_LEN {
            return Err(ConfigError::Invalid {
                option: "rate_bytes_burst",
                reason: "must be at least the maximum frame size (65595)",
            });
        }
        if self.inbox_max_bytes < mesh_core::limits::MAX_FRAME_LEN as u64 {
            return Err(ConfigError::Invalid {
                option: "inbox_max_bytes",
                reason: "must be at least the maximum frame size (65595)",
            });
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("mesh-relay").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_file_and_flags_in_order_of_precedence() {
        let dir = std::env::temp_dir().join(format!("mesh-relay-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(
            &file,
            "heartbeat_interval_ms = 20000\ninbox_max_frames = 7\ndb = \"from-file.db\"\n",
        )
        .unwrap();
        let c = Config::from_cli(cli(&[
            "--config",
            file.to_str().unwrap(),
            "--inbox-max-frames",
            "9",
        ]))
        .unwrap();
        assert_eq!(c.heartbeat_interval_ms, 20_000, "file over default");
        assert_eq!(c.inbox_max_frames, 9, "flag over file");
        assert_eq!(c.db, "from-file.db");
        assert_eq!(c.key_file, Some(PathBuf::from("from-file.db.key")));
        assert_eq!(c.rate_frames_per_sec, d::RATE_FRAMES_PER_SEC, "default");
        let c = Config::from_cli(cli(&["--db", ":memory:"])).unwrap();
        assert_eq!(c.key_file, None, "in-memory relays get an ephemeral key");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn bad_files_and_values_are_explained() {
        let dir =
            std::env::temp_dir().join(format!("mesh-relay-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("relay.toml");
        std::fs::write(&file, "heartbeat_intervl_ms = 1\n").unwrap();
        let err = Config::from_cli(cli(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("heartbeat_intervl_ms"), "{err}");
        let err = Config::from_cli(cli(&["--config", "/nonexistent/relay.toml"])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        let err = Config::from_cli(cli(&["--max-connections", "0"])).unwrap_err();
        assert!(err.to_string().contains("max_connections"), "{err}");
        let err = Config::from_cli(cli(&["--rate-bytes-burst", "1000"])).unwrap_err();
        assert!(err.to_string().contains("rate_bytes_burst"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn help_documents_every_option() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for opt in [
            "--listen",
            "--db",
            "--config",
            "--public-url",
            "--web-root",
            "--inbox-max-bytes",
            "--heartbeat-interval-ms",
            "MESH_DB",
        ] {
            assert!(help.contains(opt), "{opt} missing from --help");
        }
    }
}
