//! The client's error type: one enum, each variant mapped to a wire error
//! code from docs/PROTOCOL.md (§10), so a Rust caller, a JavaScript caller
//! and a remote peer all speak about failures the same way.

use mesh_core::ErrorCode;

use crate::transport::TransportError;

/// Everything that can go wrong for a caller of [`crate::MeshClient`].
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// No answer within the timeout (`timeout`).
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The peer's ACL refused the request (`denied`).
    #[error("denied by the peer: {0}")]
    Denied(String),
    /// The peer serves no such capability (`unknown_capability`).
    #[error("the peer has no capability {0:?}")]
    UnknownCapability(String),
    /// The peer could not be reached: unknown to the relay, handshake failed
    /// or timed out, inbox full (`unreachable`, `unknown_recipient`,
    /// `inbox_full`).
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The relay rate-limited us; retry after the delay (`rate_limited`).
    #[error("rate limited; retry after {retry_after_ms} ms")]
    RateLimited {
        /// Milliseconds to wait before retrying.
        retry_after_ms: u32,
    },
    /// Our key, or the peer's, is revoked (`revoked`).
    #[error("revoked: {0}")]
    Revoked(String),
    /// The request was cancelled (`cancelled`).
    #[error("cancelled")]
    Cancelled,
    /// The remote handler failed (`handler_failed`).
    #[error("the peer's handler failed: {0}")]
    HandlerFailed(String),
    /// The peer rejected the request body (`bad_request`).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A body exceeds 1 MiB (`payload_too_large`).
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// The peer or the relay broke the protocol (`protocol`).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The relay refused authentication (`bad_signature`, `wrong_relay`, …).
    #[error("relay refused authentication ({code}): {message}")]
    Auth {
        /// The relay's code.
        code: ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The relay could not be reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// The registry refused a request (or could not be reached: status 0).
    #[error("registry: {code} ({status}): {message}")]
    Registry {
        /// HTTP status (0 when unreachable).
        status: u16,
        /// The registry's error code.
        code: String,
        /// Its explanation.
        message: String,
    },
    /// The peer answered with a code this client does not know.
    #[error("remote error {code}: {message}")]
    Remote {
        /// The code.
        code: ErrorCode,
        /// The message.
        message: String,
    },
}

impl ClientError {
    /// The wire error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            ClientError::Timeout(_) => ErrorCode::Timeout,
            ClientError::Denied(_) => ErrorCode::Denied,
            ClientError::UnknownCapability(_) => ErrorCode::UnknownCapability,
            ClientError::Unreachable(_) => ErrorCode::Unreachable,
            ClientError::RateLimited { .. } => ErrorCode::RateLimited,
            ClientError::Revoked(_) => ErrorCode::Revoked,
            ClientError::Cancelled => ErrorCode::Cancelled,
            ClientError::HandlerFailed(_) => ErrorCode::HandlerFailed,
            ClientError::BadRequest(_) => ErrorCode::BadRequest,
            ClientError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ClientError::Protocol(_) => ErrorCode::Protocol,
            ClientError::Auth { code, .. } | ClientError::Remote { code, .. } => *code,
            ClientError::Transport(_) => ErrorCode::Unreachable,
            ClientError::Closed => ErrorCode::GoingAway,
            ClientError::Registry { status: 0, .. } => ErrorCode::Unreachable,
            ClientError::Registry { .. } => ErrorCode::BadRequest,
        }
    }

    /// The error a remote `Error` reply with `code` and `message` means.
    pub fn from_remote(code: ErrorCode, message: String, capability: &str) -> Self {
        match code {
            ErrorCode::Denied => ClientError::Denied(message),
            ErrorCode::UnknownCapability => ClientError::UnknownCapability(capability.to_string()),
            ErrorCode::Timeout => ClientError::Remote { code, message },
            ErrorCode::Cancelled => ClientError::Cancelled,
            ErrorCode::HandlerFailed => ClientError::HandlerFailed(message),
            ErrorCode::BadRequest => ClientError::BadRequest(message),
            ErrorCode::PayloadTooLarge => ClientError::PayloadTooLarge(message),
            ErrorCode::Unreachable | ErrorCode::UnknownRecipient | ErrorCode::InboxFull => {
                ClientError::Unreachable(message)
            }
            ErrorCode::Revoked => ClientError::Revoked(message),
            ErrorCode::Protocol => ClientError::Protocol(message),
            _ => ClientError::Remote { code, message },
        }
    }
}

/// What a request handler returns when it fails. The requester receives it
/// as an end-to-end `Error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// The code sent (normally `handler_failed` or `bad_request`).
    pub code: ErrorCode,
    /// The message sent (at most 512 bytes are kept).
    pub message: String,
}

impl HandlerError {
    /// The handler failed (`handler_failed`).
    pub fn failed(message: impl Into<String>) -> Self {
        HandlerError {
            code: ErrorCode::HandlerFailed,
            message: message.into(),
        }
    }

    /// The request body was not acceptable (`bad_request`).
    pub fn bad_request(message: impl Into<String>) -> Self {
        HandlerError {
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for HandlerError {}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        HandlerError::failed(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        HandlerError::failed(message)
    }
}
