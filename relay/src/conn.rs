//! One WebSocket connection: authentication, then routing.
//!
//! The task that owns the socket reads; a separate writer task owns the
//! sink and drains a bounded queue with a write timeout, so nothing that
//! routes to this connection ever waits on its socket. An inbox pump task
//! feeds the agent's stored frames through the same queue with
//! backpressure, in order, as acknowledgements make room.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::{Bytes, BytesMut};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use governor::clock::{Clock, DefaultClock};
use mesh_core::auth::{Heartbeat, HeartbeatAction, RelayAuth};
use mesh_core::frame::{self, DeliveryStatus, ErrorFrame, Frame, FrameKind};
use mesh_core::{AgentId, ErrorCode};
use tokio::sync::mpsc;

use crate::hub::{Conn, Offer, Outgoing, Unacked};
use crate::metrics::reason;
use crate::store::{InboxLimits, InboxPush};
use crate::AppState;

fn error_frame(code: ErrorCode, ref_msg_id: u64, retry_after_ms: u32, message: &str) -> Bytes {
    let mut message = message.to_string();
    message.truncate(mesh_core::limits::MAX_ERROR_MESSAGE_LEN);
    Frame::Error(ErrorFrame {
        code,
        ref_msg_id,
        retry_after_ms,
        message,
    })
    .encode()
    .unwrap_or_default()
}

fn status_frame(peer: AgentId, msg_id: u64, status: DeliveryStatus) -> Bytes {
    Frame::Status {
        peer,
        msg_id,
        status,
    }
    .encode()
    .unwrap_or_default()
}

fn close_message(code: ErrorCode, reason: &str) -> Message {
    let mut reason = reason.to_string();
    // A close reason must fit in a control frame (123 bytes).
    while reason.len() > 120 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code: code.close_code(),
        reason: reason.into(),
    }))
}

/// Refuses a connection before authentication: error frame, then close.
async fn refuse(socket: &mut WebSocket, code: ErrorCode, reason: &str) {
    let _ = socket
        .send(Message::Binary(error_frame(code, 0, 0, reason)))
        .await;
    let _ = socket.send(close_message(code, reason)).await;
}

/// Counts an open socket in the metrics and the connection limit.
struct OpenGuard(AppState);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.metrics.connections.dec();
        self.0
            .open_sockets
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Serves one upgraded WebSocket until it ends.
pub async fn serve(state: AppState, mut socket: WebSocket, peer: SocketAddr) {
    state.metrics.connections.inc();
    state.metrics.connections_total.inc();
    let open = state
        .open_sockets
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + 1;
    let _guard = OpenGuard(state.clone());
    if *state.shutdown.borrow() {
        refuse(&mut socket, ErrorCode::GoingAway, "relay is shutting down").await;
        return;
    }
    if open > state.config.max_connections {
        state
            .metrics
            .rate_limited
            .get_or_create(&reason("connections"))
            .inc();
        refuse(
            &mut socket,
            ErrorCode::TooManyConnections,
            "relay is at its connection limit",
        )
        .await;
        return;
    }
    if let Err(not_until) = state.conn_limiter.check_key(&peer.ip()) {
        state
            .metrics
            .rate_limited
            .get_or_create(&reason("connections_per_ip"))
            .inc();
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        refuse(
            &mut socket,
            ErrorCode::RateLimited,
            &format!(
                "too many connections from this address; retry in {} ms",
                wait.as_millis()
            ),
        )
        .await;
        return;
    }
    let Some(agent) = authenticate(&state, &mut socket).await else {
        return;
    };
    run(state, socket, agent).await;
}

/// Runs the challenge–response; answers and closes on failure.
async fn authenticate(state: &AppState, socket: &mut WebSocket) -> Option<(AgentId, bool)> {
    let now = state.mono_ms();
    let mut auth =
        match RelayAuth::with_random_nonce(state.relay_id, now, state.config.auth_timeout_ms) {
            Ok(a) => a,
            Err(_) => {
                refuse(socket, ErrorCode::Internal, "randomness unavailable").await;
                return None;
            }
        };
    let challenge = auth.challenge().encode().unwrap_or_default();
    if socket.send(Message::Binary(challenge)).await.is_err() {
        return None;
    }
    let deadline = Duration::from_millis(state.config.auth_timeout_ms);
    let fail = |r: &'static str| state.metrics.auth_failures.get_or_create(&reason(r)).inc();
    let raw = loop {
        match tokio::time::timeout(deadline, socket.recv()).await {
            Err(_) => {
                fail("timeout");
                refuse(socket, ErrorCode::AuthTimeout, "no auth response in time").await;
                return None;
            }
            Ok(None) | Ok(Some(Err(_))) => return None,
            Ok(Some(Ok(Message::Binary(b)))) => break b,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(Message::Text(_)))) => {
                fail("text_frame");
                refuse(socket, ErrorCode::MalformedFrame, "frames are binary").await;
                return None;
            }
        }
    };
    let frame = match Frame::decode(raw) {
        Ok(f) => f,
        Err(e) => {
            fail("malformed");
            state
                .metrics
                .bad_frames
                .get_or_create(&reason(e.code().name()))
                .inc();
            refuse(socket, e.code(), &e.to_string()).await;
            return None;
        }
    };
    if frame.kind() != FrameKind::AuthResponse {
        fail("not_authenticated");
        refuse(socket, ErrorCode::NotAuthenticated, "authenticate first").await;
        return None;
    }
    let who = match auth.handle_response(&frame, state.mono_ms(), &state.config.public_urls) {
        Ok(who) => who,
        Err(e) => {
            let code = e.code();
            fail(code.name());
            refuse(socket, code, &e.to_string()).await;
            return None;
        }
    };
    if state.is_revoked(&who.agent) {
        fail("revoked");
        refuse(socket, ErrorCode::Revoked, "this key has been revoked").await;
        return None;
    }
    let mut resumed = false;
    let mut resume_failed = false;
    {
        let mut tokens = state.lock_tokens();
        if let Some(token) = &who.resume_token {
            match tokens.redeem(&who.agent, token, state.mono_ms()) {
                Ok(()) => resumed = true,
                Err(_) => resume_failed = true,
            }
        }
    }
    let mut random = [0u8; 32];
    if getrandom::fill(&mut random).is_err() {
        refuse(socket, ErrorCode::Internal, "randomness unavailable").await;
        return None;
    }
    let token = state
        .lock_tokens()
        .issue(who.agent, random, state.mono_ms());
    let heartbeat = u32::try_from(state.config.heartbeat_interval_ms).unwrap_or(u32::MAX);
    let ok = RelayAuth::accept(
        resumed,
        token,
        heartbeat,
        mesh_core::limits::MAX_FRAME_LEN as u32,
    );
    if socket
        .send(Message::Binary(ok.encode().unwrap_or_default()))
        .await
        .is_err()
    {
        return None;
    }
    if resume_failed {
        let _ = socket
            .send(Message::Binary(error_frame(
                ErrorCode::ResumeRejected,
                0,
                0,
                "resume token unknown, used or expired; unacknowledged frames are still redelivered from the inbox",
            )))
            .await;
    }
    Some((who.agent, resumed))
}

/// Writes queued frames with a timeout; a stalled socket ends the connection.
async fn writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
    conn: Arc<Conn>,
    timeout: Duration,
) {
    let fail = |code: ErrorCode, why: &str| conn.request_close(code, why.to_string());
    loop {
        let first = tokio::select! {
            out = rx.recv() => match out {
                Some(out) => out,
                None => break,
            },
            _ = conn.overflow_wake.notified() => Outgoing::Frame(Bytes::new()),
        };
        // Write everything queued, then flush once: one syscall for a burst
        // instead of one per frame.
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(out) => batch.push(out),
                Err(_) => break,
            }
        }
        let mut closing = false;
        let written = tokio::time::timeout(timeout, async {
            for out in batch {
                match out {
                    Outgoing::Frame(b) if b.is_empty() => {}
                    Outgoing::Frame(b) => sink.feed(Message::Binary(b)).await?,
                    Outgoing::Close(code, reason) => {
                        sink.feed(close_message(code, &reason)).await?;
                        closing = true;
                        break;
                    }
                }
            }
            for b in conn.take_overflow() {
                sink.feed(Message::Binary(b)).await?;
            }
            sink.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) if !closing => {}
            Ok(Ok(())) => break,
            Ok(Err(_)) => {
                fail(ErrorCode::Internal, "write failed");
                break;
            }
            Err(_) => {
                fail(ErrorCode::HeartbeatTimeout, "write timed out");
                break;
            }
        }
    }
    let _ = sink.close().await;
}

/// Feeds the agent's inbox to the connection in order, as room allows.
async fn inbox_pump(state: AppState, conn: Arc<Conn>) {
    let mut after_id = 0i64;
    loop {
        if conn.has_room() {
            let agent = conn.agent;
            let batch = state
                .store
                .call(move |s| s.inbox_load(&agent, after_id, crate::defaults::INBOX_BATCH))
                .await;
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "inbox read failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let full_batch = batch.len() == crate::defaults::INBOX_BATCH;
            for f in batch {
                after_id = f.id;
                let Ok(frame) = frame::encode_deliver(&f.src, f.msg_id, true, &f.body) else {
                    continue;
                };
                let item = Unacked {
                    frame: frame.clone(),
                    inbox_id: Some(f.id),
                    body: f.body,
                };
                if !conn.record_from_inbox(f.src, f.msg_id, item) || !conn.send(frame).await {
                    return;
                }
            }
            if full_batch {
                continue;
            }
        }
        if !conn.has_room() {
            conn.pump_wants_room
                .store(true, std::sync::atomic::Ordering::Release);
            // An ack may have made room between the check and the flag.
            if conn.has_room() {
                continue;
            }
        }
        conn.inbox_wake.notified().await;
    }
}

/// Writes a connection's unacknowledged frames to the inbox (they were
/// accepted and must survive the connection), then wakes whichever
/// connection now serves the agent.
async fn persist_unacked(state: &AppState, conn: &Conn) {
    let frames: Vec<(AgentId, u64, Bytes)> = conn
        .take_unacked()
        .into_iter()
        .filter(|(_, u)| u.inbox_id.is_none())
        // Senders were authenticated, so their keys are valid points.
        .filter_map(|((src, msg_id), u)| Some((AgentId::from_bytes(&src).ok()?, msg_id, u.body)))
        .collect();
    if frames.is_empty() {
        return;
    }
    let dst = conn.agent;
    let senders: Vec<(AgentId, u64)> = frames.iter().map(|(src, id, _)| (*src, *id)).collect();
    if state.is_revoked(&dst) {
        // Revocation purged the inbox; nothing more is stored for the
        // agent. Tell the senders still online that it is refused.
        let refused = DeliveryStatus::Refused(ErrorCode::Revoked);
        tell_senders(state, dst, &senders, refused);
        return;
    }
    let now = state.wall_ms();
    let n = frames.len();
    let result = state
        .store
        .call(move |s| {
            s.inbox_force_push_all(
                &dst,
                frames
                    .iter()
                    .map(|(src, msg_id, body)| (src, *msg_id, &body[..])),
                now,
            )
        })
        .await;
    match result {
        Ok(_) => {
            state.metrics.frames_queued.inc_by(n as u64);
            state.hub.wake_inbox(&dst);
            // Their senders were told `Forwarded`; now the frames wait in
            // the inbox, so tell each sender still online `Queued` (a
            // sender that is offline re-sends on reconnect and hears
            // `Queued` then, from the inbox's duplicate check).
            tell_senders(state, dst, &senders, DeliveryStatus::Queued);
        }
        Err(e) => {
            // The frames are in no place now (a full disk, say). Their
            // senders must not wait at `Forwarded` for a delivery that
            // cannot come: those online hear `refused` `internal` and can
            // send again; those offline re-send on reconnect anyway, since
            // a client keeps a frame until it is queued or delivered.
            tracing::error!(error = %e, frames = n, "could not persist unacknowledged frames");
            state.metrics.frames_lost.inc_by(n as u64);
            let refused = DeliveryStatus::Refused(ErrorCode::Internal);
            tell_senders(state, dst, &senders, refused);
        }
    }
}

/// Sends `status` for each (sender, message id) whose sender is online.
fn tell_senders(
    state: &AppState,
    dst: AgentId,
    senders: &[(AgentId, u64)],
    status: DeliveryStatus,
) {
    for (src, msg_id) in senders {
        if let Some(sender) = state.hub.get(src) {
            sender.send_status(status_frame(dst, *msg_id, status));
        }
    }
}

async fn run(state: AppState, socket: WebSocket, (agent, resumed): (AgentId, bool)) {
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(state.config.send_queue_frames);
    let conn = Conn::new(
        state.hub.next_conn_id(),
        agent,
        tx,
        state.config.max_unacked_frames,
    );
    let mut close_rx = conn.close_requested();
    let writer_task = tokio::spawn(writer(
        sink,
        rx,
        conn.clone(),
        Duration::from_millis(state.config.write_timeout_ms),
    ));
    // Take over from an earlier connection of the same agent: it is told
    // to close, and what it had not had acknowledged goes to the inbox
    // before our inbox pump starts, so nothing is lost or misrouted.
    if let Some(old) = state.hub.insert(conn.clone()) {
        old.request_close(ErrorCode::Replaced, "replaced by a newer connection");
        persist_unacked(&state, &old).await;
    } else {
        state.metrics.agents_online.inc();
    }
    tracing::info!(agent = %agent.short(), resumed, "agent connected");
    let now = state.wall_ms();
    let _ = state
        .store
        .call(move |s| s.presence_set(&agent, true, now))
        .await;
    let pump = tokio::spawn(inbox_pump(state.clone(), conn.clone()));
    let mut heartbeat = Heartbeat::new(
        state.mono_ms(),
        state.config.heartbeat_interval_ms,
        state.config.heartbeat_misses,
    );
    let mut shutdown = state.shutdown.subscribe();
    let end: (ErrorCode, String) = loop {
        let wake = heartbeat.poll_timeout().saturating_sub(state.mono_ms());
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    heartbeat.on_receive(state.mono_ms());
                    handle_frame(&state, &conn, b).await;
                }
                Some(Ok(Message::Text(_))) => {
                    heartbeat.on_receive(state.mono_ms());
                    state.metrics.bad_frames.get_or_create(&reason("text_frame")).inc();
                    conn.send(error_frame(ErrorCode::MalformedFrame, 0, 0, "frames are binary")).await;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => heartbeat.on_receive(state.mono_ms()),
                Some(Ok(Message::Close(_))) | None => break (ErrorCode::GoingAway, String::new()),
                Some(Err(e)) => {
                    // Oversized messages end here: tungstenite refuses them.
                    state.metrics.bad_frames.get_or_create(&reason("websocket")).inc();
                    break (ErrorCode::FrameTooLarge, e.to_string());
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(wake)) => {
                match heartbeat.handle_timeout(state.mono_ms()) {
                    HeartbeatAction::Idle => {}
                    HeartbeatAction::Ping(p) => {
                        conn.try_send(p.encode().unwrap_or_default());
                    }
                    HeartbeatAction::Dead => break (ErrorCode::HeartbeatTimeout, "heartbeat timed out".into()),
                }
            }
            _ = close_rx.changed() => {
                let req = close_rx.borrow().clone();
                if let Some(req) = req {
                    break req;
                }
            }
            // `wait_for` also sees a shutdown that began before we subscribed.
            _ = async { let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ()); } => break (ErrorCode::GoingAway, "relay is shutting down".into()),
        }
    };
    // Stop routing to this connection first, then persist what it holds.
    let was_current = state.hub.remove_if(&agent, conn.id);
    persist_unacked(&state, &conn).await;
    pump.abort();
    if end.0 != ErrorCode::GoingAway || !end.1.is_empty() {
        let _ = conn.send(error_frame(end.0, 0, 0, &end.1)).await;
    }
    // Ask the writer to close; the sender half lives in `conn`, so the
    // writer would otherwise wait for more.
    let _ = conn_close(&conn, end.0, &end.1).await;
    let _ = tokio::time::timeout(
        Duration::from_millis(state.config.write_timeout_ms),
        writer_task,
    )
    .await;
    if was_current {
        state.metrics.agents_online.dec();
        let now = state.wall_ms();
        let _ = state
            .store
            .call(move |s| s.presence_set(&agent, false, now))
            .await;
    }
    tracing::info!(agent = %agent.short(), reason = %end.0, "agent disconnected");
}

async fn conn_close(conn: &Conn, code: ErrorCode, reason: &str) -> bool {
    conn.send_outgoing(Outgoing::Close(code, reason.to_string()))
        .await
}

/// Counts an invalid frame and tells its sender why (the connection lives).
async fn reject(state: &AppState, conn: &Conn, e: &frame::FrameError, ref_msg_id: u64) {
    state
        .metrics
        .bad_frames
        .get_or_create(&reason(e.code().name()))
        .inc();
    conn.send(error_frame(e.code(), ref_msg_id, 0, &e.to_string()))
        .await;
}

/// Handles one frame from an authenticated agent.
async fn handle_frame(state: &AppState, conn: &Arc<Conn>, raw: Bytes) {
    let kind = match frame::peek_kind(&raw) {
        Ok((kind, _)) => kind,
        Err(e) => {
            reject(state, conn, &e, 0).await;
            return;
        }
    };
    match kind {
        FrameKind::Send => route(state, conn, raw).await,
        FrameKind::Ack => match frame::peek_ack(&raw) {
            Ok((src, msg_id)) => ack(state, conn, src, msg_id).await,
            Err(e) => {
                reject(state, conn, &e, 0).await;
            }
        },
        _ => match Frame::decode(raw) {
            Ok(Frame::Ping(n)) => {
                conn.send(Heartbeat::pong_for(n).encode().unwrap_or_default())
                    .await;
            }
            Ok(Frame::Pong(_)) => {}
            Ok(other) => {
                state
                    .metrics
                    .bad_frames
                    .get_or_create(&reason("unexpected_frame"))
                    .inc();
                let msg = format!("{:?} frames are not accepted from clients", other.kind());
                conn.send(error_frame(ErrorCode::UnexpectedFrame, 0, 0, &msg))
                    .await;
            }
            Err(e) => {
                reject(state, conn, &e, 0).await;
            }
        },
    }
}

async fn ack(state: &AppState, conn: &Arc<Conn>, src: [u8; 32], msg_id: u64) {
    let me = conn.agent;
    let from_inbox = match conn.ack(&src, msg_id) {
        Some(u) => u.inbox_id.is_some(),
        // Not outstanding here: it may be an inbox frame delivered on an
        // earlier connection. The store only deletes rows addressed to us.
        None => true,
    };
    let mut delivered = !from_inbox;
    if from_inbox {
        let Ok(src_id) = AgentId::from_bytes(&src) else {
            return;
        };
        delivered = state
            .store
            .call(move |s| s.inbox_ack(&me, &src_id, msg_id))
            .await
            .unwrap_or(false);
    }
    if delivered {
        state.metrics.frames_delivered.inc();
        if let Some(sender) = state.hub.get_raw(&src) {
            sender.send_status(status_frame(me, msg_id, DeliveryStatus::Delivered));
        }
    }
}

/// Routes a `Send` frame: live if the recipient is online and keeping up,
/// else into its inbox; the sender always learns which, or why not.
async fn route(state: &AppState, conn: &Arc<Conn>, raw: Bytes) {
    let started = std::time::Instant::now();
    let src = conn.agent;
    let len = raw.len();
    // Rate limits first: frames and bytes, per agent.
    let limited = match state.frame_limiter.check_key(&src) {
        Err(nu) => Some(nu.wait_time_from(DefaultClock::default().now())),
        Ok(()) => match state
            .byte_limiter
            .check_key_n(&src, NonZeroU32::new(len as u32).unwrap_or(NonZeroU32::MIN))
        {
            Ok(Ok(())) => None,
            Ok(Err(nu)) => Some(nu.wait_time_from(DefaultClock::default().now())),
            Err(_) => Some(Duration::from_secs(1)),
        },
    };
    // The header, read by mesh-core (no key decompression): its message id
    // lets every refusal below name the frame it refers to.
    let header = match frame::peek_routed(&raw) {
        Ok(h) => h,
        Err(e) => {
            reject(state, conn, &e, 0).await;
            return;
        }
    };
    if let Some(wait) = limited {
        state
            .metrics
            .rate_limited
            .get_or_create(&reason("frames"))
            .inc();
        let retry = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX).max(1);
        conn.send(error_frame(
            ErrorCode::RateLimited,
            header.msg_id,
            retry,
            "sending too fast; retry after the given delay",
        ))
        .await;
        return;
    }
    let no_store = header.flags & frame::flags::NO_STORE != 0;
    let quiet = header.flags & frame::flags::QUIET != 0;
    let mut buf = raw
        .try_into_mut()
        .unwrap_or_else(|b| BytesMut::from(&b[..]));
    let (dst_raw, msg_id) = match frame::rewrite_send_to_deliver(&mut buf, &src) {
        Ok(v) => v,
        Err(e) => {
            reject(state, conn, &e, header.msg_id).await;
            return;
        }
    };
    state.metrics.frames_routed.inc();
    let deliver = buf.freeze();
    let body = deliver.slice(mesh_core::limits::ROUTED_HEADER_LEN..);
    state.metrics.bytes_routed.inc_by(body.len() as u64);
    // Live delivery first, by raw key: a connection's key was validated when
    // it authenticated, so no point decompression is needed on this path.
    // A connection that closes under us is looked up again.
    if dst_raw != *src.as_bytes() {
        for _ in 0..3 {
            let Some(target) = state.hub.get_raw(&dst_raw) else {
                break;
            };
            let item = Unacked {
                frame: deliver.clone(),
                inbox_id: None,
                body: body.clone(),
            };
            match target.offer(src, msg_id, item) {
                Offer::Accepted => {
                    state.metrics.frames_forwarded.inc();
                    state
                        .metrics
                        .route_seconds
                        .observe(started.elapsed().as_secs_f64());
                    if !quiet {
                        conn.send(status_frame(
                            target.agent,
                            msg_id,
                            DeliveryStatus::Forwarded,
                        ))
                        .await;
                    }
                    return;
                }
                Offer::Full => break,
                Offer::Closed => tokio::task::yield_now().await,
            }
        }
    }
    let dst = match AgentId::from_bytes(&dst_raw) {
        Ok(d) => d,
        Err(_) => {
            state
                .metrics
                .bad_frames
                .get_or_create(&reason("bad_agent_id"))
                .inc();
            conn.send(error_frame(
                ErrorCode::MalformedFrame,
                msg_id,
                0,
                "destination is not a valid agent id",
            ))
            .await;
            return;
        }
    };
    let refuse = |code: ErrorCode| {
        state
            .metrics
            .frames_refused
            .get_or_create(&reason(code.name()))
            .inc();
        status_frame(dst, msg_id, DeliveryStatus::Refused(code))
    };
    if dst == src {
        conn.send(refuse(ErrorCode::UnknownRecipient)).await;
        return;
    }
    if state.is_revoked(&dst) {
        conn.send(refuse(ErrorCode::Revoked)).await;
        return;
    }
    if no_store {
        conn.send(refuse(ErrorCode::Unreachable)).await;
        return;
    }
    let limits = InboxLimits {
        max_frames: state.config.inbox_max_frames,
        max_bytes: state.config.inbox_max_bytes,
    };
    let now = state.wall_ms();
    let stored = state
        .store
        .call(move |s| {
            if !s.is_known(&dst)? {
                return Ok(None);
            }
            s.inbox_push(&dst, &src, msg_id, &body, now, &limits)
                .map(Some)
        })
        .await;
    let reply = match stored {
        Ok(None) => refuse(ErrorCode::UnknownRecipient),
        Ok(Some(InboxPush::Stored { .. } | InboxPush::Duplicate { .. })) => {
            state.metrics.frames_queued.inc();
            state.hub.wake_inbox(&dst);
            status_frame(dst, msg_id, DeliveryStatus::Queued)
        }
        Ok(Some(InboxPush::Full { .. })) => refuse(ErrorCode::InboxFull),
        Err(e) => {
            tracing::error!(error = %e, "inbox write failed");
            refuse(ErrorCode::Internal)
        }
    };
    state
        .metrics
        .route_seconds
        .observe(started.elapsed().as_secs_f64());
    conn.send(reply).await;
}
