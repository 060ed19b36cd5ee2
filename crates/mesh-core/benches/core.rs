//! Benchmarks of the hot paths of the protocol core: the Noise handshake,
//! sealing and opening application messages, the relay's frame codec and
//! card verification.
//!
//! Run with `cargo bench -p mesh-core --bench core`. Measurement times are
//! kept short so the whole run takes about two minutes; these figures are
//! for spotting regressions and orders of magnitude, not for publishing.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use mesh_core::app::AppMessage;
use mesh_core::card::{AgentCard, SignedCard, Skill};
use mesh_core::frame::{send_to_deliver, Frame, Routed};
use mesh_core::identity::{AgentId, Identity};
use mesh_core::noise::{Handshake, NoiseKeypair};
use mesh_core::session::{SessionConfig, SessionEvent, SessionTable};

fn identity(n: u8) -> Identity {
    Identity::from_secret_bytes(&[n; 32])
}

fn handshake(c: &mut Criterion) {
    let (alice, bob) = (identity(1), identity(2));
    let (alice_kp, bob_kp) = (
        NoiseKeypair::from_secret([11; 32]),
        NoiseKeypair::from_secret([12; 32]),
    );
    let (alice_id, bob_id) = (alice.agent_id(), bob.agent_id());

    let mut group = c.benchmark_group("handshake");
    group.bench_function("xx_full_both_sides", |b| {
        b.iter(|| {
            let (init, msg1) = Handshake::initiate(&alice_kp, bob_id).unwrap();
            let (resp, msg2) = Handshake::respond(&bob, &bob_kp, alice_id, &msg1).unwrap();
            let (msg3, a) = init.read_msg2(&alice, &alice_kp, &msg2).unwrap();
            let b = resp.read_msg3(&msg3).unwrap();
            black_box((a, b))
        })
    });
    group.finish();
}

/// Two tables with an established session. Re-keying is switched off so the
/// measurement is the steady state, not an occasional handshake.
fn established_pair() -> (SessionTable, SessionTable) {
    let config = SessionConfig {
        rekey_after_messages: u64::MAX,
        rekey_after_ms: u64::MAX,
        ..SessionConfig::default()
    };
    let mut a = SessionTable::new(
        identity(1),
        NoiseKeypair::from_secret([11; 32]),
        config.clone(),
    );
    let mut b = SessionTable::new(identity(2), NoiseKeypair::from_secret([12; 32]), config);
    let warm = AppMessage::Cancel { req_id: 0 };
    a.send(b.agent_id(), warm, 0).unwrap();
    // Route until quiet, as a relay would.
    loop {
        let mut moved = false;
        while let Some(t) = a.poll_transmit() {
            b.handle_incoming(a.agent_id(), t.body, 0).unwrap();
            moved = true;
        }
        while let Some(t) = b.poll_transmit() {
            a.handle_incoming(b.agent_id(), t.body, 0).unwrap();
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(a.has_session(&b.agent_id()) && b.has_session(&a.agent_id()));
    while a.poll_event().is_some() {}
    while b.poll_event().is_some() {}
    (a, b)
}

fn seal_open(c: &mut Criterion) {
    let mut group = c.benchmark_group("session/seal_open");
    for (label, len) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let (mut a, mut b) = established_pair();
        let (a_id, b_id) = (a.agent_id(), b.agent_id());
        let message = AppMessage::Response {
            req_id: 7,
            body: Bytes::from(vec![0x5a; len]),
        };
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(label, |bench| {
            bench.iter(|| {
                a.send(b_id, message.clone(), 1).unwrap();
                // 64 KiB plus the header is two fragments.
                while let Some(t) = a.poll_transmit() {
                    b.handle_incoming(a_id, t.body, 1).unwrap();
                }
                match b.poll_event() {
                    Some(SessionEvent::Message { message, .. }) => black_box(message),
                    other => panic!("expected a message, got {other:?}"),
                }
            })
        });
    }
    group.finish();
}

fn frame(c: &mut Criterion) {
    let peer: AgentId = identity(2).agent_id();
    let sender: AgentId = identity(1).agent_id();
    let send = Frame::Send(Routed {
        peer,
        msg_id: 42,
        flags: 0,
        body: Bytes::from(vec![0xa5; 1024]),
    });
    let encoded = send.encode().unwrap();

    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Bytes(encoded.len() as u64));
    group.bench_function("encode/send_1KiB", |b| {
        b.iter(|| black_box(&send).encode().unwrap())
    });
    group.bench_function("decode/send_1KiB", |b| {
        b.iter(|| Frame::decode(black_box(encoded.clone())).unwrap())
    });
    // The rewrite happens in place, so each iteration needs its own buffer;
    // the copy is made in setup, outside the measurement.
    group.bench_function("send_to_deliver/1KiB", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&encoded[..]),
            |buf| send_to_deliver(buf, &sender).unwrap(),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn card(c: &mut Criterion) {
    let id = identity(3);
    let json = AgentCard::builder(id.agent_id(), "wss://relay.example/v1/ws", "Summarizer")
        .description("Summarizes documents in several languages.")
        .version("2.1.0")
        .provider("Example Org", "https://example.org")
        .streaming(true)
        .skill(
            Skill::new(
                "summarize.text",
                "Summarize text",
                "Short summaries of long text",
            )
            .with_tags(["nlp", "summary", "text"])
            .with_examples(["Summarize this article in three bullets"])
            .with_input_schema(
                mesh_core::json::Value::parse(
                    br#"{"type": "object", "required": ["text"], "properties": {
                        "text": {"type": "string", "maxLength": 100000},
                        "bullets": {"type": "integer", "minimum": 1, "maximum": 10}}}"#,
                )
                .unwrap(),
            ),
        )
        .skill(Skill::new("translate", "Translate", "Between any two languages").with_tags(["nlp"]))
        .issued_at(1_700_000_000_000)
        .sign(&id)
        .unwrap()
        .to_json();

    let mut group = c.benchmark_group("card");
    group.bench_function("verify", |b| {
        b.iter(|| SignedCard::from_json(black_box(&json)).unwrap())
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = handshake, seal_open, frame, card
}
criterion_main!(benches);
