//! Signed registry requests: how an agent proves to a registry that a
//! request (e.g. `DELETE /v1/agents/{id}`) is made on its behalf.
//!
//! Publishing a card needs no separate authorization — the card carries its
//! own signature — but withdrawing one, or anything else a registry must only
//! do for the agent itself, does. There are no accounts or bearer tokens: the
//! agent signs the request it is about to send, and the registry checks the
//! signature against the agent's key, that the signature is for *this*
//! method and path, and that it is fresh.
//!
//! # Signed bytes
//!
//! ```text
//! signed_message(SignatureContext::RegistryRequest, [
//!     agent:        32 bytes, the Ed25519 public key,
//!     method:       ASCII, the HTTP method in upper case ("DELETE"),
//!     path:         ASCII, the request target: path plus "?query" if any,
//!                   exactly as in the HTTP request line ("/v1/agents/did:key:z6Mk…"),
//!     timestamp_ms: 8 bytes, u64 big-endian (Unix milliseconds),
//!     nonce:        16 bytes, random,
//! ])
//! ```
//!
//! # Header form
//!
//! Sent as `Authorization: AgentMesh <value>` ([`REGISTRY_AUTH_SCHEME`]),
//! where `<value>` is seven `.`-separated parts:
//!
//! ```text
//! v1.<did>.<METHOD>.<timestamp>.<nonce>.<signature>.<path>
//! ```
//!
//! - `v1` — the format version;
//! - `<did>` — the agent's `did:key:z…` (contains no `.`);
//! - `<METHOD>` — 1 to [`MAX_REGISTRY_METHOD_LEN`] characters `A`–`Z`;
//! - `<timestamp>` — Unix milliseconds in decimal, no sign, no leading zeros;
//! - `<nonce>` — the 16 nonce bytes, base64url without padding (22 chars);
//! - `<signature>` — the 64 signature bytes, base64url without padding
//!   (86 chars);
//! - `<path>` — the signed request target, verbatim: it starts with `/`, is
//!   printable ASCII without spaces (0x21–0x7E), at most
//!   [`MAX_REGISTRY_PATH_LEN`] bytes, and being last it may itself contain
//!   `.`.
//!
//! Every request has exactly one header form, so the text is unambiguous
//! both ways.
//!
//! # What the registry must still do
//!
//! [`RegistryRequest::verify`] checks the signature, the target and that
//! `|now − timestamp| ≤` [`REGISTRY_REQUEST_SKEW_MS`]. It cannot stop the
//! same request from being replayed within that window: the server must
//! remember each accepted `(agent, nonce)` for at least twice the allowed
//! skew (2 × [`REGISTRY_REQUEST_SKEW_MS`] after it was first accepted) and
//! refuse repeats. After that, the timestamp check refuses the request anyway.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::identity::{AgentId, Identity, Signature};
use crate::limits::{
    MAX_REGISTRY_HEADER_LEN, MAX_REGISTRY_METHOD_LEN, MAX_REGISTRY_PATH_LEN,
    REGISTRY_REQUEST_SKEW_MS,
};
use crate::sign::SignatureContext;

/// The HTTP `Authorization` scheme that carries a signed registry request.
pub const REGISTRY_AUTH_SCHEME: &str = "AgentMesh";

/// Version tag that starts the header form.
const HEADER_VERSION: &str = "v1";

/// Why a registry request could not be made, read or accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryRequestError {
    /// The method is not 1 to 16 upper-case ASCII letters.
    #[error("HTTP method must be 1 to {MAX_REGISTRY_METHOD_LEN} letters A-Z")]
    InvalidMethod,
    /// The path is empty, too long, does not start with `/`, or has bytes
    /// outside printable ASCII.
    #[error(
        "request path must start with '/', be printable ASCII without spaces and at most {MAX_REGISTRY_PATH_LEN} bytes"
    )]
    InvalidPath,
    /// The header text is not in the documented form; says which part.
    #[error("malformed registry authorization: {0}")]
    Malformed(&'static str),
    /// The request was signed for another method or path.
    #[error("request was signed for {method} {path}")]
    WrongTarget {
        /// The method it was signed for.
        method: String,
        /// The path it was signed for.
        path: String,
    },
    /// The timestamp is further than [`REGISTRY_REQUEST_SKEW_MS`] from the
    /// registry's clock.
    #[error("request timestamp is {skew_ms} ms from the registry's clock (limit {REGISTRY_REQUEST_SKEW_MS})")]
    Stale {
        /// Distance between the timestamp and the registry's clock.
        skew_ms: u64,
    },
    /// The signature does not verify with the agent's key.
    #[error("registry request signature does not verify")]
    BadSignature,
    /// The platform's random number generator failed (making a nonce).
    #[error("random number generator failed: {0}")]
    Randomness(String),
}

/// A registry request signed by the agent it is made for.
///
/// Made by [`RegistryRequest::sign`] or read by
/// [`RegistryRequest::from_header_value`]; a value that was read is not yet
/// trusted — call [`RegistryRequest::verify`].
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryRequest {
    agent: AgentId,
    method: String,
    path: String,
    timestamp_ms: u64,
    nonce: [u8; 16],
    signature: Signature,
}

impl RegistryRequest {
    /// Signs `method path` for `identity` at `timestamp_ms` (Unix ms), with
    /// a caller-chosen random `nonce`.
    pub fn sign(
        identity: &Identity,
        method: &str,
        path: &str,
        timestamp_ms: u64,
        nonce: [u8; 16],
    ) -> Result<Self, RegistryRequestError> {
        check_method(method)?;
        check_path(path)?;
        let agent = identity.agent_id();
        let ts = timestamp_ms.to_be_bytes();
        let signature = identity.sign(
            SignatureContext::RegistryRequest,
            &signed_fields(&agent, method, path, &ts, &nonce),
        );
        Ok(RegistryRequest {
            agent,
            method: method.to_owned(),
            path: path.to_owned(),
            timestamp_ms,
            nonce,
            signature,
        })
    }

    /// Like [`RegistryRequest::sign`], with a nonce from `getrandom`.
    pub fn new_random(
        identity: &Identity,
        method: &str,
        path: &str,
        timestamp_ms: u64,
    ) -> Result<Self, RegistryRequestError> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| RegistryRequestError::Randomness(e.to_string()))?;
        Self::sign(identity, method, path, timestamp_ms, nonce)
    }

    /// Accepts the request if it was signed by [`Self::agent`] for exactly
    /// `expected_method` and `expected_path` and its timestamp is within
    /// [`REGISTRY_REQUEST_SKEW_MS`] of `now_ms` (Unix ms). Nonce replay is
    /// the caller's to check (see the module docs).
    pub fn verify(
        &self,
        expected_method: &str,
        expected_path: &str,
        now_ms: u64,
    ) -> Result<(), RegistryRequestError> {
        if self.method != expected_method || self.path != expected_path {
            return Err(RegistryRequestError::WrongTarget {
                method: self.method.clone(),
                path: self.path.clone(),
            });
        }
        let skew_ms = now_ms.abs_diff(self.timestamp_ms);
        if skew_ms > REGISTRY_REQUEST_SKEW_MS {
            return Err(RegistryRequestError::Stale { skew_ms });
        }
        let ts = self.timestamp_ms.to_be_bytes();
        self.agent
            .verify(
                SignatureContext::RegistryRequest,
                &signed_fields(&self.agent, &self.method, &self.path, &ts, &self.nonce),
                &self.signature,
            )
            .map_err(|_| RegistryRequestError::BadSignature)
    }

    /// The agent the request is made for.
    pub fn agent(&self) -> AgentId {
        self.agent
    }

    /// The signed HTTP method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The signed request target (path and query).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// When the request was signed (Unix milliseconds).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// The request nonce (what the registry remembers against replay).
    pub fn nonce(&self) -> [u8; 16] {
        self.nonce
    }

    /// The signature.
    pub fn signature(&self) -> Signature {
        self.signature
    }

    /// The header form `v1.<did>.<METHOD>.<ts>.<nonce>.<sig>.<path>`.
    pub fn to_header_value(&self) -> String {
        format!(
            "{HEADER_VERSION}.{}.{}.{}.{}.{}.{}",
            self.agent.to_did(),
            self.method,
            self.timestamp_ms,
            URL_SAFE_NO_PAD.encode(self.nonce),
            URL_SAFE_NO_PAD.encode(self.signature.to_bytes()),
            self.path,
        )
    }

    /// Reads the header form (not yet verified).
    pub fn from_header_value(value: &str) -> Result<Self, RegistryRequestError> {
        use RegistryRequestError::Malformed;
        if value.len() > MAX_REGISTRY_HEADER_LEN {
            return Err(Malformed("too long"));
        }
        let mut parts = value.splitn(7, '.');
        let mut next = |what| parts.next().ok_or(Malformed(what));
        if next("missing version")? != HEADER_VERSION {
            return Err(Malformed("unknown version (expected v1)"));
        }
        let agent = next("missing agent")?
            .parse::<AgentId>()
            .map_err(|_| Malformed("agent is not a did:key"))?;
        let method = next("missing method")?;
        let timestamp_ms = parse_decimal(next("missing timestamp")?)?;
        let nonce = URL_SAFE_NO_PAD
            .decode(next("missing nonce")?)
            .ok()
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or(Malformed("nonce is not base64url of 16 bytes"))?;
        let signature = URL_SAFE_NO_PAD
            .decode(next("missing signature")?)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(Malformed("signature is not base64url of 64 bytes"))?;
        let path = next("missing path")?;
        check_method(method)?;
        check_path(path)?;
        Ok(RegistryRequest {
            agent,
            method: method.to_owned(),
            path: path.to_owned(),
            timestamp_ms,
            nonce,
            signature,
        })
    }

    /// The whole `Authorization` header value: `AgentMesh <header form>`.
    pub fn to_authorization(&self) -> String {
        format!("{REGISTRY_AUTH_SCHEME} {}", self.to_header_value())
    }

    /// Reads an `Authorization` header value written by
    /// [`Self::to_authorization`] (scheme matched case-insensitively, as
    /// HTTP requires).
    pub fn from_authorization(header: &str) -> Result<Self, RegistryRequestError> {
        let (scheme, value) = header
            .split_once(' ')
            .ok_or(RegistryRequestError::Malformed(
                "expected `AgentMesh <value>`",
            ))?;
        if !scheme.eq_ignore_ascii_case(REGISTRY_AUTH_SCHEME) {
            return Err(RegistryRequestError::Malformed(
                "authorization scheme is not AgentMesh",
            ));
        }
        Self::from_header_value(value.trim_start_matches(' '))
    }
}

impl fmt::Debug for RegistryRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryRequest")
            .field("agent", &self.agent)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("timestamp_ms", &self.timestamp_ms)
            .finish_non_exhaustive()
    }
}

fn signed_fields<'a>(
    agent: &'a AgentId,
    method: &'a str,
    path: &'a str,
    ts: &'a [u8; 8],
    nonce: &'a [u8; 16],
) -> [&'a [u8]; 5] {
    [
        agent.as_bytes(),
        method.as_bytes(),
        path.as_bytes(),
        ts,
        nonce,
    ]
}

fn check_method(method: &str) -> Result<(), RegistryRequestError> {
    let ok = !method.is_empty()
        && method.len() <= MAX_REGISTRY_METHOD_LEN
        && method.bytes().all(|b| b.is_ascii_uppercase());
    ok.then_some(()).ok_or(RegistryRequestError::InvalidMethod)
}

fn check_path(path: &str) -> Result<(), RegistryRequestError> {
    let ok = path.starts_with('/')
        && path.len() <= MAX_REGISTRY_PATH_LEN
        && path.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(()).ok_or(RegistryRequestError::InvalidPath)
}

/// Canonical decimal only (one spelling per number): digits, no leading
/// zeros, fits in a u64.
fn parse_decimal(s: &str) -> Result<u64, RegistryRequestError> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical
        .then(|| s.parse::<u64>().ok())
        .flatten()
        .ok_or(RegistryRequestError::Malformed(
            "timestamp is not a canonical decimal u64",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn identity(n: u8) -> Identity {
        Identity::from_secret_bytes(&[n; 32])
    }

    const NOW: u64 = 1_700_000_000_000;

    fn delete(id: &Identity) -> (RegistryRequest, String) {
        let path = format!("/v1/agents/{}", id.agent_id());
        let req = RegistryRequest::sign(id, "DELETE", &path, NOW, [7; 16]).unwrap();
        (req, path)
    }

    #[test]
    fn signs_and_verifies() {
        let id = identity(1);
        let (req, path) = delete(&id);
        req.verify("DELETE", &path, NOW).unwrap();
        req.verify("DELETE", &path, NOW + REGISTRY_REQUEST_SKEW_MS)
            .unwrap();
        req.verify("DELETE", &path, NOW - REGISTRY_REQUEST_SKEW_MS)
            .unwrap();
        assert_eq!(req.agent(), id.agent_id());
        let a = RegistryRequest::new_random(&id, "DELETE", &path, NOW).unwrap();
        let b = RegistryRequest::new_random(&id, "DELETE", &path, NOW).unwrap();
        assert_ne!(a.nonce(), b.nonce());
        a.verify("DELETE", &path, NOW).unwrap();
    }

    #[test]
    fn wrong_target_and_stale_are_refused() {
        let id = identity(2);
        let (req, path) = delete(&id);
        assert!(matches!(
            req.verify("GET", &path, NOW),
            Err(RegistryRequestError::WrongTarget { .. })
        ));
        assert!(matches!(
            req.verify("DELETE", "/v1/agents/someone-else", NOW),
            Err(RegistryRequestError::WrongTarget { .. })
        ));
        assert_eq!(
            req.verify("DELETE", &path, NOW + REGISTRY_REQUEST_SKEW_MS + 1),
            Err(RegistryRequestError::Stale {
                skew_ms: REGISTRY_REQUEST_SKEW_MS + 1
            })
        );
        assert!(matches!(
            req.verify("DELETE", &path, NOW - REGISTRY_REQUEST_SKEW_MS - 1),
            Err(RegistryRequestError::Stale { .. })
        ));
        assert!(matches!(
            req.verify("DELETE", &path, 0),
            Err(RegistryRequestError::Stale { .. })
        ));
    }

    #[test]
    fn tampering_with_any_field_fails() {
        let id = identity(3);
        let (req, path) = delete(&id);
        let mut t = req.clone();
        t.agent = identity(4).agent_id();
        assert_eq!(
            t.verify("DELETE", &path, NOW),
            Err(RegistryRequestError::BadSignature)
        );
        let mut t = req.clone();
        t.timestamp_ms += 1;
        assert_eq!(
            t.verify("DELETE", &path, NOW),
            Err(RegistryRequestError::BadSignature)
        );
        let mut t = req.clone();
        t.nonce[15] ^= 1;
        assert_eq!(
            t.verify("DELETE", &path, NOW),
            Err(RegistryRequestError::BadSignature)
        );
        let mut t = req.clone();
        t.signature.0[10] ^= 1;
        assert_eq!(
            t.verify("DELETE", &path, NOW),
            Err(RegistryRequestError::BadSignature)
        );
        let mut t = req.clone();
        t.method = "PUT".into();
        assert_eq!(
            t.verify("PUT", &path, NOW),
            Err(RegistryRequestError::BadSignature)
        );
        let mut t = req.clone();
        t.path = "/v1/agents/x".into();
        assert_eq!(
            t.verify("DELETE", "/v1/agents/x", NOW),
            Err(RegistryRequestError::BadSignature)
        );
        // Signed by another key for this agent's path.
        let other = RegistryRequest::sign(&identity(4), "DELETE", &path, NOW, [7; 16]).unwrap();
        let mut t = other;
        t.agent = id.agent_id();
        assert_eq!(
            t.verify("DELETE", &path, NOW),
            Err(RegistryRequestError::BadSignature)
        );
    }

    #[test]
    fn header_round_trip() {
        let id = identity(5);
        let path = "/v1/agents/x.y?z=1.2";
        let req = RegistryRequest::sign(&id, "DELETE", path, NOW, [9; 16]).unwrap();
        let header = req.to_header_value();
        let parts: Vec<&str> = header.splitn(7, '.').collect();
        assert_eq!(parts[0], "v1");
        assert_eq!(parts[1], id.agent_id().to_did());
        assert_eq!(parts[2], "DELETE");
        assert_eq!(parts[3], NOW.to_string());
        assert_eq!(parts[4].len(), 22);
        assert_eq!(parts[5].len(), 86);
        assert_eq!(parts[6], path);
        let back = RegistryRequest::from_header_value(&header).unwrap();
        assert_eq!(back, req);
        back.verify("DELETE", path, NOW).unwrap();
        let auth = req.to_authorization();
        assert!(auth.starts_with("AgentMesh v1."));
        assert_eq!(RegistryRequest::from_authorization(&auth).unwrap(), req);
        assert_eq!(
            RegistryRequest::from_authorization(&auth.replace("AgentMesh", "agentmesh")).unwrap(),
            req
        );
        assert!(RegistryRequest::from_authorization(&format!("Bearer {header}")).is_err());
        assert!(format!("{req:?}").contains("DELETE"));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let id = identity(6);
        let (req, _) = delete(&id);
        let good = req.to_header_value();
        let parts: Vec<String> = good.splitn(7, '.').map(str::to_owned).collect();
        let with = |i: usize, v: &str| {
            let mut p = parts.clone();
            p[i] = v.to_owned();
            p.join(".")
        };
        let bad = [
            with(0, "v2"),
            with(1, "did:key:zBAD"),
            with(2, "delete"),
            with(2, ""),
            with(3, "0123"),
            with(3, "+1"),
            with(3, "99999999999999999999999"),
            with(4, "AAAA"),
            with(5, &parts[5][..85]),
            with(6, "no-slash"),
            with(6, "/with space"),
            parts[..6].join("."),
            String::new(),
            "v1".into(),
            "x".repeat(MAX_REGISTRY_HEADER_LEN + 1),
        ];
        for b in bad {
            assert!(RegistryRequest::from_header_value(&b).is_err(), "{b}");
        }
        assert_eq!(
            RegistryRequest::sign(&id, "delete", "/x", NOW, [0; 16]),
            Err(RegistryRequestError::InvalidMethod)
        );
        assert_eq!(
            RegistryRequest::sign(&id, "DELETE", "x", NOW, [0; 16]),
            Err(RegistryRequestError::InvalidPath)
        );
        assert_eq!(parse_decimal("0"), Ok(0));
        assert_eq!(parse_decimal(&u64::MAX.to_string()), Ok(u64::MAX));
    }

    proptest! {
        #[test]
        fn header_parsing_never_panics(s in "[v1.:a-zA-Z0-9_/?=-]{0,200}") {
            let _ = RegistryRequest::from_header_value(&s);
        }

        #[test]
        fn header_round_trips(
            method in "[A-Z]{1,16}",
            path in "/[!-~]{0,100}",
            ts in any::<u64>(),
            nonce in any::<[u8; 16]>(),
        ) {
            let req = RegistryRequest::sign(&identity(7), &method, &path, ts, nonce).unwrap();
            let back = RegistryRequest::from_header_value(&req.to_header_value()).unwrap();
            prop_assert_eq!(&back, &req);
            prop_assert!(back.verify(&method, &path, ts).is_ok());
        }
    }
}
