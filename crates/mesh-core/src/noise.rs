//! The end-to-end handshake: `Noise_XX_25519_ChaChaPoly_BLAKE2s`, with the
//! Noise static key bound to the agent's Ed25519 identity.
//!
//! XX transmits both static keys, encrypted. Each side's handshake payload
//! (message 2 for the responder, message 3 for the initiator) is its
//! *binding*: its `AgentId` and an Ed25519 signature, in the
//! [`SignatureContext::NoiseBinding`] context, over
//!
//! ```text
//! role (b"R" or b"I") || its Noise static public key || handshake hash before the message
//! ```
//!
//! The handshake hash covers the prologue and every earlier message,
//! including the peer's fresh ephemeral key, so a binding cannot be replayed
//! into another handshake, and a man in the middle that substitutes its own
//! static key cannot produce a binding for it. The initiator checks the
//! responder's binding names the `AgentId` it addressed; the responder checks
//! the initiator's binding names the sender the relay stamped, and learns the
//! initiator's identity only from that verified binding.
//!
//! This module also defines the end-to-end envelope: the sealed body of a
//! routed frame (docs/PROTOCOL.md, "End-to-end envelope").

use blake2::{Blake2s256, Digest};
use bytes::{BufMut, Bytes, BytesMut};
use snow::params::{
    BaseChoice, CipherChoice, DHChoice, HandshakeChoice, HandshakeModifierList, HandshakePattern,
    HashChoice, NoiseParams,
};
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};
use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::identity::{AgentId, Identity, Signature};
use crate::limits::{HANDSHAKE_HEADER_LEN, NOISE_MAX_MESSAGE, TRANSPORT_HEADER_LEN};
use crate::sign::SignatureContext;

/// The Noise protocol name.
pub const NOISE_PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// Prologue mixed into every handshake hash.
pub const NOISE_PROLOGUE: &[u8] = b"agent-mesh/v1/noise";
/// Length of a binding payload: agent id (32) + signature (64).
pub const BINDING_LEN: usize = 96;

fn params() -> NoiseParams {
    // Built from its parts rather than parsed from `NOISE_PATTERN`, which
    // would link snow's table of every pattern name into the wasm; a test
    // holds the two equal.
    NoiseParams::new(
        NOISE_PATTERN.to_owned(),
        BaseChoice::Noise,
        HandshakeChoice {
            pattern: HandshakePattern::XX,
            modifiers: HandshakeModifierList { list: Vec::new() },
        },
        DHChoice::Curve25519,
        CipherChoice::ChaChaPoly,
        HashChoice::Blake2s,
    )
}

/// snow's default primitives for Noise_XX_25519_ChaChaPoly_BLAKE2s, except
/// that BLAKE2s is resolved here: snow's `DefaultResolver` links BLAKE2b as
/// well (about 7 KB of WebAssembly that this suite never calls). The hash is
/// the same `blake2` crate's BLAKE2s-256 snow itself wraps; HMAC and HKDF
/// stay snow's. The tests hold it to snow's own resolver, byte for byte.
struct XxResolver;

impl CryptoResolver for XxResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::Blake2s => Some(Box::<Blake2sHash>::default()),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// BLAKE2s-256 as snow's [`Hash`].
#[derive(Default)]
struct Blake2sHash(Blake2s256);

impl Hash for Blake2sHash {
    fn name(&self) -> &'static str {
        "BLAKE2s"
    }

    fn block_len(&self) -> usize {
        64
    }

    fn hash_len(&self) -> usize {
        32
    }

    fn reset(&mut self) {
        self.0 = Blake2s256::default();
    }

    fn input(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn result(&mut self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.0.finalize_reset());
    }
}

fn new_builder<'a>() -> Builder<'a> {
    let resolver: BoxedCryptoResolver = Box::new(XxResolver);
    Builder::with_resolver(params(), resolver)
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum HandshakeError {
    /// Noise rejected a message (bad MAC, wrong length, out of turn).
    #[error("noise handshake failed: {0}")]
    Noise(String),
    /// The binding payload is missing or malformed.
    #[error("missing or malformed identity binding")]
    MalformedBinding,
    /// The binding's signature does not cover the presented static key.
    #[error("identity binding signature does not verify")]
    BadBinding,
    /// The peer proved an identity other than the one expected.
    #[error("peer proved identity {proved}, expected {expected}")]
    IdentityMismatch {
        /// Who we expected (addressed, or stamped by the relay).
        expected: AgentId,
        /// Who the binding proved.
        proved: AgentId,
    },
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// The platform's random number generator failed.
    #[error("random number generator failed")]
    Randomness,
}

impl From<snow::Error> for HandshakeError {
    fn from(e: snow::Error) -> Self {
        HandshakeError::Noise(e.to_string())
    }
}

/// A Noise static X25519 key pair. Generated per process (or per device) and
/// bound to the long-term Ed25519 identity in every handshake; it need not
/// be stored. The secret is zeroized on drop.
pub struct NoiseKeypair {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl std::fmt::Debug for NoiseKeypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseKeypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl NoiseKeypair {
    /// Generates a key pair from the platform's secure random source.
    pub fn generate() -> Result<Self, HandshakeError> {
        let kp = new_builder()
            .generate_keypair()
            .map_err(|_| HandshakeError::Randomness)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        let mut public = [0u8; 32];
        if kp.private.len() != 32 || kp.public.len() != 32 {
            return Err(HandshakeError::Randomness);
        }
        secret.copy_from_slice(&kp.private);
        public.copy_from_slice(&kp.public);
        let mut private = kp.private;
        zeroize::Zeroize::zeroize(&mut private);
        Ok(NoiseKeypair { secret, public })
    }

    /// Rebuilds a key pair from a 32-byte X25519 secret (test vectors).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        let secret = Zeroizing::new(secret);
        let mut public = [0u8; 32];
        if let Some(mut dh) = XxResolver.resolve_dh(&DHChoice::Curve25519) {
            dh.set(secret.as_ref());
            public.copy_from_slice(dh.pubkey());
        }
        NoiseKeypair { secret, public }
    }

    /// The public half.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }
}

/// Which side of a handshake we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sent message 1.
    Initiator,
    /// Answered message 1.
    Responder,
}

impl Role {
    fn tag(self) -> &'static [u8] {
        match self {
            Role::Initiator => b"I",
            Role::Responder => b"R",
        }
    }
}

/// Builds the binding payload for `role` at the current handshake hash.
fn make_binding(identity: &Identity, role: Role, static_pub: &[u8; 32], hash: &[u8]) -> Vec<u8> {
    let sig = identity.sign(
        SignatureContext::NoiseBinding,
        &[role.tag(), static_pub, hash],
    );
    let mut out = Vec::with_capacity(BINDING_LEN);
    out.extend_from_slice(identity.agent_id().as_bytes());
    out.extend_from_slice(&sig.0);
    out
}

/// Checks a peer's binding payload; returns the identity it proves.
fn check_binding(
    payload: &[u8],
    role: Role,
    remote_static: Option<&[u8]>,
    hash: &[u8],
    expected: &AgentId,
) -> Result<AgentId, HandshakeError> {
    if payload.len() != BINDING_LEN {
        return Err(HandshakeError::MalformedBinding);
    }
    let agent =
        AgentId::from_slice(&payload[..32]).map_err(|_| HandshakeError::MalformedBinding)?;
    let sig =
        Signature::from_slice(&payload[32..]).map_err(|_| HandshakeError::MalformedBinding)?;
    let remote = remote_static.ok_or(HandshakeError::MalformedBinding)?;
    agent
        .verify(
            SignatureContext::NoiseBinding,
            &[role.tag(), remote, hash],
            &sig,
        )
        .map_err(|_| HandshakeError::BadBinding)?;
    if &agent != expected {
        return Err(HandshakeError::IdentityMismatch {
            expected: *expected,
            proved: agent,
        });
    }
    Ok(agent)
}

/// Where a handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Initiator: message 1 written, waiting for message 2.
    AwaitMsg2,
    /// Responder: message 2 written, waiting for message 3.
    AwaitMsg3,
    /// Finished (or failed); no further message is valid.
    Done,
}

/// One XX handshake with a specific peer, either role.
pub struct Handshake {
    state: HandshakeState,
    role: Role,
    peer: AgentId,
    step: Step,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("peer", &self.peer)
            .field("step", &self.step)
            .finish()
    }
}

/// The result of a finished handshake, ready for transport.
pub struct Established {
    /// The peer whose identity the handshake proved.
    pub peer: AgentId,
    /// Our role in the handshake.
    pub role: Role,
    /// The final handshake hash (unique per session; for channel binding).
    pub handshake_hash: [u8; 32],
    /// The transport cipher states.
    pub transport: snow::StatelessTransportState,
}

impl std::fmt::Debug for Established {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Established")
            .field("peer", &self.peer)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

fn builder<'a>(static_key: &'a NoiseKeypair, fixed_e: Option<&'a [u8; 32]>) -> Builder<'a> {
    let b = new_builder();
    // Prologue and key lengths are constants valid for this pattern.
    let b = match b.prologue(NOISE_PROLOGUE) {
        Ok(b) => b,
        Err(_) => unreachable!("prologue accepted"),
    };
    let b = match b.local_private_key(static_key.secret.as_ref()) {
        Ok(b) => b,
        Err(_) => unreachable!("32-byte static key accepted"),
    };
    match fixed_e {
        Some(e) => b.fixed_ephemeral_key_for_testing_only(e),
        None => b,
    }
}

fn hash32(state: &HandshakeState) -> [u8; 32] {
    let mut h = [0u8; 32];
    let src = state.get_handshake_hash();
    let n = src.len().min(32);
    h[..n].copy_from_slice(&src[..n]);
    h
}

impl Handshake {
    /// Starts a handshake to `peer`; returns it and message 1.
    pub fn initiate(
        static_key: &NoiseKeypair,
        peer: AgentId,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::initiate_inner(static_key, peer, None)
    }

    pub(crate) fn initiate_inner(
        static_key: &NoiseKeypair,
        peer: AgentId,
        fixed_e: Option<&[u8; 32]>,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut state = builder(static_key, fixed_e).build_initiator()?;
        let mut msg = vec![0u8; NOISE_MAX_MESSAGE];
        let n = state.write_message(&[], &mut msg)?;
        msg.truncate(n);
        Ok((
            Handshake {
                state,
                role: Role::Initiator,
                peer,
                step: Step::AwaitMsg2,
            },
            msg,
        ))
    }

    /// Answers message 1 from `sender` (as stamped by the relay); returns
    /// the handshake and message 2, which carries our binding.
    pub fn respond(
        identity: &Identity,
        static_key: &NoiseKeypair,
        sender: AgentId,
        msg1: &[u8],
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        Self::respond_inner(identity, static_key, sender, msg1, None)
    }

    pub(crate) fn respond_inner(
        identity: &Identity,
        static_key: &NoiseKeypair,
        sender: AgentId,
        msg1: &[u8],
        fixed_e: Option<&[u8; 32]>,
    ) -> Result<(Self, Vec<u8>), HandshakeError> {
        let mut state = builder(static_key, fixed_e).build_responder()?;
        let mut scratch = vec![0u8; NOISE_MAX_MESSAGE];
        let n = state.read_message(msg1, &mut scratch)?;
        if n != 0 {
            // Message 1 carries no payload in this protocol version.
            return Err(HandshakeError::MalformedBinding);
        }
        let binding = make_binding(
            identity,
            Role::Responder,
            &static_key.public,
            &hash32(&state),
        );
        let mut msg = vec![0u8; NOISE_MAX_MESSAGE];
        let n = state.write_message(&binding, &mut msg)?;
        msg.truncate(n);
        Ok((
            Handshake {
                state,
                role: Role::Responder,
                peer: sender,
                step: Step::AwaitMsg3,
            },
            msg,
        ))
    }

    /// Initiator: reads message 2, verifies the responder is the agent we
    /// addressed, and returns message 3 and the established session.
    pub fn read_msg2(
        mut self,
        identity: &Identity,
        static_key: &NoiseKeypair,
        msg2: &[u8],
    ) -> Result<(Vec<u8>, Established), HandshakeError> {
        if self.step != Step::AwaitMsg2 {
            return Err(HandshakeError::Noise("message 2 out of turn".into()));
        }
        self.step = Step::Done;
        let before = hash32(&self.state);
        let mut payload = vec![0u8; NOISE_MAX_MESSAGE];
        let n = self.state.read_message(msg2, &mut payload)?;
        check_binding(
            &payload[..n],
            Role::Responder,
            self.state.get_remote_static(),
            &before,
            &self.peer,
        )?;
        let binding = make_binding(
            identity,
            Role::Initiator,
            &static_key.public,
            &hash32(&self.state),
        );
        let mut msg3 = vec![0u8; NOISE_MAX_MESSAGE];
        let n = self.state.write_message(&binding, &mut msg3)?;
        msg3.truncate(n);
        let handshake_hash = hash32(&self.state);
        let transport = self.state.into_stateless_transport_mode()?;
        Ok((
            msg3,
            Established {
                peer: self.peer,
                role: Role::Initiator,
                handshake_hash,
                transport,
            },
        ))
    }

    /// Responder: reads message 3, verifies the initiator's binding names
    /// the relay-stamped sender, and returns the established session.
    pub fn read_msg3(mut self, msg3: &[u8]) -> Result<Established, HandshakeError> {
        if self.step != Step::AwaitMsg3 {
            return Err(HandshakeError::Noise("message 3 out of turn".into()));
        }
        self.step = Step::Done;
        let before = hash32(&self.state);
        let mut payload = vec![0u8; NOISE_MAX_MESSAGE];
        let n = self.state.read_message(msg3, &mut payload)?;
        check_binding(
            &payload[..n],
            Role::Initiator,
            self.state.get_remote_static(),
            &before,
            &self.peer,
        )?;
        let handshake_hash = hash32(&self.state);
        let transport = self.state.into_stateless_transport_mode()?;
        Ok(Established {
            peer: self.peer,
            role: Role::Responder,
            handshake_hash,
            transport,
        })
    }

    /// The peer this handshake is with.
    pub fn peer(&self) -> AgentId {
        self.peer
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// Kind byte of an end-to-end envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EnvelopeKind {
    /// Handshake message 1 (initiator → responder).
    HandshakeInit = 1,
    /// Handshake message 2 (responder → initiator).
    HandshakeResponse = 2,
    /// Handshake message 3 (initiator → responder).
    HandshakeFinal = 3,
    /// An encrypted transport message.
    Transport = 4,
    /// Plaintext hint: "I have no session with this id" (peer restarted).
    SessionUnknown = 5,
}

impl EnvelopeKind {
    /// The kind of an encoded envelope, from its first byte.
    pub fn of(envelope: &[u8]) -> Option<Self> {
        match envelope.first()? {
            1 => Some(EnvelopeKind::HandshakeInit),
            2 => Some(EnvelopeKind::HandshakeResponse),
            3 => Some(EnvelopeKind::HandshakeFinal),
            4 => Some(EnvelopeKind::Transport),
            5 => Some(EnvelopeKind::SessionUnknown),
            _ => None,
        }
    }

    /// Whether this is one of the three handshake messages.
    pub fn is_handshake(self) -> bool {
        matches!(
            self,
            EnvelopeKind::HandshakeInit
                | EnvelopeKind::HandshakeResponse
                | EnvelopeKind::HandshakeFinal
        )
    }
}

/// The sealed body of a routed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// A handshake message for session `session_id`.
    Handshake {
        /// Which of the three messages.
        kind: EnvelopeKind,
        /// Chosen by the initiator; names the session that results.
        session_id: u64,
        /// The Noise handshake message.
        message: Bytes,
    },
    /// A transport message.
    Transport {
        /// The session it was sealed in.
        session_id: u64,
        /// Its explicit nonce.
        nonce: u64,
        /// Noise ciphertext (payload + 16-byte tag).
        ciphertext: Bytes,
    },
    /// The receiver has no session `session_id` (unauthenticated hint: at
    /// worst it makes the sender re-handshake).
    SessionUnknown {
        /// The session it does not know.
        session_id: u64,
    },
}

/// Why an envelope could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum EnvelopeError {
    /// Shorter than its header, or empty.
    #[error("envelope truncated")]
    Truncated,
    /// Unknown kind byte.
    #[error("unknown envelope kind {0}")]
    UnknownKind(u8),
    /// The Noise message exceeds 65,535 bytes, or a fixed envelope has
    /// extra bytes.
    #[error("envelope has a bad length")]
    BadLength,
}

impl Envelope {
    /// Encodes the envelope.
    pub fn encode(&self) -> Bytes {
        match self {
            Envelope::Handshake {
                kind,
                session_id,
                message,
            } => {
                let mut out = BytesMut::with_capacity(HANDSHAKE_HEADER_LEN + message.len());
                out.put_u8(*kind as u8);
                out.put_u64(*session_id);
                out.put_slice(message);
                out.freeze()
            }
            Envelope::Transport {
                session_id,
                nonce,
                ciphertext,
            } => {
                let mut out = BytesMut::with_capacity(TRANSPORT_HEADER_LEN + ciphertext.len());
                out.put_u8(EnvelopeKind::Transport as u8);
                out.put_u64(*session_id);
                out.put_u64(*nonce);
                out.put_slice(ciphertext);
                out.freeze()
            }
            Envelope::SessionUnknown { session_id } => {
                let mut out = BytesMut::with_capacity(9);
                out.put_u8(EnvelopeKind::SessionUnknown as u8);
                out.put_u64(*session_id);
                out.freeze()
            }
        }
    }

    /// Decodes an envelope; messages share `buf`'s allocation.
    pub fn decode(buf: Bytes) -> Result<Envelope, EnvelopeError> {
        let mut r = Reader::new(buf);
        let kind = r.u8().ok_or(EnvelopeError::Truncated)?;
        let session_id = r.u64().ok_or(EnvelopeError::Truncated)?;
        let env = match kind {
            1..=3 => {
                let kind = EnvelopeKind::of(&[kind]).ok_or(EnvelopeError::UnknownKind(kind))?;
                let message = r.rest();
                if message.is_empty() || message.len() > NOISE_MAX_MESSAGE {
                    return Err(EnvelopeError::BadLength);
                }
                Envelope::Handshake {
                    kind,
                    session_id,
                    message,
                }
            }
            4 => {
                let nonce = r.u64().ok_or(EnvelopeError::Truncated)?;
                let ciphertext = r.rest();
                if ciphertext.len() > NOISE_MAX_MESSAGE {
                    return Err(EnvelopeError::BadLength);
                }
                Envelope::Transport {
                    session_id,
                    nonce,
                    ciphertext,
                }
            }
            5 => {
                if r.remaining() != 0 {
                    return Err(EnvelopeError::BadLength);
                }
                Envelope::SessionUnknown { session_id }
            }
            other => return Err(EnvelopeError::UnknownKind(other)),
        };
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) struct Party {
        pub id: Identity,
        pub noise: NoiseKeypair,
    }

    pub(crate) fn party(n: u8) -> Party {
        Party {
            id: Identity::from_secret_bytes(&[n; 32]),
            noise: NoiseKeypair::generate().unwrap(),
        }
    }

    #[test]
    fn full_handshake_both_sides_agree() {
        let (a, b) = (party(1), party(2));
        let (hs_a, m1) = Handshake::initiate(&a.noise, b.id.agent_id()).unwrap();
        let (hs_b, m2) = Handshake::respond(&b.id, &b.noise, a.id.agent_id(), &m1).unwrap();
        let (m3, est_a) = hs_a.read_msg2(&a.id, &a.noise, &m2).unwrap();
        let est_b = hs_b.read_msg3(&m3).unwrap();
        assert_eq!(est_a.peer, b.id.agent_id());
        assert_eq!(est_b.peer, a.id.agent_id());
        assert_eq!(est_a.handshake_hash, est_b.handshake_hash);
        let mut ct = vec![0u8; 64];
        let n = est_a.transport.write_message(7, b"hi", &mut ct).unwrap();
        let mut pt = vec![0u8; 64];
        let m = est_b.transport.read_message(7, &ct[..n], &mut pt).unwrap();
        assert_eq!(&pt[..m], b"hi");
    }

    /// Our resolver against snow's own `DefaultResolver`, in both roles:
    /// the same handshake hash on both sides, and transport messages that
    /// open. Any difference in the BLAKE2s we hand snow would fail here.
    #[test]
    fn the_resolver_interoperates_with_snows_default_resolver() {
        let build = |ours: bool, key: &NoiseKeypair, initiator: bool| {
            let b = if ours {
                new_builder()
            } else {
                Builder::with_resolver(params(), Box::new(DefaultResolver))
            };
            let b = b
                .prologue(NOISE_PROLOGUE)
                .unwrap()
                .local_private_key(key.secret.as_ref())
                .unwrap();
            if initiator {
                b.build_initiator().unwrap()
            } else {
                b.build_responder().unwrap()
            }
        };
        for ours_initiates in [true, false] {
            let (a, b) = (
                NoiseKeypair::generate().unwrap(),
                NoiseKeypair::generate().unwrap(),
            );
            let mut i = build(ours_initiates, &a, true);
            let mut r = build(!ours_initiates, &b, false);
            let (mut m, mut p) = ([0u8; 1024], [0u8; 1024]);
            for (from_i, payload) in [(true, &b""[..]), (false, b"two"), (true, b"three")] {
                let (w, rd) = if from_i {
                    (&mut i, &mut r)
                } else {
                    (&mut r, &mut i)
                };
                let n = w.write_message(payload, &mut m).unwrap();
                let got = rd.read_message(&m[..n], &mut p).unwrap();
                assert_eq!(&p[..got], payload);
            }
            assert_eq!(i.get_handshake_hash(), r.get_handshake_hash());
            assert_eq!(i.get_remote_static(), Some(&b.public[..]));
            let mut ti = i.into_transport_mode().unwrap();
            let mut tr = r.into_transport_mode().unwrap();
            let n = ti.write_message(b"hello", &mut m).unwrap();
            let got = tr.read_message(&m[..n], &mut p).unwrap();
            assert_eq!(&p[..got], b"hello");
            let n = tr.write_message(b"back", &mut m).unwrap();
            let got = ti.read_message(&m[..n], &mut p).unwrap();
            assert_eq!(&p[..got], b"back");
        }
        // And the hash alone, against a known answer (RFC 7693 appendix B
        // gives BLAKE2s-256("abc")).
        let mut h = Blake2sHash::default();
        h.input(b"a");
        h.input(b"bc");
        let mut out = [0u8; 32];
        h.result(&mut out);
        assert_eq!(
            hex::encode(out),
            "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982"
        );
        assert!(XxResolver.resolve_hash(&HashChoice::Blake2b).is_none());
    }

    #[test]
    fn params_are_the_pattern_name_parsed() {
        assert_eq!(params(), NOISE_PATTERN.parse::<NoiseParams>().unwrap());
    }

    #[test]
    fn initiator_detects_the_wrong_responder() {
        let (a, b, c) = (party(1), party(2), party(3));
        // A addresses C, but B answers (e.g. a relay misroutes on purpose).
        let (hs_a, m1) = Handshake::initiate(&a.noise, c.id.agent_id()).unwrap();
        let (_hs_b, m2) = Handshake::respond(&b.id, &b.noise, a.id.agent_id(), &m1).unwrap();
        let err = hs_a.read_msg2(&a.id, &a.noise, &m2).unwrap_err();
        assert!(
            matches!(err, HandshakeError::IdentityMismatch { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn responder_detects_a_spoofed_sender() {
        let (a, b, c) = (party(1), party(2), party(3));
        let (hs_a, m1) = Handshake::initiate(&a.noise, b.id.agent_id()).unwrap();
        // The relay claims the handshake comes from C.
        let (hs_b, m2) = Handshake::respond(&b.id, &b.noise, c.id.agent_id(), &m1).unwrap();
        let (m3, _) = hs_a.read_msg2(&a.id, &a.noise, &m2).unwrap();
        let err = hs_b.read_msg3(&m3).unwrap_err();
        assert!(
            matches!(err, HandshakeError::IdentityMismatch { .. }),
            "{err:?}"
        );
    }

    /// A man in the middle answers A's message 1 with her own Noise static
    /// key, pretending to be B. Whatever binding she attaches, A rejects it:
    /// she cannot sign for B over her key and this transcript.
    #[test]
    fn mitm_substituting_its_static_key_is_detected() {
        let (a, b) = (party(1), party(2));
        let mallory_id = Identity::from_secret_bytes(&[66; 32]);
        let mallory = NoiseKeypair::generate().unwrap();
        type Forge<'a> = Box<dyn Fn(&[u8; 32]) -> Vec<u8> + 'a>;
        let attempts: Vec<Forge> = vec![
            // 1. B's genuine binding from another handshake (replayed).
            Box::new(|_h| make_binding(&b.id, Role::Responder, b.noise.public(), &[0u8; 32])),
            // 2. B's id with Mallory's signature over her key and this hash.
            Box::new(|h| {
                let mut p = make_binding(&mallory_id, Role::Responder, mallory.public(), h);
                p[..32].copy_from_slice(b.id.agent_id().as_bytes());
                p
            }),
            // 3. An honest binding for Mallory's own identity.
            Box::new(|h| make_binding(&mallory_id, Role::Responder, mallory.public(), h)),
        ];
        let expected = [
            HandshakeError::BadBinding,
            HandshakeError::BadBinding,
            HandshakeError::IdentityMismatch {
                expected: b.id.agent_id(),
                proved: mallory_id.agent_id(),
            },
        ];
        for (forge, want) in attempts.iter().zip(expected) {
            let (hs_a, m1) = Handshake::initiate(&a.noise, b.id.agent_id()).unwrap();
            let mut st = builder(&mallory, None).build_responder().unwrap();
            let mut scratch = vec![0u8; NOISE_MAX_MESSAGE];
            st.read_message(&m1, &mut scratch).unwrap();
            let payload = forge(&hash32(&st));
            let mut m2 = vec![0u8; NOISE_MAX_MESSAGE];
            let n = st.write_message(&payload, &mut m2).unwrap();
            assert_eq!(hs_a.read_msg2(&a.id, &a.noise, &m2[..n]).unwrap_err(), want);
        }
    }

    #[test]
    fn tampering_with_any_handshake_byte_fails() {
        let (a, b) = (party(1), party(2));
        let (_, m1) = Handshake::initiate(&a.noise, b.id.agent_id()).unwrap();
        let (_, m2) = Handshake::respond(&b.id, &b.noise, a.id.agent_id(), &m1).unwrap();
        for i in 0..m2.len() {
            // Fresh initiator state each time: re-run with the same m1 needs
            // the same ephemeral, so use fixed ephemerals.
            let e = [9u8; 32];
            let (hs_a, m1) =
                Handshake::initiate_inner(&a.noise, b.id.agent_id(), Some(&e)).unwrap();
            let (_, mut m2) = Handshake::respond(&b.id, &b.noise, a.id.agent_id(), &m1).unwrap();
            m2[i] ^= 0x01;
            assert!(hs_a.read_msg2(&a.id, &a.noise, &m2).is_err(), "byte {i}");
        }
        let e = [9u8; 32];
        let (hs_a, m1) = Handshake::initiate_inner(&a.noise, b.id.agent_id(), Some(&e)).unwrap();
        let (hs_b, m2) = Handshake::respond(&b.id, &b.noise, a.id.agent_id(), &m1).unwrap();
        let (m3, _) = hs_a.read_msg2(&a.id, &a.noise, &m2).unwrap();
        drop(hs_b);
        for i in 0..m3.len() {
            let (hs_a, m1) =
                Handshake::initiate_inner(&a.noise, b.id.agent_id(), Some(&e)).unwrap();
            let (hs_b, m2) =
                Handshake::respond_inner(&b.id, &b.noise, a.id.agent_id(), &m1, Some(&[8; 32]))
                    .unwrap();
            let (mut m3, _) = hs_a.read_msg2(&a.id, &a.noise, &m2).unwrap();
            m3[i] ^= 0x80;
            assert!(hs_b.read_msg3(&m3).is_err(), "byte {i}");
        }
    }

    #[test]
    fn message_one_with_a_payload_is_refused() {
        let (a, b) = (party(1), party(2));
        let mut st = builder(&a.noise, None).build_initiator().unwrap();
        let mut m1 = vec![0u8; 200];
        let n = st.write_message(b"surprise", &mut m1).unwrap();
        let err = Handshake::respond(&b.id, &b.noise, a.id.agent_id(), &m1[..n]).unwrap_err();
        assert_eq!(err, HandshakeError::MalformedBinding);
    }

    #[test]
    fn envelope_round_trip_and_errors() {
        let envs = [
            Envelope::Handshake {
                kind: EnvelopeKind::HandshakeInit,
                session_id: 1,
                message: Bytes::from_static(&[1; 32]),
            },
            Envelope::Transport {
                session_id: 2,
                nonce: 3,
                ciphertext: Bytes::from_static(&[4; 20]),
            },
            Envelope::SessionUnknown { session_id: 5 },
        ];
        for e in envs {
            assert_eq!(Envelope::decode(e.encode()).unwrap(), e);
        }
        assert_eq!(
            Envelope::decode(Bytes::new()),
            Err(EnvelopeError::Truncated)
        );
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[9, 0, 0, 0, 0, 0, 0, 0, 0])),
            Err(EnvelopeError::UnknownKind(9))
        );
        assert_eq!(
            Envelope::decode(Bytes::from_static(&[1, 0, 0, 0, 0, 0, 0, 0, 0])),
            Err(EnvelopeError::BadLength)
        );
    }
}
