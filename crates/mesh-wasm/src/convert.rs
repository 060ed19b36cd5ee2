//! The edges between JavaScript values and the client: bodies, errors,
//! options and `AbortSignal`s.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use mesh_client::ClientError;
use mesh_core::AgentId;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// `code` of an error about an argument the caller passed (a malformed
/// agent id, a body that cannot be serialised, a bad option).
pub const INVALID_ARGUMENT: &str = "invalid_argument";
/// `code` of an IndexedDB failure.
pub const STORAGE: &str = "storage";

/// A JS `Error` named `MeshError` with `message` and a stable `code`.
pub fn error(code: &str, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name("MeshError");
    let _ = js_sys::Reflect::set(&e, &"code".into(), &code.into());
    e.into()
}

/// The JS error for a client error: `code` is its wire code's name;
/// `retryAfterMs` is set for `rate_limited`.
pub fn client_error(e: &ClientError) -> JsValue {
    let out = error(e.code().name(), &e.to_string());
    if let ClientError::RateLimited { retry_after_ms } = e {
        let _ = js_sys::Reflect::set(
            &out,
            &"retryAfterMs".into(),
            &JsValue::from(*retry_after_ms),
        );
    }
    out
}

/// An `invalid_argument` error.
pub fn invalid(message: impl AsRef<str>) -> JsValue {
    error(INVALID_ARGUMENT, message.as_ref())
}

/// Parses an agent id (`did:key:z6Mk…`).
pub fn agent_id(text: &str) -> Result<AgentId, JsValue> {
    text.parse::<AgentId>()
        .map_err(|e| invalid(format!("not an agent id ({text:?}): {e}")))
}

/// A body from JS: `Uint8Array`/`ArrayBuffer`/other views as bytes, a
/// string as UTF-8, `undefined` as empty, anything else as JSON text.
pub fn body(value: &JsValue) -> Result<Bytes, JsValue> {
    if value.is_undefined() {
        return Ok(Bytes::new());
    }
    if let Some(text) = value.as_string() {
        return Ok(Bytes::from(text));
    }
    if let Some(bytes) = value.dyn_ref::<js_sys::Uint8Array>() {
        return Ok(Bytes::from(bytes.to_vec()));
    }
    if let Some(buffer) = value.dyn_ref::<js_sys::ArrayBuffer>() {
        return Ok(Bytes::from(js_sys::Uint8Array::new(buffer).to_vec()));
    }
    if js_sys::ArrayBuffer::is_view(value) {
        let view: &js_sys::DataView = value.unchecked_ref();
        let bytes = js_sys::Uint8Array::new_with_byte_offset_and_length(
            &view.buffer(),
            view.byte_offset() as u32,
            view.byte_length() as u32,
        );
        return Ok(Bytes::from(bytes.to_vec()));
    }
    match js_sys::JSON::stringify(value) {
        Ok(text) => match text.as_string() {
            Some(text) => Ok(Bytes::from(text)),
            None => Err(invalid("the body cannot be serialised as JSON")),
        },
        Err(e) => Err(invalid(format!(
            "the body cannot be serialised as JSON: {}",
            message_of(&e)
        ))),
    }
}

/// Bytes as a fresh `Uint8Array`.
pub fn bytes(b: &[u8]) -> js_sys::Uint8Array {
    js_sys::Uint8Array::from(b)
}

/// `e.message` if it is an `Error`-like object, else its string form.
pub fn message_of(e: &JsValue) -> String {
    get(e, "message")
        .as_string()
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// `target[key]`, `undefined` when absent or when `target` is not an object.
pub fn get(target: &JsValue, key: &str) -> JsValue {
    if !target.is_object() && !target.is_function() {
        return JsValue::UNDEFINED;
    }
    js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// Sets `target[key] = value` on a plain object being built.
pub fn set(target: &js_sys::Object, key: &str, value: impl Into<JsValue>) {
    let _ = js_sys::Reflect::set(target, &JsValue::from_str(key), &value.into());
}

/// An optional non-negative integer option (`undefined`/`null` = `None`).
pub fn opt_u64(options: &JsValue, key: &str) -> Result<Option<u64>, JsValue> {
    let v = get(options, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    match v.as_f64() {
        Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= 9.0e15 => {
            Ok(Some(n as u64))
        }
        _ => Err(invalid(format!(
            "option {key} must be a non-negative integer"
        ))),
    }
}

/// An optional string option.
pub fn opt_string(options: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    let v = get(options, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| invalid(format!("option {key} must be a string")))
}

/// An optional boolean option.
pub fn opt_bool(options: &JsValue, key: &str) -> Result<Option<bool>, JsValue> {
    let v = get(options, key);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_bool()
        .map(Some)
        .ok_or_else(|| invalid(format!("option {key} must be a boolean")))
}

/// The `signal` option, if it is an `AbortSignal`-like object.
pub fn opt_signal(options: &JsValue) -> Result<Option<web_sys::AbortSignal>, JsValue> {
    let v = get(options, "signal");
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    if get(&v, "aborted").as_bool().is_none() || !get(&v, "addEventListener").is_function() {
        return Err(invalid("option signal must be an AbortSignal"));
    }
    Ok(Some(v.unchecked_into()))
}

/// Parses JSON text into a JS value.
pub fn parse_json(text: &str) -> Result<JsValue, JsValue> {
    js_sys::JSON::parse(text).map_err(|e| invalid(format!("invalid JSON: {}", message_of(&e))))
}

/// JSON text of a JS value.
pub fn to_json(value: &JsValue, what: &str) -> Result<String, JsValue> {
    js_sys::JSON::stringify(value)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| invalid(format!("{what} cannot be serialised as JSON")))
}

/// Resolves when `signal` aborts (at once if it already has). Removes its
/// listener when dropped.
pub fn aborted(signal: &web_sys::AbortSignal) -> impl Future<Output = ()> + 'static {
    struct Listener {
        signal: web_sys::AbortSignal,
        closure: Closure<dyn FnMut(JsValue)>,
    }
    impl Drop for Listener {
        fn drop(&mut self) {
            let _ = self.signal.remove_event_listener_with_callback(
                "abort",
                self.closure.as_ref().unchecked_ref(),
            );
        }
    }
    let (tx, rx) = oneshot::channel::<()>();
    let listener = if signal.aborted() {
        let _ = tx.send(());
        None
    } else {
        let tx = Rc::new(RefCell::new(Some(tx)));
        let closure = Closure::<dyn FnMut(JsValue)>::new(move |_e: JsValue| {
            if let Some(t) = tx.borrow_mut().take() {
                let _ = t.send(());
            }
        });
        let _ = signal.add_event_listener_with_callback("abort", closure.as_ref().unchecked_ref());
        Some(Listener {
            signal: signal.clone(),
            closure,
        })
    };
    async move {
        let _listener = listener;
        // A dropped sender (never, while the listener lives) reads as "not
        // aborted": wait forever.
        if rx.await.is_err() {
            futures::future::pending::<()>().await;
        }
    }
}

/// The `cancelled` error an aborted call rejects with.
pub fn abort_error() -> JsValue {
    client_error(&ClientError::Cancelled)
}
