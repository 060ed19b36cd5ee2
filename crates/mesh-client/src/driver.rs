//! The connection driver: the one task that owns the socket.
//!
//! It runs `mesh-core`'s state machines — relay auth, heartbeat and the
//! end-to-end [`SessionTable`] — and keeps the request table, the outbox of
//! frames the relay has not yet confirmed, and the set of frames already
//! received (for de-duplication). Everything reaches it as a message: API
//! commands on one channel, socket events and connection attempts on
//! another, plus one timer. It is written once, on `futures` primitives and
//! the small [`crate::rt`] shim, so the same code runs under tokio and in a
//! browser.
//!
//! Request handlers run as their own tasks and send their replies back as
//! commands: a slow handler never blocks the connection, and a cancel can
//! always reach it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, StreamExt};
use mesh_core::acl::CHAT_CAPABILITY;
use mesh_core::app::ReceiptKind;
use mesh_core::auth::{
    ClientAuth, ClientStep, Heartbeat, HeartbeatAction, Session as RelaySession,
};
use mesh_core::frame::{DeliveryStatus, Frame, ResumeToken, Routed};
use mesh_core::noise::{Envelope, EnvelopeKind, NoiseKeypair};
use mesh_core::session::SendError;
use mesh_core::{AgentId, AppMessage, ErrorCode, Identity, SessionEvent, SessionTable};

use crate::client::{
    cancellation, lock, CancelTrigger, ClientOptions, Command, ConnectionState, Emitted, Handler,
    IncomingRequest, MeshClient, MessageEvent, MessageSubs, ReplyTo, Shared, StreamSink,
    MAX_UNREAD_CHUNKS,
};
use crate::error::{ClientError, HandlerError};
use crate::rt;
use crate::transport::{self, CloseInfo, Incoming};

/// Received (sender, message id) pairs remembered for de-duplication.
const SEEN_CAPACITY: usize = 65_536;
/// Frames kept for resending until the relay confirms them.
const OUTBOX_CAPACITY: usize = 8_192;
/// Events handled before the written frames are flushed.
const BURST: usize = 8;
/// Bytes of frames kept for resending (64 MiB).
const OUTBOX_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Chat messages kept until the peer's receipt, to seal again if the
/// session they were sealed on turns out to be lost.
const UNCONFIRMED_CHATS: usize = 4096;
/// Bytes of chat text kept until the peer's receipt (64 MiB).
const UNCONFIRMED_CHAT_BYTES: usize = 64 * 1024 * 1024;

enum Event {
    Connected {
        attempt: u64,
        sender: transport::Sender,
        rx: transport::Receiver,
        session: RelaySession,
    },
    ConnectFailed {
        attempt: u64,
        error: ClientError,
    },
    Link {
        id: u64,
        incoming: Incoming,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    None,
    Request(u64),
    Chat(u64),
}

impl Tag {
    /// The tag given to the session table (ids come from one counter, so
    /// request and chat ids never collide; 0 means untagged).
    fn id(self) -> u64 {
        match self {
            Tag::None => 0,
            Tag::Request(id) | Tag::Chat(id) => id,
        }
    }
}

struct OutFrame {
    peer: AgentId,
    frame: Bytes,
    tag: Tag,
    /// Carries a handshake message (resent when rate-limited: a stalled
    /// handshake would hold up everything queued behind it).
    handshake: bool,
}

/// A chat message we sent that the peer has not confirmed with a receipt.
struct SentChat {
    peer: AgentId,
    message: AppMessage,
    /// The session its transport envelopes were last sealed on; `None`
    /// while it waits for a handshake.
    session: Option<u64>,
    /// `Queued` was reported for it (once is enough).
    queued: bool,
    bytes: usize,
}

struct Link {
    id: u64,
    sender: transport::Sender,
    heartbeat: Heartbeat,
}

struct Pending {
    peer: AgentId,
    capability: String,
    message: AppMessage,
    timeout_ms: u64,
    deadline_ms: u64,
    reply: ReplyTo,
    next_seq: u32,
    buffer: BTreeMap<u32, Bytes>,
    end: Option<u32>,
    collected: BytesMut,
}

struct Driver {
    shared: Arc<Shared>,
    sessions: SessionTable,
    ev_tx: mpsc::UnboundedSender<Event>,
    link: Option<Link>,
    connecting: Option<u64>,
    attempts: u64,
    resume: Option<ResumeToken>,
    pinned_relay: Option<AgentId>,
    reconnect_at: Option<u64>,
    backoff_ms: u64,
    ready: Option<oneshot::Sender<Result<(), ClientError>>>,
    next_msg_id: u64,
    outbox: BTreeMap<u64, OutFrame>,
    outbox_bytes: usize,
    seen: HashSet<(AgentId, u64)>,
    seen_order: VecDeque<(AgentId, u64)>,
    pending: HashMap<u64, Pending>,
    serving: HashMap<(AgentId, u64), CancelTrigger>,
    /// Chats sent and not yet confirmed by a receipt, by message id (ids
    /// increase: the first is the oldest). A chat leaves on its receipt or
    /// its one `Failed`.
    chats: BTreeMap<u64, SentChat>,
    chat_bytes: usize,
    /// Received (sender, chat message id) pairs: a chat sealed again after
    /// a lost session travels in a new frame, so frame ids cannot catch it.
    seen_chats: HashSet<(AgentId, u64)>,
    seen_chats_order: VecDeque<(AgentId, u64)>,
    retries: Vec<(u64, u64)>,
    new_link_rx: Option<(u64, transport::Receiver)>,
    done: bool,
}

/// Starts the driver and waits for the first connection.
pub(crate) async fn start(
    relay_url: &str,
    identity: Identity,
    options: ClientOptions,
) -> Result<MeshClient, ClientError> {
    let noise = NoiseKeypair::generate().map_err(|e| ClientError::Protocol(e.to_string()))?;
    let (cmd_tx, cmd_rx) = mpsc::unbounded();
    let (ev_tx, ev_rx) = mpsc::unbounded();
    // On wasm32 handlers hold JS functions (not `Send`); one thread there.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    let shared = Arc::new(Shared {
        agent: identity.agent_id(),
        relay_url: relay_url.to_string(),
        acl: Mutex::new(options.acl.clone()),
        next_id: AtomicU64::new(rt::random_u64() >> 12),
        handlers: Mutex::new(HashMap::new()),
        state: Mutex::new((ConnectionState::Connecting, Vec::new())),
        message_subs: Mutex::new(MessageSubs::new()),
        cmd: cmd_tx,
        identity: identity.clone(),
        options: options.clone(),
    });
    let (ready_tx, ready_rx) = oneshot::channel();
    let mut driver = Driver {
        sessions: SessionTable::new(identity, noise, options.session.clone()),
        shared: shared.clone(),
        ev_tx,
        link: None,
        connecting: None,
        attempts: 0,
        resume: None,
        pinned_relay: options.expected_relay,
        reconnect_at: None,
        backoff_ms: options.reconnect_initial_ms,
        ready: Some(ready_tx),
        next_msg_id: rt::random_u64() >> 1,
        outbox: BTreeMap::new(),
        outbox_bytes: 0,
        seen: HashSet::new(),
        seen_order: VecDeque::new(),
        pending: HashMap::new(),
        serving: HashMap::new(),
        chats: BTreeMap::new(),
        chat_bytes: 0,
        seen_chats: HashSet::new(),
        seen_chats_order: VecDeque::new(),
        retries: Vec::new(),
        new_link_rx: None,
        done: false,
    };
    driver.start_attempt();
    rt::spawn(driver.run(cmd_rx, ev_rx));
    match ready_rx.await {
        Ok(Ok(())) => Ok(MeshClient { shared }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClientError::Closed),
    }
}

/// Connects and authenticates once.
async fn connect_once(
    url: String,
    dialer: &transport::Dialer,
    identity: Identity,
    expected: Option<AgentId>,
    resume: Option<ResumeToken>,
) -> Result<(transport::Sender, transport::Receiver, RelaySession), ClientError> {
    let (mut sender, mut rx) = transport::connect(&url, dialer).await?;
    let mut auth = ClientAuth::new(identity, url.clone(), expected, resume).map_err(|e| {
        ClientError::Auth {
            code: e.code(),
            message: e.to_string(),
        }
    })?;
    loop {
        match transport::next(&mut rx).await {
            Incoming::Frame(bytes) => {
                let frame =
                    Frame::decode(bytes).map_err(|e| ClientError::Protocol(e.to_string()))?;
                match auth.handle_frame(frame) {
                    Ok(ClientStep::Send(f)) => {
                        let enc = f
                            .encode()
                            .map_err(|e| ClientError::Protocol(e.to_string()))?;
                        sender.send(enc).await?;
                    }
                    Ok(ClientStep::Done(session)) => return Ok((sender, rx, session)),
                    Err(e) => {
                        return Err(ClientError::Auth {
                            code: e.code(),
                            message: e.to_string(),
                        })
                    }
                }
            }
            Incoming::Closed(info) => {
                return Err(match info.code.and_then(ErrorCode::from_close_code) {
                    Some(code) => ClientError::Auth {
                        code,
                        message: info.reason,
                    },
                    None => ClientError::Transport(transport::TransportError::Connect {
                        url,
                        reason: format!("closed during authentication: {}", info.reason),
                    }),
                })
            }
        }
    }
}

/// What the application sees when the session table refuses a message.
fn send_error(peer: AgentId, e: SendError) -> ClientError {
    match e {
        SendError::App(e) => ClientError::PayloadTooLarge(e.to_string()),
        SendError::QueueFull => ClientError::Unreachable(format!(
            "too many messages waiting for a session with {}",
            peer.short()
        )),
        SendError::ToSelf => ClientError::BadRequest("cannot send to ourselves".into()),
        e => ClientError::Protocol(e.to_string()),
    }
}

fn map_refusal(code: ErrorCode, peer: &AgentId) -> ClientError {
    match code {
        ErrorCode::Revoked => ClientError::Revoked(format!("{} is revoked", peer.short())),
        ErrorCode::UnknownRecipient => {
            ClientError::Unreachable(format!("the relay does not know {}", peer.short()))
        }
        ErrorCode::InboxFull => {
            ClientError::Unreachable(format!("{}'s inbox is full", peer.short()))
        }
        ErrorCode::Unreachable => ClientError::Unreachable(format!("{} is offline", peer.short())),
        other => ClientError::Remote {
            code: other,
            message: "refused by the relay".into(),
        },
    }
}

impl Driver {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
        mut ev_rx: mpsc::UnboundedReceiver<Event>,
    ) {
        // The current link's incoming frames, read here directly.
        let mut link_rx: Option<(u64, transport::Receiver)> = None;
        while !self.done {
            let now = rt::now_ms();
            let wake = self
                .next_wake()
                .map_or(60_000, |t| t.saturating_sub(now))
                .min(60_000);
            let step = {
                let mut timer = Box::pin(rt::sleep_ms(wake)).fuse();
                let mut incoming = Box::pin(next_incoming(&mut link_rx)).fuse();
                futures::select_biased! {
                    got = incoming => Step::Event(Event::Link { id: got.0, incoming: got.1 }),
                    ev = ev_rx.next() => ev.map_or(Step::Stop, Step::Event),
                    cmd = cmd_rx.next() => cmd.map_or(Step::Stop, Step::Command),
                    _ = timer => Step::Timer,
                }
            };
            match step {
                Step::Event(ev) => self.on_event(ev).await,
                Step::Command(cmd) => self.on_command(cmd).await,
                Step::Timer => self.on_timer().await,
                Step::Stop => break,
            }
            // Handle whatever else is ready before writing, so a burst of
            // frames (replies, acks) leaves in one write.
            for _ in 0..BURST {
                let ready = link_rx
                    .as_mut()
                    .and_then(|(id, rx)| rx.try_recv().ok().map(|i| (*id, i)));
                if let Some((id, incoming)) = ready {
                    self.on_event(Event::Link { id, incoming }).await;
                } else if let Ok(ev) = ev_rx.try_recv() {
                    self.on_event(ev).await;
                } else if let Ok(cmd) = cmd_rx.try_recv() {
                    self.on_command(cmd).await;
                } else {
                    break;
                }
            }
            if let Some(new) = self.new_link_rx.take() {
                link_rx = Some(new);
            }
            if link_rx.as_ref().map(|(id, _)| *id) != self.link.as_ref().map(|l| l.id) {
                link_rx = None;
            }
            self.flush().await;
        }
        if let Some(mut link) = self.link.take() {
            link.sender.close().await;
        }
    }

    fn next_wake(&self) -> Option<u64> {
        let candidates = [
            self.sessions.poll_timeout(),
            self.link.as_ref().map(|l| l.heartbeat.poll_timeout()),
            self.reconnect_at,
            self.pending.values().map(|p| p.deadline_ms).min(),
            self.retries.iter().map(|(at, _)| *at).min(),
        ];
        candidates.into_iter().flatten().min()
    }

    // ----- connection management -------------------------------------------

    fn start_attempt(&mut self) {
        self.attempts += 1;
        let attempt = self.attempts;
        self.connecting = Some(attempt);
        self.reconnect_at = None;
        self.shared.set_state(ConnectionState::Connecting);
        let url = self.shared.relay_url.clone();
        let identity = self.shared.identity.clone();
        let expected = self.pinned_relay;
        let resume = self.resume;
        let timeout = self.shared.options.connect_timeout_ms;
        let dialer = self.shared.options.dialer.clone();
        let ev_tx = self.ev_tx.clone();
        rt::spawn(async move {
            let attempt_fut = connect_once(url, &dialer, identity, expected, resume).fuse();
            let timer = rt::sleep_ms(timeout).fuse();
            futures::pin_mut!(attempt_fut, timer);
            let ev = futures::select! {
                r = attempt_fut => match r {
                    Ok((sender, rx, session)) => Event::Connected { attempt, sender, rx, session },
                    Err(error) => Event::ConnectFailed { attempt, error },
                },
                _ = timer => Event::ConnectFailed { attempt, error: ClientError::Timeout(timeout) },
            };
            let _ = ev_tx.unbounded_send(ev);
        });
    }

    fn schedule_reconnect(&mut self) {
        self.shared.set_state(ConnectionState::Offline);
        // Full jitter between half and all of the current backoff.
        let base = self.backoff_ms.max(1);
        let delay = base / 2 + rt::random_u64() % (base / 2 + 1);
        self.reconnect_at = Some(rt::now_ms() + delay);
        self.backoff_ms = (self.backoff_ms * 2).min(self.shared.options.reconnect_max_ms);
    }

    fn finish(&mut self, state: ConnectionState, error: ClientError) {
        self.done = true;
        self.shared.set_state(state);
        for (_, p) in self.pending.drain() {
            fail(p.reply, error.clone());
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(error));
        }
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Connected {
                attempt,
                sender,
                rx,
                session,
            } => {
                if self.connecting != Some(attempt) || self.done {
                    return;
                }
                self.connecting = None;
                if self.shared.options.pin_relay {
                    self.pinned_relay = Some(session.relay_id);
                }
                self.resume = Some(session.resume_token);
                self.backoff_ms = self.shared.options.reconnect_initial_ms;
                let heartbeat_ms = u64::from(session.heartbeat_ms.max(1000));
                // The run loop reads this link's frames itself (no
                // forwarding task: one hand-off fewer per frame).
                self.new_link_rx = Some((attempt, rx));
                self.link = Some(Link {
                    id: attempt,
                    sender,
                    heartbeat: Heartbeat::new(
                        rt::now_ms(),
                        heartbeat_ms,
                        mesh_core::limits::HEARTBEAT_MISSES,
                    ),
                });
                tracing::debug!(resumed = session.resumed, "connected to relay");
                self.shared.set_state(ConnectionState::Online);
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
                // Everything the relay had not confirmed goes again; the relay
                // and the recipients de-duplicate by message id.
                let frames: Vec<Bytes> = self.outbox.values().map(|o| o.frame.clone()).collect();
                for f in frames {
                    self.write(f).await;
                }
            }
            Event::ConnectFailed { attempt, error } => {
                if self.connecting != Some(attempt) || self.done {
                    return;
                }
                self.connecting = None;
                tracing::debug!(%error, "connection attempt failed");
                if self.ready.is_some() {
                    self.finish(ConnectionState::Closed(error.to_string()), error);
                    return;
                }
                match &error {
                    ClientError::Auth {
                        code: ErrorCode::Revoked,
                        ..
                    } => self.finish(
                        ConnectionState::Revoked,
                        ClientError::Revoked("our key is revoked".into()),
                    ),
                    ClientError::Auth {
                        code: ErrorCode::WrongRelay,
                        message,
                    } => {
                        let reason = format!("the relay's identity changed: {message}");
                        self.finish(
                            ConnectionState::Closed(reason.clone()),
                            ClientError::Protocol(reason),
                        );
                    }
                    _ => self.schedule_reconnect(),
                }
            }
            Event::Link { id, incoming } => {
                if self.link.as_ref().map(|l| l.id) != Some(id) {
                    return;
                }
                match incoming {
                    Incoming::Frame(bytes) => self.on_frame(bytes).await,
                    Incoming::Closed(info) => self.on_link_closed(info),
                }
            }
        }
    }

    fn on_link_closed(&mut self, info: CloseInfo) {
        self.link = None;
        let code = info.code.and_then(ErrorCode::from_close_code);
        tracing::debug!(?code, reason = %info.reason, "relay connection closed");
        match code {
            Some(ErrorCode::Revoked) => self.finish(
                ConnectionState::Revoked,
                ClientError::Revoked("our key is revoked".into()),
            ),
            Some(ErrorCode::Replaced) => {
                let reason = "replaced by another connection using this identity".to_string();
                self.finish(
                    ConnectionState::Closed(reason.clone()),
                    ClientError::Protocol(reason),
                );
            }
            _ => self.schedule_reconnect(),
        }
    }

    /// Buffers a frame for the relay; the run loop flushes after each burst.
    async fn write(&mut self, frame: Bytes) {
        let failed = match self.link.as_mut() {
            Some(link) => link.sender.feed(frame).await.is_err(),
            None => false,
        };
        self.after_write(failed).await;
    }

    /// Writes everything buffered.
    async fn flush(&mut self) {
        let failed = match self.link.as_mut() {
            Some(link) => link.sender.flush().await.is_err(),
            None => false,
        };
        self.after_write(failed).await;
    }

    async fn after_write(&mut self, failed: bool) {
        if failed {
            // The reader will report the close; stop writing to it now.
            if let Some(mut link) = self.link.take() {
                link.sender.close().await;
            }
            self.schedule_reconnect();
        }
    }

    // ----- relay frames ----------------------------------------------------

    async fn on_frame(&mut self, bytes: Bytes) {
        let now = rt::now_ms();
        if let Some(link) = self.link.as_mut() {
            link.heartbeat.on_receive(now);
        }
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "undecodable frame from relay");
                return;
            }
        };
        match frame {
            Frame::Deliver(Routed {
                peer, msg_id, body, ..
            }) => {
                if let Ok(ack) = (Frame::Ack { peer, msg_id }).encode() {
                    self.write(ack).await;
                }
                if !self.seen.insert((peer, msg_id)) {
                    return;
                }
                self.seen_order.push_back((peer, msg_id));
                if self.seen_order.len() > SEEN_CAPACITY {
                    if let Some(old) = self.seen_order.pop_front() {
                        self.seen.remove(&old);
                    }
                }
                // The peer has no session `lost` (it restarted): what was
                // sealed on it cannot be opened. The session table starts a
                // new handshake if `lost` is the current session (and then
                // re-sends open requests); chats sealed on it are sealed
                // again here — on the new session once it is ready, or on
                // the current one if `lost` was already replaced.
                let lost = match EnvelopeKind::of(&body) {
                    Some(EnvelopeKind::SessionUnknown) => match Envelope::decode(body.clone()) {
                        Ok(Envelope::SessionUnknown { session_id }) => Some(session_id),
                        _ => None,
                    },
                    _ => None,
                };
                if let Err(e) = self.sessions.handle_incoming(peer, body, now) {
                    tracing::debug!(peer = %peer.short(), error = %e, "end-to-end message rejected");
                }
                if let Some(session_id) = lost {
                    self.reseal_chats(peer, session_id);
                }
                self.pump().await;
            }
            Frame::Status {
                peer,
                msg_id,
                status,
            } => self.on_status(peer, msg_id, status),
            Frame::Error(e) => {
                if e.code == ErrorCode::RateLimited {
                    let err = ClientError::RateLimited {
                        retry_after_ms: e.retry_after_ms,
                    };
                    let handshake = self.outbox.get(&e.ref_msg_id).is_some_and(|o| o.handshake);
                    match self.outbox.get(&e.ref_msg_id).map(|o| (o.peer, o.tag)) {
                        // A request or chat message: the caller decides.
                        Some((peer, tag @ (Tag::Request(_) | Tag::Chat(_)))) if !handshake => {
                            self.unqueue(&e.ref_msg_id);
                            self.fail_tag(peer, tag, err);
                        }
                        // A reply, receipt or handshake message has no
                        // caller to tell (a stalled handshake would hold up
                        // every message queued behind it): send it again
                        // when allowed.
                        Some(_) => {
                            let at = rt::now_ms() + u64::from(e.retry_after_ms.max(1));
                            self.retries.push((at, e.ref_msg_id));
                        }
                        None => {}
                    }
                } else {
                    tracing::debug!(code = %e.code, message = %e.message, "relay error");
                }
            }
            Frame::Ping(n) => {
                if let Ok(pong) = Heartbeat::pong_for(n).encode() {
                    self.write(pong).await;
                }
            }
            _ => {}
        }
    }

    fn on_status(&mut self, peer: AgentId, msg_id: u64, status: DeliveryStatus) {
        match status {
            // Kept until queued or delivered: only those survive a relay crash.
            DeliveryStatus::Forwarded => {}
            DeliveryStatus::Queued => {
                if let Some(out) = self.unqueue(&msg_id) {
                    // Whichever message started the handshake, a chat may
                    // wait behind it.
                    let chat_waits = matches!(out.tag, Tag::Chat(_))
                        || self
                            .chats
                            .values()
                            .any(|c| c.peer == peer && c.session.is_none());
                    if out.handshake {
                        self.sessions.handshake_at_relay(&peer);
                        if chat_waits {
                            // The peer is offline and its inbox holds the
                            // handshake a chat waits behind: wait for the
                            // peer rather than give up after the usual
                            // handshake timeout. (Not for requests alone:
                            // each has its own timeout. A chat sent later
                            // parks it then.)
                            self.sessions.park_handshake(&peer, rt::now_ms());
                        }
                    }
                    if let (Tag::Chat(id), false) = (out.tag, out.handshake) {
                        // Once per chat, however many frames (fragments,
                        // or sealing again) it took. Not for a handshake
                        // the chat waits behind: then only the handshake is
                        // at the relay, and the chat lives in this process
                        // until the peer answers and it can be sealed.
                        if let Some(chat) = self.chats.get_mut(&id).filter(|c| !c.queued) {
                            chat.queued = true;
                            self.shared.emit(MessageEvent::Queued { peer, msg_id: id });
                        }
                    }
                }
            }
            DeliveryStatus::Delivered => {
                self.unqueue(&msg_id);
            }
            DeliveryStatus::Refused(code) => {
                let Some(out) = self.unqueue(&msg_id) else {
                    return;
                };
                let err = map_refusal(code, &peer);
                if matches!(
                    code,
                    ErrorCode::Revoked
                        | ErrorCode::UnknownRecipient
                        | ErrorCode::InboxFull
                        | ErrorCode::Unreachable
                ) {
                    // Nothing more can reach this peer now: fail everything
                    // waiting on it and start afresh next time. (The
                    // refused frame's own message may be among the unsent:
                    // it fails once, `fail_tag` below finds it gone.)
                    for unsent in self.sessions.forget_peer(&peer) {
                        self.fail_message(peer, &unsent, err.clone());
                    }
                    let ids: Vec<u64> = self
                        .pending
                        .iter()
                        .filter(|(_, p)| p.peer == peer)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in ids {
                        if let Some(p) = self.pending.remove(&id) {
                            fail(p.reply, err.clone());
                        }
                    }
                }
                self.fail_tag(peer, out.tag, err);
            }
        }
    }

    /// Forgets a frame the relay has confirmed (or refused).
    fn unqueue(&mut self, msg_id: &u64) -> Option<OutFrame> {
        let out = self.outbox.remove(msg_id)?;
        self.outbox_bytes -= out.frame.len();
        Some(out)
    }

    fn fail_tag(&mut self, peer: AgentId, tag: Tag, err: ClientError) {
        match tag {
            Tag::Request(id) => {
                if let Some(p) = self.pending.remove(&id) {
                    fail(p.reply, err);
                }
            }
            Tag::Chat(msg_id) => self.fail_chat(peer, msg_id, err),
            Tag::None => {}
        }
    }

    /// Reports chat `msg_id` as failed, once: it leaves the chat table, and
    /// a chat no longer there (confirmed, or already failed) is not
    /// reported again.
    fn fail_chat(&mut self, peer: AgentId, msg_id: u64, error: ClientError) {
        let Some(chat) = self.chats.remove(&msg_id) else {
            return;
        };
        self.chat_bytes -= chat.bytes;
        self.shared.emit(MessageEvent::Failed {
            peer,
            msg_id,
            error,
        });
    }

    /// Remembers a chat until the peer's receipt; the oldest gives way
    /// past the table's bounds.
    fn track_chat(&mut self, peer: AgentId, msg_id: u64, message: AppMessage, text_len: usize) {
        let bytes = text_len + 64;
        while !self.chats.is_empty()
            && (self.chats.len() >= UNCONFIRMED_CHATS
                || self.chat_bytes + bytes > UNCONFIRMED_CHAT_BYTES)
        {
            if let Some((id, old)) = self.chats.pop_first() {
                self.chat_bytes -= old.bytes;
                tracing::warn!(
                    msg_id = id,
                    "too many chat messages without a receipt; forgetting the oldest \
                     (it is not sent again if its session turns out to be lost)"
                );
            }
        }
        self.chat_bytes += bytes;
        self.chats.insert(
            msg_id,
            SentChat {
                peer,
                message,
                session: None,
                queued: false,
                bytes,
            },
        );
    }

    /// Seals again, for `peer`, every unconfirmed chat last sealed on
    /// session `lost`, in the order they were first sent. The session table
    /// queues them behind the new handshake (or seals them on the current
    /// session); the receiver de-duplicates by chat message id.
    fn reseal_chats(&mut self, peer: AgentId, lost: u64) {
        let again: Vec<(u64, AppMessage)> = self
            .chats
            .iter_mut()
            .filter(|(_, c)| c.peer == peer && c.session == Some(lost))
            .map(|(id, c)| {
                c.session = None;
                (*id, c.message.clone())
            })
            .collect();
        if !again.is_empty() {
            tracing::debug!(
                peer = %peer.short(),
                count = again.len(),
                "sealing chat messages again after a lost session"
            );
        }
        for (id, message) in again {
            if let Err(e) = self.sessions.send_tagged(peer, message, id, rt::now_ms()) {
                let err = send_error(peer, e);
                self.fail_chat(peer, id, err);
            }
        }
    }

    fn fail_message(&mut self, peer: AgentId, msg: &AppMessage, err: ClientError) {
        match msg {
            AppMessage::Request { req_id, .. } => self.fail_tag(peer, Tag::Request(*req_id), err),
            AppMessage::Chat { msg_id, .. } => self.fail_tag(peer, Tag::Chat(*msg_id), err),
            _ => {}
        }
    }

    // ----- end-to-end ------------------------------------------------------

    /// Seals `msg` for `peer` and sends what results.
    async fn send_app(
        &mut self,
        peer: AgentId,
        msg: AppMessage,
        tag: Tag,
    ) -> Result<(), ClientError> {
        match self.sessions.send_tagged(peer, msg, tag.id(), rt::now_ms()) {
            Ok(()) => {
                self.pump().await;
                Ok(())
            }
            Err(e) => Err(send_error(peer, e)),
        }
    }

    /// Sends every envelope the session table produced, then handles its
    /// events (which may produce more).
    async fn pump(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.sessions.poll_transmit() {
                progressed = true;
                let tag = if t.tag == 0 {
                    Tag::None
                } else if self.pending.contains_key(&t.tag) {
                    Tag::Request(t.tag)
                } else if let Some(chat) = self.chats.get_mut(&t.tag) {
                    // Remember which session it is sealed on, to seal it
                    // again should the peer say it has no such session.
                    if let Ok(Envelope::Transport { session_id, .. }) =
                        Envelope::decode(t.body.clone())
                    {
                        chat.session = Some(session_id);
                    }
                    Tag::Chat(t.tag)
                } else {
                    Tag::None
                };
                let msg_id = self.next_msg_id;
                self.next_msg_id = self.next_msg_id.wrapping_add(1);
                // `forwarded` would change nothing here: frames stay in the
                // outbox until `queued` or `delivered`.
                let handshake = EnvelopeKind::of(&t.body).is_some_and(EnvelopeKind::is_handshake);
                let frame = Frame::Send(Routed {
                    peer: t.to,
                    msg_id,
                    flags: mesh_core::frame::flags::QUIET,
                    body: t.body,
                });
                let Ok(frame) = frame.encode() else { continue };
                while self.outbox.len() >= OUTBOX_CAPACITY
                    || (self.outbox_bytes + frame.len() > OUTBOX_MAX_BYTES
                        && !self.outbox.is_empty())
                {
                    // Oldest unconfirmed frame gives way; its request will
                    // time out rather than the client grow without bound.
                    if let Some((_, old)) = self.outbox.pop_first() {
                        self.outbox_bytes -= old.frame.len();
                    }
                }
                self.outbox_bytes += frame.len();
                self.outbox.insert(
                    msg_id,
                    OutFrame {
                        peer: t.to,
                        frame: frame.clone(),
                        tag,
                        handshake,
                    },
                );
                self.write(frame).await;
            }
            while let Some(ev) = self.sessions.poll_event() {
                progressed = true;
                self.on_session_event(ev);
            }
            if !progressed {
                return;
            }
        }
    }

    fn on_session_event(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::Message { from, message } => self.on_app(from, message),
            SessionEvent::Established { peer, .. } => {
                tracing::debug!(peer = %peer.short(), "end-to-end session established");
            }
            SessionEvent::Unreachable {
                peer,
                error,
                unsent,
            } => {
                let err = ClientError::Unreachable(format!("{}: {error}", peer.short()));
                for m in &unsent {
                    self.fail_message(peer, m, err.clone());
                }
            }
            SessionEvent::SessionLost { peer, .. } => {
                // The peer restarted: what we had in flight to it may be
                // gone. Send open requests again on the new session.
                let again: Vec<AppMessage> = self
                    .pending
                    .values()
                    .filter(|p| p.peer == peer)
                    .map(|p| p.message.clone())
                    .collect();
                for m in again {
                    let tag = m.req_id().unwrap_or(0);
                    let _ = self.sessions.send_tagged(peer, m, tag, rt::now_ms());
                }
            }
        }
    }

    /// Queues a reply; the surrounding `pump` sends it.
    /// Stops our request `req_id` at `peer`: taken back if it still waits
    /// behind a handshake (so it never runs), otherwise cancelled there.
    async fn stop_request(&mut self, peer: AgentId, req_id: u64) {
        if !self.sessions.withdraw(&peer, Tag::Request(req_id).id()) {
            let _ = self
                .send_app(peer, AppMessage::Cancel { req_id }, Tag::None)
                .await;
        }
    }

    fn reply(&mut self, peer: AgentId, msg: AppMessage) {
        if let Err(e) = self.sessions.send(peer, msg, rt::now_ms()) {
            tracing::debug!(error = %e, "could not send reply");
        }
    }

    fn on_app(&mut self, from: AgentId, message: AppMessage) {
        match message {
            AppMessage::Request {
                req_id,
                capability,
                stream,
                body,
            } => {
                if self.serving.contains_key(&(from, req_id)) {
                    return;
                }
                let decision = lock(&self.shared.acl).evaluate(&from, &capability);
                if !decision.is_allowed() {
                    let message = format!("{capability}: {decision}");
                    self.reply(
                        from,
                        AppMessage::Error {
                            req_id,
                            code: ErrorCode::Denied,
                            message: truncate(message),
                        },
                    );
                    return;
                }
                let handler = lock(&self.shared.handlers).get(&capability).cloned();
                let Some(handler) = handler else {
                    self.reply(
                        from,
                        AppMessage::Error {
                            req_id,
                            code: ErrorCode::UnknownCapability,
                            message: format!("no handler for {capability}"),
                        },
                    );
                    return;
                };
                let max = self.shared.options.max_serving;
                if self.serving.len() >= max {
                    self.reply(
                        from,
                        AppMessage::Error {
                            req_id,
                            code: ErrorCode::RateLimited,
                            message: format!(
                                "this agent is serving {max} requests already; try again later"
                            ),
                        },
                    );
                    return;
                }
                let (trigger, cancel) = cancellation();
                self.serving.insert((from, req_id), trigger);
                let request = IncomingRequest {
                    from,
                    capability,
                    body,
                    req_id,
                    cancel: cancel.clone(),
                };
                let cmd = self.shared.cmd.clone();
                let _ = stream;
                let handler = match handler {
                    Handler::Unary(h) => {
                        // Many handlers finish without waiting (echo, lookups):
                        // poll once here and answer at once; only a handler
                        // that has to wait gets a task of its own.
                        let mut fut = h(request);
                        let reply = move |result: Result<Bytes, HandlerError>| match result {
                            Ok(body) => AppMessage::Response { req_id, body },
                            Err(e) => handler_error(req_id, e),
                        };
                        match (&mut fut).now_or_never() {
                            Some(result) => {
                                self.serving.remove(&(from, req_id));
                                self.reply(from, reply(result));
                            }
                            None => rt::spawn(async move {
                                let msg = reply(fut.await);
                                let _ = cmd.unbounded_send(Command::Reply {
                                    peer: from,
                                    req_id,
                                    msg,
                                    last: true,
                                    queued: None,
                                });
                            }),
                        }
                        return;
                    }
                    Handler::Stream(h) => h,
                };
                rt::spawn(async move {
                    let sent = Arc::new(AtomicU32::new(0));
                    let sink = StreamSink {
                        cmd: cmd.clone(),
                        peer: from,
                        req_id,
                        sent: sent.clone(),
                        queued: Arc::new(AtomicU32::new(0)),
                        cancel,
                    };
                    let msg = match handler(request, sink).await {
                        Ok(()) => AppMessage::StreamEnd {
                            req_id,
                            count: sent.load(Ordering::SeqCst),
                        },
                        Err(e) => handler_error(req_id, e),
                    };
                    let _ = cmd.unbounded_send(Command::Reply {
                        peer: from,
                        req_id,
                        msg,
                        last: true,
                        queued: None,
                    });
                });
            }
            AppMessage::Cancel { req_id } => {
                if let Some(mut t) = self.serving.remove(&(from, req_id)) {
                    t.fire();
                }
            }
            AppMessage::Response { req_id, body } => {
                if let Some(p) = self.pending.remove(&req_id) {
                    if p.peer == from {
                        complete(p, body);
                    } else {
                        self.pending.insert(req_id, p);
                    }
                }
            }
            AppMessage::Error {
                req_id,
                code,
                message,
            } => {
                if let Some(p) = self.pending.remove(&req_id) {
                    if p.peer == from {
                        let err = ClientError::from_remote(code, message, &p.capability);
                        fail(p.reply, err);
                    } else {
                        self.pending.insert(req_id, p);
                    }
                }
            }
            AppMessage::StreamChunk { req_id, seq, body } => {
                let Some(p) = self.pending.get_mut(&req_id) else {
                    return;
                };
                if p.peer != from || seq < p.next_seq {
                    return;
                }
                // A stream's timeout bounds the wait for each chunk; a plain
                // request's bounds the whole answer, however it comes, so a
                // peer that drips chunks cannot hold it open.
                if matches!(p.reply, ReplyTo::Stream(_)) {
                    p.deadline_ms = rt::now_ms() + p.timeout_ms;
                }
                p.buffer.insert(seq, body);
                self.drain_stream(req_id);
            }
            AppMessage::StreamEnd { req_id, count } => {
                let Some(p) = self.pending.get_mut(&req_id) else {
                    return;
                };
                if p.peer != from {
                    return;
                }
                p.end = Some(count);
                self.drain_stream(req_id);
            }
            AppMessage::Chat {
                msg_id,
                sent_at_ms,
                text,
            } => {
                let allowed = lock(&self.shared.acl)
                    .evaluate(&from, CHAT_CAPABILITY)
                    .is_allowed();
                // A chat sealed again (its session looked lost) comes in a
                // new frame: show it once, but acknowledge it again — the
                // sender evidently missed the receipt.
                if !self.seen_chats.contains(&(from, msg_id)) {
                    let emitted = self.shared.emit(MessageEvent::Chat {
                        from,
                        msg_id,
                        sent_at_ms,
                        text,
                        allowed,
                    });
                    if emitted == Emitted::Dropped {
                        // Nobody is reading chats (or every reader is
                        // thousands of events behind): no `delivered`
                        // receipt, so the sender does not believe it
                        // arrived, and a copy sent again is shown.
                        tracing::warn!(%from, msg_id, "a chat no messages() subscriber took is not acknowledged");
                        return;
                    }
                    self.seen_chats.insert((from, msg_id));
                    self.seen_chats_order.push_back((from, msg_id));
                    if self.seen_chats_order.len() > SEEN_CAPACITY {
                        if let Some(old) = self.seen_chats_order.pop_front() {
                            self.seen_chats.remove(&old);
                        }
                    }
                }
                // Until the first messages() subscriber, chats are only
                // kept for it: that subscription acknowledges them (see
                // `MeshClient::messages`).
                if allowed && !lock(&self.shared.message_subs).keeping() {
                    self.reply(
                        from,
                        AppMessage::Receipt {
                            msg_id,
                            kind: ReceiptKind::Delivered,
                        },
                    );
                }
            }
            AppMessage::Receipt { msg_id, kind } => {
                // Confirmed: it will not be sealed again or reported failed.
                if self.chats.get(&msg_id).is_some_and(|c| c.peer == from) {
                    if let Some(chat) = self.chats.remove(&msg_id) {
                        self.chat_bytes -= chat.bytes;
                    }
                }
                self.shared
                    .emit(MessageEvent::Receipt { from, msg_id, kind });
            }
        }
    }

    /// Delivers buffered stream chunks in order; completes at the end.
    /// Every buffer here is bounded: a peer that streams far ahead, a
    /// unary answer that outgrows the body limit, or a caller that stops
    /// reading fails the request and cancels it at the peer.
    fn drain_stream(&mut self, req_id: u64) {
        let Some(p) = self.pending.get_mut(&req_id) else {
            return;
        };
        let mut overflow = None;
        if p.buffer.len() > MAX_UNREAD_CHUNKS {
            overflow = Some(ClientError::Protocol(format!(
                "the peer sent more than {MAX_UNREAD_CHUNKS} chunks out of order"
            )));
        }
        while overflow.is_none() {
            let Some(body) = p.buffer.remove(&p.next_seq) else {
                break;
            };
            p.next_seq += 1;
            match &p.reply {
                ReplyTo::Stream(s) => {
                    if s.unread.fetch_add(1, Ordering::AcqRel) >= MAX_UNREAD_CHUNKS {
                        overflow = Some(ClientError::PayloadTooLarge(format!(
                            "more than {MAX_UNREAD_CHUNKS} streamed chunks left unread"
                        )));
                    } else {
                        let _ = s.tx.unbounded_send(Ok(body));
                    }
                }
                ReplyTo::Unary(_) => {
                    if p.collected.len() + body.len() > mesh_core::limits::MAX_APP_BODY {
                        overflow = Some(ClientError::PayloadTooLarge(
                            "a streamed answer to a plain request exceeds 1 MiB".into(),
                        ));
                    } else {
                        p.collected.extend_from_slice(&body);
                    }
                }
            }
        }
        if let Some(err) = overflow {
            if let Some(p) = self.pending.remove(&req_id) {
                let peer = p.peer;
                fail(p.reply, err);
                self.reply(peer, AppMessage::Cancel { req_id });
            }
            return;
        }
        if p.end.is_some_and(|end| p.next_seq >= end) {
            if let Some(p) = self.pending.remove(&req_id) {
                if let ReplyTo::Unary(tx) = p.reply {
                    let _ = tx.send(Ok(p.collected.freeze()));
                }
            }
        }
    }

    // ----- commands --------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request {
                req_id,
                peer,
                capability,
                body,
                timeout_ms,
                reply,
            } => {
                let message = AppMessage::Request {
                    req_id,
                    capability: capability.clone(),
                    stream: matches!(reply, ReplyTo::Stream(_)),
                    body,
                };
                self.pending.insert(
                    req_id,
                    Pending {
                        peer,
                        capability,
                        message: message.clone(),
                        timeout_ms,
                        deadline_ms: rt::now_ms() + timeout_ms,
                        reply,
                        next_seq: 0,
                        buffer: BTreeMap::new(),
                        end: None,
                        collected: BytesMut::new(),
                    },
                );
                if let Err(e) = self.send_app(peer, message, Tag::Request(req_id)).await {
                    if let Some(p) = self.pending.remove(&req_id) {
                        fail(p.reply, e);
                    }
                }
            }
            Command::Cancel { req_id } => {
                if let Some(p) = self.pending.remove(&req_id) {
                    self.stop_request(p.peer, req_id).await;
                }
            }
            Command::Reply {
                peer,
                req_id,
                msg,
                last,
                queued,
            } => {
                if let Some(q) = queued {
                    q.fetch_sub(1, Ordering::AcqRel);
                }
                let live = if last {
                    self.serving.remove(&(peer, req_id)).is_some()
                } else {
                    self.serving.contains_key(&(peer, req_id))
                };
                if live {
                    if let Err(e) = self.send_app(peer, msg, Tag::None).await {
                        tracing::debug!(error = %e, "could not send reply");
                    }
                }
            }
            Command::Chat { peer, msg_id, text } => {
                let text_len = text.len();
                let msg = AppMessage::Chat {
                    msg_id,
                    sent_at_ms: rt::unix_ms(),
                    text,
                };
                self.track_chat(peer, msg_id, msg.clone(), text_len);
                match self.send_app(peer, msg, Tag::Chat(msg_id)).await {
                    // If it waits behind a handshake the relay already
                    // stored for the offline peer, that handshake now
                    // waits for the peer.
                    Ok(()) => {
                        self.sessions.park_handshake(&peer, rt::now_ms());
                    }
                    Err(error) => self.fail_chat(peer, msg_id, error),
                }
            }
            Command::Receipt { peer, msg_id, kind } => {
                let _ = self
                    .send_app(peer, AppMessage::Receipt { msg_id, kind }, Tag::None)
                    .await;
            }
            Command::Close(done) => {
                self.finish(
                    ConnectionState::Closed("closed by the application".into()),
                    ClientError::Closed,
                );
                if let Some(mut link) = self.link.take() {
                    link.sender.close().await;
                }
                let _ = done.send(());
            }
        }
    }

    // ----- timers ----------------------------------------------------------

    async fn on_timer(&mut self) {
        let now = rt::now_ms();
        self.sessions.handle_timeout(now);
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(p) = self.pending.remove(&id) {
                let peer = p.peer;
                fail(p.reply, ClientError::Timeout(p.timeout_ms));
                self.stop_request(peer, id).await;
            }
        }
        let beat = self.link.as_mut().map(|l| l.heartbeat.handle_timeout(now));
        match beat {
            Some(HeartbeatAction::Ping(p)) => {
                if let Ok(ping) = p.encode() {
                    self.write(ping).await;
                }
            }
            Some(HeartbeatAction::Dead) => {
                if let Some(mut link) = self.link.take() {
                    link.sender.close().await;
                }
                self.schedule_reconnect();
            }
            _ => {}
        }
        let (due, later): (Vec<_>, Vec<_>) = self.retries.drain(..).partition(|(at, _)| *at <= now);
        self.retries = later;
        for (_, msg_id) in due {
            if let Some(frame) = self.outbox.get(&msg_id).map(|o| o.frame.clone()) {
                self.write(frame).await;
            }
        }
        if self.reconnect_at.is_some_and(|t| t <= now)
            && self.connecting.is_none()
            && self.link.is_none()
        {
            self.start_attempt();
        }
        self.pump().await;
    }
}

/// What woke the run loop.
enum Step {
    Event(Event),
    Command(Command),
    Timer,
    Stop,
}

/// The next event of the current link; never resolves without one.
async fn next_incoming(link_rx: &mut Option<(u64, transport::Receiver)>) -> (u64, Incoming) {
    match link_rx {
        Some((id, rx)) => (*id, transport::next(rx).await),
        None => futures::future::pending().await,
    }
}

fn truncate(mut s: String) -> String {
    while s.len() > mesh_core::limits::MAX_ERROR_MESSAGE_LEN {
        s.pop();
    }
    s
}

fn handler_error(req_id: u64, e: HandlerError) -> AppMessage {
    AppMessage::Error {
        req_id,
        code: e.code,
        message: truncate(e.message),
    }
}

fn complete(p: Pending, body: Bytes) {
    match p.reply {
        ReplyTo::Unary(tx) => {
            let _ = tx.send(Ok(body));
        }
        ReplyTo::Stream(s) => {
            s.unread.fetch_add(1, Ordering::AcqRel);
            let _ = s.tx.unbounded_send(Ok(body));
        }
    }
}

fn fail(reply: ReplyTo, err: ClientError) {
    match reply {
        ReplyTo::Unary(tx) => {
            let _ = tx.send(Err(err));
        }
        ReplyTo::Stream(s) => {
            let _ = s.tx.unbounded_send(Err(err));
        }
    }
}
