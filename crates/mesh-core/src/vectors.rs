//! Test vectors: `docs/test-vectors.json` is generated from fixed inputs by
//! this module and checked by it, so the file and the code cannot drift.
//!
//! Regenerate after an intended wire change with
//! `MESH_WRITE_VECTORS=1 cargo test -p mesh-core --lib vectors`.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::app::{AppMessage, ReceiptKind};
use crate::code::ErrorCode;
use crate::frame::{
    self, AuthOk, Challenge, DeliveryStatus, ErrorFrame, Frame, ResumeToken, Routed,
};
use crate::identity::{AgentId, Identity, SafetyNumber};
use crate::noise::{Envelope, Handshake, NoiseKeypair};
use crate::sign::{signed_message, SignatureContext};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/test-vectors.json");

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn ident(n: u8) -> Identity {
    Identity::from_secret_bytes(&[n; 32])
}

fn identities() -> Value {
    let list: Vec<Value> = [1u8, 2, 0x42]
        .iter()
        .map(|&n| {
            let id = ident(n);
            json!({
                "secret": h(&[n; 32]),
                "public": h(id.agent_id().as_bytes()),
                "did": id.agent_id().to_did(),
                "secretText": id.to_secret_text().as_str(),
                "short": id.agent_id().short(),
            })
        })
        .collect();
    let (a, b) = (ident(1).agent_id(), ident(2).agent_id());
    json!({
        "keys": list,
        "safetyNumber": {
            "a": a.to_did(),
            "b": b.to_did(),
            "number": SafetyNumber::between(&a, &b).to_string(),
        }
    })
}

fn signatures() -> Value {
    let id = ident(1);
    let fields: [&[u8]; 3] = [b"alpha", b"", &[0, 1, 2, 3]];
    let list: Vec<Value> = SignatureContext::ALL
        .iter()
        .map(|&ctx| {
            json!({
                "context": ctx.label(),
                "signer": id.agent_id().to_did(),
                "fields": fields.iter().map(|f| h(f)).collect::<Vec<_>>(),
                "message": h(&signed_message(ctx, &fields)),
                "signature": h(&id.sign(ctx, &fields).0),
            })
        })
        .collect();
    Value::Array(list)
}

fn relay_auth() -> Value {
    let relay = ident(100);
    let client = ident(1);
    let nonce = [0x5a; 32];
    let url = "wss://relay.example/v1/ws";
    let token = ResumeToken([0x77; 32]);
    let mut auth =
        crate::auth::ClientAuth::new(client.clone(), url, Some(relay.agent_id()), Some(token))
            .unwrap_or_else(|e| panic!("{e}"));
    let challenge = Frame::Challenge(Challenge {
        relay_id: relay.agent_id(),
        nonce,
    });
    let crate::auth::ClientStep::Send(resp) = auth
        .handle_frame(challenge.clone())
        .unwrap_or_else(|e| panic!("{e}"))
    else {
        panic!("expected a response")
    };
    let Frame::AuthResponse(r) = &resp else {
        panic!()
    };
    json!({
        "relayId": relay.agent_id().to_did(),
        "clientSecret": h(&[1; 32]),
        "nonce": h(&nonce),
        "relayUrl": url,
        "resumeToken": h(&token.0),
        "signedMessage": h(&signed_message(SignatureContext::RelayAuth, &[
            relay.agent_id().as_bytes(), &nonce, client.agent_id().as_bytes(), url.as_bytes(), &token.0,
        ])),
        "signature": h(&r.signature.0),
        "challengeFrame": h(&challenge.encode().unwrap_or_default()),
        "authResponseFrame": h(&resp.encode().unwrap_or_default()),
    })
}

fn frames() -> Value {
    let a = ident(1).agent_id();
    let b = ident(2).agent_id();
    let samples: Vec<(&str, Frame)> = vec![
        (
            "challenge",
            Frame::Challenge(Challenge {
                relay_id: a,
                nonce: [1; 32],
            }),
        ),
        (
            "authOk",
            Frame::AuthOk(AuthOk {
                resumed: true,
                resume_token: ResumeToken([2; 32]),
                resume_ttl_ms: 120_000,
                heartbeat_ms: 15_000,
                max_frame_len: crate::limits::MAX_FRAME_LEN as u32,
            }),
        ),
        (
            "errorRateLimited",
            Frame::Error(ErrorFrame {
                code: ErrorCode::RateLimited,
                ref_msg_id: 7,
                retry_after_ms: 500,
                message: "slow down".into(),
            }),
        ),
        ("ping", Frame::Ping(0x0102030405060708)),
        ("pong", Frame::Pong(0x0102030405060708)),
        (
            "send",
            Frame::Send(Routed {
                peer: b,
                msg_id: 42,
                flags: frame::flags::NO_STORE,
                body: Bytes::from_static(b"opaque"),
            }),
        ),
        (
            "deliver",
            Frame::Deliver(Routed {
                peer: a,
                msg_id: 42,
                flags: frame::flags::REDELIVERY,
                body: Bytes::from_static(b"opaque"),
            }),
        ),
        (
            "ack",
            Frame::Ack {
                peer: a,
                msg_id: 42,
            },
        ),
        (
            "statusQueued",
            Frame::Status {
                peer: b,
                msg_id: 42,
                status: DeliveryStatus::Queued,
            },
        ),
        (
            "statusRefused",
            Frame::Status {
                peer: b,
                msg_id: 43,
                status: DeliveryStatus::Refused(ErrorCode::InboxFull),
            },
        ),
    ];
    let mut m = Map::new();
    for (name, f) in samples {
        m.insert(
            name.into(),
            Value::String(h(&f.encode().unwrap_or_default())),
        );
    }
    Value::Object(m)
}

fn app_messages() -> Vec<(&'static str, AppMessage)> {
    vec![
        (
            "request",
            AppMessage::Request {
                req_id: 1,
                capability: "echo".into(),
                stream: false,
                body: Bytes::from_static(b"hello"),
            },
        ),
        (
            "requestStream",
            AppMessage::Request {
                req_id: 2,
                capability: "count.up".into(),
                stream: true,
                body: Bytes::from_static(b"3"),
            },
        ),
        (
            "response",
            AppMessage::Response {
                req_id: 1,
                body: Bytes::from_static(b"hello"),
            },
        ),
        (
            "error",
            AppMessage::Error {
                req_id: 1,
                code: ErrorCode::Denied,
                message: "not allowed".into(),
            },
        ),
        (
            "streamChunk",
            AppMessage::StreamChunk {
                req_id: 2,
                seq: 0,
                body: Bytes::from_static(b"1"),
            },
        ),
        (
            "streamEnd",
            AppMessage::StreamEnd {
                req_id: 2,
                count: 3,
            },
        ),
        ("cancel", AppMessage::Cancel { req_id: 2 }),
        (
            "chat",
            AppMessage::Chat {
                msg_id: 9,
                sent_at_ms: 1_790_000_000_000,
                text: "hi there".into(),
            },
        ),
        (
            "receipt",
            AppMessage::Receipt {
                msg_id: 9,
                kind: ReceiptKind::Read,
            },
        ),
    ]
}

fn app() -> Value {
    let mut m = Map::new();
    for (name, msg) in app_messages() {
        m.insert(
            name.into(),
            Value::String(h(&msg.encode().unwrap_or_default())),
        );
    }
    Value::Object(m)
}

fn handshake() -> Value {
    let (ia, ib) = (ident(1), ident(2));
    let (sa, sb) = ([0x11; 32], [0x22; 32]);
    let (ea, eb) = ([0x33; 32], [0x44; 32]);
    let (ka, kb) = (NoiseKeypair::from_secret(sa), NoiseKeypair::from_secret(sb));
    let run = || {
        let (hs_a, m1) = Handshake::initiate_inner(&ka, ib.agent_id(), Some(&ea))
            .unwrap_or_else(|e| panic!("{e}"));
        let (hs_b, m2) = Handshake::respond_inner(&ib, &kb, ia.agent_id(), &m1, Some(&eb))
            .unwrap_or_else(|e| panic!("{e}"));
        let (m3, est_a) = hs_a
            .read_msg2(&ia, &ka, &m2)
            .unwrap_or_else(|e| panic!("{e}"));
        let est_b = hs_b.read_msg3(&m3).unwrap_or_else(|e| panic!("{e}"));
        (m1, m2, m3, est_a, est_b)
    };
    let (m1, m2, m3, est_a, est_b) = run();
    let session_id = 0x0123_4567_89ab_cdefu64;
    let app = AppMessage::Request {
        req_id: 1,
        capability: "echo".into(),
        stream: false,
        body: Bytes::from_static(b"hello"),
    }
    .encode()
    .unwrap_or_default();
    let mut plain = vec![0, 0, 0, 0, 0, 0, 0, 1];
    plain.extend_from_slice(&app);
    let mut ct = vec![0u8; plain.len() + 16];
    let n = est_a
        .transport
        .write_message(0, &plain, &mut ct)
        .unwrap_or_else(|e| panic!("{e}"));
    ct.truncate(n);
    let mut back = vec![0u8; ct.len()];
    let k = est_b
        .transport
        .read_message(0, &ct, &mut back)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&back[..k], &plain[..]);
    let env = Envelope::Transport {
        session_id,
        nonce: 0,
        ciphertext: ct.clone().into(),
    }
    .encode();
    json!({
        "pattern": crate::noise::NOISE_PATTERN,
        "prologue": h(crate::noise::NOISE_PROLOGUE),
        "initiator": { "identitySecret": h(&[1; 32]), "staticSecret": h(&sa), "staticPublic": h(ka.public()), "ephemeralSecret": h(&ea) },
        "responder": { "identitySecret": h(&[2; 32]), "staticSecret": h(&sb), "staticPublic": h(kb.public()), "ephemeralSecret": h(&eb) },
        "msg1": h(&m1),
        "msg2": h(&m2),
        "msg3": h(&m3),
        "handshakeHash": h(&est_a.handshake_hash),
        "sessionId": format!("{session_id:016x}"),
        "firstTransport": {
            "nonce": 0,
            "fragmentPlaintext": h(&plain),
            "ciphertext": h(&ct),
            "envelope": h(&env),
        }
    })
}

/// Every vector, as the JSON document stored in docs/.
pub(crate) fn all() -> Value {
    let mut doc = Map::new();
    doc.insert("description".into(), json!("agent-mesh protocol v1 test vectors. Byte strings are lowercase hex. Generated and checked by crates/mesh-core/src/vectors.rs; see docs/PROTOCOL.md."));
    doc.insert("identity".into(), identities());
    doc.insert("signatures".into(), signatures());
    doc.insert("relayAuth".into(), relay_auth());
    doc.insert("frames".into(), frames());
    doc.insert("appMessages".into(), app());
    doc.insert("handshake".into(), handshake());
    for (k, v) in extra() {
        doc.insert(k.into(), v);
    }
    Value::Object(doc)
}

/// Vectors for the statement modules (cards, revocation, registry requests).
fn extra() -> Vec<(&'static str, Value)> {
    use crate::card::{AgentCard, Skill};
    use crate::registry::RegistryRequest;
    use crate::revocation::Revocation;
    let id = ident(1);
    let signed = AgentCard::builder(id.agent_id(), "wss://relay.example/v1/ws", "Echo")
        .description("Repeats what it is sent.")
        .streaming(true)
        .skill(
            Skill::new("echo", "Echo", "Returns the request body unchanged")
                .with_tags(["utility", "test"]),
        )
        .issued_at(1_790_000_000_000)
        .seq(7)
        .sign(&id)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut unsigned: Value = serde_json::from_slice(signed.as_json()).unwrap_or_default();
    if let Some(o) = unsigned.as_object_mut() {
        o.remove("signature");
    }
    let jcs = serde_jcs::to_vec(&unsigned).unwrap_or_default();
    let revocation = Revocation::new(&id, 1_790_000_000_000, "key compromised")
        .unwrap_or_else(|e| panic!("{e}"));
    let request = RegistryRequest::sign(
        &id,
        "DELETE",
        &format!("/v1/agents/{}", id.agent_id()),
        1_790_000_000_000,
        [0x0f; 16],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    vec![
        (
            "card",
            json!({
                "signerSecret": h(&[1; 32]),
                "signedJcs": String::from_utf8_lossy(&jcs),
                "signedMessage": h(&signed_message(SignatureContext::Card, &[&jcs])),
                "signedCard": String::from_utf8_lossy(&signed.to_json()),
            }),
        ),
        (
            "revocation",
            json!({
                "signerSecret": h(&[1; 32]),
                "json": revocation.to_json(),
            }),
        ),
        (
            "registryRequest",
            json!({
                "signerSecret": h(&[1; 32]),
                "authorization": request.to_authorization(),
            }),
        ),
    ]
}

fn diff(path: &str, want: &Value, got: &Value, out: &mut Vec<String>) {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
                let null = Value::Null;
                diff(
                    &format!("{path}/{k}"),
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}/{i}"), x, y, out);
            }
        }
        _ if want != got => out.push(format!("{path}: file has {want}, code gives {got}")),
        _ => {}
    }
}

#[test]
fn test_vectors_match_docs() {
    let got = all();
    if std::env::var_os("MESH_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&got).unwrap_or_default() + "\n";
        std::fs::write(PATH, text).unwrap_or_else(|e| panic!("writing {PATH}: {e}"));
        return;
    }
    let text = std::fs::read_to_string(PATH).unwrap_or_else(|e| panic!("reading {PATH}: {e}"));
    let want: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {PATH}: {e}"));
    let mut out = Vec::new();
    diff("", &want, &got, &mut out);
    assert!(out.is_empty(), "test vectors drifted:\n{}", out.join("\n"));
}

/// The vectors decode back to what they encode (so the file is usable as a
/// decoder test too).
#[test]
fn vector_frames_and_messages_decode() {
    let doc = all();
    for (name, v) in doc["frames"].as_object().into_iter().flatten() {
        let raw = hex::decode(v.as_str().unwrap_or_default()).unwrap_or_default();
        let f = Frame::decode(raw.clone().into()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(f.encode().unwrap_or_default().to_vec(), raw, "{name}");
    }
    for (name, msg) in app_messages() {
        let raw =
            hex::decode(doc["appMessages"][name].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(AppMessage::decode(raw.into()).ok(), Some(msg), "{name}");
    }
    let did = doc["identity"]["keys"][0]["did"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(did.parse::<AgentId>().ok(), Some(ident(1).agent_id()));
}

/// Every constant in `limits.rs` with its value, checked against the
/// "Limits" table of docs/PROTOCOL.md.
fn limit_values() -> Vec<(&'static str, u64)> {
    use crate::limits::*;
    vec![
        ("PROTOCOL_VERSION", u64::from(PROTOCOL_VERSION)),
        ("NOISE_MAX_MESSAGE", NOISE_MAX_MESSAGE as u64),
        ("NOISE_TAG_LEN", NOISE_TAG_LEN as u64),
        ("FRAGMENT_HEADER_LEN", FRAGMENT_HEADER_LEN as u64),
        ("MAX_FRAGMENT_PAYLOAD", MAX_FRAGMENT_PAYLOAD as u64),
        ("MAX_APP_BODY", MAX_APP_BODY as u64),
        ("MAX_APP_MESSAGE", MAX_APP_MESSAGE as u64),
        ("MAX_FRAGMENTS", MAX_FRAGMENTS as u64),
        ("TRANSPORT_HEADER_LEN", TRANSPORT_HEADER_LEN as u64),
        ("HANDSHAKE_HEADER_LEN", HANDSHAKE_HEADER_LEN as u64),
        ("MAX_SEALED_BODY", MAX_SEALED_BODY as u64),
        ("ROUTED_HEADER_LEN", ROUTED_HEADER_LEN as u64),
        ("MAX_FRAME_LEN", MAX_FRAME_LEN as u64),
        ("MAX_RELAY_URL_LEN", MAX_RELAY_URL_LEN as u64),
        ("MAX_ERROR_MESSAGE_LEN", MAX_ERROR_MESSAGE_LEN as u64),
        ("MAX_CAPABILITY_LEN", MAX_CAPABILITY_LEN as u64),
        ("REPLAY_WINDOW", REPLAY_WINDOW),
        ("REKEY_AFTER_MESSAGES", REKEY_AFTER_MESSAGES),
        ("REKEY_AFTER_MS", REKEY_AFTER_MS),
        ("REJECT_AFTER_MESSAGES", REJECT_AFTER_MESSAGES),
        ("SESSION_GRACE_MS", SESSION_GRACE_MS),
        ("HANDSHAKE_TIMEOUT_MS", HANDSHAKE_TIMEOUT_MS),
        ("PARKED_HANDSHAKE_TIMEOUT_MS", PARKED_HANDSHAKE_TIMEOUT_MS),
        ("MAX_PENDING_PER_PEER", MAX_PENDING_PER_PEER as u64),
        (
            "MAX_REASSEMBLY_BYTES_PER_PEER",
            MAX_REASSEMBLY_BYTES_PER_PEER as u64,
        ),
        ("REASSEMBLY_TIMEOUT_MS", REASSEMBLY_TIMEOUT_MS),
        ("AUTH_TIMEOUT_MS", AUTH_TIMEOUT_MS),
        ("RESUME_TOKEN_TTL_MS", RESUME_TOKEN_TTL_MS),
        ("HEARTBEAT_INTERVAL_MS", HEARTBEAT_INTERVAL_MS),
        ("HEARTBEAT_MISSES", u64::from(HEARTBEAT_MISSES)),
        ("MAX_CARD_LEN", MAX_CARD_LEN as u64),
        ("REGISTRY_REQUEST_SKEW_MS", REGISTRY_REQUEST_SKEW_MS),
        ("MAX_CARD_NAME_LEN", MAX_CARD_NAME_LEN as u64),
        ("MAX_CARD_DESCRIPTION_LEN", MAX_CARD_DESCRIPTION_LEN as u64),
        ("MAX_CARD_VERSION_LEN", MAX_CARD_VERSION_LEN as u64),
        ("MAX_CARD_SKILLS", MAX_CARD_SKILLS as u64),
        ("MAX_SKILL_TAGS", MAX_SKILL_TAGS as u64),
        ("MAX_SKILL_TAG_LEN", MAX_SKILL_TAG_LEN as u64),
        ("MAX_CARD_URL_LEN", MAX_CARD_URL_LEN as u64),
        ("MAX_MEDIA_TYPE_LEN", MAX_MEDIA_TYPE_LEN as u64),
        ("MAX_JSON_SAFE_INTEGER", MAX_JSON_SAFE_INTEGER),
        (
            "MAX_JSON_SIGNIFICANT_DIGITS",
            MAX_JSON_SIGNIFICANT_DIGITS as u64,
        ),
        (
            "MAX_JSON_DECIMAL_EXPONENT",
            MAX_JSON_DECIMAL_EXPONENT as u64,
        ),
        ("MAX_JSON_DEPTH", MAX_JSON_DEPTH as u64),
        ("MAX_CARD_DEPTH", MAX_CARD_DEPTH as u64),
        (
            "MAX_REVOCATION_REASON_LEN",
            MAX_REVOCATION_REASON_LEN as u64,
        ),
        ("MAX_REVOCATION_LEN", MAX_REVOCATION_LEN as u64),
        ("MAX_REGISTRY_METHOD_LEN", MAX_REGISTRY_METHOD_LEN as u64),
        ("MAX_REGISTRY_PATH_LEN", MAX_REGISTRY_PATH_LEN as u64),
        ("MAX_REGISTRY_HEADER_LEN", MAX_REGISTRY_HEADER_LEN as u64),
    ]
}

const PROTOCOL_MD: &str = include_str!("../../../docs/PROTOCOL.md");

/// Cells of the markdown table rows whose first cell is `` `name` ``.
fn doc_rows() -> std::collections::HashMap<String, Vec<String>> {
    // Only the core's sections: the relay's own limits table (section 12)
    // reuses some names with relay-specific meanings.
    let core = PROTOCOL_MD.split("\n## 12.").next().unwrap_or(PROTOCOL_MD);
    core.lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            let name = cells.first()?.trim_matches('`').to_string();
            Some((name, cells))
        })
        .collect()
}

#[test]
fn protocol_md_lists_every_limit_with_its_value() {
    let source = include_str!("limits.rs");
    let declared: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub const "))
        .filter_map(|l| l.split(':').next())
        .collect();
    let values = limit_values();
    for name in &declared {
        assert!(
            values.iter().any(|(n, _)| n == name),
            "limit_values() misses {name}"
        );
    }
    let rows = doc_rows();
    for (name, value) in values {
        let row = rows
            .get(name)
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no row for `{name}`"));
        let cell = row
            .get(1)
            .map(|c| c.replace([',', '_', ' '], ""))
            .unwrap_or_default();
        assert_eq!(cell, value.to_string(), "docs/PROTOCOL.md value of {name}");
    }
}

#[test]
fn protocol_md_lists_every_error_code() {
    let rows = doc_rows();
    for code in crate::code::ALL_CODES {
        let row = rows
            .get(code.name())
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no row for error `{}`", code.name()));
        assert_eq!(
            row.get(1).map(String::as_str),
            Some(code.as_u16().to_string().as_str()),
            "{}",
            code.name()
        );
        assert_eq!(
            row.get(2).map(String::as_str),
            Some(code.close_code().to_string().as_str()),
            "{}",
            code.name()
        );
    }
    for ctx in SignatureContext::ALL {
        assert!(
            PROTOCOL_MD.contains(&format!("`{}`", ctx.label())),
            "{}",
            ctx.label()
        );
    }
}
