//! Error codes shared by every layer and every surface.
//!
//! The same numeric code travels in relay `Error` frames, in WebSocket close
//! reasons (as `4000 + code`), in end-to-end `Error` replies and in the
//! `code` property of JavaScript errors (as the snake_case name). Codes below
//! 100 are relay-level, 100 and up are end-to-end. docs/PROTOCOL.md lists
//! them all; a test checks the list against this enum.

use std::fmt;

/// A protocol error code. Unknown numbers survive decoding as
/// [`ErrorCode::Unrecognized`] so that newer peers do not break older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The frame could not be decoded.
    MalformedFrame,
    /// The frame's protocol version is not spoken here.
    UnsupportedVersion,
    /// The frame is larger than the limit for its kind.
    FrameTooLarge,
    /// A frame other than an auth response arrived before authentication.
    NotAuthenticated,
    /// The client did not authenticate before the deadline.
    AuthTimeout,
    /// The auth signature did not verify.
    BadSignature,
    /// The auth statement names another relay, or another challenge.
    WrongRelay,
    /// The key has been revoked.
    Revoked,
    /// Too many frames or bytes; retry after the given delay.
    RateLimited,
    /// The relay is at its connection limit, or this address opens too many.
    TooManyConnections,
    /// A newer connection for the same agent replaced this one.
    Replaced,
    /// The relay is shutting down.
    GoingAway,
    /// The destination agent is unknown to this relay and cannot be queued for.
    UnknownRecipient,
    /// The destination's offline inbox is full.
    InboxFull,
    /// The resume token was unknown, expired, used, or not this agent's.
    ResumeRejected,
    /// The relay failed internally; the frame was not accepted.
    Internal,
    /// A well-formed frame arrived that is not valid in the current state.
    UnexpectedFrame,
    /// Heartbeats went unanswered.
    HeartbeatTimeout,
    /// The receiver's ACL does not allow this request.
    Denied,
    /// The receiver serves no such capability.
    UnknownCapability,
    /// No answer arrived in time.
    Timeout,
    /// The request was cancelled.
    Cancelled,
    /// The handler failed while serving the request.
    HandlerFailed,
    /// The request body was not what the capability accepts.
    BadRequest,
    /// The payload exceeds the end-to-end size limit.
    PayloadTooLarge,
    /// The peer could not be reached (handshake failed or timed out).
    Unreachable,
    /// The peer broke the end-to-end protocol.
    Protocol,
    /// A code this implementation does not know.
    Unrecognized(u16),
}

/// Every known code, in numeric order (for docs and tests).
pub const ALL_CODES: [ErrorCode; 27] = [
    ErrorCode::MalformedFrame,
    ErrorCode::UnsupportedVersion,
    ErrorCode::FrameTooLarge,
    ErrorCode::NotAuthenticated,
    ErrorCode::AuthTimeout,
    ErrorCode::BadSignature,
    ErrorCode::WrongRelay,
    ErrorCode::Revoked,
    ErrorCode::RateLimited,
    ErrorCode::TooManyConnections,
    ErrorCode::Replaced,
    ErrorCode::GoingAway,
    ErrorCode::UnknownRecipient,
    ErrorCode::InboxFull,
    ErrorCode::ResumeRejected,
    ErrorCode::Internal,
    ErrorCode::UnexpectedFrame,
    ErrorCode::HeartbeatTimeout,
    ErrorCode::Denied,
    ErrorCode::UnknownCapability,
    ErrorCode::Timeout,
    ErrorCode::Cancelled,
    ErrorCode::HandlerFailed,
    ErrorCode::BadRequest,
    ErrorCode::PayloadTooLarge,
    ErrorCode::Unreachable,
    ErrorCode::Protocol,
];

impl ErrorCode {
    /// The numeric code on the wire.
    pub const fn as_u16(self) -> u16 {
        match self {
            ErrorCode::MalformedFrame => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::FrameTooLarge => 3,
            ErrorCode::NotAuthenticated => 4,
            ErrorCode::AuthTimeout => 5,
            ErrorCode::BadSignature => 6,
            ErrorCode::WrongRelay => 7,
            ErrorCode::Revoked => 8,
            ErrorCode::RateLimited => 9,
            ErrorCode::TooManyConnections => 10,
            ErrorCode::Replaced => 11,
            ErrorCode::GoingAway => 12,
            ErrorCode::UnknownRecipient => 13,
            ErrorCode::InboxFull => 14,
            ErrorCode::ResumeRejected => 15,
            ErrorCode::Internal => 16,
            ErrorCode::UnexpectedFrame => 17,
            ErrorCode::HeartbeatTimeout => 18,
            ErrorCode::Denied => 100,
            ErrorCode::UnknownCapability => 101,
            ErrorCode::Timeout => 102,
            ErrorCode::Cancelled => 103,
            ErrorCode::HandlerFailed => 104,
            ErrorCode::BadRequest => 105,
            ErrorCode::PayloadTooLarge => 106,
            ErrorCode::Unreachable => 107,
            ErrorCode::Protocol => 108,
            ErrorCode::Unrecognized(n) => n,
        }
    }

    /// Reads a numeric code; unknown numbers are kept, not rejected.
    pub fn from_u16(n: u16) -> Self {
        ALL_CODES
            .iter()
            .copied()
            .find(|c| c.as_u16() == n)
            .unwrap_or(ErrorCode::Unrecognized(n))
    }

    /// The stable snake_case name (the JavaScript `code` property).
    pub const fn name(self) -> &'static str {
        match self {
            ErrorCode::MalformedFrame => "malformed_frame",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::AuthTimeout => "auth_timeout",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::WrongRelay => "wrong_relay",
            ErrorCode::Revoked => "revoked",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::Replaced => "replaced",
            ErrorCode::GoingAway => "going_away",
            ErrorCode::UnknownRecipient => "unknown_recipient",
            ErrorCode::InboxFull => "inbox_full",
            ErrorCode::ResumeRejected => "resume_rejected",
            ErrorCode::Internal => "internal",
            ErrorCode::UnexpectedFrame => "unexpected_frame",
            ErrorCode::HeartbeatTimeout => "heartbeat_timeout",
            ErrorCode::Denied => "denied",
            ErrorCode::UnknownCapability => "unknown_capability",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::HandlerFailed => "handler_failed",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::Unreachable => "unreachable",
            ErrorCode::Protocol => "protocol",
            ErrorCode::Unrecognized(_) => "unrecognized",
        }
    }

    /// The WebSocket close code a relay uses when it closes a connection
    /// for this reason: `4000 + code` (private-use range 4000–4999).
    pub const fn close_code(self) -> u16 {
        4000 + self.as_u16()
    }

    /// Reads a WebSocket close code written by [`ErrorCode::close_code`].
    pub fn from_close_code(code: u16) -> Option<Self> {
        (4000..5000)
            .contains(&code)
            .then(|| Self::from_u16(code - 4000))
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Unrecognized(n) => write!(f, "unrecognized({n})"),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in ALL_CODES {
            assert!(seen.insert(c.as_u16()), "duplicate {c:?}");
            assert_eq!(ErrorCode::from_u16(c.as_u16()), c);
            assert_eq!(ErrorCode::from_close_code(c.close_code()), Some(c));
        }
        assert_eq!(ErrorCode::from_u16(999), ErrorCode::Unrecognized(999));
        assert_eq!(ErrorCode::from_close_code(1000), None);
    }
}
