//! Request and response bodies between JSON (MCP tool arguments, gateway
//! requests) and the mesh's raw bytes: one rule everywhere, so a body means
//! the same thing whichever door it came in by.

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;

/// The mesh body a JSON value stands for: a string is sent as its UTF-8
/// text (no quotes), `null` as an empty body, anything else as compact JSON.
pub fn from_json(value: &Value) -> Bytes {
    match value {
        Value::Null => Bytes::new(),
        Value::String(text) => Bytes::from(text.clone()),
        other => Bytes::from(other.to_string()),
    }
}

/// A received body as text: itself when it is UTF-8, otherwise a note with
/// its base64 (MCP content and SSE data are text).
pub fn to_text(body: &[u8]) -> String {
    match std::str::from_utf8(body) {
        Ok(text) => text.to_string(),
        Err(_) => format!(
            "(binary, {} bytes, base64) {}",
            body.len(),
            base64::engine::general_purpose::STANDARD.encode(body)
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn strings_go_as_text_and_other_values_as_json() {
        assert_eq!(from_json(&json!("hi \"there\"")), "hi \"there\"");
        assert_eq!(from_json(&json!(null)), "");
        assert_eq!(from_json(&json!({"a": [1, 2]})), "{\"a\":[1,2]}");
        assert_eq!(from_json(&json!(42)), "42");
    }

    #[test]
    fn binary_answers_become_base64_text() {
        assert_eq!(to_text(b"plain"), "plain");
        assert_eq!(to_text(&[0xff, 0x00]), "(binary, 2 bytes, base64) /wA=");
    }
}
