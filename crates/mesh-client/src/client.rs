//! The public handle: [`MeshClient`] and the types its methods take and
//! return. Every method talks to the connection driver ([`crate::driver`])
//! through a channel; nothing here touches the socket.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::{FutureExt, Shared as SharedFuture};
use futures::{Stream, StreamExt};
use mesh_core::acl::Policy;
use mesh_core::app::ReceiptKind;
use mesh_core::{AgentId, Identity, SessionConfig};

use crate::error::{ClientError, HandlerError};
use crate::rt::{BoxFuture, MaybeSend, MaybeSendSync};

/// How a [`MeshClient`] behaves. `Default` gives sane values.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Timeout of a request when the call does not give one (ms).
    pub request_timeout_ms: u64,
    /// Time allowed for one connect + authenticate attempt (ms).
    pub connect_timeout_ms: u64,
    /// The relay id to insist on. When `None` and `pin_relay` is set, the
    /// id seen on the first connection is pinned for every reconnect.
    pub expected_relay: Option<AgentId>,
    /// Pin the relay id on first use (refuse a relay whose key changed).
    pub pin_relay: bool,
    /// First reconnect delay (ms); doubles up to `reconnect_max_ms`, with
    /// jitter.
    pub reconnect_initial_ms: u64,
    /// Longest reconnect delay (ms).
    pub reconnect_max_ms: u64,
    /// Who may call which capability of ours. Default: deny everything.
    pub acl: Policy,
    /// End-to-end session tunables.
    pub session: SessionConfig,
    /// How to open the socket (on wasm32: which `WebSocket` constructor).
    pub dialer: crate::transport::Dialer,
    /// Most incoming requests served at once (handlers still running);
    /// past it a request is answered `rate_limited` at once. Bounds what
    /// peers can make this agent hold.
    pub max_serving: usize,
}

/// The default [`ClientOptions::max_serving`].
pub const MAX_SERVING: usize = 1024;

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            expected_relay: None,
            pin_relay: true,
            reconnect_initial_ms: 250,
            reconnect_max_ms: 15_000,
            acl: Policy::default(),
            session: SessionConfig::default(),
            dialer: crate::transport::Dialer::default(),
            max_serving: MAX_SERVING,
        }
    }
}

/// The connection to the relay, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting or authenticating.
    Connecting,
    /// Authenticated; traffic flows.
    Online,
    /// Disconnected; reconnecting with backoff. Requests wait (until their
    /// timeout) and messages are kept for sending.
    Offline,
    /// Our key was revoked; the client will not reconnect.
    Revoked,
    /// Closed for good (by us, or replaced by another process using the same
    /// identity, or the relay's key changed); the reason says which.
    Closed(String),
}

/// A request arriving for one of our capabilities.
#[derive(Debug, Clone)]
pub struct IncomingRequest {
    /// The verified sender (proved by the Noise handshake).
    pub from: AgentId,
    /// The capability asked for.
    pub capability: String,
    /// The request body.
    pub body: Bytes,
    /// The requester's id for this request.
    pub req_id: u64,
    pub(crate) cancel: Cancellation,
}

impl IncomingRequest {
    /// Whether the requester cancelled (or went away).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the requester cancels; use it in a `select!` to stop
    /// work early.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// A one-shot cancellation signal shared by a handler and the driver.
#[derive(Clone)]
pub(crate) struct Cancellation {
    flag: Arc<AtomicBool>,
    signal: SharedFuture<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancellation")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// The driver's half of a [`Cancellation`].
pub(crate) struct CancelTrigger {
    flag: Arc<AtomicBool>,
    tx: Option<oneshot::Sender<()>>,
}

impl CancelTrigger {
    pub(crate) fn fire(&mut self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(());
        }
    }
}

pub(crate) fn cancellation() -> (CancelTrigger, Cancellation) {
    let (tx, rx) = oneshot::channel();
    let flag = Arc::new(AtomicBool::new(false));
    (
        CancelTrigger {
            flag: flag.clone(),
            tx: Some(tx),
        },
        Cancellation {
            flag,
            signal: rx.shared(),
        },
    )
}

impl Cancellation {
    fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    async fn cancelled(&self) {
        // An `Err` means the driver dropped the trigger: treat as cancelled.
        let _ = self.signal.clone().await;
    }
}

/// Sends the chunks of a streamed answer, in order.
pub struct StreamSink {
    pub(crate) cmd: mpsc::UnboundedSender<Command>,
    pub(crate) peer: AgentId,
    pub(crate) req_id: u64,
    pub(crate) sent: Arc<AtomicU32>,
    /// Chunks handed to the driver and not yet sent by it.
    pub(crate) queued: Arc<AtomicU32>,
    pub(crate) cancel: Cancellation,
}

impl StreamSink {
    /// Sends one chunk. Fails with [`ClientError::Cancelled`] once the
    /// requester has cancelled, so a loop of sends stops by itself.
    pub async fn send(&mut self, chunk: impl Into<Bytes>) -> Result<(), ClientError> {
        if self.cancel.is_cancelled() {
            return Err(ClientError::Cancelled);
        }
        let body = chunk.into();
        if body.len() > mesh_core::limits::MAX_APP_BODY {
            return Err(ClientError::PayloadTooLarge(format!(
                "{} bytes",
                body.len()
            )));
        }
        // Backpressure: wait while this sink has a window of chunks the
        // driver has not sent yet, so a fast handler cannot queue without
        // bound.
        while self.queued.load(Ordering::Acquire) >= STREAM_WINDOW {
            if self.cancel.is_cancelled() {
                return Err(ClientError::Cancelled);
            }
            crate::rt::sleep_ms(1).await;
        }
        let msg = mesh_core::AppMessage::StreamChunk {
            req_id: self.req_id,
            seq: self.sent.fetch_add(1, Ordering::SeqCst),
            body,
        };
        self.queued.fetch_add(1, Ordering::AcqRel);
        self.cmd
            .unbounded_send(Command::Reply {
                peer: self.peer,
                req_id: self.req_id,
                msg,
                last: false,
                queued: Some(self.queued.clone()),
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Chunks sent so far.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::SeqCst)
    }
}

/// A plain chat message, a receipt, or delivery news about what we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageEvent {
    /// A chat message from `from`.
    Chat {
        /// The verified sender.
        from: AgentId,
        /// Its id (referenced by receipts).
        msg_id: u64,
        /// Sender's clock, Unix ms (display only).
        sent_at_ms: u64,
        /// The text.
        text: String,
        /// Whether our ACL allows chat from this sender (`mesh.chat`). A
        /// message that is not allowed is shown as a contact request and
        /// not acknowledged with a receipt.
        allowed: bool,
    },
    /// `from` received or read our message `msg_id`.
    Receipt {
        /// Who sends the receipt.
        from: AgentId,
        /// Our message.
        msg_id: u64,
        /// Delivered or read.
        kind: ReceiptKind,
    },
    /// The relay stored our message for `peer`, who is offline.
    Queued {
        /// The recipient.
        peer: AgentId,
        /// Our message.
        msg_id: u64,
    },
    /// Our message could not be delivered.
    Failed {
        /// The recipient.
        peer: AgentId,
        /// Our message.
        msg_id: u64,
        /// Why.
        error: ClientError,
    },
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) type UnaryHandler =
    Arc<dyn Fn(IncomingRequest) -> BoxFuture<Result<Bytes, HandlerError>> + Send + Sync>;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) type StreamHandler =
    Arc<dyn Fn(IncomingRequest, StreamSink) -> BoxFuture<Result<(), HandlerError>> + Send + Sync>;
// In a browser handlers may hold JS functions, which are neither `Send`
// nor `Sync`; everything runs on one thread there.
#[cfg(target_arch = "wasm32")]
pub(crate) type UnaryHandler =
    Arc<dyn Fn(IncomingRequest) -> BoxFuture<Result<Bytes, HandlerError>>>;
#[cfg(target_arch = "wasm32")]
pub(crate) type StreamHandler =
    Arc<dyn Fn(IncomingRequest, StreamSink) -> BoxFuture<Result<(), HandlerError>>>;

/// A registered capability handler.
#[derive(Clone)]
pub(crate) enum Handler {
    Unary(UnaryHandler),
    Stream(StreamHandler),
}

/// Where a request's answer goes.
pub(crate) enum ReplyTo {
    Unary(oneshot::Sender<Result<Bytes, ClientError>>),
    Stream(StreamReply),
}

/// The driver's end of a [`ResponseStream`]: its sender and the count of
/// chunks the caller has not read yet (the driver stops at
/// [`MAX_UNREAD_CHUNKS`]).
pub(crate) struct StreamReply {
    pub(crate) tx: mpsc::UnboundedSender<Result<Bytes, ClientError>>,
    pub(crate) unread: Arc<AtomicUsize>,
}

/// Chunks one [`StreamSink`] may have queued for the driver before `send`
/// waits.
pub const STREAM_WINDOW: u32 = 64;

/// Chunks of a streamed answer that may wait unread; past this the request
/// fails (`payload_too_large`) and is cancelled at the peer.
pub const MAX_UNREAD_CHUNKS: usize = 1024;

/// Events a [`MeshClient::messages`] subscriber may leave unread; past this
/// new events are dropped for it (and logged). Also the number of events
/// kept for the first subscriber while there has never been one.
pub const MESSAGE_BUFFER: usize = 4096;

/// State changes a [`MeshClient::state_changes`] subscriber may leave
/// unread; past this new ones are dropped for it.
pub const STATE_BUFFER: usize = 64;

/// Messages from the handle (and handler tasks) to the driver.
pub(crate) enum Command {
    Request {
        req_id: u64,
        peer: AgentId,
        capability: String,
        body: Bytes,
        timeout_ms: u64,
        reply: ReplyTo,
    },
    Cancel {
        req_id: u64,
    },
    Reply {
        peer: AgentId,
        req_id: u64,
        msg: mesh_core::AppMessage,
        last: bool,
        /// The sink's queued-chunk counter, decremented once sent.
        queued: Option<Arc<AtomicU32>>,
    },
    Chat {
        peer: AgentId,
        msg_id: u64,
        text: String,
    },
    Receipt {
        peer: AgentId,
        msg_id: u64,
        kind: ReceiptKind,
    },
    Close(oneshot::Sender<()>),
}

/// State shared by the handle and the driver.
pub(crate) struct Shared {
    pub(crate) identity: Identity,
    pub(crate) agent: AgentId,
    pub(crate) relay_url: String,
    pub(crate) options: ClientOptions,
    pub(crate) cmd: mpsc::UnboundedSender<Command>,
    pub(crate) next_id: AtomicU64,
    pub(crate) handlers: Mutex<HashMap<String, Handler>>,
    pub(crate) acl: Mutex<Policy>,
    pub(crate) state: Mutex<(ConnectionState, Vec<mpsc::Sender<ConnectionState>>)>,
    pub(crate) message_subs: Mutex<MessageSubs>,
}

/// The subscribers of [`MeshClient::messages`], and the events emitted
/// before the first one subscribed.
pub(crate) struct MessageSubs {
    subs: Vec<mpsc::Sender<MessageEvent>>,
    /// Kept for the first subscriber (at most [`MESSAGE_BUFFER`], oldest
    /// dropped first); `None` once there has been a subscriber.
    early: Option<VecDeque<MessageEvent>>,
}

impl MessageSubs {
    pub(crate) fn new() -> Self {
        MessageSubs {
            subs: Vec::new(),
            early: Some(VecDeque::new()),
        }
    }

    /// Hands `e` to every subscriber, or keeps it for the first one.
    fn emit(&mut self, e: MessageEvent) -> Emitted {
        if let Some(early) = self.early.as_mut() {
            if early.len() >= MESSAGE_BUFFER {
                early.pop_front();
                tracing::warn!(
                    "{MESSAGE_BUFFER} events wait for a first messages() subscriber; dropping the oldest"
                );
            }
            early.push_back(e);
            return Emitted::Kept;
        }
        let mut taken = Emitted::Dropped;
        self.subs.retain_mut(|tx| match tx.try_send(e.clone()) {
            Ok(()) => {
                taken = Emitted::Taken;
                true
            }
            Err(err) if err.is_disconnected() => false,
            Err(_) => {
                tracing::warn!(
                    "a messages() subscriber has {MESSAGE_BUFFER} unread events; dropping this one"
                );
                true
            }
        });
        taken
    }

    /// A new subscriber, and — for the first one — the allowed chats it
    /// was handed from the early events, which are acknowledged now.
    fn subscribe(&mut self) -> (mpsc::Receiver<MessageEvent>, Vec<(AgentId, u64)>) {
        let (mut tx, rx) = mpsc::channel(MESSAGE_BUFFER);
        let mut taken_chats = Vec::new();
        // The channel holds `MESSAGE_BUFFER` + 1 events: the whole backlog
        // fits.
        for e in self.early.take().into_iter().flatten() {
            if let MessageEvent::Chat {
                from,
                msg_id,
                allowed: true,
                ..
            } = &e
            {
                taken_chats.push((*from, *msg_id));
            }
            if tx.try_send(e).is_err() {
                tracing::warn!("an early event did not fit the first subscriber's buffer");
            }
        }
        self.subs.push(tx);
        (rx, taken_chats)
    }

    /// True until the first subscriber: events are kept, not taken.
    pub(crate) fn keeping(&self) -> bool {
        self.early.is_some()
    }
}

/// What became of an emitted message event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emitted {
    /// A subscriber has it.
    Taken,
    /// Kept for the first subscriber, which there has not been yet.
    Kept,
    /// No subscriber took it: every one is thousands of events behind, or
    /// none is left.
    Dropped,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub(crate) fn set_state(&self, s: ConnectionState) {
        let mut guard = lock(&self.state);
        if guard.0 == s {
            return;
        }
        guard.0 = s.clone();
        // A subscriber that stopped reading misses changes; one that went
        // away is forgotten.
        guard
            .1
            .retain_mut(|tx| !matches!(tx.try_send(s.clone()), Err(e) if e.is_disconnected()));
    }

    /// Emits a message event.
    pub(crate) fn emit(&self, e: MessageEvent) -> Emitted {
        lock(&self.message_subs).emit(e)
    }

    pub(crate) fn fresh_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// An agent-mesh client: one authenticated connection to a relay, end-to-end
/// encrypted sessions with every peer, requests, streams, handlers and chat.
///
/// Cheap to clone; all clones share the connection. The connection is kept
/// alive (heartbeat), re-established with jittered backoff when it drops
/// (resuming with the relay's resume token) and everything not yet
/// acknowledged is sent again — invisibly to the caller.
///
/// ```no_run
/// # async fn demo() -> Result<(), mesh_client::ClientError> {
/// use mesh_client::{ClientOptions, MeshClient};
/// use mesh_core::Identity;
///
/// let me = Identity::generate().map_err(|e| mesh_client::ClientError::Protocol(e.to_string()))?;
/// let client = MeshClient::connect("ws://127.0.0.1:8080/v1/ws", me, ClientOptions::default()).await?;
/// let peer = "did:key:z6Mk…".parse().map_err(|_| mesh_client::ClientError::Closed)?;
/// let answer = client.request(peer, "echo", "hello").await?;
/// # let _ = answer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct MeshClient {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for MeshClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshClient")
            .field("agent", &self.shared.agent)
            .field("relay", &self.shared.relay_url)
            .field("state", &self.state())
            .finish()
    }
}

/// Sends a cancel for a request if it is dropped before it finished.
struct CancelOnDrop {
    cmd: mpsc::UnboundedSender<Command>,
    req_id: u64,
    armed: bool,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.cmd.unbounded_send(Command::Cancel {
                req_id: self.req_id,
            });
        }
    }
}

/// The chunks of a streamed answer, in order. Ends after the last chunk;
/// yields an error item (and ends) if the request fails. Dropping it
/// cancels the request, and the cancel reaches the remote handler.
pub struct ResponseStream {
    rx: mpsc::UnboundedReceiver<Result<Bytes, ClientError>>,
    unread: Arc<AtomicUsize>,
    guard: CancelOnDrop,
}

impl Stream for ResponseStream {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let out = self.rx.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(_))) = &out {
            self.unread.fetch_sub(1, Ordering::AcqRel);
        }
        match &out {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.guard.armed = false,
            _ => {}
        }
        out
    }
}

impl MeshClient {
    /// Connects to the relay at `relay_url` (`ws://…/v1/ws` or
    /// `wss://…/v1/ws`) as `identity` and waits until it is authenticated.
    /// Fails if the first connection cannot be made or is refused; later
    /// disconnections are handled by reconnecting.
    pub async fn connect(
        relay_url: &str,
        identity: Identity,
        options: ClientOptions,
    ) -> Result<MeshClient, ClientError> {
        crate::driver::start(relay_url, identity, options).await
    }

    /// Our agent id.
    pub fn agent_id(&self) -> AgentId {
        self.shared.agent
    }

    /// Our identity (to sign cards and registry requests).
    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    /// The relay URL this client dials.
    pub fn relay_url(&self) -> &str {
        &self.shared.relay_url
    }

    /// The connection state now.
    pub fn state(&self) -> ConnectionState {
        lock(&self.shared.state).0.clone()
    }

    /// Every later state change, starting with the current state. A
    /// subscriber that leaves [`STATE_BUFFER`] changes unread misses later
    /// ones ([`MeshClient::state`] always has the current one).
    pub fn state_changes(&self) -> impl Stream<Item = ConnectionState> + Unpin {
        let (mut tx, rx) = mpsc::channel(STATE_BUFFER);
        let mut guard = lock(&self.shared.state);
        let _ = tx.try_send(guard.0.clone());
        guard.1.push(tx);
        rx
    }

    /// Chat messages, receipts and delivery news, from now on.
    ///
    /// The first subscriber also gets, first and in order, every event
    /// emitted before it subscribed — such as chats the relay held while we
    /// were offline and handed over as soon as [`MeshClient::connect`]
    /// returned. Until there is a first subscriber at most
    /// [`MESSAGE_BUFFER`] events are kept (past that the oldest are dropped,
    /// and logged); later subscribers see only what comes after they
    /// subscribe, and once there has been a subscriber, events emitted while
    /// there is none are not kept.
    ///
    /// Read it steadily: past [`MESSAGE_BUFFER`] unread events, new ones are
    /// dropped for this subscriber (and logged), so a forgotten
    /// subscription cannot grow without bound.
    ///
    /// A chat is acknowledged `delivered` only once a subscriber has it: the
    /// chats kept for the first subscriber are acknowledged when it
    /// subscribes, and an application that never subscribes acknowledges
    /// none.
    pub fn messages(&self) -> impl Stream<Item = MessageEvent> + Unpin {
        let (rx, taken_chats) = lock(&self.shared.message_subs).subscribe();
        for (peer, msg_id) in taken_chats {
            let _ = self.shared.cmd.unbounded_send(Command::Receipt {
                peer,
                msg_id,
                kind: ReceiptKind::Delivered,
            });
        }
        rx
    }

    /// Asks `peer` for `capability` with `body`; waits for the answer or the
    /// default timeout. Dropping the future cancels the request at the peer.
    pub async fn request(
        &self,
        peer: AgentId,
        capability: &str,
        body: impl Into<Bytes>,
    ) -> Result<Bytes, ClientError> {
        self.request_with_timeout(
            peer,
            capability,
            body,
            self.shared.options.request_timeout_ms,
        )
        .await
    }

    /// Like [`MeshClient::request`] with an explicit timeout in ms, for the
    /// whole answer (even one the peer streams).
    pub async fn request_with_timeout(
        &self,
        peer: AgentId,
        capability: &str,
        body: impl Into<Bytes>,
        timeout_ms: u64,
    ) -> Result<Bytes, ClientError> {
        let (tx, rx) = oneshot::channel();
        let mut guard = self.start_request(
            peer,
            capability,
            body.into(),
            timeout_ms,
            ReplyTo::Unary(tx),
        )?;
        let out = rx.await.unwrap_or(Err(ClientError::Closed));
        guard.armed = false;
        out
    }

    /// Asks `peer` for a streamed answer; chunks arrive in order. Dropping
    /// the stream cancels the request at the peer.
    pub fn request_stream(
        &self,
        peer: AgentId,
        capability: &str,
        body: impl Into<Bytes>,
    ) -> Result<ResponseStream, ClientError> {
        self.request_stream_with_timeout(
            peer,
            capability,
            body,
            self.shared.options.request_timeout_ms,
        )
    }

    /// Like [`MeshClient::request_stream`]; the timeout bounds the wait for
    /// each next chunk, not the whole stream.
    pub fn request_stream_with_timeout(
        &self,
        peer: AgentId,
        capability: &str,
        body: impl Into<Bytes>,
        timeout_ms: u64,
    ) -> Result<ResponseStream, ClientError> {
        let (tx, rx) = mpsc::unbounded();
        let unread = Arc::new(AtomicUsize::new(0));
        let guard = self.start_request(
            peer,
            capability,
            body.into(),
            timeout_ms,
            ReplyTo::Stream(StreamReply {
                tx,
                unread: unread.clone(),
            }),
        )?;
        Ok(ResponseStream { rx, unread, guard })
    }

    fn start_request(
        &self,
        peer: AgentId,
        capability: &str,
        body: Bytes,
        timeout_ms: u64,
        reply: ReplyTo,
    ) -> Result<CancelOnDrop, ClientError> {
        if !mesh_core::app::is_valid_capability(capability) {
            return Err(ClientError::BadRequest(format!(
                "invalid capability name {capability:?}"
            )));
        }
        if body.len() > mesh_core::limits::MAX_APP_BODY {
            return Err(ClientError::PayloadTooLarge(format!(
                "{} bytes (limit {})",
                body.len(),
                mesh_core::limits::MAX_APP_BODY
            )));
        }
        let req_id = self.shared.fresh_id();
        self.shared
            .cmd
            .unbounded_send(Command::Request {
                req_id,
                peer,
                capability: capability.to_string(),
                body,
                timeout_ms,
                reply,
            })
            .map_err(|_| ClientError::Closed)?;
        Ok(CancelOnDrop {
            cmd: self.shared.cmd.clone(),
            req_id,
            armed: true,
        })
    }

    /// Serves `capability`: `handler` runs (concurrently with everything
    /// else) for each allowed request and its `Ok` is the response. Requests
    /// are checked against the ACL first; register the capability *and*
    /// allow it.
    pub fn handle<F, Fut>(&self, capability: &str, handler: F)
    where
        F: Fn(IncomingRequest) -> Fut + MaybeSendSync + 'static,
        Fut: Future<Output = Result<Bytes, HandlerError>> + MaybeSend + 'static,
    {
        let h: UnaryHandler = Arc::new(move |req| Box::pin(handler(req)));
        lock(&self.shared.handlers).insert(capability.to_string(), Handler::Unary(h));
    }

    /// Serves `capability` with a streamed answer: the handler sends chunks
    /// through the [`StreamSink`]; returning `Ok` ends the stream.
    pub fn handle_stream<F, Fut>(&self, capability: &str, handler: F)
    where
        F: Fn(IncomingRequest, StreamSink) -> Fut + MaybeSendSync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + MaybeSend + 'static,
    {
        let h: StreamHandler = Arc::new(move |req, sink| Box::pin(handler(req, sink)));
        lock(&self.shared.handlers).insert(capability.to_string(), Handler::Stream(h));
    }

    /// Stops serving `capability`.
    pub fn unhandle(&self, capability: &str) {
        lock(&self.shared.handlers).remove(capability);
    }

    /// Replaces the ACL policy (takes effect for the next request).
    pub fn set_acl(&self, policy: Policy) {
        *lock(&self.shared.acl) = policy;
    }

    /// The ACL policy in force.
    pub fn acl(&self) -> Policy {
        lock(&self.shared.acl).clone()
    }

    /// Sends a chat message; returns its id. Delivery news arrives on
    /// [`MeshClient::messages`]: at most one `Queued` (the relay holds it
    /// for an offline peer), then the peer's `Receipt` (sent only if its ACL
    /// allows chat from us) or exactly one `Failed`. If the peer restarted
    /// and cannot open the session the message was sealed on, it is sealed
    /// again on a new session; the peer shows it once.
    pub fn send_message(&self, peer: AgentId, text: &str) -> Result<u64, ClientError> {
        if text.len() > mesh_core::limits::MAX_APP_BODY {
            return Err(ClientError::PayloadTooLarge(format!(
                "{} bytes",
                text.len()
            )));
        }
        let msg_id = self.shared.fresh_id();
        self.shared
            .cmd
            .unbounded_send(Command::Chat {
                peer,
                msg_id,
                text: text.to_string(),
            })
            .map_err(|_| ClientError::Closed)?;
        Ok(msg_id)
    }

    /// Tells `peer` we read its message `msg_id`.
    pub fn send_read_receipt(&self, peer: AgentId, msg_id: u64) -> Result<(), ClientError> {
        self.shared
            .cmd
            .unbounded_send(Command::Receipt {
                peer,
                msg_id,
                kind: ReceiptKind::Read,
            })
            .map_err(|_| ClientError::Closed)
    }

    /// Closes the connection: pending requests fail with `Closed`.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.cmd.unbounded_send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(n: u64) -> MessageEvent {
        MessageEvent::Queued {
            peer: Identity::from_secret_bytes(&[7; 32]).agent_id(),
            msg_id: n,
        }
    }

    fn drain(rx: &mut mpsc::Receiver<MessageEvent>) -> Vec<u64> {
        let mut out = Vec::new();
        while let Ok(MessageEvent::Queued { msg_id, .. }) = rx.try_recv() {
            out.push(msg_id);
        }
        out
    }

    #[test]
    fn the_first_subscriber_gets_the_newest_early_events_in_order() {
        let mut subs = MessageSubs::new();
        let n = MESSAGE_BUFFER as u64 + 10;
        for i in 0..n {
            subs.emit(queued(i));
        }
        let (mut first, _) = subs.subscribe();
        subs.emit(queued(n));
        assert_eq!(drain(&mut first), (10..=n).collect::<Vec<_>>());
        // Later subscribers start from now; nothing is kept without one.
        drop(first);
        subs.emit(queued(n + 1));
        let (mut second, _) = subs.subscribe();
        subs.emit(queued(n + 2));
        assert_eq!(drain(&mut second), vec![n + 2]);
    }
}
