//! A relay that tampers is caught by the client: a proxy between client and
//! the real relay flips a byte of the handshake, or answers the handshake
//! itself with its own Noise key pretending to be the peer. Either way the
//! request fails with a typed error and no data reaches anyone else.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use mesh_client::{ClientError, ClientOptions, MeshClient};
use mesh_core::acl::Policy;
use mesh_core::frame::{self, Frame, Routed};
use mesh_core::noise::{Envelope, EnvelopeKind, Handshake, NoiseKeypair};
use mesh_core::{AgentId, Identity};
use mesh_relay::config::Config;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

#[derive(Clone, Copy)]
enum Attack {
    /// Flip one byte of the peer's handshake response.
    FlipHandshakeByte,
    /// Answer our handshake with the attacker's own Noise key, claiming to
    /// be the peer.
    SwapNoiseKey,
}

/// Accepts the one client of a proxy and dials the real relay for it.
async fn accept_and_dial(
    listener: TcpListener,
    upstream: &str,
) -> Option<(
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
)> {
    let (tcp, _) = listener.accept().await.ok()?;
    let client = tokio_tungstenite::accept_async(tcp).await.ok()?;
    let (relay, _) = tokio_tungstenite::connect_async(upstream).await.ok()?;
    Some((client, relay))
}

/// Starts a one-connection proxy to `upstream` running `attack`; returns
/// its ws URL.
async fn tampering_proxy(upstream: String, attack: Attack) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Some((client, relay)) = accept_and_dial(listener, &upstream).await else {
            return;
        };
        let (mut c_tx, mut c_rx) = client.split();
        let (mut r_tx, mut r_rx) = relay.split();
        let (inject_tx, mut inject_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let mallory = Identity::from_secret_bytes(&[0x66; 32]);
        let mallory_noise = NoiseKeypair::generate().unwrap();
        let me = tokio::spawn(async move {
            while let Some(Ok(msg)) = c_rx.next().await {
                if let (Attack::SwapNoiseKey, Message::Binary(b)) = (attack, &msg) {
                    if let Ok(Frame::Send(Routed {
                        peer, msg_id, body, ..
                    })) = Frame::decode(b.clone())
                    {
                        if let Ok(Envelope::Handshake {
                            kind: EnvelopeKind::HandshakeInit,
                            session_id,
                            message,
                        }) = Envelope::decode(body)
                        {
                            // Answer as the peer, with Mallory's key and binding.
                            let claimed_sender: AgentId = peer;
                            if let Ok((_hs, msg2)) = Handshake::respond(
                                &mallory,
                                &mallory_noise,
                                claimed_sender,
                                &message,
                            ) {
                                let env = Envelope::Handshake {
                                    kind: EnvelopeKind::HandshakeResponse,
                                    session_id,
                                    message: msg2.into(),
                                }
                                .encode();
                                let deliver =
                                    frame::encode_deliver(&peer, msg_id ^ 1, false, &env).unwrap();
                                let _ = inject_tx.send(deliver);
                            }
                            continue;
                        }
                    }
                }
                if r_tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        loop {
            tokio::select! {
                Some(b) = inject_rx.recv() => {
                    if c_tx.send(Message::Binary(b)).await.is_err() { break; }
                }
                msg = r_rx.next() => {
                    let Some(Ok(mut msg)) = msg else { break };
                    if let (Attack::FlipHandshakeByte, Message::Binary(b)) = (attack, &msg) {
                        if let Ok(Frame::Deliver(r)) = Frame::decode(b.clone()) {
                            if r.body.first() == Some(&(EnvelopeKind::HandshakeResponse as u8)) {
                                let mut raw = BytesMut::from(&b[..]);
                                let last = raw.len() - 1;
                                raw[last] ^= 0x01;
                                msg = Message::Binary(raw.freeze());
                            }
                        }
                    }
                    if c_tx.send(msg).await.is_err() { break; }
                }
            }
        }
        me.abort();
    });
    format!("ws://{addr}/v1/ws")
}

async fn run(attack: Attack) -> ClientError {
    let r = mesh_relay::start(Config::for_tests()).await.unwrap();
    let options = ClientOptions {
        acl: Policy::allow_all(),
        request_timeout_ms: 3_000,
        ..ClientOptions::default()
    };
    let b = MeshClient::connect(
        &r.ws_url(),
        Identity::from_secret_bytes(&[2; 32]),
        options.clone(),
    )
    .await
    .unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = served.clone();
    b.handle("echo", move |req| {
        s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move { Ok(req.body) }
    });
    let proxy = tampering_proxy(r.ws_url(), attack).await;
    let a = MeshClient::connect(&proxy, Identity::from_secret_bytes(&[1; 32]), options)
        .await
        .unwrap();
    let err = a.request(b.agent_id(), "echo", "secret").await.unwrap_err();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        served.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the peer's handler"
    );
    r.shutdown().await.unwrap();
    err
}

#[tokio::test]
async fn a_flipped_handshake_byte_is_detected() {
    let err = run(Attack::FlipHandshakeByte).await;
    assert!(
        matches!(err, ClientError::Unreachable(ref m) if m.contains("handshake")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_substituted_noise_key_is_detected() {
    let err = run(Attack::SwapNoiseKey).await;
    assert!(
        matches!(err, ClientError::Unreachable(ref m) if m.contains("proved identity")),
        "{err:?}"
    );
}

/// Starts a one-connection proxy to `upstream` that, after the client's
/// first transport envelope, tells the client (as the relay could) that the
/// peer has no such session. Returns its ws URL.
async fn session_denying_proxy(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let Some((client, relay)) = accept_and_dial(listener, &upstream).await else {
            return;
        };
        let (mut c_tx, mut c_rx) = client.split();
        let (mut r_tx, mut r_rx) = relay.split();
        let (inject_tx, mut inject_rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let up = tokio::spawn(async move {
            let mut done = false;
            while let Some(Ok(msg)) = c_rx.next().await {
                if let (false, Message::Binary(b)) = (done, &msg) {
                    if let Ok(Frame::Send(Routed { peer, body, .. })) = Frame::decode(b.clone()) {
                        if let Ok(Envelope::Transport { session_id, .. }) = Envelope::decode(body) {
                            done = true;
                            let env = Envelope::SessionUnknown { session_id }.encode();
                            let deliver =
                                frame::encode_deliver(&peer, u64::MAX - 7, false, &env).unwrap();
                            let _ = inject_tx.send(deliver);
                        }
                    }
                }
                if r_tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        loop {
            tokio::select! {
                Some(b) = inject_rx.recv() => {
                    if c_tx.send(Message::Binary(b)).await.is_err() { break; }
                }
                msg = r_rx.next() => {
                    let Some(Ok(msg)) = msg else { break };
                    if c_tx.send(msg).await.is_err() { break; }
                }
            }
        }
        up.abort();
    });
    format!("ws://{addr}/v1/ws")
}

async fn next(
    s: &mut (impl futures::Stream<Item = mesh_client::MessageEvent> + Unpin),
) -> mesh_client::MessageEvent {
    tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

#[tokio::test]
async fn a_chat_sealed_again_after_a_spurious_session_unknown_is_shown_once() {
    use mesh_client::MessageEvent;
    let r = mesh_relay::start(Config::for_tests()).await.unwrap();
    let options = ClientOptions {
        acl: Policy::allow_all(),
        ..ClientOptions::default()
    };
    let b = MeshClient::connect(
        &r.ws_url(),
        Identity::from_secret_bytes(&[2; 32]),
        options.clone(),
    )
    .await
    .unwrap();
    let mut inbox = b.messages();
    let proxy = session_denying_proxy(r.ws_url()).await;
    let a = MeshClient::connect(&proxy, Identity::from_secret_bytes(&[1; 32]), options)
        .await
        .unwrap();
    let mut events = a.messages();
    // B receives this on the first session; A, told that session is gone,
    // seals it again on a new one: B gets it twice.
    let id = a.send_message(b.agent_id(), "once").unwrap();
    // (B's first receipt is sealed on the session A dropped and is lost;
    // B acknowledges the second copy again.)
    loop {
        match next(&mut events).await {
            MessageEvent::Receipt { msg_id, .. } if msg_id == id => break,
            MessageEvent::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let marker = a.send_message(b.agent_id(), "marker").unwrap();
    let mut shown = Vec::new();
    loop {
        if let MessageEvent::Chat { msg_id, text, .. } = next(&mut inbox).await {
            if msg_id == marker {
                break;
            }
            shown.push(text);
        }
    }
    assert_eq!(shown, vec!["once".to_string()]);
    r.shutdown().await.unwrap();
}
