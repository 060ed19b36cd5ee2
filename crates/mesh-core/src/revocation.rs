//! Revocation: a key's signed statement that it must no longer be trusted.
//!
//! When a secret leaks, or an agent is retired, its owner signs a
//! [`Revocation`] *with the key being revoked* and gives it to the relay and
//! the registry. The relay then refuses the key at auth and drops its
//! routes; the registry withdraws its card; both persist the statement.
//! Signing with the revoked key itself means anyone who can revoke could also
//! have impersonated the agent — so no third party can revoke someone else,
//! and a thief who holds the key can at worst take it out of service, which
//! is what its owner wants anyway.
//!
//! # Signed bytes
//!
//! ```text
//! signed_message(SignatureContext::Revocation, [
//!     agent:         32 bytes, the Ed25519 public key,
//!     revoked_at_ms: 8 bytes, u64 big-endian (Unix milliseconds),
//!     reason:        UTF-8, 0..=256 bytes,
//! ])
//! ```
//!
//! # JSON form
//!
//! ```json
//! {"agentId": "did:key:z6Mk…", "revokedAt": 1700000000000,
//!  "reason": "key leaked", "signature": "<base64url, no padding, 86 chars>"}
//! ```
//!
//! All four members are required, unknown members are refused, `revokedAt`
//! is at most 2^53 − 1 so that it is exact in every JSON reader, and the
//! whole text is at most [`MAX_REVOCATION_LEN`] bytes. Reading the JSON
//! verifies the signature: a [`Revocation`] value is always a valid one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::identity::{AgentId, Identity, Signature};
use crate::json::{Fields, Number, Object, ShapeError, Value};
use crate::limits::{MAX_JSON_SAFE_INTEGER, MAX_REVOCATION_LEN, MAX_REVOCATION_REASON_LEN};
use crate::sign::SignatureContext;

/// Why a revocation could not be made, read or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevocationError {
    /// The reason is longer than [`MAX_REVOCATION_REASON_LEN`] bytes.
    #[error("revocation reason is {0} bytes; the limit is {MAX_REVOCATION_REASON_LEN}")]
    ReasonTooLong(usize),
    /// The time is above 2^53 − 1 and would not survive JSON exactly.
    #[error("revocation time {0} is above 2^53 - 1")]
    TimeOutOfRange(u64),
    /// The JSON text is larger than [`MAX_REVOCATION_LEN`] bytes.
    #[error("revocation is {0} bytes; the limit is {MAX_REVOCATION_LEN}")]
    TooLarge(usize),
    /// The JSON is malformed, of the wrong shape, or has unknown members.
    #[error("revocation JSON: {0}")]
    Json(String),
    /// The signature member is not base64url (no padding) of 64 bytes.
    #[error("revocation signature is not base64url of 64 bytes")]
    MalformedSignature,
    /// The signature does not verify with the revoked key.
    #[error("revocation signature does not verify")]
    BadSignature,
}

/// A signed statement that `agent`'s key is revoked as of `revoked_at_ms`.
///
/// Only constructible by signing ([`Revocation::new`]) or by reading a
/// verified statement ([`Revocation::from_json`]), so holding one means
/// holding a valid one. Its JSON is read only by the §7.1 rules (there is
/// no serde path around them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    agent: AgentId,
    revoked_at_ms: u64,
    reason: String,
    signature: Signature,
}

impl Revocation {
    /// Revokes `identity`'s own key, effective `revoked_at_ms` (Unix ms),
    /// with a human-readable `reason` (may be empty).
    pub fn new(
        identity: &Identity,
        revoked_at_ms: u64,
        reason: impl Into<String>,
    ) -> Result<Self, RevocationError> {
        let reason = reason.into();
        check_parts(revoked_at_ms, &reason)?;
        let agent = identity.agent_id();
        let signature = identity.sign(
            SignatureContext::Revocation,
            &signed_fields(&agent, &revoked_at_ms.to_be_bytes(), &reason),
        );
        Ok(Revocation {
            agent,
            revoked_at_ms,
            reason,
            signature,
        })
    }

    /// Checks the statement's limits and its signature by the revoked key.
    pub fn verify(&self) -> Result<(), RevocationError> {
        check_parts(self.revoked_at_ms, &self.reason)?;
        self.agent
            .verify(
                SignatureContext::Revocation,
                &signed_fields(&self.agent, &self.revoked_at_ms.to_be_bytes(), &self.reason),
                &self.signature,
            )
            .map_err(|_| RevocationError::BadSignature)
    }

    /// The revoked agent.
    pub fn agent(&self) -> AgentId {
        self.agent
    }

    /// When the revocation takes effect (Unix milliseconds).
    pub fn revoked_at_ms(&self) -> u64 {
        self.revoked_at_ms
    }

    /// Why the key was revoked.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The signature by the revoked key.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// The JSON form (see the module docs).
    pub fn to_json(&self) -> String {
        let mut o = Object::new();
        o.insert("agentId", self.agent.to_did());
        // `check_parts` keeps the time within the range a JSON number holds.
        o.insert("revokedAt", Number::from_u64(self.revoked_at_ms));
        o.insert("reason", self.reason.as_str());
        o.insert(
            "signature",
            URL_SAFE_NO_PAD.encode(self.signature.to_bytes()),
        );
        Value::Object(o).to_string()
    }

    /// Reads and verifies the JSON form.
    pub fn from_json(text: &str) -> Result<Self, RevocationError> {
        if text.len() > MAX_REVOCATION_LEN {
            return Err(RevocationError::TooLarge(text.len()));
        }
        let json = |e: &dyn std::fmt::Display| RevocationError::Json(e.to_string());
        let value = Value::parse(text.as_bytes()).map_err(|e| json(&e))?;
        let wire = Fields::read(value, "", |f| {
            let agent_id = f.string("agentId")?;
            Ok(RevocationJson {
                agent_id: agent_id
                    .parse()
                    .map_err(|e| ShapeError::new("agentId", format!("{e}")))?,
                revoked_at: f.u64("revokedAt")?,
                reason: f.string("reason")?,
                signature: f.string("signature")?,
            })
        });
        Revocation::try_from(wire.map_err(|e| json(&e))?)
    }
}

fn check_parts(revoked_at_ms: u64, reason: &str) -> Result<(), RevocationError> {
    if reason.len() > MAX_REVOCATION_REASON_LEN {
        return Err(RevocationError::ReasonTooLong(reason.len()));
    }
    if revoked_at_ms > MAX_JSON_SAFE_INTEGER {
        return Err(RevocationError::TimeOutOfRange(revoked_at_ms));
    }
    Ok(())
}

fn signed_fields<'a>(agent: &'a AgentId, at: &'a [u8; 8], reason: &'a str) -> [&'a [u8]; 3] {
    [agent.as_bytes(), at, reason.as_bytes()]
}

/// The JSON members of a revocation, as [`Revocation::from_json`] reads
/// them, before the signature is checked.
struct RevocationJson {
    agent_id: AgentId,
    revoked_at: u64,
    reason: String,
    signature: String,
}

impl TryFrom<RevocationJson> for Revocation {
    type Error = RevocationError;

    fn try_from(w: RevocationJson) -> Result<Self, RevocationError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(&w.signature)
            .map_err(|_| RevocationError::MalformedSignature)?;
        let signature =
            Signature::from_slice(&bytes).map_err(|_| RevocationError::MalformedSignature)?;
        let r = Revocation {
            agent: w.agent_id,
            revoked_at_ms: w.revoked_at,
            reason: w.reason,
            signature,
        };
        r.verify()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn identity(n: u8) -> Identity {
        Identity::from_secret_bytes(&[n; 32])
    }

    #[test]
    fn signs_verifies_and_round_trips() {
        let id = identity(1);
        let r = Revocation::new(&id, 1_700_000_000_000, "key leaked").unwrap();
        r.verify().unwrap();
        assert_eq!(r.agent(), id.agent_id());
        assert_eq!(r.reason(), "key leaked");
        let text = r.to_json();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({
                "agentId": id.agent_id().to_did(),
                "revokedAt": 1_700_000_000_000u64,
                "reason": "key leaked",
                "signature": URL_SAFE_NO_PAD.encode(r.signature().to_bytes()),
            })
        );
        assert_eq!(Revocation::from_json(&text).unwrap(), r);
        Revocation::new(&id, 0, "").unwrap().verify().unwrap();
    }

    #[test]
    fn tampering_with_any_field_fails() {
        let id = identity(2);
        let r = Revocation::new(&id, 1000, "retired").unwrap();
        let mut t = r.clone();
        t.agent = identity(3).agent_id();
        assert_eq!(t.verify(), Err(RevocationError::BadSignature));
        let mut t = r.clone();
        t.revoked_at_ms += 1;
        assert_eq!(t.verify(), Err(RevocationError::BadSignature));
        let mut t = r.clone();
        t.reason.push('!');
        assert_eq!(t.verify(), Err(RevocationError::BadSignature));
        let mut t = r.clone();
        t.signature.0[0] ^= 1;
        assert_eq!(t.verify(), Err(RevocationError::BadSignature));

        let v: Value = serde_json::from_str(&r.to_json()).unwrap();
        let edits: [(&str, Value); 4] = [
            ("agentId", json!(identity(3).agent_id().to_did())),
            ("revokedAt", json!(1001)),
            ("reason", json!("retired!")),
            (
                "signature",
                json!(URL_SAFE_NO_PAD.encode(
                    identity(2)
                        .sign(SignatureContext::Revocation, &[b"x"])
                        .to_bytes()
                )),
            ),
        ];
        for (key, new) in edits {
            let mut m = v.clone();
            m[key] = new;
            assert_eq!(
                Revocation::from_json(&m.to_string()),
                Err(RevocationError::BadSignature),
                "{key}"
            );
        }
    }

    #[test]
    fn signed_by_another_key_fails() {
        let victim = identity(4);
        let attacker = identity(5);
        let at = 7u64.to_be_bytes();
        let victim_id = victim.agent_id();
        let fields = signed_fields(&victim_id, &at, "hijack");
        let forged = Revocation {
            agent: victim.agent_id(),
            revoked_at_ms: 7,
            reason: "hijack".into(),
            signature: attacker.sign(SignatureContext::Revocation, &fields),
        };
        assert_eq!(forged.verify(), Err(RevocationError::BadSignature));
        assert_eq!(
            Revocation::from_json(&forged.to_json()),
            Err(RevocationError::BadSignature)
        );
        // A signature by the right key in another context does not count.
        let other_ctx = Revocation {
            agent: victim.agent_id(),
            revoked_at_ms: 7,
            reason: "hijack".into(),
            signature: victim.sign(SignatureContext::Card, &fields),
        };
        assert_eq!(other_ctx.verify(), Err(RevocationError::BadSignature));
    }

    #[test]
    fn limits_and_shape() {
        let id = identity(6);
        assert_eq!(
            Revocation::new(&id, 0, "r".repeat(MAX_REVOCATION_REASON_LEN + 1)),
            Err(RevocationError::ReasonTooLong(
                MAX_REVOCATION_REASON_LEN + 1
            ))
        );
        assert!(Revocation::new(&id, 0, "r".repeat(MAX_REVOCATION_REASON_LEN)).is_ok());
        assert_eq!(
            Revocation::new(&id, MAX_JSON_SAFE_INTEGER + 1, ""),
            Err(RevocationError::TimeOutOfRange(MAX_JSON_SAFE_INTEGER + 1))
        );
        let mut v: Value =
            serde_json::from_str(&Revocation::new(&id, 5, "x").unwrap().to_json()).unwrap();
        v["extra"] = json!(1);
        assert!(
            matches!(Revocation::from_json(&v.to_string()), Err(RevocationError::Json(m)) if m.contains("unknown field"))
        );
        v.as_object_mut().unwrap().remove("extra");
        v["signature"] = json!("AAAA");
        assert_eq!(
            Revocation::from_json(&v.to_string()),
            Err(RevocationError::MalformedSignature)
        );
        v.as_object_mut().unwrap().remove("reason");
        assert!(matches!(
            Revocation::from_json(&v.to_string()),
            Err(RevocationError::Json(_))
        ));
        let big = " ".repeat(MAX_REVOCATION_LEN + 1);
        assert_eq!(
            Revocation::from_json(&big),
            Err(RevocationError::TooLarge(MAX_REVOCATION_LEN + 1))
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(text in r#"[{}\[\]":,0-9a-zA-Z .\-]{0,200}"#) {
            let _ = Revocation::from_json(&text);
        }

        #[test]
        fn round_trips(at in 0..=MAX_JSON_SAFE_INTEGER, reason in "\\PC{0,40}") {
            let r = Revocation::new(&identity(7), at, reason).unwrap();
            prop_assert_eq!(Revocation::from_json(&r.to_json()).unwrap(), r);
        }
    }
}
