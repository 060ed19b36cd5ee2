//! `mesh-client` in headless Chrome against a live relay
//! (`MESH_TEST_RELAY_URL`, `MESH_TEST_HTTP_URL`) and a live native agent
//! (`MESH_TEST_ECHO_AGENT`, run as `meshctl serve --echo --allow '*'`).
//! See the crate docs and README.md for how to start them.

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;
use futures::channel::oneshot;
use futures::{FutureExt, StreamExt};
use mesh_client::registry::RegistryClient;
use mesh_client::rt::{now_ms, sleep_ms};
use mesh_client::{ClientError, ClientOptions, ConnectionState, MeshClient, MessageEvent};
use mesh_core::acl::{CapabilityPattern, Policy, Rule, Source, CHAT_CAPABILITY};
use mesh_core::app::ReceiptKind;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use wasm_tests::{
    close, connect, echo_agent, http_url, new_identity, next_within, relay_url, within,
};

wasm_bindgen_test_configure!(run_in_browser);

/// `len` bytes of a fixed pseudo-random pattern (xorshift), so a shifted,
/// truncated or repeated block cannot pass for the original.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn text(b: &Bytes) -> String {
    String::from_utf8(b.to_vec()).unwrap_or_else(|_| format!("<{} non-UTF-8 bytes>", b.len()))
}

#[wasm_bindgen_test]
async fn connects_to_the_live_relay_and_goes_online() {
    // Negative control first: nothing listens on port 1, so connecting
    // there must fail (quickly), not report Online.
    let refused = within(
        10_000,
        "a connect to a closed port to fail",
        MeshClient::connect(
            "ws://127.0.0.1:1/v1/ws",
            new_identity(),
            ClientOptions {
                connect_timeout_ms: 5_000,
                ..ClientOptions::default()
            },
        ),
    )
    .await;
    match refused {
        Err(ClientError::Transport(_)) | Err(ClientError::Timeout(_)) => {}
        Err(other) => panic!("connect to a closed port failed oddly: {other}"),
        Ok(c) => panic!("connect to a closed port succeeded: {c:?}"),
    }

    let me = new_identity();
    let id = me.agent_id();
    let client = connect(me, Policy::default()).await;
    assert_eq!(client.state(), ConnectionState::Online);
    assert_eq!(client.agent_id(), id);
    assert_eq!(client.relay_url(), relay_url());
    let mut states = client.state_changes();
    assert_eq!(
        next_within(&mut states, 1_000, "the current state").await,
        Some(ConnectionState::Online)
    );
    // It stays online (no auth failure or reconnect loop behind our back).
    sleep_ms(1_000).await;
    assert_eq!(client.state(), ConnectionState::Online);
    assert!(
        states.next().now_or_never().is_none(),
        "the state changed while idle"
    );

    // MESH_TEST_HTTP_URL is this relay's HTTP side: the registry the
    // client derives from the relay URL. (It is not fetched from here: the
    // test page is cross-origin isolated and the relay sends no CORS or
    // CORP headers, so the browser blocks every cross-origin fetch to it;
    // WebSockets are not subject to that.)
    let registry = RegistryClient::for_relay(relay_url()).expect("registry URL");
    assert_eq!(
        registry.base_url(),
        http_url(),
        "MESH_TEST_HTTP_URL is not the HTTP side of MESH_TEST_RELAY_URL"
    );

    close(&client).await;
    assert!(
        matches!(client.state(), ConnectionState::Closed(_)),
        "state after close: {:?}",
        client.state()
    );
    assert!(
        matches!(
            next_within(&mut states, 1_000, "the Closed state change").await,
            Some(ConnectionState::Closed(_))
        ),
        "no Closed state change after close"
    );
}

#[wasm_bindgen_test]
async fn noise_handshake_and_requests_with_the_native_echo_agent() {
    let echo = echo_agent();
    let client = connect(new_identity(), Policy::default()).await;

    // The first request makes the Noise XX handshake with the native agent.
    let first = within(
        15_000,
        "the first echo request (with the handshake)",
        client.request_with_timeout(echo, "echo", "hello from the browser", 10_000),
    )
    .await
    .unwrap_or_else(|e| panic!("echo request failed: {e}"));
    assert_eq!(text(&first), "hello from the browser");

    // Several more on the same session, sequentially: binary, Unicode,
    // 64 KiB, and the largest body allowed (1 MiB).
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("every byte value", (0..=255u8).collect()),
        ("unicode", "héllo wörld ✓ 🦀".as_bytes().to_vec()),
        ("64 KiB", pattern(64 * 1024, 1)),
        ("1 MiB", pattern(mesh_core::limits::MAX_APP_BODY, 2)),
        ("one byte", vec![b'x']),
    ];
    for (what, body) in bodies {
        let answer = within(
            20_000,
            what,
            client.request_with_timeout(echo, "echo", body.clone(), 15_000),
        )
        .await
        .unwrap_or_else(|e| panic!("echo of {what} ({} bytes) failed: {e}", body.len()));
        assert_eq!(answer.len(), body.len(), "{what}: length differs");
        assert!(answer[..] == body[..], "{what}: bytes differ");
    }

    // Eight at once: each answer belongs to its own request.
    let requests = (0..8u64).map(|i| {
        let body = pattern(1_000 + 4_000 * i as usize, 100 + i);
        let client = client.clone();
        async move {
            let answer = client
                .request_with_timeout(echo, "echo", body.clone(), 15_000)
                .await;
            (i, body, answer)
        }
    });
    for (i, body, answer) in within(
        20_000,
        "eight concurrent echo requests",
        futures::future::join_all(requests),
    )
    .await
    {
        let answer = answer.unwrap_or_else(|e| panic!("concurrent request {i} failed: {e}"));
        assert!(
            answer[..] == body[..],
            "concurrent request {i}: wrong answer"
        );
    }

    // A capability the agent does not offer gets an error, not an echo.
    let refused = within(
        15_000,
        "a request for an unserved capability",
        client.request_with_timeout(echo, "no.such.capability", "x", 10_000),
    )
    .await;
    match refused {
        Err(ClientError::Denied(_)) | Err(ClientError::UnknownCapability(_)) => {}
        other => panic!("expected denied/unknown capability, got {other:?}"),
    }

    close(&client).await;
}

#[wasm_bindgen_test]
async fn streams_chunks_in_order_from_the_native_agent() {
    let echo = echo_agent();
    let client = connect(new_identity(), Policy::default()).await;
    let mut stream = client
        .request_stream(echo, "echo.stream", "one two three four")
        .expect("start the stream");
    let mut chunks = Vec::new();
    let mut times = Vec::new();
    loop {
        match next_within(&mut stream, 10_000, "the next chunk of echo.stream").await {
            Some(Ok(chunk)) => {
                times.push(now_ms());
                chunks.push(text(&chunk));
                assert!(chunks.len() <= 4, "too many chunks: {chunks:?}");
            }
            Some(Err(e)) => panic!("echo.stream failed after {chunks:?}: {e}"),
            None => break,
        }
    }
    assert_eq!(chunks, ["one", "two", "three", "four"]);
    // The agent pauses 50 ms between words: the chunks arrived as they were
    // sent, not in one lump at the end.
    let spread = times[3] - times[0];
    assert!(
        spread >= 100,
        "four chunks arrived within {spread} ms: not streamed"
    );
    close(&client).await;
}

#[wasm_bindgen_test]
async fn the_session_survives_dropping_a_stream_from_the_native_agent() {
    let echo = echo_agent();
    let client = connect(new_identity(), Policy::default()).await;
    // 400 words at 50 ms each would stream for 20 s.
    let words: Vec<String> = (0..400).map(|i| format!("w{i}")).collect();
    let mut stream = client
        .request_stream(echo, "echo.stream", words.join(" "))
        .expect("start the stream");
    match next_within(&mut stream, 10_000, "the first chunk").await {
        Some(Ok(chunk)) => assert_eq!(text(&chunk), "w0"),
        other => panic!("expected the first word, got {other:?}"),
    }
    let dropped_at = now_ms();
    drop(stream);
    // The native handler cannot be observed from here (its log says
    // "cancelled after N chunks"); what can: the session survives the
    // cancel, and the next request and stream work at once rather than
    // queueing behind 20 s of words.
    let answer = within(
        5_000,
        "an echo request after the cancel",
        client.request_with_timeout(echo, "echo", "still there?", 4_000),
    )
    .await
    .unwrap_or_else(|e| panic!("echo after cancel failed: {e}"));
    assert_eq!(text(&answer), "still there?");
    let mut again = client
        .request_stream(echo, "echo.stream", "after cancel")
        .expect("start a second stream");
    let mut chunks = Vec::new();
    while let Some(item) = next_within(&mut again, 5_000, "the second stream").await {
        chunks.push(text(
            &item.unwrap_or_else(|e| panic!("second stream failed: {e}")),
        ));
    }
    assert_eq!(chunks, ["after", "cancel"]);
    assert!(
        now_ms() - dropped_at < 5_000,
        "the second stream took too long"
    );
    close(&client).await;
}

/// How the browser-side streaming handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandlerEnd {
    /// `req.cancelled()` resolved.
    Cancelled,
    /// `sink.send` refused (cancelled) before `req.cancelled()` was seen.
    SendRefused,
    /// It sent everything: the cancel never arrived.
    Finished,
}

#[wasm_bindgen_test]
async fn dropping_a_stream_cancels_the_handler_in_another_browser_client() {
    const CAPABILITY: &str = "test.ticker";
    const TICKS: u32 = 400;
    let server = connect(new_identity(), Policy::allow_all()).await;
    type Report = (HandlerEnd, u32, bool);
    let (report_tx, mut report_rx) = oneshot::channel::<Report>();
    let report_tx = Rc::new(RefCell::new(Some(report_tx)));
    let calls = Rc::new(RefCell::new(0u32));
    {
        let report_tx = report_tx.clone();
        let calls = calls.clone();
        server.handle_stream(CAPABILITY, move |req, mut sink| {
            *calls.borrow_mut() += 1;
            let report_tx = report_tx.clone();
            async move {
                let mut end = HandlerEnd::Finished;
                for i in 0..TICKS {
                    if sink.send(format!("tick {i}")).await.is_err() {
                        end = HandlerEnd::SendRefused;
                        break;
                    }
                    let mut cancelled = Box::pin(req.cancelled().fuse());
                    let mut pause = Box::pin(sleep_ms(50).fuse());
                    futures::select! {
                        _ = cancelled => { end = HandlerEnd::Cancelled; break; }
                        _ = pause => {}
                    }
                }
                if let Some(tx) = report_tx.borrow_mut().take() {
                    let _ = tx.send((end, sink.sent(), req.is_cancelled()));
                }
                Ok(())
            }
        });
    }

    let requester = connect(new_identity(), Policy::default()).await;
    let mut stream = requester
        .request_stream(server.agent_id(), CAPABILITY, "")
        .expect("start the stream");
    for i in 0..3 {
        match next_within(&mut stream, 10_000, "a tick from the browser handler").await {
            Some(Ok(chunk)) => assert_eq!(text(&chunk), format!("tick {i}")),
            other => panic!("expected tick {i}, got {other:?}"),
        }
    }
    // Control: while the stream is read, the handler is not cancelled.
    assert!(
        matches!(report_rx.try_recv(), Ok(None)),
        "the handler ended before the stream was dropped"
    );
    assert_eq!(*calls.borrow(), 1);

    drop(stream);
    let (end, sent, flag) = within(
        5_000,
        "the serving client's handler to see the cancellation",
        &mut report_rx,
    )
    .await
    .expect("the handler went away without reporting");
    assert_eq!(
        end,
        HandlerEnd::Cancelled,
        "the handler was not woken by req.cancelled()"
    );
    assert!(flag, "req.is_cancelled() is false after the cancel");
    assert!(
        (3..TICKS).contains(&sent),
        "the handler sent {sent} chunks: it did not stop early"
    );
    assert_eq!(*calls.borrow(), 1, "the request reached the handler twice");

    close(&requester).await;
    close(&server).await;
}

/// The next event on `events` about our message `wanted`, skipping others.
async fn event_for(
    events: &mut (impl futures::Stream<Item = MessageEvent> + Unpin),
    wanted: u64,
    what: &str,
) -> MessageEvent {
    within(10_000, what, async {
        loop {
            let ev = events.next().await.expect("the messages() stream ended");
            let id = match &ev {
                MessageEvent::Chat { msg_id, .. }
                | MessageEvent::Receipt { msg_id, .. }
                | MessageEvent::Queued { msg_id, .. }
                | MessageEvent::Failed { msg_id, .. } => *msg_id,
            };
            if id == wanted {
                return ev;
            }
        }
    })
    .await
}

#[wasm_bindgen_test]
async fn a_first_chat_to_an_offline_agent_is_delivered_once_it_connects() {
    let a = connect(new_identity(), Policy::default()).await;
    let mut events = a.messages();

    // Control: an agent the relay has never seen is refused, not queued.
    let stranger = new_identity().agent_id();
    let id = a.send_message(stranger, "anyone?").expect("send");
    match event_for(&mut events, id, "the relay's answer for a stranger").await {
        MessageEvent::Failed { peer, error, .. } => {
            assert_eq!(peer, stranger);
            assert!(
                matches!(error, ClientError::Unreachable(_)),
                "unexpected error: {error}"
            );
        }
        other => panic!("a message to an unknown agent gave {other:?}"),
    }

    // B has been on this relay once (so it may be queued for) and is
    // offline now.
    let b_identity = new_identity();
    let b_id = b_identity.agent_id();
    let b = connect(b_identity.clone(), Policy::default()).await;
    close(&b).await;
    drop(b);
    sleep_ms(300).await;

    let text = format!("written while you were away ({})", now_ms());
    let msg_id = a.send_message(b_id, &text).expect("send");
    // First contact: the relay holds only the handshake, not the chat, so
    // the chat is not reported queued; it is sealed when B answers.
    sleep_ms(500).await;
    assert!(
        futures::FutureExt::now_or_never(events.next()).is_none(),
        "no delivery news before B answers"
    );

    // B comes back, taking chat from A only.
    let acl = Policy {
        rules: vec![Rule::allow(
            Source::Agent(a.agent_id()),
            vec![CapabilityPattern::Exact(CHAT_CAPABILITY.into())],
        )],
    };
    let b = connect(b_identity, acl).await;
    let mut inbox = b.messages();
    match next_within(&mut inbox, 10_000, "the queued chat at B").await {
        Some(MessageEvent::Chat {
            from,
            msg_id: got_id,
            text: got,
            allowed,
            ..
        }) => {
            assert_eq!(from, a.agent_id());
            assert_eq!(got_id, msg_id);
            assert_eq!(got, text);
            assert!(allowed, "B's ACL allows chat from A but allowed is false");
        }
        other => panic!("B expected the chat, got {other:?}"),
    }
    // A hears it was delivered.
    match event_for(&mut events, msg_id, "the delivered receipt at A").await {
        MessageEvent::Receipt { from, kind, .. } => {
            assert_eq!(from, b_id);
            assert_eq!(kind, ReceiptKind::Delivered);
        }
        other => panic!("expected a delivered receipt, got {other:?}"),
    }
    // Exactly once: nothing more arrives at B.
    sleep_ms(1_500).await;
    let mut extra = Vec::new();
    while let Some(Some(ev)) = inbox.next().now_or_never() {
        extra.push(ev);
    }
    assert!(extra.is_empty(), "B got more after the chat: {extra:?}");

    close(&b).await;
    close(&a).await;
}
