//! End-to-end sessions with every peer of one identity, sans-IO.
//!
//! [`SessionTable`] turns application messages into sealed envelopes and
//! back. It negotiates a Noise session on first contact, queues messages
//! while the handshake runs, fragments messages larger than one Noise
//! message, checks every transport nonce against a [`ReplayWindow`], and
//! re-keys by running a fresh handshake after [`REKEY_AFTER_MESSAGES`]
//! messages or [`REKEY_AFTER_MS`] (as WireGuard does), keeping the old
//! session able to receive for a grace period so nothing in flight is lost.
//!
//! Drive it like every state machine in this crate: `send` and
//! `handle_incoming` feed it, `poll_transmit` yields envelopes to route to a
//! peer, `poll_event` yields what happened, `poll_timeout`/`handle_timeout`
//! run its timers. Time is the caller's monotonic clock in milliseconds.
//!
//! **Simultaneous first contact.** When both peers start a handshake to each
//! other at once, the one started by the peer with the lower `AgentId`
//! (byte order) wins: that peer ignores the other's message 1, and the other
//! abandons its own attempt and answers. Both end with the same single
//! session, and messages queued on either side flow over it.
//!
//! [`REKEY_AFTER_MESSAGES`]: crate::limits::REKEY_AFTER_MESSAGES
//! [`REKEY_AFTER_MS`]: crate::limits::REKEY_AFTER_MS

use std::collections::{HashMap, VecDeque};

use bytes::{BufMut, Bytes, BytesMut};

use crate::app::{AppError, AppMessage};
use crate::identity::{AgentId, Identity};
use crate::limits;
use crate::noise::{
    Envelope, EnvelopeError, EnvelopeKind, Handshake, HandshakeError, NoiseKeypair, Role,
};
use crate::replay::{ReplayError, ReplayWindow};

/// Responder handshakes kept per peer at once (older ones are dropped).
const MAX_INBOUND_PER_PEER: usize = 4;
/// Superseded sessions kept for receiving per peer.
const MAX_RETIRED_PER_PEER: usize = 2;
/// Session ids we remember having answered `SessionUnknown` for, per peer.
const MAX_UNKNOWN_REPLIES: usize = 16;

/// Tunables of a [`SessionTable`]; defaults come from [`crate::limits`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Lifetime of an unfinished handshake (ms).
    pub handshake_timeout_ms: u64,
    /// Lifetime of an unfinished handshake whose first message the relay
    /// stored for an offline peer (ms); see [`SessionTable::park_handshake`].
    pub parked_handshake_timeout_ms: u64,
    /// Messages after which the sender re-keys.
    pub rekey_after_messages: u64,
    /// Session age after which the sender re-keys (ms).
    pub rekey_after_ms: u64,
    /// Messages after which a session is never used to send again.
    pub reject_after_messages: u64,
    /// How long a superseded session still receives (ms).
    pub session_grace_ms: u64,
    /// Messages queued per peer while its handshake runs.
    pub max_pending_per_peer: usize,
    /// Lifetime of an incomplete fragmented message (ms).
    pub reassembly_timeout_ms: u64,
    /// Bytes of incomplete fragmented messages per peer.
    pub max_reassembly_bytes_per_peer: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            handshake_timeout_ms: limits::HANDSHAKE_TIMEOUT_MS,
            parked_handshake_timeout_ms: limits::PARKED_HANDSHAKE_TIMEOUT_MS,
            rekey_after_messages: limits::REKEY_AFTER_MESSAGES,
            rekey_after_ms: limits::REKEY_AFTER_MS,
            reject_after_messages: limits::REJECT_AFTER_MESSAGES,
            session_grace_ms: limits::SESSION_GRACE_MS,
            max_pending_per_peer: limits::MAX_PENDING_PER_PEER,
            reassembly_timeout_ms: limits::REASSEMBLY_TIMEOUT_MS,
            max_reassembly_bytes_per_peer: limits::MAX_REASSEMBLY_BYTES_PER_PEER,
        }
    }
}

/// An envelope to route to `to` (the body of a `Send` frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The destination agent.
    pub to: AgentId,
    /// The sealed body.
    pub body: Bytes,
    /// The tag given to [`SessionTable::send_tagged`] for the message this
    /// envelope carries (every fragment carries it; a handshake's first
    /// message carries the tag of the message that started it), or 0 for
    /// other handshake messages and untagged sends. Lets the caller tie a relay's answer
    /// about a frame back to what it carried.
    pub tag: u64,
}

/// Something that happened in the session table.
#[derive(Debug)]
pub enum SessionEvent {
    /// An application message arrived, authenticated as coming from `from`.
    Message {
        /// The verified sender.
        from: AgentId,
        /// The message.
        message: AppMessage,
    },
    /// A session with `peer` is ready (first contact, re-key or re-contact).
    Established {
        /// The verified peer.
        peer: AgentId,
        /// The new session's id.
        session_id: u64,
        /// Our role in its handshake.
        role: Role,
    },
    /// `peer` could not be reached; `unsent` were never sent.
    Unreachable {
        /// The peer.
        peer: AgentId,
        /// Why the handshake failed.
        error: HandshakeError,
        /// Messages that were queued for it, returned so nothing is lost
        /// silently.
        unsent: Vec<AppMessage>,
    },
    /// The peer reported it has no session `session_id` (it restarted).
    /// Messages sent on that session may not have arrived; a new handshake
    /// has been started.
    SessionLost {
        /// The peer.
        peer: AgentId,
        /// The lost session.
        session_id: u64,
    },
}

/// Why [`SessionTable::send`] refused a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum SendError {
    /// The message is invalid or too large.
    #[error("invalid application message: {0}")]
    App(#[from] AppError),
    /// Too many messages are already waiting for this peer's handshake.
    #[error("too many messages queued for a peer whose session is not ready")]
    QueueFull,
    /// An agent cannot open a session with itself.
    #[error("cannot send to self")]
    ToSelf,
    /// Starting a handshake failed.
    #[error("cannot start handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The cipher refused to encrypt (nonce space exhausted).
    #[error("encryption failed")]
    Encrypt,
}

/// Why an incoming envelope was rejected. None of these affect other peers
/// or other sessions; the caller may count them and move on.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum E2eError {
    /// The envelope could not be decoded.
    #[error("bad envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// A handshake message failed (including identity checks).
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// A handshake message for a handshake we are not running (stale,
    /// duplicated or expired).
    #[error("no handshake {0:#x} in progress")]
    UnexpectedHandshake(u64),
    /// A transport message for a session we do not have.
    #[error("unknown session {0:#x}")]
    UnknownSession(u64),
    /// The nonce was seen before or is too old.
    #[error("replay: {0}")]
    Replay(#[from] ReplayError),
    /// Decryption failed (tampered, or wrong key).
    #[error("decryption failed")]
    Decrypt,
    /// A fragment header is inconsistent.
    #[error("bad fragment")]
    BadFragment,
    /// Too many bytes of incomplete messages from this peer.
    #[error("reassembly buffer full")]
    ReassemblyFull,
    /// The decrypted message is not a valid application message.
    #[error("bad application message: {0}")]
    App(#[from] AppError),
    /// An envelope that claims to come from ourselves.
    #[error("envelope from self")]
    FromSelf,
}

struct Session {
    id: u64,
    transport: snow::StatelessTransportState,
    next_nonce: u64,
    next_msg_no: u32,
    replay: ReplayWindow,
    established_ms: u64,
    retire_at_ms: Option<u64>,
}

struct Pending {
    hs: Handshake,
    session_id: u64,
    deadline_ms: u64,
    /// The relay stored its first message for the offline peer.
    at_relay: bool,
}

struct Partial {
    parts: Vec<Option<Bytes>>,
    received: usize,
    bytes: usize,
    deadline_ms: u64,
}

#[derive(Default)]
struct Peer {
    current: Option<Session>,
    retired: Vec<Session>,
    outbound: Option<Pending>,
    inbound: Vec<Pending>,
    queue: VecDeque<(AppMessage, u64)>,
    partial: HashMap<(u64, u32), Partial>,
    partial_bytes: usize,
    unknown_replied: VecDeque<u64>,
}

impl Peer {
    fn is_idle(&self) -> bool {
        self.current.is_none()
            && self.retired.is_empty()
            && self.outbound.is_none()
            && self.inbound.is_empty()
            && self.queue.is_empty()
            && self.partial.is_empty()
    }

    fn session_mut(&mut self, id: u64) -> Option<&mut Session> {
        if self.current.as_ref().is_some_and(|s| s.id == id) {
            return self.current.as_mut();
        }
        self.retired.iter_mut().find(|s| s.id == id)
    }
}

/// All end-to-end sessions of one identity. See the module docs.
pub struct SessionTable {
    identity: Identity,
    me: AgentId,
    noise: NoiseKeypair,
    config: SessionConfig,
    peers: HashMap<AgentId, Peer>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SessionEvent>,
}

impl std::fmt::Debug for SessionTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTable")
            .field("me", &self.me)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

fn random_u64() -> Result<u64, HandshakeError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|_| HandshakeError::Randomness)?;
    Ok(u64::from_be_bytes(b))
}

impl SessionTable {
    /// A table for `identity`, using `noise` as its Noise static key.
    pub fn new(identity: Identity, noise: NoiseKeypair, config: SessionConfig) -> Self {
        let me = identity.agent_id();
        SessionTable {
            identity,
            me,
            noise,
            config,
            peers: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Our own agent id.
    pub fn agent_id(&self) -> AgentId {
        self.me
    }

    /// The identity this table signs bindings with.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Whether a session with `peer` is ready to send on.
    pub fn has_session(&self, peer: &AgentId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.current.is_some())
    }

    /// The id of the session currently used to send to `peer`.
    pub fn session_id(&self, peer: &AgentId) -> Option<u64> {
        self.peers.get(peer)?.current.as_ref().map(|s| s.id)
    }

    /// Sends `message` to `to`: sealed at once if a session exists,
    /// otherwise queued and a handshake started.
    pub fn send(&mut self, to: AgentId, message: AppMessage, now_ms: u64) -> Result<(), SendError> {
        self.send_tagged(to, message, 0, now_ms)
    }

    /// Like [`SessionTable::send`]; every [`Transmit`] carrying this message
    /// (now, or when a pending handshake completes) has `tag`.
    pub fn send_tagged(
        &mut self,
        to: AgentId,
        message: AppMessage,
        tag: u64,
        now_ms: u64,
    ) -> Result<(), SendError> {
        if to == self.me {
            return Err(SendError::ToSelf);
        }
        let encoded = message.encode()?;
        let peer = self.peers.entry(to).or_default();
        let usable = peer
            .current
            .as_ref()
            .is_some_and(|s| s.next_nonce < self.config.reject_after_messages);
        if usable {
            if let Some(session) = peer.current.as_mut() {
                seal(session, to, &encoded, tag, &mut self.transmits)?;
            }
            self.maybe_rekey(to, now_ms)?;
            return Ok(());
        }
        if peer.queue.len() >= self.config.max_pending_per_peer {
            return Err(SendError::QueueFull);
        }
        peer.queue.push_back((message, tag));
        if peer.outbound.is_none() {
            self.start_handshake(to, tag, now_ms)?;
        }
        Ok(())
    }

    /// Forgets everything about `peer` (e.g. it was revoked) and returns
    /// the messages that were still queued for it.
    pub fn forget_peer(&mut self, peer: &AgentId) -> Vec<AppMessage> {
        self.peers
            .remove(peer)
            .map(|p| p.queue.into_iter().map(|(m, _)| m).collect())
            .unwrap_or_default()
    }

    /// Starts a handshake to `to`. Its first message carries `tag` (that of
    /// the message that needed the session), so a relay's "queued" or
    /// "refused" for it can be tied to that message.
    fn start_handshake(
        &mut self,
        to: AgentId,
        tag: u64,
        now_ms: u64,
    ) -> Result<(), HandshakeError> {
        let session_id = random_u64()?;
        let (hs, msg1) = Handshake::initiate(&self.noise, to)?;
        let peer = self.peers.entry(to).or_default();
        peer.outbound = Some(Pending {
            hs,
            session_id,
            deadline_ms: now_ms.saturating_add(self.config.handshake_timeout_ms),
            at_relay: false,
        });
        self.transmits.push_back(Transmit {
            to,
            body: Envelope::Handshake {
                kind: EnvelopeKind::HandshakeInit,
                session_id,
                message: msg1.into(),
            }
            .encode(),
            tag,
        });
        Ok(())
    }

    fn maybe_rekey(&mut self, to: AgentId, now_ms: u64) -> Result<(), HandshakeError> {
        let Some(peer) = self.peers.get(&to) else {
            return Ok(());
        };
        let Some(s) = peer.current.as_ref() else {
            return Ok(());
        };
        let due = s.next_nonce >= self.config.rekey_after_messages
            || now_ms.saturating_sub(s.established_ms) >= self.config.rekey_after_ms;
        if due && peer.outbound.is_none() {
            self.start_handshake(to, 0, now_ms)?;
        }
        Ok(())
    }

    /// Feeds the sealed body of a `Deliver` frame from `from` (the sender
    /// the relay authenticated). Errors concern this envelope only.
    pub fn handle_incoming(
        &mut self,
        from: AgentId,
        body: Bytes,
        now_ms: u64,
    ) -> Result<(), E2eError> {
        if from == self.me {
            return Err(E2eError::FromSelf);
        }
        match Envelope::decode(body)? {
            Envelope::Handshake {
                kind: EnvelopeKind::HandshakeInit,
                session_id,
                message,
            } => self.on_init(from, session_id, &message, now_ms),
            Envelope::Handshake {
                kind: EnvelopeKind::HandshakeResponse,
                session_id,
                message,
            } => self.on_response(from, session_id, &message, now_ms),
            Envelope::Handshake {
                session_id,
                message,
                ..
            } => self.on_final(from, session_id, &message, now_ms),
            Envelope::Transport {
                session_id,
                nonce,
                ciphertext,
            } => self.on_transport(from, session_id, nonce, &ciphertext, now_ms),
            Envelope::SessionUnknown { session_id } => {
                self.on_session_unknown(from, session_id, now_ms);
                Ok(())
            }
        }
    }

    fn on_init(
        &mut self,
        from: AgentId,
        sid: u64,
        msg1: &[u8],
        now_ms: u64,
    ) -> Result<(), E2eError> {
        let peer = self.peers.entry(from).or_default();
        if peer.outbound.is_some() {
            if self.me < from {
                // Simultaneous first contact: ours wins; the peer answers it.
                return Ok(());
            }
            // Theirs wins: abandon ours. Queued messages stay queued and
            // flow once this handshake completes.
            peer.outbound = None;
        }
        let (hs, msg2) = Handshake::respond(&self.identity, &self.noise, from, msg1)?;
        if peer.inbound.len() >= MAX_INBOUND_PER_PEER {
            peer.inbound.remove(0);
        }
        peer.inbound.retain(|p| p.session_id != sid);
        peer.inbound.push(Pending {
            hs,
            session_id: sid,
            deadline_ms: now_ms.saturating_add(self.config.handshake_timeout_ms),
            at_relay: false,
        });
        self.transmits.push_back(Transmit {
            to: from,
            body: Envelope::Handshake {
                kind: EnvelopeKind::HandshakeResponse,
                session_id: sid,
                message: msg2.into(),
            }
            .encode(),
            tag: 0,
        });
        Ok(())
    }

    fn on_response(
        &mut self,
        from: AgentId,
        sid: u64,
        msg2: &[u8],
        now_ms: u64,
    ) -> Result<(), E2eError> {
        let peer = self.peers.entry(from).or_default();
        let Some(pending) = peer.outbound.take_if(|p| p.session_id == sid) else {
            return Err(E2eError::UnexpectedHandshake(sid));
        };
        match pending.hs.read_msg2(&self.identity, &self.noise, msg2) {
            Ok((msg3, est)) => {
                self.transmits.push_back(Transmit {
                    to: from,
                    body: Envelope::Handshake {
                        kind: EnvelopeKind::HandshakeFinal,
                        session_id: sid,
                        message: msg3.into(),
                    }
                    .encode(),
                    tag: 0,
                });
                self.install(from, sid, est, now_ms)
            }
            Err(error) => {
                // Nothing will be sent over an unproven session: hand the
                // queue back rather than drop it.
                let unsent: Vec<AppMessage> = if peer.current.is_none() {
                    peer.queue.drain(..).map(|(m, _)| m).collect()
                } else {
                    Vec::new()
                };
                self.events.push_back(SessionEvent::Unreachable {
                    peer: from,
                    error: error.clone(),
                    unsent,
                });
                Err(E2eError::Handshake(error))
            }
        }
    }

    fn on_final(
        &mut self,
        from: AgentId,
        sid: u64,
        msg3: &[u8],
        now_ms: u64,
    ) -> Result<(), E2eError> {
        let peer = self.peers.entry(from).or_default();
        let Some(pos) = peer.inbound.iter().position(|p| p.session_id == sid) else {
            return Err(E2eError::UnexpectedHandshake(sid));
        };
        let pending = peer.inbound.remove(pos);
        let est = pending.hs.read_msg3(msg3)?;
        self.install(from, sid, est, now_ms)
    }

    fn install(
        &mut self,
        from: AgentId,
        sid: u64,
        est: crate::noise::Established,
        now_ms: u64,
    ) -> Result<(), E2eError> {
        let grace = self.config.session_grace_ms;
        let peer = self.peers.entry(from).or_default();
        let session = Session {
            id: sid,
            transport: est.transport,
            next_nonce: 0,
            next_msg_no: 0,
            replay: ReplayWindow::new(),
            established_ms: now_ms,
            retire_at_ms: None,
        };
        if let Some(mut old) = peer.current.replace(session) {
            old.retire_at_ms = Some(now_ms.saturating_add(grace));
            if peer.retired.len() >= MAX_RETIRED_PER_PEER {
                peer.retired.remove(0);
            }
            peer.retired.push(old);
        }
        self.events.push_back(SessionEvent::Established {
            peer: from,
            session_id: sid,
            role: est.role,
        });
        // Flush what waited for this session.
        let queued: Vec<(AppMessage, u64)> = peer.queue.drain(..).collect();
        for (message, tag) in queued {
            let encoded = message.encode()?;
            let Some(session) = peer.current.as_mut() else {
                break;
            };
            if seal(session, from, &encoded, tag, &mut self.transmits).is_err() {
                self.events.push_back(SessionEvent::Unreachable {
                    peer: from,
                    error: HandshakeError::Noise("encryption failed".into()),
                    unsent: vec![message],
                });
            }
        }
        Ok(())
    }

    fn on_transport(
        &mut self,
        from: AgentId,
        sid: u64,
        nonce: u64,
        ciphertext: &[u8],
        now_ms: u64,
    ) -> Result<(), E2eError> {
        let reassembly_timeout = self.config.reassembly_timeout_ms;
        let max_bytes = self.config.max_reassembly_bytes_per_peer;
        let peer = self.peers.entry(from).or_default();
        let Some(session) = peer.session_mut(sid) else {
            if !peer.unknown_replied.contains(&sid) {
                if peer.unknown_replied.len() >= MAX_UNKNOWN_REPLIES {
                    peer.unknown_replied.pop_front();
                }
                peer.unknown_replied.push_back(sid);
                self.transmits.push_back(Transmit {
                    to: from,
                    body: Envelope::SessionUnknown { session_id: sid }.encode(),
                    tag: 0,
                });
            }
            return Err(E2eError::UnknownSession(sid));
        };
        session.replay.check(nonce)?;
        let mut plain = vec![0u8; ciphertext.len()];
        let n = session
            .transport
            .read_message(nonce, ciphertext, &mut plain)
            .map_err(|_| E2eError::Decrypt)?;
        session.replay.record(nonce)?;
        plain.truncate(n);
        let plain = Bytes::from(plain);
        if plain.len() < limits::FRAGMENT_HEADER_LEN {
            return Err(E2eError::BadFragment);
        }
        let msg_no = u32::from_be_bytes([plain[0], plain[1], plain[2], plain[3]]);
        let index = usize::from(u16::from_be_bytes([plain[4], plain[5]]));
        let count = usize::from(u16::from_be_bytes([plain[6], plain[7]]));
        if count == 0 || index >= count || count > limits::MAX_FRAGMENTS {
            return Err(E2eError::BadFragment);
        }
        let data = plain.slice(limits::FRAGMENT_HEADER_LEN..);
        let whole = if count == 1 {
            data
        } else {
            let key = (sid, msg_no);
            if !peer.partial.contains_key(&key) && peer.partial_bytes + data.len() > max_bytes {
                return Err(E2eError::ReassemblyFull);
            }
            let part = peer.partial.entry(key).or_insert_with(|| Partial {
                parts: vec![None; count],
                received: 0,
                bytes: 0,
                deadline_ms: now_ms.saturating_add(reassembly_timeout),
            });
            if part.parts.len() != count {
                return Err(E2eError::BadFragment);
            }
            if part.parts[index].is_some() {
                // A fresh nonce re-carrying a fragment we hold: ignore.
                return Ok(());
            }
            if peer.partial_bytes + data.len() > max_bytes {
                return Err(E2eError::ReassemblyFull);
            }
            part.bytes += data.len();
            peer.partial_bytes += data.len();
            part.parts[index] = Some(data);
            part.received += 1;
            if part.received < count {
                return Ok(());
            }
            let Some(done) = peer.partial.remove(&key) else {
                return Ok(());
            };
            peer.partial_bytes -= done.bytes;
            let mut out = BytesMut::with_capacity(done.bytes);
            for p in done.parts.into_iter().flatten() {
                out.extend_from_slice(&p);
            }
            out.freeze()
        };
        let message = AppMessage::decode(whole)?;
        self.events
            .push_back(SessionEvent::Message { from, message });
        Ok(())
    }

    fn on_session_unknown(&mut self, from: AgentId, sid: u64, now_ms: u64) {
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        peer.retired.retain(|s| s.id != sid);
        if peer.current.as_ref().is_some_and(|s| s.id == sid) {
            peer.current = None;
            self.events.push_back(SessionEvent::SessionLost {
                peer: from,
                session_id: sid,
            });
            if peer.outbound.is_none() {
                if let Err(error) = self.start_handshake(from, 0, now_ms) {
                    self.events.push_back(SessionEvent::Unreachable {
                        peer: from,
                        error,
                        unsent: Vec::new(),
                    });
                }
            }
        }
    }

    /// The next envelope to route, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Takes back the messages tagged `tag` (not 0) that still wait for a
    /// session with `peer`: they were never sealed, so nothing of them was
    /// sent. True if there was one. (A request that timed out behind a
    /// handshake must not run when the peer comes back days later.)
    pub fn withdraw(&mut self, peer: &AgentId, tag: u64) -> bool {
        let Some(p) = self.peers.get_mut(peer).filter(|_| tag != 0) else {
            return false;
        };
        let before = p.queue.len();
        p.queue.retain(|(_, t)| *t != tag);
        p.queue.len() != before
    }

    /// The relay stored the first message of our handshake with `peer` in
    /// the peer's inbox (it is offline). Nothing changes until
    /// [`SessionTable::park_handshake`].
    pub fn handshake_at_relay(&mut self, peer: &AgentId) {
        if let Some(p) = self.peers.get_mut(peer).and_then(|p| p.outbound.as_mut()) {
            p.at_relay = true;
        }
    }

    /// If our handshake with `peer` waits in the relay's inbox for the
    /// offline peer ([`SessionTable::handshake_at_relay`]), waits for the
    /// answer until `now_ms + parked_handshake_timeout_ms` instead of the
    /// usual handshake timeout, so that what is queued behind it (a chat) is
    /// sealed when the peer comes back. True if it parked.
    pub fn park_handshake(&mut self, peer: &AgentId, now_ms: u64) -> bool {
        let parked = now_ms.saturating_add(self.config.parked_handshake_timeout_ms);
        match self.peers.get_mut(peer).and_then(|p| p.outbound.as_mut()) {
            Some(p) if p.at_relay => {
                p.deadline_ms = p.deadline_ms.max(parked);
                true
            }
            _ => false,
        }
    }

    /// When [`SessionTable::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        for peer in self.peers.values() {
            if let Some(p) = &peer.outbound {
                consider(p.deadline_ms);
            }
            for p in &peer.inbound {
                consider(p.deadline_ms);
            }
            for s in &peer.retired {
                if let Some(t) = s.retire_at_ms {
                    consider(t);
                }
            }
            for p in peer.partial.values() {
                consider(p.deadline_ms);
            }
        }
        next
    }

    /// Expires handshakes, retired sessions and partial messages due by
    /// `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let events = &mut self.events;
        self.peers.retain(|id, peer| {
            if peer
                .outbound
                .as_ref()
                .is_some_and(|p| p.deadline_ms <= now_ms)
            {
                peer.outbound = None;
                if peer.current.is_none() {
                    events.push_back(SessionEvent::Unreachable {
                        peer: *id,
                        error: HandshakeError::Timeout,
                        unsent: peer.queue.drain(..).map(|(m, _)| m).collect(),
                    });
                }
            }
            peer.inbound.retain(|p| p.deadline_ms > now_ms);
            peer.retired
                .retain(|s| s.retire_at_ms.is_none_or(|t| t > now_ms));
            let before = peer.partial.len();
            peer.partial.retain(|_, p| p.deadline_ms > now_ms);
            if peer.partial.len() != before {
                peer.partial_bytes = peer.partial.values().map(|p| p.bytes).sum();
            }
            !peer.is_idle()
        });
    }
}

/// Seals `encoded` on `session`, fragmenting as needed.
fn seal(
    session: &mut Session,
    to: AgentId,
    encoded: &[u8],
    tag: u64,
    out: &mut VecDeque<Transmit>,
) -> Result<(), SendError> {
    let chunks: Vec<&[u8]> = if encoded.is_empty() {
        vec![&[][..]]
    } else {
        encoded.chunks(limits::MAX_FRAGMENT_PAYLOAD).collect()
    };
    let count = u16::try_from(chunks.len())
        .map_err(|_| SendError::App(AppError::BodyTooLarge(encoded.len())))?;
    let msg_no = session.next_msg_no;
    session.next_msg_no = session.next_msg_no.wrapping_add(1);
    let mut plain =
        BytesMut::with_capacity(limits::FRAGMENT_HEADER_LEN + limits::MAX_FRAGMENT_PAYLOAD);
    for (i, chunk) in chunks.iter().enumerate() {
        plain.clear();
        plain.put_u32(msg_no);
        plain.put_u16(i as u16);
        plain.put_u16(count);
        plain.put_slice(chunk);
        let nonce = session.next_nonce;
        session.next_nonce += 1;
        let mut ct =
            BytesMut::zeroed(limits::TRANSPORT_HEADER_LEN + plain.len() + limits::NOISE_TAG_LEN);
        ct[0] = EnvelopeKind::Transport as u8;
        ct[1..9].copy_from_slice(&session.id.to_be_bytes());
        ct[9..17].copy_from_slice(&nonce.to_be_bytes());
        let n = session
            .transport
            .write_message(nonce, &plain, &mut ct[limits::TRANSPORT_HEADER_LEN..])
            .map_err(|_| SendError::Encrypt)?;
        ct.truncate(limits::TRANSPORT_HEADER_LEN + n);
        out.push_back(Transmit {
            to,
            body: ct.freeze(),
            tag,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppMessage;

    fn table(n: u8) -> SessionTable {
        table_with(n, SessionConfig::default())
    }

    fn table_with(n: u8, config: SessionConfig) -> SessionTable {
        SessionTable::new(
            Identity::from_secret_bytes(&[n; 32]),
            NoiseKeypair::generate().unwrap(),
            config,
        )
    }

    fn chat(i: u64) -> AppMessage {
        AppMessage::Chat {
            msg_id: i,
            sent_at_ms: 0,
            text: format!("message {i}"),
        }
    }

    /// Routes every pending transmit between the tables, as a relay would,
    /// until nothing is left. Returns how many envelopes were routed.
    fn pump(tables: &mut [&mut SessionTable], now: u64) -> usize {
        let mut routed = 0;
        loop {
            let mut moved = false;
            for i in 0..tables.len() {
                while let Some(t) = tables[i].poll_transmit() {
                    let from = tables[i].agent_id();
                    if let Some(j) = tables.iter().position(|x| x.agent_id() == t.to) {
                        let _ = tables[j].handle_incoming(from, t.body, now);
                    }
                    routed += 1;
                    moved = true;
                }
            }
            if !moved {
                return routed;
            }
        }
    }

    fn messages(t: &mut SessionTable) -> Vec<(AgentId, AppMessage)> {
        let mut out = Vec::new();
        while let Some(e) = t.poll_event() {
            if let SessionEvent::Message { from, message } = e {
                out.push((from, message));
            }
        }
        out
    }

    fn drain(t: &mut SessionTable) -> Vec<Transmit> {
        std::iter::from_fn(|| t.poll_transmit()).collect()
    }

    #[test]
    fn first_contact_then_reuse_in_both_directions() {
        let (mut a, mut b) = (table(1), table(2));
        let (ida, idb) = (a.agent_id(), b.agent_id());
        a.send(idb, chat(1), 0).unwrap();
        assert!(!a.has_session(&idb));
        assert_eq!(pump(&mut [&mut a, &mut b], 0), 4, "msg1, msg2, msg3, data");
        assert_eq!(messages(&mut b), vec![(ida, chat(1))]);
        assert_eq!(a.session_id(&idb), b.session_id(&ida));
        // Reuse: one envelope, no new handshake, both ways.
        a.send(idb, chat(2), 1).unwrap();
        b.send(ida, chat(3), 1).unwrap();
        assert_eq!(pump(&mut [&mut a, &mut b], 1), 2);
        assert_eq!(messages(&mut b), vec![(ida, chat(2))]);
        assert_eq!(messages(&mut a), vec![(idb, chat(3))]);
    }

    #[test]
    fn simultaneous_first_contact_converges_on_one_session() {
        for (x, y) in [(1u8, 2u8), (2, 1)] {
            let (mut a, mut b) = (table(x), table(y));
            let (ida, idb) = (a.agent_id(), b.agent_id());
            a.send(idb, chat(10), 0).unwrap();
            b.send(ida, chat(20), 0).unwrap();
            // Both message 1s are in flight before either arrives.
            let ta = drain(&mut a);
            let tb = drain(&mut b);
            for t in ta {
                let _ = b.handle_incoming(ida, t.body, 0);
            }
            for t in tb {
                let _ = a.handle_incoming(idb, t.body, 0);
            }
            pump(&mut [&mut a, &mut b], 0);
            assert!(a.has_session(&idb) && b.has_session(&ida));
            assert_eq!(a.session_id(&idb), b.session_id(&ida));
            assert_eq!(messages(&mut b), vec![(ida, chat(10))]);
            assert_eq!(messages(&mut a), vec![(idb, chat(20))]);
        }
    }

    #[test]
    fn reordered_and_duplicated_delivery_yields_each_message_once() {
        let (mut a, mut b) = (table(1), table(2));
        let ida = a.agent_id();
        let idb = b.agent_id();
        a.send(idb, chat(0), 0).unwrap();
        pump(&mut [&mut a, &mut b], 0);
        messages(&mut b);
        for i in 1..=200 {
            a.send(idb, chat(i), 0).unwrap();
        }
        let mut sent = drain(&mut a);
        let dup = sent.clone();
        sent.extend(dup);
        sent.reverse();
        sent.swap(3, 250);
        for t in sent {
            let _ = b.handle_incoming(ida, t.body, 0);
        }
        let mut got: Vec<u64> = messages(&mut b)
            .into_iter()
            .map(|(_, m)| match m {
                AppMessage::Chat { msg_id, .. } => msg_id,
                other => panic!("{other:?}"),
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn one_mebibyte_body_is_fragmented_and_reassembled_in_any_order() {
        let (mut a, mut b) = (table(1), table(2));
        let (ida, idb) = (a.agent_id(), b.agent_id());
        a.send(idb, chat(0), 0).unwrap();
        pump(&mut [&mut a, &mut b], 0);
        messages(&mut b);
        let body: Vec<u8> = (0..limits::MAX_APP_BODY).map(|i| (i % 251) as u8).collect();
        let msg = AppMessage::Response {
            req_id: 9,
            body: body.into(),
        };
        a.send(idb, msg.clone(), 0).unwrap();
        let mut frags = drain(&mut a);
        assert!(frags.len() > 1 && frags.len() <= limits::MAX_FRAGMENTS);
        for f in &frags {
            assert!(f.body.len() <= limits::MAX_SEALED_BODY);
        }
        frags.rotate_left(5);
        for f in frags {
            b.handle_incoming(ida, f.body, 0).unwrap();
        }
        assert_eq!(messages(&mut b), vec![(ida, msg)]);
        let too_big = AppMessage::Response {
            req_id: 1,
            body: vec![0; limits::MAX_APP_BODY + 1].into(),
        };
        assert!(matches!(a.send(idb, too_big, 0), Err(SendError::App(_))));
    }

    #[test]
    fn tampering_with_any_byte_of_a_sealed_message_is_rejected() {
        let (mut a, mut b) = (table(1), table(2));
        let (ida, idb) = (a.agent_id(), b.agent_id());
        a.send(idb, chat(0), 0).unwrap();
        pump(&mut [&mut a, &mut b], 0);
        messages(&mut b);
        a.send(idb, chat(1), 0).unwrap();
        let env = drain(&mut a).remove(0).body;
        for i in 0..env.len() {
            let mut bad = env.to_vec();
            bad[i] ^= 0x04;
            assert!(b.handle_incoming(ida, bad.into(), 0).is_err(), "byte {i}");
        }
        assert!(messages(&mut b).is_empty());
        // The untouched message still goes through: nothing was burnt.
        b.handle_incoming(ida, env, 0).unwrap();
        assert_eq!(messages(&mut b), vec![(ida, chat(1))]);
    }

    #[test]
    fn a_relay_cannot_reattribute_a_message_to_another_sender() {
        let (mut a, mut b, c) = (table(1), table(2), table(3));
        let idb = b.agent_id();
        a.send(idb, chat(0), 0).unwrap();
        pump(&mut [&mut a, &mut b], 0);
        messages(&mut b);
        a.send(idb, chat(1), 0).unwrap();
        let env = drain(&mut a).remove(0).body;
        let err = b.handle_incoming(c.agent_id(), env, 0).unwrap_err();
        assert!(matches!(err, E2eError::UnknownSession(_)));
        assert!(messages(&mut b).is_empty());
    }

    #[test]
    fn rekey_after_bounded_messages_loses_nothing_in_flight() {
        let config = SessionConfig {
            rekey_after_messages: 5,
            ..SessionConfig::default()
        };
        let mut a = table_with(1, config);
        let mut b = table(2);
        let (ida, idb) = (a.agent_id(), b.agent_id());
        a.send(idb, chat(0), 0).unwrap();
        pump(&mut [&mut a, &mut b], 0);
        let first = a.session_id(&idb).unwrap();
        messages(&mut b);
        // Messages 1..=8 go out on the first session; the 5th triggers a
        // re-key handshake, which completes before the old messages arrive.
        for i in 1..=8 {
            a.send(idb, chat(i), 10).unwrap();
        }
        let in_flight: Vec<Transmit> = drain(&mut a);
        let (data, hs): (Vec<_>, Vec<_>) = in_flight.into_iter().partition(|t| t.body[0] == 4);
        for t in hs {
            b.handle_incoming(ida, t.body, 10).unwrap();
        }
        pump(&mut [&mut a, &mut b], 10);
        let second = a.session_id(&idb).unwrap();
        assert_ne!(first, second);
        assert_eq!(b.session_id(&ida), Some(second));
        for t in data {
            b.handle_incoming(ida, t.body, 20).unwrap();
        }
        a.send(idb, chat(9), 20).unwrap();
        pump(&mut [&mut a, &mut b], 20);
        let got: Vec<_> = messages(&mut b).into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, (1..=9).map(chat).collect::<Vec<_>>());
        // After the grace period the old session is gone.
        b.handle_timeout(20 + limits::SESSION_GRACE_MS + 1);
        assert!(b.peers[&ida].retired.is_empty());
    }

    #[test]
    fn peer_restart_is_detected_and_the_session_re_established() {
        let (mut a, mut b) = (table(1), table(2));
        let idb = b.agent_id();
        a.send(idb, chat(0), 0).unwrap();
        pump(&mut [&mut a, &mut b], 0);
        // B restarts: same identity, no sessions.
        let mut b = table(2);
        a.send(idb, chat(1), 5).unwrap();
        pump(&mut [&mut a, &mut b], 5);
        let lost = std::iter::from_fn(|| a.poll_event())
            .any(|e| matches!(e, SessionEvent::SessionLost { .. }));
        assert!(lost);
        // A re-handshook on its own; the next message arrives.
        assert!(a.has_session(&idb));
        a.send(idb, chat(2), 6).unwrap();
        pump(&mut [&mut a, &mut b], 6);
        let got: Vec<_> = messages(&mut b).into_iter().map(|(_, m)| m).collect();
        assert_eq!(got, vec![chat(2)]);
    }

    #[test]
    fn handshake_timeout_returns_the_queue() {
        let mut a = table(1);
        let b = table(2);
        let idb = b.agent_id();
        a.send(idb, chat(1), 0).unwrap();
        a.send(idb, chat(2), 0).unwrap();
        assert_eq!(a.poll_timeout(), Some(limits::HANDSHAKE_TIMEOUT_MS));
        a.handle_timeout(limits::HANDSHAKE_TIMEOUT_MS - 1);
        assert!(a.poll_event().is_none());
        a.handle_timeout(limits::HANDSHAKE_TIMEOUT_MS);
        match a.poll_event() {
            Some(SessionEvent::Unreachable {
                peer,
                error,
                unsent,
            }) => {
                assert_eq!(peer, idb);
                assert_eq!(error, HandshakeError::Timeout);
                assert_eq!(unsent, vec![chat(1), chat(2)]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(a.poll_timeout(), None);
        assert!(a.peers.is_empty(), "idle peers are forgotten");
    }

    #[test]
    fn a_withdrawn_message_is_never_sealed() {
        let mut a = table(1);
        let mut b = table(2);
        let idb = b.agent_id();
        a.send_tagged(idb, chat(1), 7, 0).unwrap();
        a.send_tagged(idb, chat(2), 8, 0).unwrap();
        assert!(a.withdraw(&idb, 7));
        assert!(!a.withdraw(&idb, 7), "once");
        assert!(!a.withdraw(&idb, 0), "untagged messages are not taken");
        pump(&mut [&mut a, &mut b], 1);
        assert_eq!(messages(&mut b), vec![(a.agent_id(), chat(2))]);
        // With a session, nothing waits: there is nothing to take back.
        a.send_tagged(idb, chat(3), 9, 2).unwrap();
        assert!(!a.withdraw(&idb, 9));
    }

    #[test]
    fn a_handshake_queued_for_an_offline_peer_waits_for_it() {
        let mut a = table(1);
        let mut b = table(2);
        let idb = b.agent_id();
        a.send(idb, chat(1), 0).unwrap();
        let init = drain(&mut a);
        // Not parked before the relay has stored it.
        assert!(!a.park_handshake(&idb, 5));
        a.handshake_at_relay(&idb);
        assert!(a.park_handshake(&idb, 5));
        assert_eq!(
            a.poll_timeout(),
            Some(5 + limits::PARKED_HANDSHAKE_TIMEOUT_MS)
        );
        // Past the usual timeout nothing is given up...
        a.handle_timeout(limits::HANDSHAKE_TIMEOUT_MS * 10);
        assert!(a.poll_event().is_none());
        // ...and when the peer comes back and answers, the message goes.
        let later = limits::HANDSHAKE_TIMEOUT_MS * 20;
        for t in init {
            b.handle_incoming(a.agent_id(), t.body, later).unwrap();
        }
        pump(&mut [&mut a, &mut b], later);
        assert_eq!(messages(&mut b), vec![(a.agent_id(), chat(1))]);
        // Without the relay's `queued`, the usual timeout applies.
        let mut c = table(3);
        c.send(idb, chat(2), 0).unwrap();
        c.handle_timeout(limits::HANDSHAKE_TIMEOUT_MS);
        assert!(matches!(
            c.poll_event(),
            Some(SessionEvent::Unreachable { .. })
        ));
    }

    #[test]
    fn queue_is_bounded_and_self_is_refused() {
        let config = SessionConfig {
            max_pending_per_peer: 2,
            ..SessionConfig::default()
        };
        let mut a = table_with(1, config);
        let idb = table(2).agent_id();
        a.send(idb, chat(1), 0).unwrap();
        a.send(idb, chat(2), 0).unwrap();
        assert_eq!(a.send(idb, chat(3), 0), Err(SendError::QueueFull));
        let me = a.agent_id();
        assert_eq!(a.send(me, chat(1), 0), Err(SendError::ToSelf));
        assert_eq!(
            a.handle_incoming(me, Bytes::from_static(&[5, 0, 0, 0, 0, 0, 0, 0, 0]), 0),
            Err(E2eError::FromSelf)
        );
    }

    #[test]
    fn stale_or_duplicated_handshake_messages_are_harmless() {
        let (mut a, mut b) = (table(1), table(2));
        let (ida, idb) = (a.agent_id(), b.agent_id());
        a.send(idb, chat(1), 0).unwrap();
        let m1 = drain(&mut a).remove(0);
        b.handle_incoming(ida, m1.body.clone(), 0).unwrap();
        let m2 = drain(&mut b).remove(0);
        a.handle_incoming(idb, m2.body.clone(), 0).unwrap();
        // A duplicate message 2 is refused without affecting the session.
        assert!(matches!(
            a.handle_incoming(idb, m2.body, 0),
            Err(E2eError::UnexpectedHandshake(_))
        ));
        pump(&mut [&mut a, &mut b], 0);
        assert_eq!(messages(&mut b), vec![(ida, chat(1))]);
    }

    #[test]
    fn garbage_envelopes_never_panic() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        let b = std::cell::RefCell::new(table(2));
        let ida = table(1).agent_id();
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..300), |raw| {
                let _ = b.borrow_mut().handle_incoming(ida, raw.into(), 0);
                Ok(())
            })
            .unwrap();
    }
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    #[test]
    fn tags_follow_messages_through_the_handshake_queue_and_fragments() {
        let mut a = SessionTable::new(
            Identity::from_secret_bytes(&[1; 32]),
            NoiseKeypair::generate().unwrap(),
            SessionConfig::default(),
        );
        let mut b = SessionTable::new(
            Identity::from_secret_bytes(&[2; 32]),
            NoiseKeypair::generate().unwrap(),
            SessionConfig::default(),
        );
        let (ida, idb) = (a.agent_id(), b.agent_id());
        let big = AppMessage::Response {
            req_id: 1,
            body: vec![0u8; 200_000].into(),
        };
        a.send_tagged(idb, big, 42, 0).unwrap();
        let m1 = a.poll_transmit().unwrap();
        assert_eq!(
            m1.tag, 42,
            "message 1 carries the tag of the message that needed it"
        );
        b.handle_incoming(ida, m1.body, 0).unwrap();
        let m2 = b.poll_transmit().unwrap();
        a.handle_incoming(idb, m2.body, 0).unwrap();
        let rest: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
        assert_eq!(rest[0].tag, 0, "message 3");
        assert!(rest.len() > 2);
        assert!(
            rest[1..].iter().all(|t| t.tag == 42),
            "every fragment is tagged"
        );
    }
}
