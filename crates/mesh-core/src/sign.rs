//! Domain-separated signatures.
//!
//! Nothing in agent-mesh signs raw bytes. Every signature is over
//!
//! ```text
//! u8 len(label) || label || for each field: u32-be len(field) || field
//! ```
//!
//! where `label` is one of the [`SignatureContext`] strings. The context names
//! the purpose, and the length prefixes make the field split unambiguous, so
//! a signature made for one purpose can never be replayed as another, and a
//! peer that chooses some of the fields (a relay choosing a challenge) cannot
//! steer the signer into producing a statement of a different kind.
//!
//! The signing half is crate-private on purpose: callers sign through the
//! typed statements (relay auth, card, revocation, Noise binding, registry
//! request) that fix the context for them.

/// The purposes a key signs for, each with its own context label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureContext {
    /// Answer to a relay's auth challenge, bound to the relay's id.
    RelayAuth,
    /// An Agent Card published to the registry.
    Card,
    /// A statement revoking the signing key itself.
    Revocation,
    /// Binding of a Noise static key to the identity, inside a handshake.
    NoiseBinding,
    /// A request to the registry made on the key's behalf (e.g. delete card).
    RegistryRequest,
}

impl SignatureContext {
    /// Every context, for documentation and test vectors.
    pub const ALL: [SignatureContext; 5] = [
        SignatureContext::RelayAuth,
        SignatureContext::Card,
        SignatureContext::Revocation,
        SignatureContext::NoiseBinding,
        SignatureContext::RegistryRequest,
    ];

    /// The label that starts every message signed in this context.
    pub const fn label(self) -> &'static str {
        match self {
            SignatureContext::RelayAuth => "agent-mesh/v1/relay-auth",
            SignatureContext::Card => "agent-mesh/v1/card",
            SignatureContext::Revocation => "agent-mesh/v1/revocation",
            SignatureContext::NoiseBinding => "agent-mesh/v1/noise-binding",
            SignatureContext::RegistryRequest => "agent-mesh/v1/registry-request",
        }
    }
}

/// Builds the exact byte string that is signed for `ctx` over `fields`.
///
/// Public so that other implementations and the test vectors can check the
/// layout; there is still no public way to *sign* it.
pub fn signed_message(ctx: SignatureContext, fields: &[&[u8]]) -> Vec<u8> {
    let label = ctx.label().as_bytes();
    let len = 1 + label.len() + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    // Labels are short constants; the cast cannot truncate.
    out.push(label.len() as u8);
    out.extend_from_slice(label);
    for field in fields {
        let n = u32::try_from(field.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_not_prefixes_of_each_other() {
        for a in SignatureContext::ALL {
            for b in SignatureContext::ALL {
                if a != b {
                    assert!(!a.label().starts_with(b.label()), "{a:?} / {b:?}");
                }
            }
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let a = signed_message(SignatureContext::Card, &[b"ab", b"c"]);
        let b = signed_message(SignatureContext::Card, &[b"a", b"bc"]);
        assert_ne!(a, b);
    }
}
