//! Identities: an agent *is* an Ed25519 key.
//!
//! [`Identity`] holds the secret half and is the only thing that can sign;
//! [`AgentId`] is the public half, the address every other part of the mesh
//! routes by. The canonical text form of an `AgentId` is a `did:key`
//! (multibase base58btc of the multicodec `ed25519-pub` prefix `0xed 0x01`
//! followed by the 32 key bytes). Secrets have a text form too: multibase
//! base58btc of the multicodec `ed25519-priv` prefix `0x80 0x26` and the 32
//! secret bytes (the W3C Multikey `secretKeyMultibase` form, starting
//! `z3u2`).

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha512};
use zeroize::{Zeroize, Zeroizing};

use crate::sign::{signed_message, SignatureContext};

/// Multicodec prefix of an Ed25519 public key (varint of 0xed).
const MULTICODEC_ED25519_PUB: [u8; 2] = [0xed, 0x01];
/// Multicodec prefix of an Ed25519 private key (varint of 0x1300).
const MULTICODEC_ED25519_PRIV: [u8; 2] = [0x80, 0x26];
/// Prefix of every `did:key` for agent-mesh identities.
const DID_KEY_PREFIX: &str = "did:key:";

/// Why an identity or agent id could not be read or made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// Raw key material had the wrong number of bytes.
    #[error("expected {expected} key bytes, got {got}")]
    InvalidLength {
        /// Bytes required.
        expected: usize,
        /// Bytes supplied.
        got: usize,
    },
    /// The text is not a `did:key` for an Ed25519 key.
    #[error("not an Ed25519 did:key: {0}")]
    InvalidDid(&'static str),
    /// The bytes are not a usable Ed25519 public key (not on the curve, or
    /// of small order so that signatures by it would prove nothing).
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// The secret's text form could not be decoded.
    #[error("not an agent-mesh secret key: {0}")]
    InvalidSecretText(&'static str),
    /// The platform's random number generator failed.
    #[error("random number generator failed: {0}")]
    Randomness(String),
}

/// Why a signature did not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum SignatureError {
    /// The signature bytes are malformed (wrong length or encoding).
    #[error("malformed signature")]
    Malformed,
    /// The signature does not match the key, context and fields.
    #[error("signature does not verify")]
    Invalid,
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// Reads a signature from exactly 64 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        <[u8; 64]>::try_from(bytes)
            .map(Signature)
            .map_err(|_| SignatureError::Malformed)
    }

    /// The raw signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature(")?;
        for b in &self.0[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// An agent's secret key: the only thing in agent-mesh that can sign.
///
/// The secret is zeroized when the value is dropped. `Debug` never prints it.
/// There is deliberately no method to sign arbitrary bytes; see [`crate::sign`].
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// Generates a new identity from the platform's secure random source
    /// (`getrandom`: the OS natively, WebCrypto in browsers and Workers).
    pub fn generate() -> Result<Self, IdentityError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        getrandom::fill(secret.as_mut()).map_err(|e| IdentityError::Randomness(e.to_string()))?;
        Ok(Self::from_secret_bytes(&secret))
    }

    /// Rebuilds an identity from its 32-byte secret (the Ed25519 seed).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        Identity {
            key: SigningKey::from_bytes(secret),
        }
    }

    /// Rebuilds an identity from a secret given as a byte slice.
    pub fn from_secret_slice(secret: &[u8]) -> Result<Self, IdentityError> {
        let arr: &[u8; 32] = secret
            .try_into()
            .map_err(|_| IdentityError::InvalidLength {
                expected: 32,
                got: secret.len(),
            })?;
        Ok(Self::from_secret_bytes(arr))
    }

    /// Reads the documented text form (`z3u2…`, see the module docs).
    /// Surrounding whitespace is ignored, so a file's trailing newline is fine.
    pub fn from_secret_text(text: &str) -> Result<Self, IdentityError> {
        let body = text
            .trim()
            .strip_prefix('z')
            .ok_or(IdentityError::InvalidSecretText(
                "missing multibase 'z' prefix",
            ))?;
        let decoded = Zeroizing::new(
            bs58::decode(body)
                .into_vec()
                .map_err(|_| IdentityError::InvalidSecretText("not base58btc"))?,
        );
        let rest = decoded.strip_prefix(&MULTICODEC_ED25519_PRIV).ok_or(
            IdentityError::InvalidSecretText("not an ed25519-priv multikey"),
        )?;
        Self::from_secret_slice(rest)
            .map_err(|_| IdentityError::InvalidSecretText("secret must be 32 bytes"))
    }

    /// The 32-byte secret, wrapped so that it is zeroized when dropped.
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The secret in its text form (`z3u2…`), zeroized when dropped.
    pub fn to_secret_text(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(34));
        raw.extend_from_slice(&MULTICODEC_ED25519_PRIV);
        raw.extend_from_slice(self.key.as_bytes());
        let mut text = bs58::encode(raw.as_slice()).into_string();
        let out = Zeroizing::new(format!("z{text}"));
        text.zeroize();
        out
    }

    /// The public identity: what others address this agent by.
    pub fn agent_id(&self) -> AgentId {
        AgentId(self.key.verifying_key().to_bytes())
    }

    /// The pairwise safety number between this identity and `peer`.
    pub fn safety_number(&self, peer: &AgentId) -> SafetyNumber {
        SafetyNumber::between(&self.agent_id(), peer)
    }

    /// Signs `fields` in `ctx`. Crate-private: see the module docs of
    /// [`crate::sign`].
    pub(crate) fn sign(&self, ctx: SignatureContext, fields: &[&[u8]]) -> Signature {
        let msg = signed_message(ctx, fields);
        Signature(self.key.sign(&msg).to_bytes())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("agent_id", &self.agent_id())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// An agent's public identity: a validated Ed25519 public key.
///
/// Cheap to copy, hash and order; the ordering (by key bytes) is what breaks
/// ties when two agents open sessions to each other at once.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId([u8; 32]);

impl AgentId {
    /// Reads an agent id from its 32 public-key bytes, rejecting points that
    /// are not on the curve or have small order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| IdentityError::InvalidPublicKey)?;
        if key.is_weak() {
            return Err(IdentityError::InvalidPublicKey);
        }
        Ok(AgentId(*bytes))
    }

    /// Reads an agent id from a slice that must be 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        let arr: &[u8; 32] = bytes.try_into().map_err(|_| IdentityError::InvalidLength {
            expected: 32,
            got: bytes.len(),
        })?;
        Self::from_bytes(arr)
    }

    /// The 32 public-key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The canonical `did:key:z6Mk…` text form.
    pub fn to_did(&self) -> String {
        let mut raw = [0u8; 34];
        raw[..2].copy_from_slice(&MULTICODEC_ED25519_PUB);
        raw[2..].copy_from_slice(&self.0);
        format!("{DID_KEY_PREFIX}z{}", bs58::encode(raw).into_string())
    }

    /// A short form for display and for names where a did is too long
    /// (12 lowercase hex digits of the key). Not unique enough to address
    /// an agent: use it to *show* an id, never to look one up.
    pub fn short(&self) -> String {
        self.0[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks `sig` over `fields` in `ctx`, with Ed25519's strict rules
    /// (no malleable or small-order signatures).
    pub(crate) fn verify(
        &self,
        ctx: SignatureContext,
        fields: &[&[u8]],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| SignatureError::Invalid)?;
        let msg = signed_message(ctx, fields);
        key.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig.0))
            .map_err(|_| SignatureError::Invalid)
    }
}

/// Lets maps keyed by `AgentId` be queried with raw key bytes, so a relay
/// can route by a header's 32 bytes without decompressing the point (a
/// key found in such a map was validated when it was inserted).
impl std::borrow::Borrow<[u8; 32]> for AgentId {
    fn borrow(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for AgentId {
    type Err = IdentityError;

    /// Parses a `did:key:z…` (surrounding whitespace ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let mb = s
            .strip_prefix(DID_KEY_PREFIX)
            .ok_or(IdentityError::InvalidDid("must start with did:key:"))?;
        let b58 = mb.strip_prefix('z').ok_or(IdentityError::InvalidDid(
            "multibase must be base58btc ('z')",
        ))?;
        let raw = bs58::decode(b58)
            .into_vec()
            .map_err(|_| IdentityError::InvalidDid("invalid base58btc"))?;
        let key = raw
            .strip_prefix(&MULTICODEC_ED25519_PUB)
            .ok_or(IdentityError::InvalidDid(
                "not an ed25519-pub multicodec key",
            ))?;
        if key.len() != 32 {
            return Err(IdentityError::InvalidDid("ed25519 key must be 32 bytes"));
        }
        AgentId::from_slice(key)
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_did())
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", self.short())
    }
}

impl Serialize for AgentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_did())
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Label hashed into every safety number.
const SAFETY_NUMBER_LABEL: &[u8] = b"agent-mesh/v1/safety-number";
/// Hash iterations: makes searching for a key with a colliding number costly.
const SAFETY_NUMBER_ITERATIONS: usize = 1024;

/// A pairwise safety number: 60 digits in 12 groups of 5.
///
/// Both agents compute the same number for their pair (the keys are sorted
/// first), and it changes if either key changes, so two people who compare
/// it out of band — read aloud, or side by side — know no one is in the
/// middle.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SafetyNumber([u32; 12]);

impl SafetyNumber {
    /// The safety number of the pair `a`, `b` (order does not matter).
    pub fn between(a: &AgentId, b: &AgentId) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut digest: [u8; 64] = Sha512::new()
            .chain_update(SAFETY_NUMBER_LABEL)
            .chain_update(lo.as_bytes())
            .chain_update(hi.as_bytes())
            .finalize()
            .into();
        for _ in 0..SAFETY_NUMBER_ITERATIONS {
            digest = Sha512::new()
                .chain_update(digest)
                .chain_update(lo.as_bytes())
                .chain_update(hi.as_bytes())
                .finalize()
                .into();
        }
        let mut groups = [0u32; 12];
        for (i, g) in groups.iter_mut().enumerate() {
            let chunk = &digest[i * 5..i * 5 + 5];
            let v = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            *g = (v % 100_000) as u32;
        }
        SafetyNumber(groups)
    }

    /// The 12 five-digit groups.
    pub fn groups(&self) -> [u32; 12] {
        self.0
    }
}

impl fmt::Display for SafetyNumber {
    /// `12345 67890 …` — twelve groups separated by single spaces.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{g:05}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(n: u8) -> Identity {
        Identity::from_secret_bytes(&[n; 32])
    }

    #[test]
    fn did_round_trip_and_prefix() {
        let id = fixed(1).agent_id();
        let did = id.to_did();
        assert!(did.starts_with("did:key:z6Mk"), "{did}");
        assert_eq!(did.parse::<AgentId>().unwrap(), id);
        assert_eq!(format!(" {did}\n").parse::<AgentId>().unwrap(), id);
    }

    #[test]
    fn did_rejects_wrong_codec_base_and_length() {
        assert!("did:web:example.com".parse::<AgentId>().is_err());
        assert!("did:key:f00".parse::<AgentId>().is_err());
        // x25519 multicodec (0xec) instead of ed25519-pub.
        let mut raw = vec![0xec, 0x01];
        raw.extend_from_slice(fixed(1).agent_id().as_bytes());
        let bad = format!("did:key:z{}", bs58::encode(raw).into_string());
        assert!(bad.parse::<AgentId>().is_err());
        let short = format!(
            "did:key:z{}",
            bs58::encode([0xed, 0x01, 1, 2]).into_string()
        );
        assert!(short.parse::<AgentId>().is_err());
    }

    #[test]
    fn small_order_keys_are_refused() {
        // The identity point encodes as 0x01 followed by zeros.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert_eq!(
            AgentId::from_bytes(&identity_point),
            Err(IdentityError::InvalidPublicKey)
        );
    }

    #[test]
    fn secret_text_round_trip() {
        let id = Identity::generate().unwrap();
        let text = id.to_secret_text();
        assert!(text.starts_with("z3u2"), "{}", text.as_str());
        let back = Identity::from_secret_text(&format!("{}\n", text.as_str())).unwrap();
        assert_eq!(back.agent_id(), id.agent_id());
        assert_eq!(*back.secret_bytes(), *id.secret_bytes());
        assert!(Identity::from_secret_text("z123").is_err());
        assert!(Identity::from_secret_text("hello").is_err());
        assert!(Identity::from_secret_slice(&[0; 31]).is_err());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let id = fixed(7);
        let text = id.to_secret_text();
        let dbg = format!("{id:?}");
        assert!(!dbg.contains(text.as_str()));
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn safety_number_is_symmetric_and_pair_specific() {
        let a = fixed(1).agent_id();
        let b = fixed(2).agent_id();
        let c = fixed(3).agent_id();
        assert_eq!(SafetyNumber::between(&a, &b), SafetyNumber::between(&b, &a));
        assert_ne!(SafetyNumber::between(&a, &b), SafetyNumber::between(&a, &c));
        let text = SafetyNumber::between(&a, &b).to_string();
        assert_eq!(text.len(), 12 * 5 + 11);
        assert!(text.chars().all(|c| c.is_ascii_digit() || c == ' '));
    }

    #[test]
    fn a_signature_for_one_context_never_verifies_in_another() {
        let id = fixed(9);
        let fields: [&[u8]; 2] = [b"field-one", b"field-two"];
        for signed_in in SignatureContext::ALL {
            let sig = id.sign(signed_in, &fields);
            for checked_in in SignatureContext::ALL {
                let ok = id.agent_id().verify(checked_in, &fields, &sig).is_ok();
                assert_eq!(
                    ok,
                    signed_in == checked_in,
                    "{signed_in:?} vs {checked_in:?}"
                );
            }
        }
    }

    #[test]
    fn serde_uses_the_did_form() {
        let id = fixed(4).agent_id();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_did()));
        let back: AgentId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<AgentId>("\"did:key:zzz\"").is_err());
    }
}
