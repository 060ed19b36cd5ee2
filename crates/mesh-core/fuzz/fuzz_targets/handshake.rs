//! Hostile bytes at every step of the end-to-end handshake and session
//! layer. Alice (initiator) and Bob (responder) have fixed identities and
//! Noise keys; the first input byte picks where the rest goes:
//!
//! - 0: message 1 to `Handshake::respond`.
//! - 1: message 2 to a fresh initiator's `read_msg2`.
//! - 2: message 3 to a fresh responder (which answered a real message 1).
//! - 3: an envelope from Alice to a `SessionTable` with no sessions.
//! - 4: an envelope from Alice to a table with an established session.
//! - 5: plaintexts that Alice really seals in that established session
//!   (each a two-byte length then that many bytes), to reach fragment
//!   reassembly and application decoding behind the AEAD.
//!
//! In modes 4 and 5 the established session must survive whatever came in
//! (short of a `SessionUnknown` for it, an unauthenticated hint that
//! deliberately resets it): a message Alice seals afterwards must arrive.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mesh_core::app::AppMessage;
use mesh_core::identity::{AgentId, Identity};
use mesh_core::noise::{Envelope, EnvelopeKind, Established, Handshake, NoiseKeypair};
use mesh_core::session::{SessionConfig, SessionEvent, SessionTable};

/// The session id Alice picks, fixed so the fuzzer can learn it.
const SESSION_ID: u64 = 0x5e55_1015_0000_0001;
/// Largest plaintext one Noise transport message carries.
const MAX_PLAINTEXT: usize = 65_535 - 16;

struct Fixture {
    alice: Identity,
    alice_kp: NoiseKeypair,
    alice_id: AgentId,
    bob: Identity,
    bob_kp: NoiseKeypair,
    bob_id: AgentId,
    /// A real message 1 from Alice to Bob.
    msg1: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let alice = Identity::from_secret_bytes(&[1; 32]);
        let bob = Identity::from_secret_bytes(&[2; 32]);
        let alice_kp = NoiseKeypair::from_secret([11; 32]);
        let bob_kp = NoiseKeypair::from_secret([12; 32]);
        let (alice_id, bob_id) = (alice.agent_id(), bob.agent_id());
        let (_, msg1) = Handshake::initiate(&alice_kp, bob_id).expect("initiate");
        Fixture {
            alice,
            alice_kp,
            alice_id,
            bob,
            bob_kp,
            bob_id,
            msg1,
        }
    })
}

fn bob_table(f: &Fixture) -> SessionTable {
    SessionTable::new(
        f.bob.clone(),
        NoiseKeypair::from_secret([12; 32]),
        SessionConfig::default(),
    )
}

fn handshake_envelope(kind: EnvelopeKind, message: Vec<u8>) -> Bytes {
    Envelope::Handshake {
        kind,
        session_id: SESSION_ID,
        message: message.into(),
    }
    .encode()
}

/// Alice's half of an established session: what she needs to seal.
struct AliceSide {
    session: Established,
    next_nonce: u64,
    next_msg_no: u32,
}

impl AliceSide {
    /// Seals `plaintext` as Alice would and returns the envelope.
    fn seal_raw(&mut self, plaintext: &[u8]) -> Bytes {
        let mut ct = vec![0u8; plaintext.len() + 16];
        let n = self
            .session
            .transport
            .write_message(self.next_nonce, plaintext, &mut ct)
            .expect("seal");
        ct.truncate(n);
        let env = Envelope::Transport {
            session_id: SESSION_ID,
            nonce: self.next_nonce,
            ciphertext: ct.into(),
        };
        self.next_nonce += 1;
        env.encode()
    }

    /// Seals a whole application message as one fragment.
    fn seal_message(&mut self, message: &AppMessage) -> Bytes {
        let mut plain = Vec::new();
        plain.extend_from_slice(&self.next_msg_no.to_be_bytes());
        plain.extend_from_slice(&0u16.to_be_bytes());
        plain.extend_from_slice(&1u16.to_be_bytes());
        plain.extend_from_slice(&message.encode().expect("encode"));
        self.next_msg_no = self.next_msg_no.wrapping_add(1);
        self.seal_raw(&plain)
    }
}

/// Bob's table with an established session to Alice, Alice driven by hand
/// so that the session id is [`SESSION_ID`] and her keys are ours.
fn established(f: &Fixture) -> (SessionTable, AliceSide) {
    let mut bob = bob_table(f);
    let (hs, msg1) = Handshake::initiate(&f.alice_kp, f.bob_id).expect("initiate");
    bob.handle_incoming(
        f.alice_id,
        handshake_envelope(EnvelopeKind::HandshakeInit, msg1),
        0,
    )
    .expect("bob answers message 1");
    let reply = bob.poll_transmit().expect("message 2");
    let Ok(Envelope::Handshake { message: msg2, .. }) = Envelope::decode(reply.body) else {
        panic!("bob's reply is not a handshake envelope");
    };
    let (msg3, est) = hs
        .read_msg2(&f.alice, &f.alice_kp, &msg2)
        .expect("alice reads message 2");
    bob.handle_incoming(
        f.alice_id,
        handshake_envelope(EnvelopeKind::HandshakeFinal, msg3),
        0,
    )
    .expect("bob reads message 3");
    assert!(bob.has_session(&f.alice_id));
    while bob.poll_event().is_some() {}
    while bob.poll_transmit().is_some() {}
    let alice = AliceSide {
        session: est,
        next_nonce: 0,
        next_msg_no: 0,
    };
    (bob, alice)
}

/// Drains everything the table has to say, and runs its timers far ahead.
fn drain(t: &mut SessionTable) {
    while t.poll_transmit().is_some() {}
    while t.poll_event().is_some() {}
    if let Some(at) = t.poll_timeout() {
        t.handle_timeout(at);
    }
    t.handle_timeout(u64::MAX);
    while t.poll_transmit().is_some() {}
    while t.poll_event().is_some() {}
}

/// The session must still carry a message from Alice to Bob.
fn assert_session_works(f: &Fixture, bob: &mut SessionTable, alice: &mut AliceSide) {
    while bob.poll_event().is_some() {}
    let probe = AppMessage::Cancel { req_id: 0xfeed };
    let env = alice.seal_message(&probe);
    bob.handle_incoming(f.alice_id, env, 1)
        .expect("established session must still open Alice's messages");
    match bob.poll_event() {
        Some(SessionEvent::Message { from, message }) => {
            assert_eq!(from, f.alice_id);
            assert_eq!(message, probe);
        }
        other => panic!("expected the probe message, got {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 6 {
        0 => {
            let _ = Handshake::respond(&f.bob, &f.bob_kp, f.alice_id, rest);
        }
        1 => {
            let (hs, _) = Handshake::initiate(&f.alice_kp, f.bob_id).expect("initiate");
            let _ = hs.read_msg2(&f.alice, &f.alice_kp, rest);
        }
        2 => {
            let (hs, _) =
                Handshake::respond(&f.bob, &f.bob_kp, f.alice_id, &f.msg1).expect("respond");
            let _ = hs.read_msg3(rest);
        }
        3 => {
            let mut bob = bob_table(f);
            let _ = bob.handle_incoming(f.alice_id, Bytes::copy_from_slice(rest), 0);
            drain(&mut bob);
        }
        4 => {
            let (mut bob, mut alice) = established(f);
            let body = Bytes::copy_from_slice(rest);
            let resets = matches!(
                Envelope::decode(body.clone()),
                Ok(Envelope::SessionUnknown {
                    session_id: SESSION_ID
                })
            );
            let _ = bob.handle_incoming(f.alice_id, body, 0);
            if !resets {
                assert_session_works(f, &mut bob, &mut alice);
            }
            drain(&mut bob);
        }
        _ => {
            let (mut bob, mut alice) = established(f);
            let mut input = rest;
            while let [hi, lo, tail @ ..] = input {
                let len = usize::from(u16::from_be_bytes([*hi, *lo]))
                    .min(tail.len())
                    .min(MAX_PLAINTEXT);
                let (plain, next) = tail.split_at(len);
                let env = alice.seal_raw(plain);
                let _ = bob.handle_incoming(f.alice_id, env, 0);
                input = next;
            }
            assert_session_works(f, &mut bob, &mut alice);
            drain(&mut bob);
        }
    }
});
