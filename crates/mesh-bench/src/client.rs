//! Client connections: dial with `TCP_NODELAY`, authenticate to the relay
//! (or announce an id to the forwarder), and a batching writer task per
//! socket.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use mesh_core::auth::{ClientAuth, ClientStep};
use mesh_core::{AgentId, Frame, Identity};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
/// Its write half.
pub type WsSink = SplitSink<Ws, Message>;
/// Its read half.
pub type WsStream = SplitStream<Ws>;

/// Time one connection may take to connect and authenticate.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a WebSocket to `url` with Nagle disabled (see ARCHITECTURE.md:
/// Nagle + delayed ACK stall small frames by tens of milliseconds).
pub async fn dial(url: &str, config: WebSocketConfig) -> Result<Ws> {
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .with_context(|| format!("connecting to {url} timed out"))?
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

/// Dials the relay at `url` and authenticates as `identity` (PROTOCOL.md §4).
pub async fn dial_relay(url: &str, config: WebSocketConfig, identity: Identity) -> Result<Ws> {
    let mut ws = dial(url, config).await?;
    tokio::time::timeout(CONNECT_TIMEOUT, authenticate(&mut ws, url, identity))
        .await
        .context("authentication timed out")??;
    Ok(ws)
}

async fn authenticate(ws: &mut Ws, url: &str, identity: Identity) -> Result<()> {
    let mut auth = ClientAuth::new(identity, url, None, None)?;
    loop {
        let raw = loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => break b,
                Some(Ok(Message::Close(c))) => {
                    bail!("relay closed the connection during authentication: {c:?}")
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("reading during authentication"),
                None => bail!("relay closed the connection during authentication"),
            }
        };
        let frame =
            Frame::decode(raw).context("relay sent an invalid frame during authentication")?;
        match auth.handle_frame(frame)? {
            ClientStep::Send(f) => ws.send(Message::Binary(f.encode()?)).await?,
            ClientStep::Done(_) => return Ok(()),
        }
    }
}

/// Dials the baseline forwarder and announces our id (its only handshake).
pub async fn dial_forwarder(url: &str, config: WebSocketConfig, id: &AgentId) -> Result<Ws> {
    let mut ws = dial(url, config).await?;
    ws.send(Message::Binary(id.as_bytes().to_vec().into()))
        .await
        .context("announcing our id to the forwarder")?;
    Ok(ws)
}

/// Splits `ws` and gives its write half to a task fed by a channel of
/// `capacity` messages; the task ends when every sender is dropped.
pub fn spawn_writer(ws: Ws, capacity: usize) -> (mpsc::Sender<Message>, WsStream, JoinHandle<()>) {
    let (sink, stream) = ws.split();
    let (tx, rx) = mpsc::channel(capacity);
    let task = tokio::spawn(write_batched(sink, rx));
    (tx, stream, task)
}

/// Writes what is queued, flushing once per batch rather than per message,
/// so a busy client spends its CPU on frames, not on syscalls.
async fn write_batched(mut sink: WsSink, mut rx: mpsc::Receiver<Message>) {
    while let Some(first) = rx.recv().await {
        if sink.feed(first).await.is_err() {
            return;
        }
        while let Ok(more) = rx.try_recv() {
            if sink.feed(more).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
