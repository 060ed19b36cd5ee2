//! A minimal test client built directly on `mesh-core` and
//! tokio-tungstenite (the real `mesh-client` arrives later). It speaks the
//! wire protocol frame by frame so tests can also speak it *wrongly*.

#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mesh_core::auth::{ClientAuth, ClientStep, Session};
use mesh_core::frame::{self, DeliveryStatus, ErrorFrame, Frame, ResumeToken, Routed};
use mesh_core::{AgentId, ErrorCode, Identity};
use mesh_relay::config::Config;
use mesh_relay::RunningRelay;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const WAIT: Duration = Duration::from_secs(5);

pub fn ident(n: u8) -> Identity {
    Identity::from_secret_bytes(&[n; 32])
}

pub async fn relay() -> RunningRelay {
    relay_with(Config::for_tests()).await
}

pub async fn relay_with(config: Config) -> RunningRelay {
    mesh_relay::start(config).await.expect("relay starts")
}

/// What ended a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// A close frame with this code.
    Code(u16),
    /// The stream ended without a close frame.
    Eof,
}

pub struct Client {
    pub ws: Ws,
    pub id: Identity,
    pub session: Option<Session>,
    next_msg_id: u64,
}

pub async fn raw(url: &str) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws
}

impl Client {
    /// Connects and authenticates.
    pub async fn connect(url: &str, id: Identity) -> Client {
        Self::connect_with(url, id, None)
            .await
            .expect("authenticates")
    }

    /// Connects and authenticates, optionally resuming; returns the relay's
    /// refusal as an error frame.
    pub async fn connect_with(
        url: &str,
        id: Identity,
        resume: Option<ResumeToken>,
    ) -> Result<Client, ErrorFrame> {
        let mut ws = raw(url).await;
        let mut auth = ClientAuth::new(id.clone(), url, None, resume).expect("url fits");
        loop {
            let frame = recv_frame(&mut ws).await.expect("relay answers");
            if let Frame::Error(e) = &frame {
                return Err(e.clone());
            }
            match auth.handle_frame(frame).expect("valid auth exchange") {
                ClientStep::Send(f) => {
                    ws.send(Message::Binary(f.encode().expect("encodes")))
                        .await
                        .expect("send");
                }
                ClientStep::Done(session) => {
                    return Ok(Client {
                        ws,
                        id,
                        session: Some(session),
                        next_msg_id: 1,
                    })
                }
            }
        }
    }

    pub fn agent(&self) -> AgentId {
        self.id.agent_id()
    }

    pub async fn send_raw(&mut self, bytes: impl Into<Bytes>) {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    pub async fn send_frame(&mut self, f: Frame) {
        self.send_raw(f.encode().expect("encodes")).await;
    }

    /// Sends `body` to `to`; returns the message id used.
    pub async fn send_to(&mut self, to: AgentId, body: &[u8]) -> u64 {
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        self.send_msg(to, msg_id, body, 0).await;
        msg_id
    }

    pub async fn send_msg(&mut self, to: AgentId, msg_id: u64, body: &[u8], flags: u8) {
        self.send_frame(Frame::Send(Routed {
            peer: to,
            msg_id,
            flags,
            body: Bytes::copy_from_slice(body),
        }))
        .await;
    }

    /// Next frame other than Ping (answered) / Pong.
    pub async fn recv(&mut self) -> Frame {
        self.try_recv(WAIT).await.expect("a frame arrives in time")
    }

    pub async fn try_recv(&mut self, wait: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = tokio::time::timeout(left, recv_frame(&mut self.ws))
                .await
                .ok()??;
            match f {
                Frame::Ping(n) => self.send_frame(Frame::Pong(n)).await,
                Frame::Pong(_) => {}
                other => return Some(other),
            }
        }
    }

    /// Waits for the status of `msg_id`.
    pub async fn status_of(&mut self, msg_id: u64) -> DeliveryStatus {
        loop {
            match self.recv().await {
                Frame::Status {
                    msg_id: m, status, ..
                } if m == msg_id => return status,
                Frame::Status { .. } => {}
                other => panic!("expected status of {msg_id}, got {other:?}"),
            }
        }
    }

    /// Waits for the next `Deliver`, skipping statuses.
    pub async fn next_deliver(&mut self) -> Routed {
        loop {
            match self.recv().await {
                Frame::Deliver(r) => return r,
                Frame::Status { .. } => {}
                other => panic!("expected a delivery, got {other:?}"),
            }
        }
    }

    pub async fn ack(&mut self, from: AgentId, msg_id: u64) {
        self.send_frame(Frame::Ack { peer: from, msg_id }).await;
    }

    /// Waits for an error frame, skipping statuses and deliveries.
    pub async fn next_error(&mut self) -> ErrorFrame {
        loop {
            match self.recv().await {
                Frame::Error(e) => return e,
                Frame::Status { .. } | Frame::Deliver(_) => {}
                other => panic!("expected an error, got {other:?}"),
            }
        }
    }

    /// Reads until the connection closes; returns how.
    pub async fn closed(&mut self) -> Closed {
        closed(&mut self.ws).await
    }
}

/// Reads one binary frame (answering nothing); None when the stream ends.
pub async fn recv_frame(ws: &mut Ws) -> Option<Frame> {
    loop {
        match ws.next().await? {
            Ok(Message::Binary(b)) => {
                return Some(Frame::decode(b).expect("relay sends valid frames"))
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads until the socket closes and reports the close code.
pub async fn closed(ws: &mut Ws) -> Closed {
    let fut = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(cf)))) => return Closed::Code(u16::from(cf.code)),
                Some(Ok(Message::Close(None))) => {
                    return Closed::Code(u16::from(CloseCode::Status))
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Closed::Eof,
            }
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .expect("connection closes in time")
}

pub fn code(c: ErrorCode) -> Closed {
    Closed::Code(c.close_code())
}

pub fn deliver_flags_redelivery(r: &Routed) -> bool {
    r.flags & frame::flags::REDELIVERY != 0
}

/// Plain HTTP/1.1 request to the relay; returns (status, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write body");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, dechunk(&body))
}

fn dechunk(body: &str) -> String {
    // Minimal chunked-encoding decoder for small test bodies.
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return if out.is_empty() {
                body.to_string()
            } else {
                out
            };
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_string();
        };
        if n == 0 {
            return out;
        }
        out.push_str(after.get(..n).unwrap_or(after));
        rest = after.get(n + 2..).unwrap_or("");
    }
}
