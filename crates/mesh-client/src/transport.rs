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
    pub async fn connect(url: &str) -> Result<(Sender, Receiver), TransportError> {
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
    use super::*;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

    /// Sending half of a browser WebSocket.
    pub struct Sender {
        ws: WebSocket,
        _handlers: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    }

    impl Drop for Sender {
        fn drop(&mut self) {
            self.ws.set_onmessage(None);
            self.ws.set_onclose(None);
            self.ws.set_onerror(None);
            self.ws.set_onopen(None);
            let _ = self.ws.close();
        }
    }

    impl Sender {
        /// Sends one binary frame.
        pub async fn send(&mut self, frame: Bytes) -> Result<(), TransportError> {
            self.ws
                .send_with_u8_array(&frame)
                .map_err(|_| TransportError::Send)
        }

        /// Sends one binary frame (the browser buffers it already).
        pub async fn feed(&mut self, frame: Bytes) -> Result<(), TransportError> {
            self.send(frame).await
        }

        /// Nothing to do: the browser writes as it can.
        pub async fn flush(&mut self) -> Result<(), TransportError> {
            Ok(())
        }

        /// Closes the socket politely.
        pub async fn close(&mut self) {
            let _ = self.ws.close();
        }
    }

    /// Opens a WebSocket to `url` and waits until it is open.
    pub async fn connect(url: &str) -> Result<(Sender, Receiver), TransportError> {
        let fail = |reason: String| TransportError::Connect {
            url: url.to_string(),
            reason,
        };
        let ws = WebSocket::new(url).map_err(|e| fail(format!("{e:?}")))?;
        ws.set_binary_type(BinaryType::Arraybuffer);
        let (tx, rx) = mpsc::channel(RECEIVE_BUFFER);
        let (open_tx, open_rx) = futures::channel::oneshot::channel::<Result<(), String>>();
        let open_tx = std::rc::Rc::new(std::cell::RefCell::new(Some(open_tx)));
        let mut handlers: Vec<Closure<dyn FnMut(web_sys::Event)>> = Vec::new();
        {
            let open_tx = open_tx.clone();
            let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_e: web_sys::Event| {
                if let Some(t) = open_tx.borrow_mut().take() {
                    let _ = t.send(Ok(()));
                }
            });
            ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
            handlers.push(on_open);
        }
        {
            let mut tx = tx.clone();
            let socket = ws.clone();
            let on_message = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
                if let Ok(m) = e.dyn_into::<MessageEvent>() {
                    if let Ok(buf) = m.data().dyn_into::<js_sys::ArrayBuffer>() {
                        let bytes = js_sys::Uint8Array::new(&buf).to_vec();
                        if tx.try_send(Incoming::Frame(Bytes::from(bytes))).is_err() {
                            // The driver is this far behind: drop the link
                            // rather than buffer without bound; unacknowledged
                            // frames come again after the reconnect.
                            let _ = socket.close_with_code_and_reason(4000, "client overloaded");
                        }
                    }
                }
            });
            ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            handlers.push(on_message);
        }
        {
            let mut tx = tx.clone();
            let open_tx = open_tx.clone();
            let on_close = Closure::<dyn FnMut(web_sys::Event)>::new(move |e: web_sys::Event| {
                let info = match e.dyn_into::<CloseEvent>() {
                    Ok(c) => CloseInfo {
                        code: Some(c.code()),
                        reason: c.reason(),
                    },
                    Err(_) => CloseInfo {
                        code: None,
                        reason: "closed".into(),
                    },
                };
                if let Some(t) = open_tx.borrow_mut().take() {
                    let _ = t.send(Err(format!("closed before opening ({:?})", info.code)));
                }
                // Delivered even when the buffer is full: the close must
                // reach the driver. `Sender` clones each add a slot.
                let _ = tx
                    .clone()
                    .try_send(Incoming::Closed(info.clone()))
                    .or_else(|_| tx.try_send(Incoming::Closed(info)));
            });
            ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
            handlers.push(on_close);
        }
        {
            let open_tx = open_tx.clone();
            let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_e: web_sys::Event| {
                if let Some(t) = open_tx.borrow_mut().take() {
                    let _ = t.send(Err("websocket error".into()));
                }
            });
            ws.set_onerror(Some(on_error.as_ref().unchecked_ref()));
            handlers.push(on_error);
        }
        match open_rx.await {
            Ok(Ok(())) => Ok((
                Sender {
                    ws,
                    _handlers: handlers,
                },
                rx,
            )),
            Ok(Err(reason)) => Err(fail(reason)),
            Err(_) => Err(fail("cancelled".into())),
        }
    }
}
