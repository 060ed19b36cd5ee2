//! Writing results to stdout: text lines, raw bytes, JSON, tables and
//! human-readable ages. Every write is flushed at once, so a script or a
//! pipe sees each line as soon as it is printed; a closed pipe is an error
//! the caller turns into a quiet exit.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

/// Writes `bytes` to stdout as they are.
pub fn raw(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// Writes one line of text to stdout.
pub fn line(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

/// A mesh-core JSON value (a verified card, a registry entry) as a
/// serde_json value, for output built with `json!`.
pub fn to_serde(value: &mesh_core::json::Value) -> serde_json::Value {
    // Cannot fail: every number mesh-core's reader accepts is a finite f64.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// A serde_json value as a mesh-core JSON value (input schemas from a card
/// file); fails on numbers the card verifier would refuse.
pub fn from_serde(value: &serde_json::Value) -> anyhow::Result<mesh_core::json::Value> {
    let text = serde_json::to_vec(value)?;
    Ok(mesh_core::json::Value::parse(&text)?)
}

/// Writes `value` as one line of compact JSON.
pub fn json_line(value: &serde_json::Value) -> anyhow::Result<()> {
    line(&value.to_string())
}

/// Writes `value` as pretty-printed JSON.
pub fn json_pretty(value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot encode JSON")?;
    line(&text)
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// How long ago `then_ms` (Unix ms) was, as a person says it: `12s ago`,
/// `5m ago`, `3h ago`, `2d ago`.
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(then_ms) / 1000;
    match s {
        0..=4 => "just now".into(),
        5..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86_399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// `text` cut to at most `max` characters, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Lays out rows under a header, columns padded to their widest cell; the
/// last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    let mut lines = vec![render(header.to_vec())];
    lines.extend(
        rows.iter()
            .map(|r| render(r.iter().map(String::as_str).collect())),
    );
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(1_000, 2_000), "just now");
        assert_eq!(ago(0, 42_000), "42s ago");
        assert_eq!(ago(0, 5 * 60_000), "5m ago");
        assert_eq!(ago(0, 3 * 3_600_000), "3h ago");
        assert_eq!(ago(0, 2 * 86_400_000), "2d ago");
        assert_eq!(ago(10_000, 0), "just now");
    }

    #[test]
    fn tables_align_and_truncation_marks_the_cut() {
        let lines = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "x".into()],
                vec!["long".into(), "y".into()],
            ],
        );
        assert_eq!(lines, vec!["ID    NAME", "a     x", "long  y"]);
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
