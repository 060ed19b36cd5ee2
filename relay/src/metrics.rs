//! The relay's metrics: one struct of counters, declared once, exported in
//! Prometheus text format at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A label set with one `reason` (or `route`) label.
pub type Reason = [(&'static str, &'static str); 1];

/// Builds a `reason` label.
pub fn reason(r: &'static str) -> Reason {
    [("reason", r)]
}

/// Every metric the relay exports.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections (authenticated or not).
    pub connections: Gauge,
    /// Authenticated agents online.
    pub agents_online: Gauge,
    /// Connections accepted since start.
    pub connections_total: Counter,
    /// Routed frames accepted from senders.
    pub frames_routed: Counter,
    /// Sealed body bytes routed.
    pub bytes_routed: Counter,
    /// Frames forwarded to a live connection.
    pub frames_forwarded: Counter,
    /// Frames stored in an offline inbox.
    pub frames_queued: Counter,
    /// Frames acknowledged by their recipient.
    pub frames_delivered: Counter,
    /// Unacknowledged frames of an ended connection that could not be
    /// written to the inbox (a storage failure); their senders were told
    /// `refused` `internal`.
    pub frames_lost: Counter,
    /// Frames refused, by reason (error code name).
    pub frames_refused: Family<Reason, Counter>,
    /// Authentication failures, by reason.
    pub auth_failures: Family<Reason, Counter>,
    /// Rate-limited frames or connections, by limit.
    pub rate_limited: Family<Reason, Counter>,
    /// Undecodable or invalid frames, by reason.
    pub bad_frames: Family<Reason, Counter>,
    /// Frames in all inboxes.
    pub inbox_frames: Gauge,
    /// Bytes in all inboxes.
    pub inbox_bytes: Gauge,
    /// Time to route one frame (read to enqueue or store), seconds.
    pub route_seconds: Histogram,
    /// Registry HTTP request latency, seconds, by route.
    pub http_seconds: Family<Reason, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 10 µs .. ~5 s.
    Histogram::new(exponential_buckets(0.000_01, 2.5, 15))
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("mesh_relay"),
            connections: Gauge::default(),
            agents_online: Gauge::default(),
            connections_total: Counter::default(),
            frames_routed: Counter::default(),
            bytes_routed: Counter::default(),
            frames_forwarded: Counter::default(),
            frames_queued: Counter::default(),
            frames_delivered: Counter::default(),
            frames_lost: Counter::default(),
            frames_refused: Family::default(),
            auth_failures: Family::default(),
            rate_limited: Family::default(),
            bad_frames: Family::default(),
            inbox_frames: Gauge::default(),
            inbox_bytes: Gauge::default(),
            route_seconds: latency_histogram(),
            http_seconds: Family::new_with_constructor(latency_histogram),
        };
        m.registry.register(
            "connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        m.registry.register(
            "agents_online",
            "Authenticated agents online",
            m.agents_online.clone(),
        );
        m.registry.register(
            "connections_accepted",
            "Connections accepted",
            m.connections_total.clone(),
        );
        m.registry.register(
            "frames_routed",
            "Routed frames accepted from senders",
            m.frames_routed.clone(),
        );
        m.registry.register(
            "bytes_routed",
            "Sealed body bytes routed",
            m.bytes_routed.clone(),
        );
        m.registry.register(
            "frames_forwarded",
            "Frames forwarded to a live connection",
            m.frames_forwarded.clone(),
        );
        m.registry.register(
            "frames_queued",
            "Frames stored in an offline inbox",
            m.frames_queued.clone(),
        );
        m.registry.register(
            "frames_delivered",
            "Frames acknowledged by their recipient",
            m.frames_delivered.clone(),
        );
        m.registry.register(
            "frames_lost",
            "Unacknowledged frames of an ended connection that storage failed to keep",
            m.frames_lost.clone(),
        );
        m.registry.register(
            "frames_refused",
            "Frames refused, by reason",
            m.frames_refused.clone(),
        );
        m.registry.register(
            "auth_failures",
            "Authentication failures, by reason",
            m.auth_failures.clone(),
        );
        m.registry.register(
            "rate_limited",
            "Rate-limited frames or connections, by limit",
            m.rate_limited.clone(),
        );
        m.registry.register(
            "bad_frames",
            "Invalid frames, by reason",
            m.bad_frames.clone(),
        );
        m.registry.register(
            "inbox_frames",
            "Frames in all offline inboxes",
            m.inbox_frames.clone(),
        );
        m.registry.register(
            "inbox_bytes",
            "Bytes in all offline inboxes",
            m.inbox_bytes.clone(),
        );
        m.registry.register(
            "route_seconds",
            "Time to route one frame",
            m.route_seconds.clone(),
        );
        m.registry.register(
            "http_request_seconds",
            "Registry HTTP request latency, by route",
            m.http_seconds.clone(),
        );
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
