//! Who is online, and the frames each live connection has not acknowledged.
//!
//! The hub maps an `AgentId` to its one live connection. Every frame handed
//! to a connection is first recorded in that connection's *unacknowledged*
//! set, under the same lock that guards its `closed` flag; when a connection
//! ends — closed, dead, or replaced by a newer one — the set is taken under
//! that lock and written to the durable inbox. A frame is therefore always
//! in exactly one of: a live connection's unacknowledged set, the inbox, or
//! acknowledged. Routing that races with a close sees `closed`, looks the
//! agent up again and finds the new connection or the inbox. No lock here is
//! ever held across an `.await`.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use mesh_core::{AgentId, ErrorCode};
use tokio::sync::{mpsc, watch, Notify};

/// A message for a connection's writer task.
#[derive(Debug)]
pub enum Outgoing {
    /// An encoded frame to write.
    Frame(Bytes),
    /// Close the socket with this code and reason, after writing what is
    /// queued before it.
    Close(ErrorCode, String),
}

/// A frame forwarded to a connection and not yet acknowledged.
#[derive(Debug, Clone)]
pub struct Unacked {
    /// The encoded `Deliver` frame.
    pub frame: Bytes,
    /// Its row in the inbox, if it came from there (already durable).
    pub inbox_id: Option<i64>,
    /// The sealed body (for writing it to the inbox if the connection ends).
    pub body: Bytes,
}

#[derive(Debug, Default)]
struct UnackedSet {
    closed: bool,
    /// Keyed by the sender's raw key bytes and the message id, so an ack
    /// can be matched without decompressing the key; each with the order it
    /// was recorded in.
    frames: HashMap<([u8; 32], u64), (u64, Unacked)>,
    /// The next frame's place in that order.
    next: u64,
}

impl UnackedSet {
    fn record(&mut self, key: ([u8; 32], u64), item: Unacked) {
        self.frames.insert(key, (self.next, item));
        self.next += 1;
    }
}

/// What happened to a frame offered to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Queued for writing and recorded as unacknowledged.
    Accepted,
    /// The connection has too many unacknowledged or queued frames.
    Full,
    /// The connection has ended; look the agent up again.
    Closed,
}

/// The state of one live, authenticated connection shared with routing.
#[derive(Debug)]
pub struct Conn {
    /// Unique per connection (a reconnect gets a new id).
    pub id: u64,
    /// The authenticated agent.
    pub agent: AgentId,
    tx: mpsc::Sender<Outgoing>,
    unacked: Mutex<UnackedSet>,
    max_unacked: usize,
    close: watch::Sender<Option<(ErrorCode, String)>>,
    /// Woken when the agent's inbox may have new frames or room opened up.
    pub inbox_wake: Notify,
    /// Set while the inbox pump waits for acknowledgements to make room, so
    /// acks wake it only then (not on every ack).
    pub pump_wants_room: AtomicBool,
    /// Status frames that found the queue full: written by the writer after
    /// what is queued, so a `delivered` is never dropped for a busy sender.
    overflow: Mutex<VecDeque<Bytes>>,
    /// Wakes the writer when `overflow` gains a frame.
    pub overflow_wake: Notify,
}

/// Status frames kept per connection when its queue is full; past this the
/// connection is too far behind and the oldest statuses give way.
const MAX_OVERFLOW: usize = 16_384;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data
    // half-updated in a way that matters more than losing the connection.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    /// A connection for `agent` writing through `tx`.
    pub fn new(
        id: u64,
        agent: AgentId,
        tx: mpsc::Sender<Outgoing>,
        max_unacked: usize,
    ) -> Arc<Self> {
        let (close, _) = watch::channel(None);
        Arc::new(Conn {
            id,
            agent,
            tx,
            unacked: Mutex::new(UnackedSet::default()),
            max_unacked,
            close,
            inbox_wake: Notify::new(),
            pump_wants_room: AtomicBool::new(false),
            overflow: Mutex::new(VecDeque::new()),
            overflow_wake: Notify::new(),
        })
    }

    /// Offers a frame from `src` with `msg_id`: recorded and queued, or
    /// refused without side effects.
    pub fn offer(&self, src: AgentId, msg_id: u64, item: Unacked) -> Offer {
        let mut set = lock(&self.unacked);
        if set.closed {
            return Offer::Closed;
        }
        let key = (*src.as_bytes(), msg_id);
        if set.frames.len() >= self.max_unacked && !set.frames.contains_key(&key) {
            return Offer::Full;
        }
        match self.tx.try_send(Outgoing::Frame(item.frame.clone())) {
            Ok(()) => {
                set.record(key, item);
                Offer::Accepted
            }
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Closed,
        }
    }

    /// Records an inbox frame as unacknowledged before it is written (the
    /// inbox pump sends it with backpressure afterwards). Returns false when
    /// the connection has ended.
    pub fn record_from_inbox(&self, src: AgentId, msg_id: u64, item: Unacked) -> bool {
        let mut set = lock(&self.unacked);
        if set.closed {
            return false;
        }
        set.record((*src.as_bytes(), msg_id), item);
        true
    }

    /// Unacknowledged frames right now.
    pub fn unacked_len(&self) -> usize {
        lock(&self.unacked).frames.len()
    }

    /// Whether the unacknowledged set has room for more inbox frames.
    pub fn has_room(&self) -> bool {
        self.unacked_len() < self.max_unacked / 2
    }

    /// Removes an acknowledged frame; returns it if it was outstanding.
    pub fn ack(&self, src: &[u8; 32], msg_id: u64) -> Option<Unacked> {
        let out = lock(&self.unacked)
            .frames
            .remove(&(*src, msg_id))
            .map(|(_, item)| item);
        if out.is_some() && self.pump_wants_room.load(Ordering::Acquire) && self.has_room() {
            self.pump_wants_room.store(false, Ordering::Release);
            self.inbox_wake.notify_one();
        }
        out
    }

    /// Marks the connection ended and takes every unacknowledged frame,
    /// keyed by (sender key bytes, message id), in the order they were
    /// recorded: the inbox then redelivers them in the order they were
    /// first delivered. After this, [`Conn::offer`] answers
    /// [`Offer::Closed`].
    pub fn take_unacked(&self) -> Vec<(([u8; 32], u64), Unacked)> {
        let mut set = lock(&self.unacked);
        set.closed = true;
        let mut frames: Vec<_> = set.frames.drain().collect();
        frames.sort_unstable_by_key(|(_, (order, _))| *order);
        frames
            .into_iter()
            .map(|(key, (_, item))| (key, item))
            .collect()
    }

    /// Sends a frame on this connection, waiting for queue space.
    pub async fn send(&self, frame: Bytes) -> bool {
        self.tx.send(Outgoing::Frame(frame)).await.is_ok()
    }

    /// Queues any writer message, waiting for space.
    pub async fn send_outgoing(&self, out: Outgoing) -> bool {
        self.tx.send(out).await.is_ok()
    }

    /// Sends a frame on this connection if there is queue space now.
    pub fn try_send(&self, frame: Bytes) -> bool {
        self.tx.try_send(Outgoing::Frame(frame)).is_ok()
    }

    /// Queues a status frame, never dropping it: when the queue is full it
    /// waits in a side queue the writer drains after what is already queued.
    pub fn send_status(&self, frame: Bytes) {
        match self.tx.try_send(Outgoing::Frame(frame)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(Outgoing::Frame(frame))) => {
                let mut q = lock(&self.overflow);
                if q.len() >= MAX_OVERFLOW {
                    q.pop_front();
                }
                q.push_back(frame);
                drop(q);
                self.overflow_wake.notify_one();
            }
            Err(mpsc::error::TrySendError::Full(_)) => {}
        }
    }

    /// Takes the status frames waiting in the side queue.
    pub fn take_overflow(&self) -> Vec<Bytes> {
        lock(&self.overflow).drain(..).collect()
    }

    /// Asks the connection to close with `code` (replaced, revoked, going
    /// away). Its task notices, writes the close and cleans up.
    pub fn request_close(&self, code: ErrorCode, reason: impl Into<String>) {
        self.close.send_replace(Some((code, reason.into())));
    }

    /// Watches for a close request.
    pub fn close_requested(&self) -> watch::Receiver<Option<(ErrorCode, String)>> {
        self.close.subscribe()
    }
}

/// The map of live connections.
#[derive(Debug, Default)]
pub struct Hub {
    conns: Mutex<HashMap<AgentId, Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Hub {
    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes `conn` the agent's live connection; returns the one it
    /// replaces, if any.
    pub fn insert(&self, conn: Arc<Conn>) -> Option<Arc<Conn>> {
        lock(&self.conns).insert(conn.agent, conn)
    }

    /// The agent's live connection.
    pub fn get(&self, agent: &AgentId) -> Option<Arc<Conn>> {
        lock(&self.conns).get(agent).cloned()
    }

    /// The live connection of the agent with these key bytes (no point
    /// decompression: every key in the map was validated at auth).
    pub fn get_raw(&self, key: &[u8; 32]) -> Option<Arc<Conn>> {
        lock(&self.conns).get(key).cloned()
    }

    /// Removes the agent's entry if it is still connection `conn_id`.
    pub fn remove_if(&self, agent: &AgentId, conn_id: u64) -> bool {
        let mut map = lock(&self.conns);
        if map.get(agent).is_some_and(|c| c.id == conn_id) {
            map.remove(agent);
            true
        } else {
            false
        }
    }

    /// Whether the agent has a live connection.
    pub fn is_online(&self, agent: &AgentId) -> bool {
        lock(&self.conns).contains_key(agent)
    }

    /// Number of agents online.
    pub fn len(&self) -> usize {
        lock(&self.conns).len()
    }

    /// Whether no agent is online.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live connection (for shutdown).
    pub fn all(&self) -> Vec<Arc<Conn>> {
        lock(&self.conns).values().cloned().collect()
    }

    /// Wakes the agent's inbox pump if it is online.
    pub fn wake_inbox(&self, agent: &AgentId) {
        if let Some(c) = self.get(agent) {
            c.inbox_wake.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::Identity;

    fn agent(n: u8) -> AgentId {
        Identity::from_secret_bytes(&[n; 32]).agent_id()
    }

    fn item(n: u8) -> Unacked {
        Unacked {
            frame: Bytes::from(vec![n]),
            inbox_id: None,
            body: Bytes::from(vec![n]),
        }
    }

    #[tokio::test]
    async fn offer_records_then_close_takes_everything() {
        let (tx, mut rx) = mpsc::channel(4);
        let c = Conn::new(1, agent(1), tx, 3);
        assert_eq!(c.offer(agent(2), 1, item(1)), Offer::Accepted);
        assert_eq!(c.offer(agent(2), 2, item(2)), Offer::Accepted);
        assert_eq!(c.offer(agent(2), 3, item(3)), Offer::Accepted);
        assert_eq!(c.offer(agent(2), 4, item(4)), Offer::Full, "unacked limit");
        assert!(c.ack(agent(2).as_bytes(), 1).is_some());
        assert!(
            c.ack(agent(3).as_bytes(), 2).is_none(),
            "ack names the sender"
        );
        let taken = c.take_unacked();
        assert_eq!(taken.len(), 2);
        assert_eq!(c.offer(agent(2), 5, item(5)), Offer::Closed);
        assert!(rx.recv().await.is_some());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_without_recording() {
        let (tx, _rx) = mpsc::channel(1);
        let c = Conn::new(1, agent(1), tx, 100);
        assert_eq!(c.offer(agent(2), 1, item(1)), Offer::Accepted);
        assert_eq!(c.offer(agent(2), 2, item(2)), Offer::Full);
        assert_eq!(c.unacked_len(), 1);
    }

    #[test]
    fn replacement_returns_the_old_connection_and_remove_is_conditional() {
        let hub = Hub::default();
        let (tx, _rx) = mpsc::channel(1);
        let old = Conn::new(hub.next_conn_id(), agent(1), tx.clone(), 10);
        let new = Conn::new(hub.next_conn_id(), agent(1), tx, 10);
        assert!(hub.insert(old.clone()).is_none());
        let replaced = hub.insert(new.clone()).unwrap();
        assert_eq!(replaced.id, old.id);
        assert!(!hub.remove_if(&agent(1), old.id), "old cannot remove new");
        assert!(hub.is_online(&agent(1)));
        assert!(hub.remove_if(&agent(1), new.id));
        assert!(hub.is_empty());
    }
}
