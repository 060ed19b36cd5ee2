//! The card verifier on hostile input. The first byte picks a mode:
//!
//! - 0: the rest is the whole card JSON.
//! - 1: the rest is spliced into a valid signed card, so inputs get past
//!   the JSON parser into shape checks, card rules, integer checks and JCS.
//! - 2: the rest is spliced into an unsigned card which, if it still
//!   parses, is signed; whatever signs must verify.
//!
//! Splice input: two bytes of position, one byte of how many bytes to
//! remove there, then the bytes to insert.
//!
//! Any card that verifies must verify again from its canonical JSON, to an
//! equal card with the same canonical JSON.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mesh_core::card::{AgentCard, CardError, SignedCard, Skill};
use mesh_core::json::Value;
use mesh_core::identity::Identity;

struct Fixture {
    identity: Identity,
    signed: Vec<u8>,
    unsigned: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let identity = Identity::from_secret_bytes(&[3; 32]);
        let card = AgentCard::builder(identity.agent_id(), "wss://relay.example/v1/ws", "Fuzz")
            .description("A card to splice into.")
            .provider("Example Org", "https://example.org")
            .skill(
                Skill::new("summarize.text", "Summarize", "Short summaries")
                    .with_tags(["nlp"])
                    .with_examples(["Summarize this"])
                    .with_input_schema(
                        Value::parse(
                            br#"{"type": "object", "properties": {"n": {"type": "integer", "minimum": -5, "default": 0.5}}}"#,
                        )
                        .expect("schema parses"),
                    ),
            )
            .issued_at(1_700_000_000_000)
            .build();
        let unsigned = card.to_object().to_canonical();
        let signed = card.sign(&identity).expect("card signs").to_json();
        Fixture {
            identity,
            signed,
            unsigned,
        }
    })
}

fn splice(base: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let [p0, p1, cut, insert @ ..] = data else {
        return None;
    };
    let at = usize::from(u16::from_be_bytes([*p0, *p1])) % (base.len() + 1);
    let end = (at + usize::from(*cut)).min(base.len());
    let mut out = Vec::with_capacity(base.len() + insert.len());
    out.extend_from_slice(&base[..at]);
    out.extend_from_slice(insert);
    out.extend_from_slice(&base[end..]);
    Some(out)
}

fn check_verified(card: &SignedCard) {
    let canonical = card.to_json();
    let again =
        SignedCard::from_json(&canonical).expect("canonical JSON of a verified card verifies");
    assert_eq!(&again, card);
    assert_eq!(again.as_json(), canonical.as_slice());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 3 {
        0 => {
            if let Ok(card) = SignedCard::from_json(rest) {
                check_verified(&card);
            }
        }
        1 => {
            if let Some(json) = splice(&f.signed, rest) {
                if let Ok(card) = SignedCard::from_json(&json) {
                    check_verified(&card);
                }
            }
        }
        _ => {
            let Some(json) = splice(&f.unsigned, rest) else {
                return;
            };
            let Ok(card) = Value::parse(&json).map_err(CardError::from).and_then(AgentCard::from_value)
            else {
                return;
            };
            if let Ok(signed) = card.sign(&f.identity) {
                check_verified(&signed);
            }
        }
    }
});
