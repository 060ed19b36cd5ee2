//! Every number that limits the relay, in one place, with why it has the
//! value it has. Each is the default of a configuration option (see
//! [`crate::config`]); docs/PROTOCOL.md ("Relay limits") lists the same
//! numbers, and a test keeps the two in agreement.

/// Address the relay listens on: loopback, so a fresh install is not
/// exposed to the network until the operator says so.
pub const LISTEN: &str = "127.0.0.1:8080";

/// SQLite database file, relative to the working directory.
pub const DB_PATH: &str = "mesh-relay.db";

/// Time an unauthenticated socket gets to answer the challenge (ms). Long
/// enough for a slow phone, short enough that idle half-open sockets do not
/// pile up.
pub const AUTH_TIMEOUT_MS: u64 = mesh_core::limits::AUTH_TIMEOUT_MS;

/// Heartbeat interval announced to clients and used by the relay (ms).
/// Under the 30–60 s idle timeouts common in proxies and NATs.
pub const HEARTBEAT_INTERVAL_MS: u64 = mesh_core::limits::HEARTBEAT_INTERVAL_MS;

/// Unanswered pings before a connection is declared dead (so a dead peer is
/// noticed within about a minute).
pub const HEARTBEAT_MISSES: u32 = mesh_core::limits::HEARTBEAT_MISSES;

/// Frames queued for one connection's writer. A receiver that falls this far
/// behind gets further frames through its durable inbox instead, so it never
/// slows a sender.
pub const SEND_QUEUE_FRAMES: usize = 256;

/// Frames forwarded to one connection and not yet acknowledged. Past it new
/// frames for that agent go to its inbox (flow control for slow readers).
pub const MAX_UNACKED_FRAMES: usize = 1024;

/// Time one WebSocket write may take before the connection is considered
/// dead (ms).
pub const WRITE_TIMEOUT_MS: u64 = 10_000;

/// Frames an agent may send per second (sustained; token bucket).
pub const RATE_FRAMES_PER_SEC: u32 = 2_000;

/// Burst of frames above the sustained rate.
pub const RATE_FRAMES_BURST: u32 = 4_000;

/// Bytes an agent may send per second (sustained; token bucket): 8 MiB/s.
pub const RATE_BYTES_PER_SEC: u32 = 8 * 1024 * 1024;

/// Burst of bytes above the sustained rate (16 MiB: several maximal frames).
pub const RATE_BYTES_BURST: u32 = 16 * 1024 * 1024;

/// New connections per second from one IP address (token bucket).
pub const CONN_PER_IP_PER_SEC: u32 = 20;

/// Burst of new connections from one IP address.
pub const CONN_PER_IP_BURST: u32 = 50;

/// Registry writes (PUT/DELETE/POST) per second from one IP address: cards
/// and revocations are cheap to forge keys for, so writes are bounded per
/// address.
pub const HTTP_WRITES_PER_IP_PER_SEC: u32 = 5;

/// Burst of registry writes from one IP address.
pub const HTTP_WRITES_PER_IP_BURST: u32 = 30;

/// Concurrent WebSocket connections in total. Each idle connection costs a
/// few KiB; this bounds memory on a small machine.
pub const MAX_CONNECTIONS: usize = 20_000;

/// Frames held in one agent's offline inbox.
pub const INBOX_MAX_FRAMES: u64 = 10_000;

/// Bytes held in one agent's offline inbox (64 MiB).
pub const INBOX_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Age after which an undelivered inbox frame is discarded (7 days, ms).
pub const INBOX_MAX_AGE_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Inbox frames loaded per database read when draining to a connection.
pub const INBOX_BATCH: usize = 256;

/// Largest HTTP request body the registry accepts (a card is at most 64 KiB).
pub const MAX_HTTP_BODY: usize = 64 * 1024 + 1024;

/// Largest page of registry search results.
pub const SEARCH_MAX_LIMIT: u32 = 100;

/// Page size when the client does not ask for one.
pub const SEARCH_DEFAULT_LIMIT: u32 = 20;

/// Time a graceful shutdown waits for connections to close (ms).
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;

/// Interval of housekeeping: expired inbox frames, resume tokens and
/// registry nonces (ms).
pub const HOUSEKEEPING_INTERVAL_MS: u64 = 60_000;

/// WebSocket read buffer per connection. tungstenite's default (128 KiB)
/// would dominate idle memory; frames are read incrementally either way.
pub const WS_READ_BUFFER: usize = 4 * 1024;

/// WebSocket write buffer target per connection. The writer feeds every
/// queued frame and then flushes once, so a burst costs one syscall; the
/// buffer only grows while a burst is being written.
pub const WS_WRITE_BUFFER: usize = 64 * 1024;

/// Pending connections the listening socket queues (the OS default of 128
/// overflows when many agents reconnect at once after a relay restart).
pub const LISTEN_BACKLOG: u32 = 4096;
