//! The relay's behaviours over real sockets: auth and every refusal,
//! routing, inbox, acks, replacement, resume, heartbeat, limits, shutdown.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::SinkExt;
use mesh_core::auth::{ClientAuth, ClientStep};
use mesh_core::frame::{self, DeliveryStatus, Frame};
use mesh_core::{ErrorCode, Identity};
use mesh_relay::config::Config;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn auth_then_live_routing_with_forwarded_and_delivered_status() {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    assert_eq!(a.session.as_ref().unwrap().relay_id, r.state.relay_id);
    let id = a.send_to(b.agent(), b"sealed bytes").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
    let got = b.next_deliver().await;
    // The relay stamps the authenticated sender; the body is untouched.
    assert_eq!(got.peer, a.agent());
    assert_eq!(got.msg_id, id);
    assert_eq!(&got.body[..], b"sealed bytes");
    assert!(!deliver_flags_redelivery(&got));
    b.ack(a.agent(), id).await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Delivered);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn offline_recipient_is_queued_delivered_in_order_and_kept_until_acked() {
    let r = relay().await;
    let url = r.ws_url();
    // B is known to the relay (it connected once), then goes offline.
    drop(Client::connect(&url, ident(2)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b_id = ident(2).agent_id();
    let mut a = Client::connect(&url, ident(1)).await;
    let mut ids = Vec::new();
    for i in 0..20u8 {
        let id = a.send_to(b_id, &[i]).await;
        assert_eq!(a.status_of(id).await, DeliveryStatus::Queued);
        ids.push(id);
    }
    // First connection: receive all in order, acknowledge only half.
    let mut b = Client::connect(&url, ident(2)).await;
    for (i, id) in ids.iter().enumerate() {
        let d = b.next_deliver().await;
        assert_eq!((d.msg_id, d.body[0] as usize), (*id, i));
        assert!(deliver_flags_redelivery(&d));
        if i % 2 == 0 {
            b.ack(a.agent(), *id).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Second connection: exactly the unacknowledged half comes again.
    let mut b = Client::connect(&url, ident(2)).await;
    for id in ids.iter().skip(1).step_by(2) {
        let d = b.next_deliver().await;
        assert_eq!(d.msg_id, *id);
        b.ack(a.agent(), *id).await;
    }
    assert!(b.try_recv(Duration::from_millis(300)).await.is_none());
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_recipient_and_no_store_are_refused_not_dropped() {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let stranger = ident(77).agent_id();
    let id = a.send_to(stranger, b"x").await;
    assert_eq!(
        a.status_of(id).await,
        DeliveryStatus::Refused(ErrorCode::UnknownRecipient)
    );
    drop(Client::connect(&r.ws_url(), ident(2)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.send_msg(ident(2).agent_id(), 99, b"x", frame::flags::NO_STORE)
        .await;
    assert_eq!(
        a.status_of(99).await,
        DeliveryStatus::Refused(ErrorCode::Unreachable)
    );
    let me = a.agent();
    a.send_msg(me, 100, b"x", 0).await;
    assert_eq!(
        a.status_of(100).await,
        DeliveryStatus::Refused(ErrorCode::UnknownRecipient)
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn inbox_bounds_refuse_with_inbox_full() {
    let mut config = Config::for_tests();
    config.inbox_max_frames = 3;
    let r = relay_with(config).await;
    drop(Client::connect(&r.ws_url(), ident(2)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    for _ in 0..3 {
        let id = a.send_to(ident(2).agent_id(), b"x").await;
        assert_eq!(a.status_of(id).await, DeliveryStatus::Queued);
    }
    let id = a.send_to(ident(2).agent_id(), b"x").await;
    assert_eq!(
        a.status_of(id).await,
        DeliveryStatus::Refused(ErrorCode::InboxFull)
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn acks_for_frames_that_are_not_yours_change_nothing() {
    let r = relay().await;
    let url = r.ws_url();
    drop(Client::connect(&url, ident(3)).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut a = Client::connect(&url, ident(1)).await;
    let id = a.send_to(ident(3).agent_id(), b"for C").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Queued);
    // B acknowledges A's frame to C, by guessing (sender, id).
    let mut b = Client::connect(&url, ident(2)).await;
    b.ack(a.agent(), id).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c = Client::connect(&url, ident(3)).await;
    let d = c.next_deliver().await;
    assert_eq!((d.peer, d.msg_id), (a.agent(), id));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn garbage_truncated_wrong_version_and_unexpected_frames_get_typed_errors_and_the_connection_lives(
) {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    a.send_raw(Bytes::from_static(b"\xff\xfe garbage")).await;
    assert_eq!(a.next_error().await.code, ErrorCode::UnsupportedVersion);
    a.send_raw(Bytes::from_static(&[1, 0x10, 0, 1, 2])).await;
    assert_eq!(a.next_error().await.code, ErrorCode::MalformedFrame);
    a.send_raw(Bytes::from_static(&[1, 0x7f, 0])).await;
    assert_eq!(a.next_error().await.code, ErrorCode::MalformedFrame);
    a.send_frame(Frame::Challenge(mesh_core::frame::Challenge {
        relay_id: a.agent(),
        nonce: [0; 32],
    }))
    .await;
    assert_eq!(a.next_error().await.code, ErrorCode::UnexpectedFrame);
    a.ws.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(a.next_error().await.code, ErrorCode::MalformedFrame);
    // A frame slightly over the limit is refused with a typed error.
    let mut big = vec![1u8, 0x10, 0];
    big.extend_from_slice(b.agent().as_bytes());
    big.extend_from_slice(&[0; 8]);
    big.resize(mesh_core::limits::MAX_FRAME_LEN + 1, 0);
    a.send_raw(big).await;
    assert_eq!(a.next_error().await.code, ErrorCode::FrameTooLarge);
    // Still fully usable, and B never noticed.
    let id = a.send_to(b.agent(), b"still here").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
    assert_eq!(&b.next_deliver().await.body[..], b"still here");
    let m = r.state.metrics.render();
    assert!(
        m.contains("mesh_relay_bad_frames_total{reason=\"malformed_frame\"}"),
        "{m}"
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_huge_frame_closes_only_that_connection() {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    a.send_raw(vec![1u8; 1 << 20]).await;
    assert!(matches!(a.closed().await, Closed::Code(_) | Closed::Eof));
    let mut c = Client::connect(&r.ws_url(), ident(3)).await;
    let id = c.send_to(b.agent(), b"ok").await;
    assert_eq!(c.status_of(id).await, DeliveryStatus::Forwarded);
    assert_eq!(&b.next_deliver().await.body[..], b"ok");
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn frames_before_auth_and_wrong_version_are_refused_with_close_codes() {
    let r = relay().await;
    let mut ws = raw(&r.ws_url()).await;
    assert!(matches!(
        recv_frame(&mut ws).await,
        Some(Frame::Challenge(_))
    ));
    ws.send(Message::Binary(Frame::Ping(1).encode().unwrap()))
        .await
        .unwrap();
    assert_eq!(closed(&mut ws).await, code(ErrorCode::NotAuthenticated));

    let mut ws = raw(&r.ws_url()).await;
    recv_frame(&mut ws).await;
    ws.send(Message::Binary(Bytes::from_static(&[9, 2, 0, 0])))
        .await
        .unwrap();
    assert_eq!(closed(&mut ws).await, code(ErrorCode::UnsupportedVersion));

    let mut ws = raw(&r.ws_url()).await;
    recv_frame(&mut ws).await;
    ws.send(Message::Binary(Bytes::from_static(b"junk")))
        .await
        .unwrap();
    assert!(matches!(closed(&mut ws).await, Closed::Code(4001..=4002)));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn auth_timeout_closes_the_socket() {
    let mut config = Config::for_tests();
    config.auth_timeout_ms = 200;
    let r = relay_with(config).await;
    let mut ws = raw(&r.ws_url()).await;
    assert!(matches!(
        recv_frame(&mut ws).await,
        Some(Frame::Challenge(_))
    ));
    assert_eq!(closed(&mut ws).await, code(ErrorCode::AuthTimeout));
    r.shutdown().await.unwrap();
}

async fn signed_response_for(url: &str, id: &Identity, challenge: Frame) -> Frame {
    let mut auth = ClientAuth::new(id.clone(), url, None, None).unwrap();
    match auth.handle_frame(challenge).unwrap() {
        ClientStep::Send(f) => f,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn replayed_auth_and_another_relays_challenge_are_refused() {
    let r = relay().await;
    let other = relay().await;
    let url = r.ws_url();
    // Capture a valid response on one connection...
    let mut ws1 = raw(&url).await;
    let ch1 = recv_frame(&mut ws1).await.unwrap();
    let resp1 = signed_response_for(&url, &ident(1), ch1).await;
    // ...and replay it on another: the nonce differs.
    let mut ws2 = raw(&url).await;
    recv_frame(&mut ws2).await;
    ws2.send(Message::Binary(resp1.encode().unwrap()))
        .await
        .unwrap();
    assert_eq!(closed(&mut ws2).await, code(ErrorCode::BadSignature));
    // A statement signed for another relay's challenge.
    let mut wso = raw(&other.ws_url()).await;
    let cho = recv_frame(&mut wso).await.unwrap();
    let resp_other = signed_response_for(&url, &ident(1), cho).await;
    let mut ws3 = raw(&url).await;
    recv_frame(&mut ws3).await;
    ws3.send(Message::Binary(resp_other.encode().unwrap()))
        .await
        .unwrap();
    assert_eq!(closed(&mut ws3).await, code(ErrorCode::BadSignature));
    // The original response still works on its own connection, once.
    ws1.send(Message::Binary(resp1.encode().unwrap()))
        .await
        .unwrap();
    assert!(matches!(recv_frame(&mut ws1).await, Some(Frame::AuthOk(_))));
    let m = r.state.metrics.render();
    assert!(
        m.contains("mesh_relay_auth_failures_total{reason=\"bad_signature\"} 2"),
        "{m}"
    );
    r.shutdown().await.unwrap();
    other.shutdown().await.unwrap();
}

#[tokio::test]
async fn public_url_mismatch_is_wrong_relay() {
    let mut config = Config::for_tests();
    config.public_urls = vec!["wss://relay.example/v1/ws".into()];
    let r = relay_with(config).await;
    let err = Client::connect_with(&r.ws_url(), ident(1), None)
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::WrongRelay);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_newer_connection_replaces_the_older_without_losing_frames() {
    let r = relay().await;
    let url = r.ws_url();
    let b_id = ident(2).agent_id();
    let mut b = Client::connect(&url, ident(2)).await;
    let mut a = Client::connect(&url, ident(1)).await;
    // A streams frames to B while B reconnects several times; B never acks
    // on the old connections, so everything must reach the newest one.
    let sender = tokio::spawn(async move {
        let mut accepted = Vec::new();
        for i in 0..300u32 {
            let id = a.send_to(b_id, &i.to_be_bytes()).await;
            accepted.push(id);
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let mut statuses = 0;
        while statuses < accepted.len() {
            match a.recv().await {
                Frame::Status { status, .. } => {
                    assert!(
                        matches!(
                            status,
                            DeliveryStatus::Forwarded
                                | DeliveryStatus::Queued
                                | DeliveryStatus::Delivered
                        ),
                        "{status:?}"
                    );
                    if status != DeliveryStatus::Delivered {
                        statuses += 1;
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        accepted
    });
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let newer = Client::connect(&url, ident(2)).await;
        assert_eq!(b.closed().await, code(ErrorCode::Replaced));
        b = newer;
    }
    let accepted = sender.await.unwrap();
    let mut seen = std::collections::HashSet::new();
    while seen.len() < accepted.len() {
        let d = b.next_deliver().await;
        assert_eq!(d.peer, ident(1).agent_id());
        seen.insert(d.msg_id);
        b.ack(d.peer, d.msg_id).await;
    }
    assert_eq!(seen, accepted.into_iter().collect());
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn resume_tokens_are_single_use_and_bound_to_the_key() {
    let r = relay().await;
    let url = r.ws_url();
    let a = Client::connect(&url, ident(1)).await;
    let token = a.session.as_ref().unwrap().resume_token;
    drop(a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Stolen by B: authenticates as B, but is not resumed.
    let mut b = Client::connect_with(&url, ident(2), Some(token))
        .await
        .unwrap();
    assert!(!b.session.as_ref().unwrap().resumed);
    assert_eq!(b.next_error().await.code, ErrorCode::ResumeRejected);
    // The owner resumes with it once.
    let a = Client::connect_with(&url, ident(1), Some(token))
        .await
        .unwrap();
    assert!(a.session.as_ref().unwrap().resumed);
    let next = a.session.as_ref().unwrap().resume_token;
    drop(a);
    let mut again = Client::connect_with(&url, ident(1), Some(token))
        .await
        .unwrap();
    assert!(!again.session.as_ref().unwrap().resumed, "single use");
    assert_eq!(again.next_error().await.code, ErrorCode::ResumeRejected);
    drop(again);
    let a = Client::connect_with(&url, ident(1), Some(next))
        .await
        .unwrap();
    assert!(
        !a.session.as_ref().unwrap().resumed,
        "replaced when `again` authenticated"
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn silent_clients_are_dropped_by_the_heartbeat() {
    let mut config = Config::for_tests();
    config.heartbeat_interval_ms = 100;
    config.heartbeat_misses = 2;
    let r = relay_with(config).await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    // Never answer pings: read raw frames without replying.
    let started = std::time::Instant::now();
    let code_seen = loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut a.ws))
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(Some(cf)))) => break u16::from(cf.code),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(code_seen, ErrorCode::HeartbeatTimeout.close_code());
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!r.state.hub.is_online(&ident(1).agent_id()));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limit_answers_with_retry_after_and_recovers() {
    let mut config = Config::for_tests();
    config.rate_frames_per_sec = 5;
    config.rate_frames_burst = 5;
    let r = relay_with(config).await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    for _ in 0..5 {
        let id = a.send_to(b.agent(), b"x").await;
        assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
    }
    let id = a.send_to(b.agent(), b"x").await;
    let e = a.next_error().await;
    assert_eq!((e.code, e.ref_msg_id), (ErrorCode::RateLimited, id));
    assert!(e.retry_after_ms > 0 && e.retry_after_ms <= 1000, "{e:?}");
    tokio::time::sleep(Duration::from_millis(u64::from(e.retry_after_ms) + 50)).await;
    let id = a.send_to(b.agent(), b"after").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
    for _ in 0..6 {
        b.next_deliver().await;
    }
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn connection_limits_close_with_typed_codes() {
    let mut config = Config::for_tests();
    config.conn_per_ip_per_sec = 1;
    config.conn_per_ip_burst = 2;
    let r = relay_with(config).await;
    let _a = raw(&r.ws_url()).await;
    let _b = raw(&r.ws_url()).await;
    let mut c = raw(&r.ws_url()).await;
    assert_eq!(closed(&mut c).await, code(ErrorCode::RateLimited));
    r.shutdown().await.unwrap();

    let mut config = Config::for_tests();
    config.max_connections = 1;
    let r = relay_with(config).await;
    let _a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = raw(&r.ws_url()).await;
    assert_eq!(closed(&mut b).await, code(ErrorCode::TooManyConnections));
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_says_going_away() {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let stop = tokio::spawn(r.shutdown());
    assert_eq!(a.closed().await, code(ErrorCode::GoingAway));
    stop.await.unwrap().unwrap();
}

#[tokio::test]
async fn unacknowledged_frames_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db").to_string_lossy().to_string();
    let mut config = Config::for_tests();
    config.db = db.clone();
    config.key_file = Some(dir.path().join("relay.key"));
    let r = relay_with(config.clone()).await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let id = a.send_to(b.agent(), b"unacked").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
    assert_eq!(b.next_deliver().await.msg_id, id); // received, never acked
    let relay_id = r.state.relay_id;
    r.shutdown().await.unwrap();
    let r = relay_with(config).await;
    assert_eq!(r.state.relay_id, relay_id, "key file keeps the relay id");
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let d = b.next_deliver().await;
    assert_eq!((d.msg_id, &d.body[..]), (id, &b"unacked"[..]));
    r.shutdown().await.unwrap();
}

/// Frames forwarded live and never acknowledged go to the inbox when the
/// connection ends, and come back on reconnect in the order they were
/// first delivered (not in the order of some hash map).
#[tokio::test]
async fn unacknowledged_frames_are_redelivered_in_their_order() {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let mut ids = Vec::new();
    for n in 0..32u8 {
        let id = a.send_to(b.agent(), &[n]).await;
        assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
        ids.push(id);
    }
    for id in &ids {
        assert_eq!(b.next_deliver().await.msg_id, *id); // never acked
    }
    drop(b);
    let mut queued = 0;
    while queued < ids.len() {
        if let Frame::Status {
            status: DeliveryStatus::Queued,
            ..
        } = a.recv().await
        {
            queued += 1;
        }
    }
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let mut again = Vec::new();
    for _ in &ids {
        let d = b.next_deliver().await;
        assert!(deliver_flags_redelivery(&d));
        again.push(d.msg_id);
    }
    assert_eq!(again, ids);
    r.shutdown().await.unwrap();
}

/// A storage failure when a connection ends must not leave its senders at
/// `forwarded` for a delivery that cannot come. The failure is real: a
/// trigger in the relay's own SQLite file refuses every inbox insert, as a
/// full disk would.
#[tokio::test]
async fn senders_hear_refused_internal_when_unacked_frames_cannot_be_stored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let mut config = Config::for_tests();
    config.db = db.to_string_lossy().to_string();
    let r = relay_with(config).await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let ids = [
        a.send_to(b.agent(), b"first").await,
        a.send_to(b.agent(), b"second").await,
    ];
    for id in ids {
        assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
        assert_eq!(b.next_deliver().await.msg_id, id); // received, never acked
    }

    let sql = rusqlite::Connection::open(&db).unwrap();
    sql.execute_batch(
        "CREATE TRIGGER inbox_full_disk BEFORE INSERT ON inbox \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    drop(b); // its connection ends with both frames unacknowledged

    // One status each, in no particular order (the unacknowledged set is
    // a map).
    let mut heard = std::collections::BTreeMap::new();
    while heard.len() < ids.len() {
        match a.recv().await {
            Frame::Status { msg_id, status, .. } => {
                assert!(heard.insert(msg_id, status).is_none(), "{msg_id} twice");
            }
            other => panic!("expected a status, got {other:?}"),
        }
    }
    let refused = DeliveryStatus::Refused(ErrorCode::Internal);
    assert_eq!(
        heard,
        std::collections::BTreeMap::from(ids.map(|id| (id, refused)))
    );
    assert!(r
        .state
        .metrics
        .render()
        .contains("mesh_relay_frames_lost_total 2"));

    // Once storage works again, so does the inbox.
    sql.execute_batch("DROP TRIGGER inbox_full_disk;").unwrap();
    let id = a.send_to(ident(2).agent_id(), b"third").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Queued);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn status_metrics_and_healthz() {
    let r = relay().await;
    let _a = Client::connect(&r.ws_url(), ident(1)).await;
    let (code, body) = http(r.addr, "GET", "/status", &[], b"").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["agentsOnline"], 1);
    assert_eq!(v["relayId"], r.state.relay_id.to_did());
    let (code, body) = http(r.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(code, 200);
    for name in [
        "mesh_relay_connections",
        "mesh_relay_frames_routed_total",
        "mesh_relay_route_seconds_bucket",
        "mesh_relay_inbox_frames",
    ] {
        assert!(body.contains(name), "{name} missing from {body}");
    }
    assert_eq!(
        http(r.addr, "GET", "/healthz", &[], b"").await,
        (200, "ok\n".into())
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_relay_never_sees_a_sender_field_it_could_trust() {
    // `Send` carries only the destination; whatever a client puts in the
    // body, the recipient is told the authenticated sender.
    let r = relay().await;
    let mut mallory = Client::connect(&r.ws_url(), ident(66)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let pretend = ident(1).agent_id();
    let mut body = pretend.as_bytes().to_vec();
    body.extend_from_slice(b"I am agent 1");
    let id = mallory.send_to(b.agent(), &body).await;
    mallory.status_of(id).await;
    let d = b.next_deliver().await;
    assert_eq!(d.peer, mallory.agent());
    assert_ne!(d.peer, pretend);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_receiver_that_never_reads_slows_no_one_and_loses_nothing() {
    let mut config = Config::for_tests();
    config.send_queue_frames = 16;
    config.max_unacked_frames = 64;
    let r = relay_with(config).await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let stuck = Client::connect(&r.ws_url(), ident(2)).await; // never reads
    let mut c = Client::connect(&r.ws_url(), ident(3)).await;
    let body = vec![7u8; 16 * 1024];
    let mut forwarded = 0;
    let mut queued = 0;
    for _ in 0..400 {
        let id = a.send_to(stuck.agent(), &body).await;
        match a.status_of(id).await {
            DeliveryStatus::Forwarded => forwarded += 1,
            DeliveryStatus::Queued => queued += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(queued > 0, "the stuck receiver's excess went to its inbox");
    assert!(
        forwarded <= 64,
        "at most the unacked window was forwarded live"
    );
    // Meanwhile traffic to a healthy receiver is immediate.
    let started = std::time::Instant::now();
    let id = a.send_to(c.agent(), b"fast").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
    assert_eq!(&c.next_deliver().await.body[..], b"fast");
    assert!(started.elapsed() < Duration::from_secs(1));
    // When the stuck agent comes back, it gets all 400 (live ones moved to
    // the inbox when its old connection was replaced).
    drop(stuck);
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 400 {
        let d = b.next_deliver().await;
        seen.insert(d.msg_id);
        b.ack(d.peer, d.msg_id).await;
    }
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_destination_that_is_not_a_key_is_refused_with_a_typed_error() {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let not_a_key = (0u8..=255)
        .map(|n| [n; 32])
        .find(|k| mesh_core::AgentId::from_bytes(k).is_err())
        .expect("some byte pattern is not a valid key");
    let mut raw = vec![1u8, 0x10, 0];
    raw.extend_from_slice(&not_a_key);
    raw.extend_from_slice(&7u64.to_be_bytes());
    raw.extend_from_slice(b"body");
    a.send_raw(raw).await;
    let e = a.next_error().await;
    assert_eq!((e.code, e.ref_msg_id), (ErrorCode::MalformedFrame, 7));
    let mut ack = vec![1u8, 0x12, 0];
    ack.extend_from_slice(&not_a_key);
    ack.extend_from_slice(&7u64.to_be_bytes());
    a.send_raw(ack).await; // acks for nonsense keys are ignored
    let b = Client::connect(&r.ws_url(), ident(2)).await;
    let id = a.send_to(b.agent(), b"fine").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn quiet_sends_skip_the_forwarded_status_but_not_delivered() {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    a.send_msg(b.agent(), 5, b"quiet", frame::flags::QUIET)
        .await;
    let d = b.next_deliver().await;
    assert_eq!(d.flags, 0, "flags never leak to the recipient");
    b.ack(a.agent(), 5).await;
    assert_eq!(
        a.status_of(5).await,
        DeliveryStatus::Delivered,
        "no forwarded before it"
    );
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sender_hears_queued_when_its_forwarded_frame_moves_to_the_inbox() {
    let r = relay().await;
    let mut a = Client::connect(&r.ws_url(), ident(1)).await;
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let id = a.send_to(b.agent(), b"for b").await;
    assert_eq!(a.status_of(id).await, DeliveryStatus::Forwarded);
    // B goes away without acknowledging: the frame moves to B's inbox and
    // A is told so, instead of being left at `forwarded`.
    let _ = b.next_deliver().await;
    drop(b);
    let status = tokio::time::timeout(Duration::from_secs(5), a.status_of(id))
        .await
        .expect("a status after the recipient left");
    assert_eq!(status, DeliveryStatus::Queued);
    // And B gets it on its next connection.
    let mut b = Client::connect(&r.ws_url(), ident(2)).await;
    let again = b.next_deliver().await;
    assert_eq!((again.peer, again.msg_id), (a.agent(), id));
    assert!(deliver_flags_redelivery(&again));
    r.shutdown().await.unwrap();
}

/// The status line and headers (lower-cased) of one raw HTTP exchange.
async fn http_head(addr: std::net::SocketAddr, request_head: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("{request_head}Host: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    text.split_once("\r\n\r\n")
        .map(|(head, _)| head.to_string())
        .unwrap_or(text)
}

#[tokio::test]
async fn the_registry_answers_cors_preflights_from_any_origin() {
    let r = relay().await;
    let preflight = http_head(
        r.addr,
        "OPTIONS /v1/agents/x HTTP/1.1\r\nOrigin: https://app.example\r\n\
         Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type\r\n",
    )
    .await;
    assert!(preflight.starts_with("http/1.1 200"), "{preflight}");
    assert!(
        preflight.contains("access-control-allow-origin: *"),
        "{preflight}"
    );
    assert!(
        preflight.contains("access-control-allow-methods: get,put,post,delete"),
        "{preflight}"
    );
    assert!(
        preflight.contains("access-control-allow-headers: content-type,authorization"),
        "{preflight}"
    );
    let search = http_head(
        r.addr,
        "GET /v1/agents HTTP/1.1\r\nOrigin: https://app.example\r\n",
    )
    .await;
    assert!(search.starts_with("http/1.1 200"), "{search}");
    assert!(
        search.contains("access-control-allow-origin: *"),
        "{search}"
    );
    r.shutdown().await.unwrap();
}
