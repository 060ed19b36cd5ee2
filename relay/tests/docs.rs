//! docs/PROTOCOL.md lists every relay default with its value.

use mesh_relay::defaults::*;

const PROTOCOL_MD: &str = include_str!("../../docs/PROTOCOL.md");

#[test]
fn protocol_md_lists_every_relay_default() {
    let values: Vec<(&str, String)> = vec![
        ("LISTEN", LISTEN.to_string()),
        ("DB_PATH", DB_PATH.to_string()),
        ("AUTH_TIMEOUT_MS", AUTH_TIMEOUT_MS.to_string()),
        ("HEARTBEAT_INTERVAL_MS", HEARTBEAT_INTERVAL_MS.to_string()),
        ("HEARTBEAT_MISSES", HEARTBEAT_MISSES.to_string()),
        ("SEND_QUEUE_FRAMES", SEND_QUEUE_FRAMES.to_string()),
        ("MAX_UNACKED_FRAMES", MAX_UNACKED_FRAMES.to_string()),
        ("WRITE_TIMEOUT_MS", WRITE_TIMEOUT_MS.to_string()),
        ("RATE_FRAMES_PER_SEC", RATE_FRAMES_PER_SEC.to_string()),
        ("RATE_FRAMES_BURST", RATE_FRAMES_BURST.to_string()),
        ("RATE_BYTES_PER_SEC", RATE_BYTES_PER_SEC.to_string()),
        ("RATE_BYTES_BURST", RATE_BYTES_BURST.to_string()),
        ("CONN_PER_IP_PER_SEC", CONN_PER_IP_PER_SEC.to_string()),
        ("CONN_PER_IP_BURST", CONN_PER_IP_BURST.to_string()),
        (
            "HTTP_WRITES_PER_IP_PER_SEC",
            HTTP_WRITES_PER_IP_PER_SEC.to_string(),
        ),
        (
            "HTTP_WRITES_PER_IP_BURST",
            HTTP_WRITES_PER_IP_BURST.to_string(),
        ),
        ("MAX_CONNECTIONS", MAX_CONNECTIONS.to_string()),
        ("INBOX_MAX_FRAMES", INBOX_MAX_FRAMES.to_string()),
        ("INBOX_MAX_BYTES", INBOX_MAX_BYTES.to_string()),
        ("INBOX_MAX_AGE_MS", INBOX_MAX_AGE_MS.to_string()),
        ("INBOX_BATCH", INBOX_BATCH.to_string()),
        ("MAX_HTTP_BODY", MAX_HTTP_BODY.to_string()),
        ("SEARCH_MAX_LIMIT", SEARCH_MAX_LIMIT.to_string()),
        ("SEARCH_DEFAULT_LIMIT", SEARCH_DEFAULT_LIMIT.to_string()),
        ("DRAIN_TIMEOUT_MS", DRAIN_TIMEOUT_MS.to_string()),
        (
            "HOUSEKEEPING_INTERVAL_MS",
            HOUSEKEEPING_INTERVAL_MS.to_string(),
        ),
        ("WS_READ_BUFFER", WS_READ_BUFFER.to_string()),
        ("WS_WRITE_BUFFER", WS_WRITE_BUFFER.to_string()),
        ("LISTEN_BACKLOG", LISTEN_BACKLOG.to_string()),
    ];
    let source = include_str!("../src/defaults.rs");
    for name in source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split(':').next())
    {
        assert!(values.iter().any(|(n, _)| *n == name), "test misses {name}");
    }
    let section = PROTOCOL_MD
        .split("### 12.3")
        .nth(1)
        .expect("section 12.3 exists");
    for (name, value) in values {
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md 12.3 has no row for {name}"));
        let cell = row
            .split('|')
            .nth(2)
            .unwrap_or_default()
            .trim()
            .replace(',', "");
        assert_eq!(cell, value, "{name}");
    }
}
