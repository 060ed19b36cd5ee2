//! The client against a real relay on 127.0.0.1:0: every behaviour issue 4
//! lists, end to end through Noise.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use mesh_client::registry::{RegistryClient, SearchQuery};
use mesh_client::{
    ClientError, ClientOptions, ConnectionState, HandlerError, MeshClient, MessageEvent,
};
use mesh_core::acl::{Policy, CHAT_CAPABILITY};
use mesh_core::card::{AgentCard, Skill};
use mesh_core::revocation::Revocation;
use mesh_core::{AgentId, ErrorCode, Identity};
use mesh_relay::config::Config;
use mesh_relay::RunningRelay;

fn ident(n: u8) -> Identity {
    Identity::from_secret_bytes(&[n; 32])
}

fn allow_all() -> Policy {
    Policy::allow_all()
}

fn options(acl: Policy) -> ClientOptions {
    ClientOptions {
        acl,
        request_timeout_ms: 5_000,
        reconnect_initial_ms: 50,
        reconnect_max_ms: 500,
        ..ClientOptions::default()
    }
}

fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn relay() -> RunningRelay {
    logs();
    mesh_relay::start(Config::for_tests())
        .await
        .expect("relay starts")
}

async fn agent(url: &str, n: u8, acl: Policy) -> MeshClient {
    MeshClient::connect(url, ident(n), options(acl))
        .await
        .expect("connects")
}

/// A relay and two open agents; the second serves `echo`.
async fn echo_pair() -> (RunningRelay, MeshClient, MeshClient) {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    echo(&b);
    (r, a, b)
}

fn echo(c: &MeshClient) {
    c.handle("echo", |req| async move { Ok(req.body) });
}

#[tokio::test]
async fn request_response_both_ways_and_session_reuse() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    echo(&a);
    echo(&b);
    assert_eq!(
        a.request(b.agent_id(), "echo", "hello").await.unwrap(),
        Bytes::from("hello")
    );
    let routed_after_first = r.state.metrics.frames_routed.get();
    assert_eq!(
        a.request(b.agent_id(), "echo", "again").await.unwrap(),
        Bytes::from("again")
    );
    // The second request reuses the session: one frame out, one back.
    assert_eq!(r.state.metrics.frames_routed.get() - routed_after_first, 2);
    assert_eq!(
        b.request(a.agent_id(), "echo", "back").await.unwrap(),
        Bytes::from("back")
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_requests_to_several_peers() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let mut peers = Vec::new();
    for n in 2..6 {
        let p = agent(&r.ws_url(), n, allow_all()).await;
        p.handle("slow-echo", |req| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(req.body)
        });
        peers.push(p);
    }
    let started = std::time::Instant::now();
    let mut calls = Vec::new();
    for p in &peers {
        for i in 0..10 {
            let a = a.clone();
            let id = p.agent_id();
            calls.push(tokio::spawn(async move {
                let body = format!("{id:?}-{i}");
                let got = a.request(id, "slow-echo", body.clone()).await.unwrap();
                assert_eq!(got, Bytes::from(body));
            }));
        }
    }
    for c in calls {
        c.await.unwrap();
    }
    // 40 requests of 100 ms each, concurrently: nowhere near 4 s.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn streaming_in_order_then_a_request_after_the_stream() {
    let (r, a, b) = echo_pair().await;
    b.handle_stream("count", |req, mut sink| async move {
        let n: u32 = std::str::from_utf8(&req.body)
            .unwrap_or("0")
            .parse()
            .unwrap_or(0);
        for i in 0..n {
            sink.send(i.to_string())
                .await
                .map_err(|e| HandlerError::failed(e.to_string()))?;
        }
        Ok(())
    });
    let mut stream = a.request_stream(b.agent_id(), "count", "50").unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = stream.next().await {
        got.push(String::from_utf8(chunk.unwrap().to_vec()).unwrap());
    }
    assert_eq!(got, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(
        a.request(b.agent_id(), "echo", "after").await.unwrap(),
        Bytes::from("after")
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn dropping_a_stream_cancels_the_remote_handler() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let cancelled = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let (c2, s2) = (cancelled.clone(), sent.clone());
    b.handle_stream("forever", move |req, mut sink| {
        let (cancelled, sent) = (c2.clone(), s2.clone());
        async move {
            loop {
                tokio::select! {
                    _ = req.cancelled() => {
                        cancelled.store(true, Ordering::SeqCst);
                        return Ok(());
                    }
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {
                        if sink.send("tick").await.is_err() {
                            cancelled.store(true, Ordering::SeqCst);
                            return Ok(());
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    });
    let mut stream = a.request_stream(b.agent_id(), "forever", "").unwrap();
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    drop(stream);
    for _ in 0..100 {
        if cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the handler's cancellation fired"
    );
    let at_cancel = sent.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        sent.load(Ordering::SeqCst) <= at_cancel + 1,
        "the handler stopped"
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dropped_request_future_cancels_too_and_timeouts_are_typed() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let cancelled = Arc::new(AtomicBool::new(false));
    let c2 = cancelled.clone();
    b.handle("hang", move |req| {
        let cancelled = c2.clone();
        async move {
            req.cancelled().await;
            cancelled.store(true, Ordering::SeqCst);
            Err(HandlerError::failed("cancelled"))
        }
    });
    let err = a
        .request_with_timeout(b.agent_id(), "hang", "", 300)
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::Timeout(300));
    assert_eq!(err.code(), ErrorCode::Timeout);
    // A timeout also cancels at the peer.
    for _ in 0..50 {
        if cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(cancelled.load(Ordering::SeqCst));
    cancelled.store(false, Ordering::SeqCst);
    let fut = a.request(b.agent_id(), "hang", "");
    let _ = tokio::time::timeout(Duration::from_millis(200), fut).await;
    for _ in 0..50 {
        if cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cancelled.load(Ordering::SeqCst),
        "dropping the future cancelled the handler"
    );
    r.shutdown().await.unwrap();
}

/// A plain request's timeout bounds the whole answer even when the peer
/// streams it; a stream's bounds each chunk.
#[tokio::test]
async fn a_plain_request_times_out_on_the_whole_answer_a_stream_per_chunk() {
    let (r, a, b) = echo_pair().await;
    b.handle_stream("drip", |_req, mut sink| async move {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sink.send("x")
                .await
                .map_err(|e| HandlerError::failed(e.to_string()))?;
        }
        Ok(())
    });
    // Ten chunks 100 ms apart: each within 400 ms, the whole not.
    let err = a
        .request_with_timeout(b.agent_id(), "drip", "", 400)
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::Timeout(400));
    let mut stream = a
        .request_stream_with_timeout(b.agent_id(), "drip", "", 400)
        .unwrap();
    let mut chunks = 0;
    while let Some(chunk) = stream.next().await {
        assert_eq!(chunk.unwrap(), Bytes::from("x"));
        chunks += 1;
    }
    assert_eq!(chunks, 10);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn requests_past_max_serving_are_rate_limited_until_handlers_finish() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let options = ClientOptions {
        max_serving: 2,
        ..options(allow_all())
    };
    let b = MeshClient::connect(&r.ws_url(), ident(2), options)
        .await
        .expect("connects");
    let started = Arc::new(AtomicUsize::new(0));
    // Permits, not a notification: a handler that has not started waiting
    // yet still gets its release.
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let (s, rel) = (started.clone(), release.clone());
    b.handle("slow", move |req| {
        let (s, rel) = (s.clone(), rel.clone());
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            rel.acquire().await.expect("semaphore open").forget();
            Ok(req.body)
        }
    });
    let held: Vec<_> = (0..2)
        .map(|i| {
            let a = a.clone();
            let to = b.agent_id();
            tokio::spawn(async move { a.request(to, "slow", format!("held {i}")).await })
        })
        .collect();
    while started.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let err = a.request(b.agent_id(), "slow", "third").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::RateLimited, "{err:?}");
    release.add_permits(2);
    for (i, h) in held.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap(), Bytes::from(format!("held {i}")));
    }
    // The slots are free again.
    let (a2, b2) = (a.clone(), b.agent_id());
    let later = tokio::spawn(async move { a2.request(b2, "slow", "later").await });
    release.add_permits(1);
    assert_eq!(later.await.unwrap().unwrap(), Bytes::from("later"));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn acl_default_deny_allow_and_unknown_capability() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let closed = agent(&r.ws_url(), 2, Policy::default()).await;
    echo(&closed);
    let err = a.request(closed.agent_id(), "echo", "x").await.unwrap_err();
    assert!(matches!(err, ClientError::Denied(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Denied);
    let only_a = Policy::from_toml(&format!(
        "[[rule]]\nsource = \"{}\"\ncapabilities = [\"echo\"]\naction = \"allow\"\n",
        a.agent_id()
    ))
    .unwrap();
    closed.set_acl(only_a);
    assert_eq!(
        a.request(closed.agent_id(), "echo", "x").await.unwrap(),
        Bytes::from("x")
    );
    let c = agent(&r.ws_url(), 3, allow_all()).await;
    assert!(matches!(
        c.request(closed.agent_id(), "echo", "x").await,
        Err(ClientError::Denied(_))
    ));
    let err = a
        .request(closed.agent_id(), "other", "x")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Denied(_)),
        "not allowed before unknown: {err:?}"
    );
    let open = agent(&r.ws_url(), 4, allow_all()).await;
    let err = a
        .request(open.agent_id(), "nothing-here", "x")
        .await
        .unwrap_err();
    assert_eq!(err, ClientError::UnknownCapability("nothing-here".into()));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn offline_peer_gets_the_request_when_it_returns() {
    let r = relay().await;
    // B has been seen by the relay, then goes away.
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    b.close().await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let a2 = a.clone();
    let pending = tokio::spawn(async move {
        a2.request_with_timeout(ident(2).agent_id(), "echo", "waiting", 10_000)
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    echo(&b);
    let got = pending.await.unwrap().unwrap();
    assert_eq!(got, Bytes::from("waiting"));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn relay_restart_reconnects_and_loses_or_duplicates_nothing() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests();
    config.db = dir.path().join("relay.db").to_string_lossy().to_string();
    config.key_file = Some(dir.path().join("relay.key"));
    let r = mesh_relay::start(config.clone()).await.unwrap();
    let addr = r.addr;
    let url = r.ws_url();
    let a = agent(&url, 1, allow_all()).await;
    let b = agent(&url, 2, allow_all().clone()).await;
    let mut inbox = b.messages();
    let mut states = a.state_changes();
    assert_eq!(states.next().await, Some(ConnectionState::Online));
    for i in 0..5 {
        a.send_message(b.agent_id(), &format!("before {i}"))
            .unwrap();
    }
    r.shutdown().await.unwrap();
    // While the relay is down, A keeps sending.
    for i in 0..5 {
        a.send_message(b.agent_id(), &format!("during {i}"))
            .unwrap();
    }
    assert_eq!(states.next().await, Some(ConnectionState::Offline));
    config.listen = addr;
    let r = mesh_relay::start(config).await.unwrap();
    let mut texts = Vec::new();
    while texts.len() < 10 {
        if let MessageEvent::Chat { text, .. } =
            tokio::time::timeout(Duration::from_secs(10), inbox.next())
                .await
                .unwrap()
                .unwrap()
        {
            texts.push(text);
        }
    }
    texts.sort();
    let mut want: Vec<String> = (0..5)
        .map(|i| format!("before {i}"))
        .chain((0..5).map(|i| format!("during {i}")))
        .collect();
    want.sort();
    assert_eq!(texts, want);
    // And nothing arrives twice.
    let extra = tokio::time::timeout(Duration::from_millis(500), async {
        loop {
            if let Some(MessageEvent::Chat { text, .. }) = inbox.next().await {
                return text;
            }
        }
    })
    .await;
    assert!(extra.is_err(), "duplicate: {extra:?}");
    assert_eq!(a.state(), ConnectionState::Online);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn chat_with_receipts_and_acl_for_unknown_senders() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, Policy::default()).await;
    let mut a_events = a.messages();
    let mut b_events = b.messages();
    let id = a.send_message(b.agent_id(), "hi, stranger").unwrap();
    match b_events.next().await.unwrap() {
        MessageEvent::Chat {
            from,
            text,
            allowed,
            msg_id,
            ..
        } => {
            assert_eq!(
                (from, text.as_str(), allowed, msg_id),
                (a.agent_id(), "hi, stranger", false, id)
            );
        }
        other => panic!("{other:?}"),
    }
    // B accepts A as a contact: chat allowed from A.
    b.set_acl(
        Policy::from_toml(&format!(
            "[[rule]]\nsource = \"{}\"\ncapabilities = [\"{CHAT_CAPABILITY}\"]\naction = \"allow\"\n",
            a.agent_id()
        ))
        .unwrap(),
    );
    let id = a.send_message(b.agent_id(), "now?").unwrap();
    assert!(matches!(
        b_events.next().await.unwrap(),
        MessageEvent::Chat { allowed: true, .. }
    ));
    loop {
        if let MessageEvent::Receipt { msg_id, from, .. } = a_events.next().await.unwrap() {
            assert_eq!((msg_id, from), (id, b.agent_id()));
            break;
        }
    }
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_chat_no_subscriber_takes_is_not_acknowledged() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let mut a_events = a.messages();
    // B had a subscriber and dropped it: nobody reads B's chats now.
    drop(b.messages());
    let unread = a.send_message(b.agent_id(), "unread").unwrap();
    let waited = tokio::time::timeout(
        Duration::from_secs(2),
        receipt_for(&mut a_events, b.agent_id(), unread),
    )
    .await;
    assert!(waited.is_err(), "B acknowledged a chat nobody took");
    // Once someone reads, chats are shown and acknowledged again.
    let mut b_events = b.messages();
    let read = a.send_message(b.agent_id(), "read").unwrap();
    assert_eq!(
        chats_until(&mut b_events, a.agent_id(), "read").await,
        Vec::<String>::new()
    );
    receipt_for(&mut a_events, b.agent_id(), read).await;
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limit_is_a_typed_error_and_the_session_survives() {
    let mut config = Config::for_tests();
    config.rate_frames_per_sec = 20;
    config.rate_frames_burst = 20;
    let r = mesh_relay::start(config).await.unwrap();
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    echo(&b);
    let mut limited = None;
    let mut calls = Vec::new();
    for i in 0..60 {
        let a = a.clone();
        let id = b.agent_id();
        calls.push(tokio::spawn(async move {
            a.request(id, "echo", format!("{i}")).await
        }));
    }
    for c in calls {
        if let Err(e) = c.await.unwrap() {
            if let ClientError::RateLimited { retry_after_ms } = e {
                assert!(retry_after_ms > 0);
                limited = Some(e);
            } else {
                panic!("unexpected {e:?}");
            }
        }
    }
    assert!(limited.is_some(), "some requests were rate limited");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        a.request(b.agent_id(), "echo", "still works")
            .await
            .unwrap(),
        Bytes::from("still works")
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_mebibyte_each_way() {
    let (r, a, b) = echo_pair().await;
    let body: Vec<u8> = (0..mesh_core::limits::MAX_APP_BODY)
        .map(|i| (i % 253) as u8)
        .collect();
    let got = a.request(b.agent_id(), "echo", body.clone()).await.unwrap();
    assert_eq!(got.len(), body.len());
    assert!(got == body);
    let too_big = vec![0u8; mesh_core::limits::MAX_APP_BODY + 1];
    assert!(matches!(
        a.request(b.agent_id(), "echo", too_big).await,
        Err(ClientError::PayloadTooLarge(_))
    ));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn revocation_kicks_and_blocks() {
    let r = relay().await;
    let victim = agent(&r.ws_url(), 5, allow_all()).await;
    let mut states = victim.state_changes();
    let registry = RegistryClient::for_relay(&r.ws_url()).unwrap();
    registry
        .revoke(&Revocation::new(&ident(5), 1, "lost laptop").unwrap())
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), states.next())
            .await
            .unwrap()
        {
            Some(ConnectionState::Revoked) => break,
            Some(_) => {}
            None => panic!("state stream ended"),
        }
    }
    let err = MeshClient::connect(&r.ws_url(), ident(5), options(allow_all()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Revoked);
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let err = a
        .request(ident(5).agent_id(), "echo", "x")
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Revoked(_)), "{err:?}");
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn card_publish_search_verify_delete() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let registry = RegistryClient::for_relay(&r.ws_url()).unwrap();
    let card = AgentCard::builder(a.agent_id(), r.ws_url(), "Summarizer")
        .description("Summarizes long documents")
        .skill(Skill::new("summarize", "Summarize", "Shortens text").with_tags(["text", "nlp"]))
        .issued_at(1_790_000_000_000)
        .sign(a.identity())
        .unwrap();
    registry.publish(&card).await.unwrap();
    let page = registry
        .search(&SearchQuery {
            capability: Some("nlp".into()),
            online_only: true,
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].card.agent_id(), a.agent_id());
    assert!(page.items[0].online);
    let page = registry
        .search(&SearchQuery {
            text: Some("summ docu".into()),
            ..SearchQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    let got = registry.get(&a.agent_id()).await.unwrap().unwrap();
    assert_eq!(got.card.to_json(), card.to_json());
    registry.delete(a.identity()).await.unwrap();
    assert!(registry.get(&a.agent_id()).await.unwrap().is_none());
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_peers_fail_fast_with_a_typed_error() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let nobody: AgentId = ident(99).agent_id();
    let started = std::time::Instant::now();
    let err = a.request(nobody, "echo", "x").await.unwrap_err();
    assert!(matches!(err, ClientError::Unreachable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn connecting_to_nothing_fails_clearly() {
    let err = MeshClient::connect("ws://127.0.0.1:9/v1/ws", ident(1), options(allow_all()))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Transport(_)), "{err:?}");
}

#[tokio::test]
async fn acl_file_is_reloaded_when_it_changes_and_typos_do_not_open_it() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, Policy::default()).await;
    echo(&b);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.toml");
    std::fs::write(&path, "rule = []\n").unwrap();
    mesh_client::acl_file::watch(&b, &path, Duration::from_millis(50)).unwrap();
    assert!(matches!(
        a.request(b.agent_id(), "echo", "x").await,
        Err(ClientError::Denied(_))
    ));
    std::fs::write(
        &path,
        format!(
            "[[rule]]\nsource = \"{}\"\ncapabilities = [\"echo\"]\naction = \"allow\"\n",
            a.agent_id()
        ),
    )
    .unwrap();
    let mut allowed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if a.request(b.agent_id(), "echo", "x").await.is_ok() {
            allowed = true;
            break;
        }
    }
    assert!(allowed, "the new policy took effect");
    std::fs::write(
        &path,
        "[[rule]]\nsource = \"*\"\ncapabilities = [\"echo\"]\naction = \"allwo\"\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        a.request(b.agent_id(), "echo", "x").await.is_ok(),
        "a broken file keeps the policy in force"
    );
    let c = agent(&r.ws_url(), 3, allow_all()).await;
    assert!(matches!(
        c.request(b.agent_id(), "echo", "x").await,
        Err(ClientError::Denied(_))
    ));
    assert!(mesh_client::acl_file::watch(
        &b,
        dir.path().join("missing.toml"),
        Duration::from_secs(1)
    )
    .is_err());
    r.shutdown().await.unwrap();
}

/// B has been on the relay once and is offline now; A, with `options`,
/// sends B a first chat. The relay holds only the handshake the chat waits
/// behind, so A hears nothing yet (no `Queued`). Returns A, its events and
/// the chat's id.
/// A (agent 1, with `options`) connected, and B (agent 2) known to the
/// relay but offline.
async fn a_with_b_offline(r: &RunningRelay, options: ClientOptions) -> MeshClient {
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    b.close().await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    MeshClient::connect(&r.ws_url(), ident(1), options)
        .await
        .expect("connects")
}

async fn first_chat_to_offline_b(
    r: &RunningRelay,
    options: ClientOptions,
    text: &str,
) -> (
    MeshClient,
    impl futures::Stream<Item = MessageEvent> + Unpin,
    u64,
) {
    let a = a_with_b_offline(r, options).await;
    let mut events = a.messages();
    let id = a.send_message(ident(2).agent_id(), text).unwrap();
    if let Ok(event) = tokio::time::timeout(Duration::from_millis(500), events.next()).await {
        panic!("news before B answered: {event:?}");
    }
    (a, events, id)
}

#[tokio::test]
async fn first_contact_chat_to_an_offline_peer_waits_for_it_and_arrives_later() {
    let r = relay().await;
    let (a, mut events, id) =
        first_chat_to_offline_b(&r, options(allow_all()), "are you there?").await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let mut inbox = b.messages();
    assert!(chats_until(&mut inbox, a.agent_id(), "are you there?")
        .await
        .is_empty());
    receipt_for(&mut events, b.agent_id(), id).await;
    r.shutdown().await.unwrap();
}

/// The handshake to an offline peer waits for it when a chat waits behind
/// it, even if a request started it; the request, timed out meanwhile, is
/// taken back and never runs.
#[tokio::test]
async fn a_chat_behind_a_handshake_a_request_started_waits_for_the_peer_the_request_does_not() {
    let r = relay().await;
    let mut opts = options(allow_all());
    opts.session.handshake_timeout_ms = 300;
    let a = a_with_b_offline(&r, opts).await;
    let mut events = a.messages();
    let asking = a.clone();
    let request = tokio::spawn(async move {
        asking
            .request_with_timeout(ident(2).agent_id(), "count", "", 200)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = a
        .send_message(ident(2).agent_id(), "behind a request")
        .unwrap();
    assert_eq!(
        request.await.unwrap().unwrap_err(),
        ClientError::Timeout(200)
    );
    // Four handshake timeouts later the chat has not failed...
    if let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(1200), events.next()).await
    {
        panic!("news before B returned: {event:?}");
    }
    // ...and when B returns it gets the chat, and A its receipt; the
    // request that timed out was taken back, so it never runs at B.
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    b.handle("count", move |_req| {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Bytes::new())
        }
    });
    let mut inbox = b.messages();
    assert!(chats_until(&mut inbox, a.agent_id(), "behind a request")
        .await
        .is_empty());
    receipt_for(&mut events, b.agent_id(), id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the timed-out request ran");
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_first_chat_waits_for_an_offline_peer_past_the_handshake_timeout() {
    let r = relay().await;
    // A short handshake timeout, so that the peer comes back well after it.
    let mut opts = options(allow_all());
    opts.session.handshake_timeout_ms = 300;
    let (a, mut events, id) = first_chat_to_offline_b(&r, opts, "still there later?").await;
    // Four handshake timeouts later the chat has not failed...
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // ...and when B returns it gets the chat, and A its receipt.
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let mut inbox = b.messages();
    assert!(chats_until(&mut inbox, a.agent_id(), "still there later?")
        .await
        .is_empty());
    receipt_for(&mut events, b.agent_id(), id).await;
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restarted_peer_gets_a_new_session_and_requests_keep_working() {
    let (r, a, b) = echo_pair().await;
    assert_eq!(
        a.request(b.agent_id(), "echo", "one").await.unwrap(),
        Bytes::from("one")
    );
    // B's process restarts: same identity, no session state.
    b.close().await;
    drop(b);
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    echo(&b);
    // A still holds the old session; B answers `SessionUnknown`, A
    // re-handshakes and sends the request again.
    assert_eq!(
        a.request(b.agent_id(), "echo", "two").await.unwrap(),
        Bytes::from("two")
    );
    assert_eq!(
        a.request(b.agent_id(), "echo", "three").await.unwrap(),
        Bytes::from("three")
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_stream_left_unread_is_bounded_failed_and_cancelled_at_the_peer() {
    let (r, a, b) = echo_pair().await;
    let cancelled = Arc::new(AtomicBool::new(false));
    let c2 = cancelled.clone();
    b.handle_stream("firehose", move |_req, mut sink| {
        let cancelled = c2.clone();
        async move {
            for i in 0..5_000u32 {
                if sink.send(i.to_string()).await.is_err() {
                    cancelled.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            Ok(())
        }
    });
    let mut stream = a.request_stream(b.agent_id(), "firehose", "").unwrap();
    // Read nothing while the peer streams.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut ok = 0;
    let mut failure = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => ok += 1,
            Err(e) => failure = Some(e),
        }
    }
    assert!(
        ok <= mesh_client::client_limits::MAX_UNREAD_CHUNKS,
        "{ok} chunks were buffered"
    );
    assert!(
        matches!(failure, Some(ClientError::PayloadTooLarge(_))),
        "{failure:?}"
    );
    for _ in 0..100 {
        if cancelled.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        cancelled.load(Ordering::SeqCst),
        "the peer's handler was cancelled"
    );
    r.shutdown().await.unwrap();
}

// ----- chat delivery: restarts, refusals, early events -------------------

/// The next event within `ms`, or a panic naming what was awaited.
async fn next_event(
    events: &mut (impl futures::Stream<Item = MessageEvent> + Unpin),
    ms: u64,
    what: &str,
) -> MessageEvent {
    match tokio::time::timeout(Duration::from_millis(ms), events.next()).await {
        Ok(Some(e)) => e,
        Ok(None) => panic!("the event stream ended while waiting for {what}"),
        Err(_) => panic!("nothing within {ms} ms while waiting for {what}"),
    }
}

/// Reads B's events until the chat `marker` arrives; returns the texts of
/// every chat before it (checking each came from `from`).
async fn chats_until(
    inbox: &mut (impl futures::Stream<Item = MessageEvent> + Unpin),
    from: AgentId,
    marker: &str,
) -> Vec<String> {
    let mut texts = Vec::new();
    loop {
        if let MessageEvent::Chat {
            text, from: who, ..
        } = next_event(inbox, 10_000, marker).await
        {
            assert_eq!(who, from);
            if text == marker {
                return texts;
            }
            texts.push(text);
        }
    }
}

/// Reads A's events until `from`'s delivered receipt for `msg_id`; panics
/// on a `Failed` for it. Returns how many `Queued` it saw for it.
async fn receipt_for(
    events: &mut (impl futures::Stream<Item = MessageEvent> + Unpin),
    from: AgentId,
    msg_id: u64,
) -> usize {
    let mut queued = 0;
    loop {
        match next_event(events, 10_000, "the delivered receipt").await {
            MessageEvent::Receipt {
                from: who,
                msg_id: id,
                kind: mesh_core::app::ReceiptKind::Delivered,
            } if id == msg_id => {
                assert_eq!(who, from);
                return queued;
            }
            MessageEvent::Queued { msg_id: id, .. } if id == msg_id => queued += 1,
            MessageEvent::Failed {
                msg_id: id, error, ..
            } if id == msg_id => panic!("message {id} failed: {error}"),
            _ => {}
        }
    }
}

/// A and B chat (which gives them a Noise session); B's process then ends.
async fn chatting_pair_then_b_goes_away(
    r: &RunningRelay,
) -> (
    MeshClient,
    impl futures::Stream<Item = MessageEvent> + Unpin,
) {
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let mut events = a.messages();
    let mut inbox = b.messages();
    let first = a.send_message(b.agent_id(), "first").unwrap();
    assert_eq!(
        chats_until(&mut inbox, a.agent_id(), "first").await,
        Vec::<String>::new()
    );
    receipt_for(&mut events, b.agent_id(), first).await;
    b.close().await;
    drop(b);
    (a, events)
}

#[tokio::test]
async fn a_chat_sealed_for_a_restarted_peer_while_it_was_offline_is_resealed_and_delivered_once() {
    let r = relay().await;
    let (a, mut events) = chatting_pair_then_b_goes_away(&r).await;
    // A still holds the session with B's old process: the chat is sealed
    // for it and stored by the relay.
    let id = a
        .send_message(ident(2).agent_id(), "second, while away")
        .unwrap();
    loop {
        match next_event(&mut events, 5_000, "queued").await {
            MessageEvent::Queued { msg_id, .. } if msg_id == id => break,
            MessageEvent::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    // B comes back as a new process (same identity, no session state).
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let mut inbox = b.messages();
    receipt_for(&mut events, b.agent_id(), id).await;
    a.send_message(b.agent_id(), "marker").unwrap();
    assert_eq!(
        chats_until(&mut inbox, a.agent_id(), "marker").await,
        vec!["second, while away".to_string()],
        "delivered exactly once"
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_chat_sealed_for_a_restarted_peer_that_is_online_is_resealed_and_delivered_once() {
    let r = relay().await;
    let (a, mut events) = chatting_pair_then_b_goes_away(&r).await;
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let mut inbox = b.messages();
    // Sealed on the old session, forwarded live; B answers `SessionUnknown`.
    let ids: Vec<u64> = (0..3)
        .map(|i| a.send_message(b.agent_id(), &format!("stale {i}")).unwrap())
        .collect();
    for id in &ids {
        assert_eq!(receipt_for(&mut events, b.agent_id(), *id).await, 0);
    }
    a.send_message(b.agent_id(), "marker").unwrap();
    let mut got = chats_until(&mut inbox, a.agent_id(), "marker").await;
    got.sort();
    assert_eq!(
        got,
        vec!["stale 0", "stale 1", "stale 2"],
        "each exactly once"
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_restarted_peer_that_writes_first_still_gets_what_was_sealed_for_its_old_session() {
    let r = relay().await;
    let (a, mut events) = chatting_pair_then_b_goes_away(&r).await;
    let id = a
        .send_message(ident(2).agent_id(), "sealed for the old B")
        .unwrap();
    loop {
        if let MessageEvent::Queued { msg_id, .. } = next_event(&mut events, 5_000, "queued").await
        {
            if msg_id == id {
                break;
            }
        }
    }
    // The new B opens a session of its own at once, racing the stale frame
    // the relay hands it: A may see B's handshake before its
    // `SessionUnknown` for the old session.
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let mut inbox = b.messages();
    let mut a_inbox_seen = false;
    b.send_message(a.agent_id(), "hello from the new B")
        .unwrap();
    let mut queued = 0;
    loop {
        match next_event(&mut events, 10_000, "the receipt and B's chat").await {
            MessageEvent::Chat { text, .. } => {
                assert_eq!(text, "hello from the new B");
                assert!(!a_inbox_seen, "B's chat arrived twice");
                a_inbox_seen = true;
            }
            MessageEvent::Receipt { msg_id, .. } if msg_id == id => break,
            MessageEvent::Queued { msg_id, .. } if msg_id == id => queued += 1,
            MessageEvent::Failed { msg_id, error, .. } if msg_id == id => panic!("{error}"),
            _ => {}
        }
    }
    assert!(queued <= 1, "`Queued` reported {queued} more times");
    a.send_message(b.agent_id(), "marker").unwrap();
    assert_eq!(
        chats_until(&mut inbox, a.agent_id(), "marker").await,
        vec!["sealed for the old B".to_string()]
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_chat_to_an_agent_the_relay_never_saw_fails_exactly_once() {
    let r = relay().await;
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let mut events = a.messages();
    let nobody = ident(99).agent_id();
    let id = a.send_message(nobody, "hello?").unwrap();
    // Everything about one message is emitted before the driver reads the
    // next command: once the second message's `Failed` is in, a duplicate
    // of the first would have come before it.
    let mut failed_first = 0;
    loop {
        match next_event(&mut events, 5_000, "failed").await {
            MessageEvent::Failed {
                msg_id,
                peer,
                error,
            } if msg_id == id => {
                assert_eq!(peer, nobody);
                assert!(matches!(error, ClientError::Unreachable(_)), "{error:?}");
                failed_first += 1;
                if failed_first == 1 {
                    break;
                }
            }
            other => panic!("{other:?}"),
        }
    }
    let second = a.send_message(nobody, "anyone?").unwrap();
    loop {
        match next_event(&mut events, 5_000, "the second failed").await {
            MessageEvent::Failed { msg_id, .. } if msg_id == id => failed_first += 1,
            MessageEvent::Failed { msg_id, .. } if msg_id == second => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(failed_first, 1, "one `Failed` per message");
    // And the third time, with a session attempt already forgotten.
    let third = a.send_message(nobody, "still nobody?").unwrap();
    let mut seen = Vec::new();
    let sentinel = a.send_message(ident(98).agent_id(), "sentinel").unwrap();
    loop {
        match next_event(&mut events, 5_000, "the sentinel's failed").await {
            MessageEvent::Failed { msg_id, .. } if msg_id == sentinel => break,
            MessageEvent::Failed { msg_id, .. } => seen.push(msg_id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, vec![third]);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn events_before_the_first_subscriber_are_kept_for_it() {
    let r = relay().await;
    // B has been seen by the relay, then goes away.
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    b.close().await;
    drop(b);
    let a = agent(&r.ws_url(), 1, allow_all()).await;
    let mut events = a.messages();
    let ids: Vec<u64> = (0..3)
        .map(|i| {
            a.send_message(ident(2).agent_id(), &format!("early {i}"))
                .unwrap()
        })
        .collect();
    // Let the handshake the chats wait behind reach B's inbox (a first
    // chat to an offline peer is not reported `queued`: only the handshake
    // is at the relay).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // B connects; its inbox is drained before anyone listens. The chats
    // are kept for B's first subscriber, and not acknowledged before it
    // has them.
    let b = agent(&r.ws_url(), 2, allow_all()).await;
    let early = tokio::time::timeout(
        Duration::from_millis(1500),
        receipt_for(&mut events, b.agent_id(), ids[0]),
    )
    .await;
    assert!(early.is_err(), "acknowledged before any reader had it");
    let mut inbox = b.messages();
    for id in &ids {
        receipt_for(&mut events, b.agent_id(), *id).await;
    }
    a.send_message(b.agent_id(), "marker").unwrap();
    assert_eq!(
        chats_until(&mut inbox, a.agent_id(), "marker").await,
        vec!["early 0", "early 1", "early 2"],
        "all three, in order, once each"
    );
    // Only the first subscriber gets the backlog.
    let mut late = b.messages();
    a.send_message(b.agent_id(), "later").unwrap();
    assert_eq!(
        chats_until(&mut late, a.agent_id(), "later").await,
        Vec::<String>::new()
    );
    r.shutdown().await.unwrap();
}
