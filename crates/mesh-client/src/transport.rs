//! The socket: binary WebSocket messages in and out. Two implementations
//! chosen by target — tokio-tungstenite natively (TCP_NODELAY set),
//! `web-sys::WebSocket` with `ArrayBuffer` frames in browsers and Workers —
//! behind one small interface, so the driver is written once.

use bytes::Bytes;
use futures::channel::mpsc;
use futures::StreamExt;

/// Why the socket could not be opened or used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Connecting failed (DNS, refused, TLS, HTTP upgrade).
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL dialled.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Sending failed; the socket is gone.
    #[error("connection lost while sending")]
    Send,
}

/// How the socket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The WebSocket close code, if the peer sent one.
    pub code: Option<u16>,
    /// The close reason.
    pub reason: String,
}

/// An event from the socket.
#[derive(Debug)]
pub enum Incoming {
    /// A binary message.
    Frame(Bytes),
    /// The socket closed.
    Closed(CloseInfo),
}

pub use imp::{connect, Sender};

/// How sockets are opened. Natively there is nothing to choose; on wasm32
/// it names the `WebSocket` constructor (`None`: the global one).
#[derive(Debug, Clone, Default)]
pub struct Dialer {
    /// Called as `new constructor(url)`, e.g. the `ws` package on Node 20,
    /// which has no global `WebSocket`.
    #[cfg(target_arch = "wasm32")]
    pub websocket: Option<js_sys::Function>,
}

/// Receiving half: binary frames, then one `Closed`. Bounded
/// ([`RECEIVE_BUFFER`]): natively the socket reader waits when it is full
/// (backpressure to the relay); in a browser, whose `onmessage` cannot
/// wait, a full buffer closes the socket — the relay keeps every frame we
/// did not acknowledge and delivers it again on reconnect.
pub type Receiver = mpsc::Receiver<Incoming>;

/// Frames buffered between the socket and the driver.
pub const RECEIVE_BUFFER: usize = 1024;

/// Reads the next event; a silently dropped socket reads as closed.
pub async fn next(rx: &mut Receiver) -> Incoming {
    rx.next().await.unwrap_or(Incoming::Closed(CloseInfo {
        code: None,
        reason: "connection lost".into(),
    }))
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use futures::stream::SplitSink;
    use futures::SinkExt;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// Sending half of a native WebSocket.
    pub struct Sender {
        sink: SplitSink<Ws, Message>,
    }

    impl Sender {
        /// Sends one binary frame now.
        pub async fn send(&mut self, frame: Bytes) -> Result<(), TransportError> {
            self.sink
                .send(Message::Binary(frame))
                .await
                .map_err(|_| TransportError::Send)
        }

        /// Buffers one binary frame; [`Sender::flush`] writes the batch.
        pub async fn feed(&mut self, frame: Bytes) -> Result<(), TransportError> {
            self.sink
                .feed(Message::Binary(frame))
                .await
                .map_err(|_| TransportError::Send)
        }

        /// Writes everything fed so far.
        pub async fn flush(&mut self) -> Result<(), TransportError> {
            self.sink.flush().await.map_err(|_| TransportError::Send)
        }

        /// Closes the socket politely.
        pub async fn close(&mut self) {
            let _ = self.sink.close().await;
        }
    }

    /// Opens a WebSocket to `url` (`ws://` or `wss://`).
    pub async fn connect(
        url: &str,
        _dialer: &Dialer,
    ) -> Result<(Sender, Receiver), TransportError> {
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(mesh_core::limits::MAX_FRAME_LEN + 4096);
        config.max_frame_size = Some(mesh_core::limits::MAX_FRAME_LEN + 4096);
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
            .await
            .map_err(|e| TransportError::Connect {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let (sink, mut stream) = ws.split();
        let (mut tx, rx) = mpsc::channel(RECEIVE_BUFFER);
        tokio::spawn(async move {
            let close = loop {
                match stream.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        if tx.send(Incoming::Frame(b)).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(cf))) => {
                        break CloseInfo {
                            code: cf.as_ref().map(|c| u16::from(c.code)),
                            reason: cf.map(|c| c.reason.to_string()).unwrap_or_default(),
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        break CloseInfo {
                            code: None,
                            reason: e.to_string(),
                        }
                    }
                    None => {
                        break CloseInfo {
                            code: None,
                            reason: "connection closed".into(),
                        }
                    }
                }
            };
            let _ = tx.send(Incoming::Closed(close)).await;
        });
        Ok((Sender { sink }, rx))
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    //! Written against the WHATWG WebSocket surface only, through
    //! `addEventListener` and plain property reads, so that it works with the
    //! browser's socket, Deno's, workerd's, and a constructor handed in by
    //! the application (such as the `ws` package on Node 20, whose event
    //! objects are not `instanceof MessageEvent`).
    use super::*;
    use std::cell::RefCell;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};
    use web_sys::WebSocket;

    type Listener = Closure<dyn FnMut(JsValue)>;

    /// Sending half of a WebSocket.
    pub struct Sender {
        ws: WebSocket,
        listeners: Vec<(&'static str, Listener)>,
    }

    impl Drop for Sender {
        fn drop(&mut self) {
            for (event, listener) in &self.listeners {
                let _ = self
                    .ws
                    .remove_event_listener_with_callback(event, listener.as_ref().unchecked_ref());
            }
            let _ = self.ws.close();
        }
    }

    impl Sender {
        /// Sends one binary frame. The bytes are copied into a JS-owned
        /// array first: a view into wasm memory is not safe to hand over,
        /// because some runtimes (workerd) read it after `send` returns, by
        /// which time the memory may hold something else.
        pub async fn send(&mut self, frame: Bytes) -> Result<(), TransportError> {
            let owned = js_sys::Uint8Array::from(&frame[..]);
            self.ws
                .send_with_array_buffer_view(&owned)
                .map_err(|_| TransportError::Send)
        }

        /// Sends one binary frame (the runtime buffers it already).
        pub async fn feed(&mut self, frame: Bytes) -> Result<(), TransportError> {
            self.send(frame).await
        }

        /// Nothing to do: the runtime writes as it can.
        pub async fn flush(&mut self) -> Result<(), TransportError> {
            Ok(())
        }

        /// Closes the socket politely.
        pub async fn close(&mut self) {
            let _ = self.ws.close();
        }
    }

    fn get(target: &JsValue, key: &str) -> JsValue {
        js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    }

    fn describe(e: &JsValue) -> String {
        let message = get(e, "message");
        message
            .as_string()
            .or_else(|| e.as_string())
            .unwrap_or_else(|| format!("{e:?}"))
    }

    fn open(url: &str, dialer: &Dialer) -> Result<WebSocket, String> {
        let ctor = match dialer.websocket.clone() {
            Some(f) => f,
            None => {
                let global = get(&js_sys::global(), "WebSocket");
                if !global.is_function() {
                    return Err("this runtime has no global WebSocket; pass a WebSocket \
                                implementation in the connect options (e.g. the `ws` \
                                package on Node 20)"
                        .into());
                }
                global.unchecked_into()
            }
        };
        let args = js_sys::Array::of1(&JsValue::from_str(url));
        js_sys::Reflect::construct(&ctor, &args)
            .map(JsCast::unchecked_into)
            .map_err(|e| describe(&e))
    }

    /// The bytes of a message event's `data`: an `ArrayBuffer`, a typed
    /// array / Node `Buffer`, or `None` for text.
    fn frame_bytes(data: &JsValue) -> Option<Vec<u8>> {
        if let Some(buf) = data.dyn_ref::<js_sys::ArrayBuffer>() {
            return Some(js_sys::Uint8Array::new(buf).to_vec());
        }
        if let Some(view) = data.dyn_ref::<js_sys::Uint8Array>() {
            return Some(view.to_vec());
        }
        None
    }

    /// Opens a WebSocket to `url` and waits until it is open.
    pub async fn connect(url: &str, dialer: &Dialer) -> Result<(Sender, Receiver), TransportError> {
        let fail = |reason: String| TransportError::Connect {
            url: url.to_string(),
            reason,
        };
        let ws = open(url, dialer).map_err(fail)?;
        // A property set: harmless where a runtime delivers ArrayBuffers
        // anyway (workerd).
        let _ = js_sys::Reflect::set(&ws, &"binaryType".into(), &"arraybuffer".into());
        let (tx, rx) = mpsc::channel(RECEIVE_BUFFER);
        let (open_tx, open_rx) = futures::channel::oneshot::channel::<Result<(), String>>();
        let open_tx = std::rc::Rc::new(RefCell::new(Some(open_tx)));
        let mut listeners: Vec<(&'static str, Listener)> = Vec::new();
        {
            let open_tx = open_tx.clone();
            listeners.push((
                "open",
                Listener::new(move |_e: JsValue| {
                    if let Some(t) = open_tx.borrow_mut().take() {
                        let _ = t.send(Ok(()));
                    }
                }),
            ));
        }
        {
            let mut tx = tx.clone();
            let socket = ws.clone();
            listeners.push((
                "message",
                Listener::new(move |e: JsValue| {
                    if let Some(bytes) = frame_bytes(&get(&e, "data")) {
                        if tx.try_send(Incoming::Frame(Bytes::from(bytes))).is_err() {
                            // The driver is this far behind: drop the link
                            // rather than buffer without bound; frames we
                            // did not acknowledge come again after the
                            // reconnect.
                            let _ = socket.close_with_code_and_reason(4000, "client overloaded");
                        }
                    }
                }),
            ));
        }
        {
            let mut tx = tx.clone();
            let open_tx = open_tx.clone();
            listeners.push((
                "close",
                Listener::new(move |e: JsValue| {
                    let code = get(&e, "code").as_f64().map(|c| c as u16);
                    let reason = get(&e, "reason").as_string().unwrap_or_default();
                    let info = CloseInfo {
                        code,
                        reason: if reason.is_empty() {
                            "closed".into()
                        } else {
                            reason
                        },
                    };
                    if let Some(t) = open_tx.borrow_mut().take() {
                        let _ = t.send(Err(format!(
                            "closed before opening (code {:?}, {})",
                            info.code, info.reason
                        )));
                    }
                    // Delivered even when the buffer is full: the close must
                    // reach the driver. Each `Sender` clone adds a slot.
                    let _ = tx
                        .clone()
                        .try_send(Incoming::Closed(info.clone()))
                        .or_else(|_| tx.try_send(Incoming::Closed(info)));
                }),
            ));
        }
        {
            let open_tx = open_tx.clone();
            listeners.push((
                "error",
                Listener::new(move |e: JsValue| {
                    if let Some(t) = open_tx.borrow_mut().take() {
                        let detail = get(&e, "message").as_string().unwrap_or_default();
                        let _ = t.send(Err(if detail.is_empty() {
                            "websocket error".into()
                        } else {
                            format!("websocket error: {detail}")
                        }));
                    }
                }),
            ));
        }
        for (event, listener) in &listeners {
            ws.add_event_listener_with_callback(event, listener.as_ref().unchecked_ref())
                .map_err(|e| fail(describe(&e)))?;
        }
        let sender = Sender { ws, listeners };
        match open_rx.await {
            Ok(Ok(())) => Ok((sender, rx)),
            Ok(Err(reason)) => Err(fail(reason)),
            Err(_) => Err(fail("cancelled".into())),
        }
    }
}
