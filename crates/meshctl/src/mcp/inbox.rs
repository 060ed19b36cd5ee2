//! The inbox of `meshctl mcp --receive`: requests other agents send us wait
//! here until the assistant pulls them (`mesh__inbox`) and answers one
//! (`mesh__reply`).
//!
//! An MCP server cannot call its client, so the assistant has to come and
//! look; meanwhile the request's handler task simply waits on a oneshot.
//! Everything is bounded: at most [`MAX_PENDING_REQUESTS`] wait (the next
//! caller is told `inbox_full` at once), each for at most the reply timeout
//! (then its caller gets a `timeout` error), and a caller that cancels takes
//! its request out. Chat messages from allowed agents are kept too (at most
//! [`MAX_PENDING_MESSAGES`], oldest dropped first) and handed out once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mesh_client::{HandlerError, IncomingRequest};
use mesh_core::{AgentId, ErrorCode};
use serde_json::{json, Value};
use tokio::sync::{oneshot, Notify};

/// Requests that may wait for an answer at once.
pub const MAX_PENDING_REQUESTS: usize = 64;
/// Chat messages kept until pulled.
pub const MAX_PENDING_MESSAGES: usize = 256;

/// A request waiting for the assistant's answer.
struct Pending {
    id: String,
    from: AgentId,
    capability: String,
    body: Bytes,
    received_at_ms: u64,
    deadline: Instant,
    answer: oneshot::Sender<Result<Bytes, HandlerError>>,
}

/// A chat message waiting to be pulled.
struct Message {
    from: AgentId,
    text: String,
    sent_at_ms: u64,
}

#[derive(Default)]
struct State {
    next_id: u64,
    requests: VecDeque<Pending>,
    messages: VecDeque<Message>,
}

/// Why `mesh__reply` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    /// No such request is waiting.
    #[error(
        "no request {0} is waiting: it was answered already, its caller cancelled it, or it \
         timed out (call mesh__inbox for the requests still waiting)"
    )]
    NotPending(String),
}

/// The inbox (shared by the handlers and the MCP tools).
pub struct Inbox {
    state: Mutex<State>,
    arrived: Notify,
    reply_timeout: Duration,
}

impl Inbox {
    /// An empty inbox whose requests wait at most `reply_timeout`.
    pub fn new(reply_timeout: Duration) -> Arc<Inbox> {
        Arc::new(Inbox {
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            reply_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves one incoming request: queues it and waits for the answer, the
    /// reply timeout, or the caller's cancel.
    pub async fn serve(self: Arc<Self>, req: IncomingRequest) -> Result<Bytes, HandlerError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut state = self.lock();
            if state.requests.len() >= MAX_PENDING_REQUESTS {
                return Err(HandlerError {
                    code: ErrorCode::InboxFull,
                    message: format!(
                        "{MAX_PENDING_REQUESTS} requests already wait for this assistant; try again later"
                    ),
                });
            }
            state.next_id += 1;
            let id = format!("r{}", state.next_id);
            state.requests.push_back(Pending {
                id: id.clone(),
                from: req.from,
                capability: req.capability.clone(),
                body: req.body.clone(),
                received_at_ms: crate::output::unix_ms(),
                deadline: Instant::now() + self.reply_timeout,
                answer: tx,
            });
            id
        };
        self.arrived.notify_waiters();
        let outcome = tokio::select! {
            answer = rx => answer.unwrap_or_else(|_| Err(HandlerError::failed("the assistant's MCP server stopped"))),
            _ = tokio::time::sleep(self.reply_timeout) => Err(HandlerError {
                code: ErrorCode::Timeout,
                message: format!(
                    "the assistant did not answer within {} ms",
                    self.reply_timeout.as_millis()
                ),
            }),
            _ = req.cancelled() => Err(HandlerError {
                code: ErrorCode::Cancelled,
                message: "cancelled by the caller".into(),
            }),
        };
        self.lock().requests.retain(|p| p.id != id);
        outcome
    }

    /// Keeps a chat message for the next pull.
    pub fn push_message(&self, from: AgentId, text: String, sent_at_ms: u64) {
        {
            let mut state = self.lock();
            if state.messages.len() >= MAX_PENDING_MESSAGES {
                state.messages.pop_front();
                tracing::warn!(
                    "{MAX_PENDING_MESSAGES} chat messages wait unread; dropping the oldest"
                );
            }
            state.messages.push_back(Message {
                from,
                text,
                sent_at_ms,
            });
        }
        self.arrived.notify_waiters();
    }

    /// Answers request `id`; returns who asked, and for what.
    pub fn reply(
        &self,
        id: &str,
        answer: Result<Bytes, HandlerError>,
    ) -> Result<(AgentId, String), ReplyError> {
        let pending = {
            let mut state = self.lock();
            let at = state
                .requests
                .iter()
                .position(|p| p.id == id)
                .ok_or_else(|| ReplyError::NotPending(id.to_string()))?;
            state
                .requests
                .remove(at)
                .ok_or_else(|| ReplyError::NotPending(id.to_string()))?
        };
        let who = (pending.from, pending.capability);
        // The handler may have timed out in the same instant: then there is
        // no one to answer.
        pending
            .answer
            .send(answer)
            .map_err(|_| ReplyError::NotPending(id.to_string()))?;
        Ok(who)
    }

    /// The waiting requests (up to `max`, oldest first) and the chat
    /// messages not pulled before (which this pull takes out); waits up to
    /// `wait` for something to arrive when there is nothing.
    pub async fn pull(&self, wait: Duration, max: usize) -> Value {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let mut state = self.lock();
                if !state.requests.is_empty() || !state.messages.is_empty() || wait.is_zero() {
                    return Self::view(&mut state, max);
                }
            }
            tokio::select! {
                _ = &mut arrived => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Self::view(&mut self.lock(), max);
                }
            }
        }
    }

    fn view(state: &mut State, max: usize) -> Value {
        let now = Instant::now();
        let requests: Vec<Value> = state
            .requests
            .iter()
            .take(max)
            .map(|p| {
                json!({
                    "id": p.id,
                    "from": p.from.to_did(),
                    "fromShort": p.from.short(),
                    "capability": p.capability,
                    "body": crate::body::to_text(&p.body),
                    "receivedAt": p.received_at_ms,
                    "expiresInMs": p.deadline.saturating_duration_since(now).as_millis() as u64,
                })
            })
            .collect();
        let messages: Vec<Value> = state
            .messages
            .drain(..)
            .map(|m| {
                json!({
                    "from": m.from.to_did(),
                    "fromShort": m.from.short(),
                    "text": m.text,
                    "sentAt": m.sent_at_ms,
                })
            })
            .collect();
        json!({
            "requests": requests,
            "waitingRequests": state.requests.len(),
            "messages": messages,
        })
    }
}
