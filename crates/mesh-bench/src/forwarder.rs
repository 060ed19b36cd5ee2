//! The baseline: a WebSocket forwarder with nothing but forwarding in it.
//!
//! No authentication, no storage, no acknowledgements, no statuses. A
//! client's first binary message is its 32-byte id; every later message is
//! `destination id (32) || body` and is passed to the destination's socket
//! unchanged. What it does keep is the relay's I/O shape — the same
//! WebSocket buffer sizes, one writer task per socket fed by a bounded
//! queue of the relay's length, one write per message — so that "relay vs
//! baseline" measures what the relay does per frame, not socket tuning.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use mesh_relay::defaults;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::wire::BASELINE_HEADER_LEN;

/// `mesh-bench forwarder`: serve the baseline until killed.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free one. The address is
    /// printed on the first line of stdout as `… http://ADDR/`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// Runs the `forwarder` subcommand.
pub async fn main(args: Args) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("mesh-bench forwarder is running: open http://{addr}/");
    serve(listener).await
}

/// Live sockets by the id they announced.
type Routes = Arc<Mutex<HashMap<[u8; 32], mpsc::Sender<Message>>>>;

/// Accepts connections on `listener` forever.
pub async fn serve(listener: TcpListener) -> Result<()> {
    let routes = Routes::default();
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                eprintln!("forwarder: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(connection(tcp, routes.clone()));
    }
}

fn server_config() -> WebSocketConfig {
    let max = mesh_core::limits::MAX_FRAME_LEN + 4096;
    WebSocketConfig::default()
        .read_buffer_size(defaults::WS_READ_BUFFER)
        .write_buffer_size(defaults::WS_WRITE_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Serves one client until it goes away. A broken connection is simply
/// dropped: the bench notices missing frames on its side.
async fn connection(tcp: TcpStream, routes: Routes) {
    if tcp.set_nodelay(true).is_err() {
        return;
    }
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(server_config())).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let id: [u8; 32] = loop {
        match stream.next().await {
            Some(Ok(Message::Binary(b))) => match b[..].try_into() {
                Ok(id) => break id,
                Err(_) => return,
            },
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
            Some(Ok(_)) => continue,
        }
    };
    let (tx, mut rx) = mpsc::channel::<Message>(defaults::SEND_QUEUE_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    lock(&routes).insert(id, tx);
    while let Some(Ok(msg)) = stream.next().await {
        match msg {
            Message::Binary(b) if b.len() >= BASELINE_HEADER_LEN => {
                let dst = lock(&routes).get(&b[..BASELINE_HEADER_LEN]).cloned();
                if let Some(dst) = dst {
                    // Like the relay's live path: wait for room in the
                    // destination's queue.
                    let _ = dst.send(Message::Binary(b)).await;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    lock(&routes).remove(&id);
    writer.abort();
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;
    use crate::wire;
    use mesh_core::Identity;

    #[tokio::test]
    async fn forwards_a_message_to_the_announced_destination_unchanged() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let url = format!("ws://{}/", listener.local_addr().expect("addr"));
        let server = tokio::spawn(serve(listener));
        let a = Identity::from_secret_bytes(&[1; 32]).agent_id();
        let b = Identity::from_secret_bytes(&[2; 32]).agent_id();
        let config = WebSocketConfig::default();
        let mut ws_b = client::dial_forwarder(&url, config, &b)
            .await
            .expect("b connects");
        let mut ws_a = client::dial_forwarder(&url, config, &a)
            .await
            .expect("a connects");
        let msg = wire::baseline(&b, b"hello b");
        // b's announcement may still be in flight: retry until it routes.
        let got = loop {
            ws_a.send(Message::Binary(msg.clone()))
                .await
                .expect("sends");
            let next = tokio::time::timeout(Duration::from_millis(200), ws_b.next()).await;
            if let Ok(Some(Ok(Message::Binary(got)))) = next {
                break got;
            }
        };
        assert_eq!(got, msg);
        server.abort();
    }
}
