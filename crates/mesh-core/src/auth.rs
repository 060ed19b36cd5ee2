//! Relay authentication, resume tokens and heartbeat: both halves, sans-IO,
//! so the logic exists exactly once — `mesh-client` drives [`ClientAuth`],
//! `mesh-relay` drives [`RelayAuth`] and [`ResumeTokens`], and both use
//! [`Heartbeat`].
//!
//! The exchange:
//!
//! 1. relay → client `Challenge { relay_id, nonce }` (32 fresh random bytes);
//! 2. client → relay `AuthResponse { agent, relay_url, resume_token?, signature }`
//!    where the signature is over the relay-auth statement
//!    `[relay_id, nonce, agent, relay_url, resume_token or empty]` in the
//!    [`SignatureContext::RelayAuth`] context;
//! 3. relay → client `AuthOk` or an `Error` and a close.
//!
//! Binding the statement to the relay's id and nonce means a response can be
//! used once, at one relay: a malicious relay that forwards another relay's
//! challenge gets a statement naming that other relay's id — and a client
//! that knows whom it dialled (`expected_relay`) refuses to sign it at all.
//! The dialled URL is signed too, so a relay configured with its public URLs
//! can refuse statements made for another address. There are no
//! timestamps to trust and no bearer tokens: a resume token only selects
//! which previous connection's traffic to resume and is worthless without
//! the agent's signature.

use std::collections::HashMap;

use crate::code::ErrorCode;
use crate::frame::{AuthOk, AuthResponse, Challenge, ErrorFrame, Frame, ResumeToken};
use crate::identity::{AgentId, Identity, SignatureError};
use crate::limits::{self, PROTOCOL_VERSION};
use crate::sign::SignatureContext;

/// The fields of the relay-auth statement, in signing order.
fn statement<'a>(
    relay_id: &'a AgentId,
    nonce: &'a [u8; 32],
    agent: &'a AgentId,
    relay_url: &'a str,
    resume: Option<&'a ResumeToken>,
) -> [&'a [u8]; 5] {
    [
        relay_id.as_bytes(),
        nonce,
        agent.as_bytes(),
        relay_url.as_bytes(),
        resume.map_or(&[][..], |t| &t.0[..]),
    ]
}

/// Why authentication failed, on either side.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AuthError {
    /// The relay refused us (client side) with this code and message.
    #[error("relay refused authentication: {code}: {message}")]
    Refused {
        /// The relay's reason.
        code: ErrorCode,
        /// Its human-readable detail.
        message: String,
        /// For `rate_limited`: how long to wait (ms).
        retry_after_ms: u32,
    },
    /// The challenge names a relay other than the one we meant to reach.
    #[error("challenge is from relay {got}, expected {expected}")]
    UnexpectedRelay {
        /// The relay we dialled.
        expected: AgentId,
        /// The relay the challenge names.
        got: AgentId,
    },
    /// A frame arrived that is not valid at this point of the exchange.
    #[error("unexpected {0:?} frame during authentication")]
    UnexpectedFrame(crate::frame::FrameKind),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The statement was made for another relay, another challenge, or
    /// another URL.
    #[error("auth statement is for another relay, challenge or URL")]
    WrongRelay,
    /// The deadline passed.
    #[error("authentication timed out")]
    Timeout,
    /// The URL is longer than the protocol allows.
    #[error("relay URL longer than {} bytes", limits::MAX_RELAY_URL_LEN)]
    UrlTooLong,
}

impl AuthError {
    /// The error code a relay sends for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            AuthError::Refused { code, .. } => *code,
            AuthError::UnexpectedRelay { .. } | AuthError::WrongRelay => ErrorCode::WrongRelay,
            AuthError::UnexpectedFrame(_) => ErrorCode::NotAuthenticated,
            AuthError::BadSignature => ErrorCode::BadSignature,
            AuthError::Timeout => ErrorCode::AuthTimeout,
            AuthError::UrlTooLong => ErrorCode::MalformedFrame,
        }
    }
}

/// What the client learns from a successful authentication.
#[derive(Debug, Clone)]
pub struct Session {
    /// The relay's id, from its challenge.
    pub relay_id: AgentId,
    /// Whether our resume token was accepted.
    pub resumed: bool,
    /// Token to present on the next reconnect.
    pub resume_token: ResumeToken,
    /// How long that token lives (ms).
    pub resume_ttl_ms: u32,
    /// The relay's heartbeat interval (ms).
    pub heartbeat_ms: u32,
    /// The largest frame the relay accepts.
    pub max_frame_len: u32,
}

/// What the client should do after feeding a frame to [`ClientAuth`].
#[derive(Debug)]
pub enum ClientStep {
    /// Send this frame to the relay and wait for the next.
    Send(Frame),
    /// Authenticated.
    Done(Session),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    AwaitChallenge,
    AwaitResult(AgentId),
    Finished,
}

/// The client half of relay authentication.
pub struct ClientAuth {
    identity: Identity,
    relay_url: String,
    expected_relay: Option<AgentId>,
    resume: Option<ResumeToken>,
    state: ClientState,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("agent", &self.identity.agent_id())
            .field("relay_url", &self.relay_url)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Prepares to authenticate `identity` at the relay reached through
    /// `relay_url` (exactly as dialled). With `expected_relay`, a challenge
    /// from any other relay id is refused unsigned. `resume` is the token
    /// from the previous connection, if any.
    pub fn new(
        identity: Identity,
        relay_url: impl Into<String>,
        expected_relay: Option<AgentId>,
        resume: Option<ResumeToken>,
    ) -> Result<Self, AuthError> {
        let relay_url = relay_url.into();
        if relay_url.len() > limits::MAX_RELAY_URL_LEN {
            return Err(AuthError::UrlTooLong);
        }
        Ok(ClientAuth {
            identity,
            relay_url,
            expected_relay,
            resume,
            state: ClientState::AwaitChallenge,
        })
    }

    /// Feeds the next frame from the relay.
    pub fn handle_frame(&mut self, frame: Frame) -> Result<ClientStep, AuthError> {
        match (self.state, frame) {
            (
                _,
                Frame::Error(ErrorFrame {
                    code,
                    message,
                    retry_after_ms,
                    ..
                }),
            ) => {
                self.state = ClientState::Finished;
                Err(AuthError::Refused {
                    code,
                    message,
                    retry_after_ms,
                })
            }
            (ClientState::AwaitChallenge, Frame::Challenge(Challenge { relay_id, nonce })) => {
                if let Some(expected) = self.expected_relay {
                    if expected != relay_id {
                        self.state = ClientState::Finished;
                        return Err(AuthError::UnexpectedRelay {
                            expected,
                            got: relay_id,
                        });
                    }
                }
                let agent = self.identity.agent_id();
                let signature = self.identity.sign(
                    SignatureContext::RelayAuth,
                    &statement(
                        &relay_id,
                        &nonce,
                        &agent,
                        &self.relay_url,
                        self.resume.as_ref(),
                    ),
                );
                self.state = ClientState::AwaitResult(relay_id);
                Ok(ClientStep::Send(Frame::AuthResponse(AuthResponse {
                    agent,
                    relay_url: self.relay_url.clone(),
                    resume_token: self.resume,
                    signature,
                })))
            }
            (ClientState::AwaitResult(relay_id), Frame::AuthOk(ok)) => {
                self.state = ClientState::Finished;
                Ok(ClientStep::Done(Session {
                    relay_id,
                    resumed: ok.resumed,
                    resume_token: ok.resume_token,
                    resume_ttl_ms: ok.resume_ttl_ms,
                    heartbeat_ms: ok.heartbeat_ms,
                    max_frame_len: ok.max_frame_len,
                }))
            }
            (_, other) => {
                self.state = ClientState::Finished;
                Err(AuthError::UnexpectedFrame(other.kind()))
            }
        }
    }
}

/// An agent the relay has authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Who it is.
    pub agent: AgentId,
    /// The token it presented to resume, if any (not yet redeemed: pass it
    /// to [`ResumeTokens::redeem`]).
    pub resume_token: Option<ResumeToken>,
    /// The URL it says it dialled.
    pub relay_url: String,
}

/// The relay half of authentication for one connection.
#[derive(Debug)]
pub struct RelayAuth {
    relay_id: AgentId,
    nonce: [u8; 32],
    deadline_ms: u64,
    used: bool,
}

impl RelayAuth {
    /// Starts authenticating a new connection at `now_ms`. `nonce` must be
    /// fresh random bytes (the relay draws them from its RNG).
    pub fn new(relay_id: AgentId, nonce: [u8; 32], now_ms: u64, timeout_ms: u64) -> Self {
        RelayAuth {
            relay_id,
            nonce,
            deadline_ms: now_ms.saturating_add(timeout_ms),
            used: false,
        }
    }

    /// Starts with a nonce from `getrandom` and a deadline `timeout_ms`
    /// from now (the relay's configured auth timeout;
    /// [`limits::AUTH_TIMEOUT_MS`] by default).
    pub fn with_random_nonce(
        relay_id: AgentId,
        now_ms: u64,
        timeout_ms: u64,
    ) -> Result<Self, getrandom::Error> {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce)?;
        Ok(Self::new(relay_id, nonce, now_ms, timeout_ms))
    }

    /// The challenge to send first.
    pub fn challenge(&self) -> Frame {
        Frame::Challenge(Challenge {
            relay_id: self.relay_id,
            nonce: self.nonce,
        })
    }

    /// When the connection must be closed if not yet authenticated.
    pub fn deadline_ms(&self) -> u64 {
        self.deadline_ms
    }

    /// Checks an auth response. `allowed_urls`, when not empty, lists the
    /// URLs clients may have dialled (the relay's public addresses).
    /// A `RelayAuth` accepts at most one response, so a replayed response
    /// on the same connection is refused too.
    pub fn handle_response(
        &mut self,
        frame: &Frame,
        now_ms: u64,
        allowed_urls: &[String],
    ) -> Result<Authenticated, AuthError> {
        if now_ms >= self.deadline_ms {
            return Err(AuthError::Timeout);
        }
        let Frame::AuthResponse(resp) = frame else {
            return Err(AuthError::UnexpectedFrame(frame.kind()));
        };
        if std::mem::replace(&mut self.used, true) {
            return Err(AuthError::UnexpectedFrame(frame.kind()));
        }
        resp.agent
            .verify(
                SignatureContext::RelayAuth,
                &statement(
                    &self.relay_id,
                    &self.nonce,
                    &resp.agent,
                    &resp.relay_url,
                    resp.resume_token.as_ref(),
                ),
                &resp.signature,
            )
            .map_err(|e| match e {
                SignatureError::Malformed | SignatureError::Invalid => AuthError::BadSignature,
            })?;
        if !allowed_urls.is_empty() && !allowed_urls.iter().any(|u| u == &resp.relay_url) {
            return Err(AuthError::WrongRelay);
        }
        Ok(Authenticated {
            agent: resp.agent,
            resume_token: resp.resume_token,
            relay_url: resp.relay_url.clone(),
        })
    }

    /// The `AuthOk` frame to answer a successful authentication with.
    pub fn accept(
        resumed: bool,
        token: ResumeToken,
        heartbeat_ms: u32,
        max_frame_len: u32,
    ) -> Frame {
        Frame::AuthOk(AuthOk {
            resumed,
            resume_token: token,
            resume_ttl_ms: u32::try_from(limits::RESUME_TOKEN_TTL_MS).unwrap_or(u32::MAX),
            heartbeat_ms,
            max_frame_len,
        })
    }

    /// The protocol version this relay speaks.
    pub const fn version() -> u8 {
        PROTOCOL_VERSION
    }
}

/// Why a resume token was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ResumeError {
    /// No live token for this agent, or a different one.
    #[error("unknown or mismatched resume token")]
    Unknown,
    /// The token expired.
    #[error("resume token expired")]
    Expired,
}

/// The relay's live resume tokens: one per agent, single-use, short-lived,
/// bound to the agent's key (redeeming requires the agent to have
/// authenticated, so a stolen token alone is useless).
#[derive(Debug, Default)]
pub struct ResumeTokens {
    live: HashMap<AgentId, (ResumeToken, u64)>,
    ttl_ms: u64,
}

impl ResumeTokens {
    /// An empty store whose tokens live `ttl_ms`.
    pub fn new(ttl_ms: u64) -> Self {
        ResumeTokens {
            live: HashMap::new(),
            ttl_ms,
        }
    }

    /// Issues a token for `agent` (replacing any earlier one). `random` must
    /// be fresh random bytes.
    pub fn issue(&mut self, agent: AgentId, random: [u8; 32], now_ms: u64) -> ResumeToken {
        let token = ResumeToken(random);
        self.live
            .insert(agent, (token, now_ms.saturating_add(self.ttl_ms)));
        token
    }

    /// Redeems `token` for the authenticated `agent`. Any attempt consumes
    /// the agent's live token, whether or not it matched.
    pub fn redeem(
        &mut self,
        agent: &AgentId,
        token: &ResumeToken,
        now_ms: u64,
    ) -> Result<(), ResumeError> {
        let (live, expires) = self.live.remove(agent).ok_or(ResumeError::Unknown)?;
        if !live.ct_eq(token) {
            return Err(ResumeError::Unknown);
        }
        if now_ms >= expires {
            return Err(ResumeError::Expired);
        }
        Ok(())
    }

    /// Drops expired tokens; returns how many.
    pub fn purge_expired(&mut self, now_ms: u64) -> usize {
        let before = self.live.len();
        self.live.retain(|_, (_, exp)| *exp > now_ms);
        before - self.live.len()
    }

    /// Number of live tokens.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no token is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// What [`Heartbeat::handle_timeout`] asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Nothing due yet.
    Idle,
    /// Send this ping.
    Ping(Frame),
    /// Too many pings went unanswered: the connection is dead.
    Dead,
}

/// Connection liveness for either side: pings after `interval_ms` of
/// silence and declares the peer dead after `misses` unanswered pings. Any
/// received frame counts as a sign of life.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    interval_ms: u64,
    misses: u32,
    outstanding: u32,
    next_ms: u64,
    next_nonce: u64,
}

impl Heartbeat {
    /// Starts at `now_ms`.
    pub fn new(now_ms: u64, interval_ms: u64, misses: u32) -> Self {
        let interval_ms = interval_ms.max(1);
        Heartbeat {
            interval_ms,
            misses: misses.max(1),
            outstanding: 0,
            next_ms: now_ms.saturating_add(interval_ms),
            next_nonce: 1,
        }
    }

    /// Records that a frame arrived.
    pub fn on_receive(&mut self, now_ms: u64) {
        self.outstanding = 0;
        self.next_ms = now_ms.saturating_add(self.interval_ms);
    }

    /// The answer to a ping from the other side.
    pub fn pong_for(ping_nonce: u64) -> Frame {
        Frame::Pong(ping_nonce)
    }

    /// When to call [`Heartbeat::handle_timeout`] next.
    pub fn poll_timeout(&self) -> u64 {
        self.next_ms
    }

    /// Runs the timer.
    pub fn handle_timeout(&mut self, now_ms: u64) -> HeartbeatAction {
        if now_ms < self.next_ms {
            return HeartbeatAction::Idle;
        }
        if self.outstanding >= self.misses {
            return HeartbeatAction::Dead;
        }
        self.outstanding += 1;
        self.next_ms = now_ms.saturating_add(self.interval_ms);
        let nonce = self.next_nonce;
        self.next_nonce = self.next_nonce.wrapping_add(1);
        HeartbeatAction::Ping(Frame::Ping(nonce))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident(n: u8) -> Identity {
        Identity::from_secret_bytes(&[n; 32])
    }

    const URL: &str = "ws://127.0.0.1:8080/v1/ws";

    fn run(
        client: &mut ClientAuth,
        relay: &mut RelayAuth,
        now: u64,
    ) -> Result<Authenticated, AuthError> {
        let ClientStep::Send(resp) = client.handle_frame(relay.challenge())? else {
            panic!("expected a response");
        };
        let resp = Frame::decode(resp.encode().unwrap()).unwrap();
        relay.handle_response(&resp, now, &[])
    }

    #[test]
    fn happy_path_and_auth_ok() {
        let relay = ident(100).agent_id();
        let mut client = ClientAuth::new(ident(1), URL, Some(relay), None).unwrap();
        let mut r = RelayAuth::new(relay, [7; 32], 0, 5000);
        let who = run(&mut client, &mut r, 10).unwrap();
        assert_eq!(who.agent, ident(1).agent_id());
        assert!(who.resume_token.is_none());
        let ok = RelayAuth::accept(false, ResumeToken([1; 32]), 15_000, 1 << 16);
        match client.handle_frame(ok).unwrap() {
            ClientStep::Done(s) => {
                assert_eq!(s.relay_id, relay);
                assert_eq!(s.heartbeat_ms, 15_000);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A malicious relay M forwards honest relay R's challenge to the
    /// client, hoping to log in to R as the client.
    #[test]
    fn a_malicious_relays_challenge_yields_only_a_statement_bound_to_the_named_relay() {
        let (m, r_id) = (ident(200).agent_id(), ident(100).agent_id());
        // Client pinned M (it dialled M): it refuses to sign for R at all.
        let mut pinned = ClientAuth::new(ident(1), "ws://m.example/v1/ws", Some(m), None).unwrap();
        let r_challenge = RelayAuth::new(r_id, [3; 32], 0, 5000).challenge();
        assert!(matches!(
            pinned.handle_frame(r_challenge.clone()),
            Err(AuthError::UnexpectedRelay { .. })
        ));
        // An unpinned client signs, but only a relay-auth statement naming
        // R and the URL it really dialled (M's), verifiable in no other
        // context...
        let mut loose = ClientAuth::new(ident(1), "ws://m.example/v1/ws", None, None).unwrap();
        let ClientStep::Send(Frame::AuthResponse(resp)) = loose.handle_frame(r_challenge).unwrap()
        else {
            panic!()
        };
        let agent = ident(1).agent_id();
        let fields = statement(&r_id, &[3; 32], &agent, "ws://m.example/v1/ws", None);
        for ctx in SignatureContext::ALL {
            let ok = agent.verify(ctx, &fields, &resp.signature).is_ok();
            assert_eq!(ok, ctx == SignatureContext::RelayAuth, "{ctx:?}");
        }
        // ...which R, knowing its public URL, refuses.
        let mut r = RelayAuth::new(r_id, [3; 32], 0, 5000);
        let allowed = vec!["wss://r.example/v1/ws".to_string()];
        assert_eq!(
            r.handle_response(&Frame::AuthResponse(resp.clone()), 1, &allowed),
            Err(AuthError::WrongRelay)
        );
        // And a statement M obtained for *its own* challenge never verifies
        // at R (different relay id / nonce).
        let mut for_m = ClientAuth::new(ident(1), URL, None, None).unwrap();
        let ClientStep::Send(resp_m) = for_m
            .handle_frame(RelayAuth::new(m, [3; 32], 0, 5000).challenge())
            .unwrap()
        else {
            panic!()
        };
        let mut r = RelayAuth::new(r_id, [3; 32], 0, 5000);
        assert_eq!(
            r.handle_response(&resp_m, 1, &[]),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn replayed_responses_fail() {
        let relay = ident(100).agent_id();
        let mut c1 = ClientAuth::new(ident(1), URL, None, None).unwrap();
        let mut first = RelayAuth::new(relay, [1; 32], 0, 5000);
        let ClientStep::Send(resp) = c1.handle_frame(first.challenge()).unwrap() else {
            panic!()
        };
        first.handle_response(&resp, 1, &[]).unwrap();
        // Same connection, again.
        assert!(first.handle_response(&resp, 2, &[]).is_err());
        // A new connection has a new nonce.
        let mut second = RelayAuth::new(relay, [2; 32], 0, 5000);
        assert_eq!(
            second.handle_response(&resp, 1, &[]),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn deadline_and_wrong_frames() {
        let relay = ident(100).agent_id();
        let mut r = RelayAuth::new(relay, [1; 32], 1000, 5000);
        assert_eq!(r.deadline_ms(), 6000);
        assert_eq!(
            r.handle_response(&Frame::Ping(1), 2000, &[]),
            Err(AuthError::UnexpectedFrame(crate::frame::FrameKind::Ping))
        );
        let mut c = ClientAuth::new(ident(1), URL, None, None).unwrap();
        let ClientStep::Send(resp) = c.handle_frame(r.challenge()).unwrap() else {
            panic!()
        };
        assert_eq!(r.handle_response(&resp, 6000, &[]), Err(AuthError::Timeout));
        let mut c = ClientAuth::new(ident(1), URL, None, None).unwrap();
        assert!(matches!(
            c.handle_frame(Frame::Ping(1)),
            Err(AuthError::UnexpectedFrame(_))
        ));
        let mut c = ClientAuth::new(ident(1), URL, None, None).unwrap();
        let refusal = Frame::Error(ErrorFrame {
            code: ErrorCode::Revoked,
            ref_msg_id: 0,
            retry_after_ms: 0,
            message: "key revoked".into(),
        });
        assert!(matches!(
            c.handle_frame(refusal),
            Err(AuthError::Refused {
                code: ErrorCode::Revoked,
                ..
            })
        ));
        assert!(ClientAuth::new(ident(1), "x".repeat(600), None, None).is_err());
    }

    #[test]
    fn resume_token_is_signed_single_use_short_lived_and_key_bound() {
        let relay = ident(100).agent_id();
        let mut tokens = ResumeTokens::new(1000);
        let a = ident(1).agent_id();
        let b = ident(2).agent_id();
        let t = tokens.issue(a, [9; 32], 0);
        // The token is covered by the signature: swapping it breaks auth.
        let mut c = ClientAuth::new(ident(1), URL, None, Some(t)).unwrap();
        let mut r = RelayAuth::new(relay, [1; 32], 0, 5000);
        let ClientStep::Send(Frame::AuthResponse(mut resp)) =
            c.handle_frame(r.challenge()).unwrap()
        else {
            panic!()
        };
        let genuine = resp.clone();
        resp.resume_token = Some(ResumeToken([8; 32]));
        assert_eq!(
            r.handle_response(&Frame::AuthResponse(resp), 1, &[]),
            Err(AuthError::BadSignature)
        );
        let mut r = RelayAuth::new(relay, [1; 32], 0, 5000);
        let who = r
            .handle_response(&Frame::AuthResponse(genuine), 1, &[])
            .unwrap();
        let presented = who.resume_token.unwrap();
        // Stolen by B: useless (bound to A's key).
        assert_eq!(tokens.redeem(&b, &presented, 1), Err(ResumeError::Unknown));
        assert_eq!(tokens.redeem(&a, &presented, 1), Ok(()));
        assert_eq!(
            tokens.redeem(&a, &presented, 1),
            Err(ResumeError::Unknown),
            "single use"
        );
        let t = tokens.issue(a, [5; 32], 0);
        assert_eq!(tokens.redeem(&a, &t, 1000), Err(ResumeError::Expired));
        tokens.issue(a, [6; 32], 0);
        assert_eq!(tokens.purge_expired(1000), 1);
        assert!(tokens.is_empty());
    }

    #[test]
    fn heartbeat_pings_then_declares_death() {
        let mut hb = Heartbeat::new(0, 100, 2);
        assert_eq!(hb.handle_timeout(50), HeartbeatAction::Idle);
        assert_eq!(
            hb.handle_timeout(100),
            HeartbeatAction::Ping(Frame::Ping(1))
        );
        hb.on_receive(150);
        assert_eq!(hb.poll_timeout(), 250);
        assert!(matches!(hb.handle_timeout(250), HeartbeatAction::Ping(_)));
        assert!(matches!(hb.handle_timeout(350), HeartbeatAction::Ping(_)));
        assert_eq!(hb.handle_timeout(450), HeartbeatAction::Dead);
    }
}
