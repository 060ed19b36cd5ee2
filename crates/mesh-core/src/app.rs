//! End-to-end application messages: what travels *inside* the encryption.
//!
//! The relay never sees these. A message is encoded to bytes here, then the
//! session layer ([`crate::session`]) fragments it into Noise transport
//! messages when it is larger than one Noise message can carry, so a body may
//! be up to [`MAX_APP_BODY`] (1 MiB).
//!
//! Layout: one kind byte, then the kind's fields (docs/PROTOCOL.md,
//! "Application messages"). Request ids are chosen by the requester and
//! scope every response, error, stream chunk, stream end and cancel.

use bytes::{BufMut, Bytes, BytesMut};

use crate::code::ErrorCode;
use crate::codec::Reader;
use crate::limits::{MAX_APP_BODY, MAX_CAPABILITY_LEN, MAX_ERROR_MESSAGE_LEN};

/// Kind byte of each application message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AppKind {
    /// Ask a capability of the peer.
    Request = 1,
    /// The single answer to a non-streaming request.
    Response = 2,
    /// A typed failure answering a request.
    Error = 3,
    /// One piece of a streamed answer.
    StreamChunk = 4,
    /// The end of a streamed answer.
    StreamEnd = 5,
    /// The requester no longer wants the answer.
    Cancel = 6,
    /// A plain chat message between people or agents.
    Chat = 7,
    /// Acknowledgement that a chat message arrived or was read.
    Receipt = 8,
}

/// Flag bit on a request: the requester wants a stream of chunks.
pub const REQUEST_FLAG_STREAM: u8 = 0x01;

/// What a receipt acknowledges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// The message reached the recipient's device.
    Delivered = 1,
    /// A person has seen it.
    Read = 2,
}

impl ReceiptKind {
    /// The kind's name where it is shown or sent as JSON: `delivered` or
    /// `read`.
    pub const fn name(self) -> &'static str {
        match self {
            ReceiptKind::Delivered => "delivered",
            ReceiptKind::Read => "read",
        }
    }
}

/// One end-to-end application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppMessage {
    /// Ask `capability` of the peer with `body`.
    Request {
        /// Requester-chosen id, unique among the requester's open requests.
        req_id: u64,
        /// The capability asked for (e.g. `summarize`).
        capability: String,
        /// Whether the answer should be streamed.
        stream: bool,
        /// Request payload.
        body: Bytes,
    },
    /// The answer to request `req_id`.
    Response {
        /// The request answered.
        req_id: u64,
        /// Response payload.
        body: Bytes,
    },
    /// A typed failure for request `req_id`.
    Error {
        /// The request that failed.
        req_id: u64,
        /// Why (see [`ErrorCode`]).
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
    /// Chunk number `seq` (from 0) of a streamed answer.
    StreamChunk {
        /// The request answered.
        req_id: u64,
        /// Position of this chunk; receivers reorder by it.
        seq: u32,
        /// Chunk payload.
        body: Bytes,
    },
    /// The stream for `req_id` is complete after `count` chunks.
    StreamEnd {
        /// The request answered.
        req_id: u64,
        /// Number of chunks sent.
        count: u32,
    },
    /// Stop working on `req_id`.
    Cancel {
        /// The request to cancel.
        req_id: u64,
    },
    /// A chat message.
    Chat {
        /// Sender-chosen id, referenced by receipts.
        msg_id: u64,
        /// Sender's wall clock when sent (Unix ms); for display only.
        sent_at_ms: u64,
        /// The text.
        text: String,
    },
    /// Receipt for chat message `msg_id`.
    Receipt {
        /// The message acknowledged.
        msg_id: u64,
        /// Delivered or read.
        kind: ReceiptKind,
    },
}

/// Why an application message could not be decoded or encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum AppError {
    /// The message ended early.
    #[error("application message truncated")]
    Truncated,
    /// Bytes left over after a fixed-size message.
    #[error("trailing bytes after application message")]
    TrailingBytes,
    /// Unknown kind byte.
    #[error("unknown application message kind {0}")]
    UnknownKind(u8),
    /// A flag bit that is not defined was set.
    #[error("undefined request flags {0:#04x}")]
    UndefinedFlags(u8),
    /// The capability name is empty, too long or has a forbidden character.
    #[error("invalid capability name")]
    BadCapability,
    /// A text field is not UTF-8 or too long.
    #[error("invalid text: {0}")]
    BadText(&'static str),
    /// The body exceeds [`MAX_APP_BODY`].
    #[error("body of {0} bytes exceeds the {max} byte limit", max = MAX_APP_BODY)]
    BodyTooLarge(usize),
    /// An enumerated field has an undefined value.
    #[error("invalid field value: {0}")]
    BadValue(&'static str),
}

/// Checks a capability name: 1 to [`MAX_CAPABILITY_LEN`] bytes of
/// `A-Z a-z 0-9 . _ : / -`.
pub fn is_valid_capability(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CAPABILITY_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-'))
}

fn need<T>(v: Option<T>) -> Result<T, AppError> {
    v.ok_or(AppError::Truncated)
}

fn body(r: &mut Reader) -> Result<Bytes, AppError> {
    let b = r.rest();
    if b.len() > MAX_APP_BODY {
        return Err(AppError::BodyTooLarge(b.len()));
    }
    Ok(b)
}

fn check_body(b: &[u8]) -> Result<(), AppError> {
    if b.len() > MAX_APP_BODY {
        return Err(AppError::BodyTooLarge(b.len()));
    }
    Ok(())
}

impl AppMessage {
    /// The message's kind.
    pub fn kind(&self) -> AppKind {
        match self {
            AppMessage::Request { .. } => AppKind::Request,
            AppMessage::Response { .. } => AppKind::Response,
            AppMessage::Error { .. } => AppKind::Error,
            AppMessage::StreamChunk { .. } => AppKind::StreamChunk,
            AppMessage::StreamEnd { .. } => AppKind::StreamEnd,
            AppMessage::Cancel { .. } => AppKind::Cancel,
            AppMessage::Chat { .. } => AppKind::Chat,
            AppMessage::Receipt { .. } => AppKind::Receipt,
        }
    }

    /// The request id this message belongs to, if it is part of a request.
    pub fn req_id(&self) -> Option<u64> {
        match self {
            AppMessage::Request { req_id, .. }
            | AppMessage::Response { req_id, .. }
            | AppMessage::Error { req_id, .. }
            | AppMessage::StreamChunk { req_id, .. }
            | AppMessage::StreamEnd { req_id, .. }
            | AppMessage::Cancel { req_id } => Some(*req_id),
            AppMessage::Chat { .. } | AppMessage::Receipt { .. } => None,
        }
    }

    /// Encodes the message, checking every limit.
    pub fn encode(&self) -> Result<Bytes, AppError> {
        let mut out = BytesMut::with_capacity(32);
        out.put_u8(self.kind() as u8);
        match self {
            AppMessage::Request {
                req_id,
                capability,
                stream,
                body,
            } => {
                if !is_valid_capability(capability) {
                    return Err(AppError::BadCapability);
                }
                check_body(body)?;
                out.reserve(body.len() + capability.len() + 10);
                out.put_u8(if *stream { REQUEST_FLAG_STREAM } else { 0 });
                out.put_u64(*req_id);
                out.put_u8(capability.len() as u8);
                out.put_slice(capability.as_bytes());
                out.put_slice(body);
            }
            AppMessage::Response { req_id, body } => {
                check_body(body)?;
                out.reserve(body.len() + 8);
                out.put_u64(*req_id);
                out.put_slice(body);
            }
            AppMessage::Error {
                req_id,
                code,
                message,
            } => {
                if message.len() > MAX_ERROR_MESSAGE_LEN {
                    return Err(AppError::BadText("error message"));
                }
                out.put_u64(*req_id);
                out.put_u16(code.as_u16());
                out.put_u16(message.len() as u16);
                out.put_slice(message.as_bytes());
            }
            AppMessage::StreamChunk { req_id, seq, body } => {
                check_body(body)?;
                out.reserve(body.len() + 12);
                out.put_u64(*req_id);
                out.put_u32(*seq);
                out.put_slice(body);
            }
            AppMessage::StreamEnd { req_id, count } => {
                out.put_u64(*req_id);
                out.put_u32(*count);
            }
            AppMessage::Cancel { req_id } => out.put_u64(*req_id),
            AppMessage::Chat {
                msg_id,
                sent_at_ms,
                text,
            } => {
                check_body(text.as_bytes())?;
                out.reserve(text.len() + 16);
                out.put_u64(*msg_id);
                out.put_u64(*sent_at_ms);
                out.put_slice(text.as_bytes());
            }
            AppMessage::Receipt { msg_id, kind } => {
                out.put_u64(*msg_id);
                out.put_u8(*kind as u8);
            }
        }
        Ok(out.freeze())
    }

    /// Decodes a message; bodies share `buf`'s allocation.
    pub fn decode(buf: Bytes) -> Result<AppMessage, AppError> {
        let mut r = Reader::new(buf);
        let kind = need(r.u8())?;
        let msg = match kind {
            1 => {
                let flags = need(r.u8())?;
                if flags & !REQUEST_FLAG_STREAM != 0 {
                    return Err(AppError::UndefinedFlags(flags));
                }
                let req_id = need(r.u64())?;
                let cap_len = usize::from(need(r.u8())?);
                let cap = need(r.bytes(cap_len))?;
                let capability =
                    String::from_utf8(cap.to_vec()).map_err(|_| AppError::BadCapability)?;
                if !is_valid_capability(&capability) {
                    return Err(AppError::BadCapability);
                }
                AppMessage::Request {
                    req_id,
                    capability,
                    stream: flags & REQUEST_FLAG_STREAM != 0,
                    body: body(&mut r)?,
                }
            }
            2 => AppMessage::Response {
                req_id: need(r.u64())?,
                body: body(&mut r)?,
            },
            3 => {
                let req_id = need(r.u64())?;
                let code = ErrorCode::from_u16(need(r.u16())?);
                let len = usize::from(need(r.u16())?);
                if len > MAX_ERROR_MESSAGE_LEN {
                    return Err(AppError::BadText("error message"));
                }
                let raw = need(r.bytes(len))?;
                let message = String::from_utf8(raw.to_vec())
                    .map_err(|_| AppError::BadText("error message"))?;
                AppMessage::Error {
                    req_id,
                    code,
                    message,
                }
            }
            4 => AppMessage::StreamChunk {
                req_id: need(r.u64())?,
                seq: need(r.u32())?,
                body: body(&mut r)?,
            },
            5 => AppMessage::StreamEnd {
                req_id: need(r.u64())?,
                count: need(r.u32())?,
            },
            6 => AppMessage::Cancel {
                req_id: need(r.u64())?,
            },
            7 => {
                let msg_id = need(r.u64())?;
                let sent_at_ms = need(r.u64())?;
                let raw = body(&mut r)?;
                let text =
                    String::from_utf8(raw.to_vec()).map_err(|_| AppError::BadText("chat text"))?;
                AppMessage::Chat {
                    msg_id,
                    sent_at_ms,
                    text,
                }
            }
            8 => {
                let msg_id = need(r.u64())?;
                let kind = match need(r.u8())? {
                    1 => ReceiptKind::Delivered,
                    2 => ReceiptKind::Read,
                    _ => return Err(AppError::BadValue("receipt kind")),
                };
                AppMessage::Receipt { msg_id, kind }
            }
            other => return Err(AppError::UnknownKind(other)),
        };
        if r.remaining() != 0 {
            return Err(AppError::TrailingBytes);
        }
        Ok(msg)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_app() -> impl Strategy<Value = AppMessage> {
        let body = proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        prop_oneof![
            (
                any::<u64>(),
                "[a-z][a-z0-9._/-]{0,30}",
                any::<bool>(),
                body.clone()
            )
                .prop_map(|(req_id, capability, stream, body)| AppMessage::Request {
                    req_id,
                    capability,
                    stream,
                    body
                }),
            (any::<u64>(), body.clone())
                .prop_map(|(req_id, body)| AppMessage::Response { req_id, body }),
            (any::<u64>(), any::<u16>(), "\\PC{0,60}").prop_map(|(req_id, c, message)| {
                AppMessage::Error {
                    req_id,
                    code: ErrorCode::from_u16(c),
                    message,
                }
            }),
            (any::<u64>(), any::<u32>(), body)
                .prop_map(|(req_id, seq, body)| AppMessage::StreamChunk { req_id, seq, body }),
            (any::<u64>(), any::<u32>())
                .prop_map(|(req_id, count)| AppMessage::StreamEnd { req_id, count }),
            any::<u64>().prop_map(|req_id| AppMessage::Cancel { req_id }),
            (any::<u64>(), any::<u64>(), "\\PC{0,100}").prop_map(|(msg_id, sent_at_ms, text)| {
                AppMessage::Chat {
                    msg_id,
                    sent_at_ms,
                    text,
                }
            }),
            (any::<u64>(), any::<bool>()).prop_map(|(msg_id, read)| AppMessage::Receipt {
                msg_id,
                kind: if read {
                    ReceiptKind::Read
                } else {
                    ReceiptKind::Delivered
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(m in arb_app()) {
            let enc = m.encode().unwrap();
            prop_assert_eq!(AppMessage::decode(enc).unwrap(), m);
        }

        #[test]
        fn prop_decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = AppMessage::decode(raw.into());
        }
    }

    #[test]
    fn limits_are_enforced_both_ways() {
        let big = Bytes::from(vec![0u8; MAX_APP_BODY + 1]);
        let m = AppMessage::Response {
            req_id: 1,
            body: big.clone(),
        };
        assert_eq!(m.encode(), Err(AppError::BodyTooLarge(MAX_APP_BODY + 1)));
        let mut raw = vec![2u8];
        raw.extend_from_slice(&[0; 8]);
        raw.extend_from_slice(&big);
        assert!(matches!(
            AppMessage::decode(raw.into()),
            Err(AppError::BodyTooLarge(_))
        ));
        let exact = AppMessage::Response {
            req_id: 1,
            body: Bytes::from(vec![0u8; MAX_APP_BODY]),
        };
        assert!(exact.encode().is_ok());
        for bad in ["", "has space", "ünï", &"x".repeat(129)] {
            let m = AppMessage::Request {
                req_id: 1,
                capability: bad.into(),
                stream: false,
                body: Bytes::new(),
            };
            assert_eq!(m.encode(), Err(AppError::BadCapability), "{bad:?}");
        }
    }

    #[test]
    fn fixed_size_messages_reject_trailing_bytes() {
        for m in [
            AppMessage::Cancel { req_id: 5 },
            AppMessage::StreamEnd {
                req_id: 5,
                count: 2,
            },
            AppMessage::Receipt {
                msg_id: 5,
                kind: ReceiptKind::Read,
            },
        ] {
            let mut raw = m.encode().unwrap().to_vec();
            raw.push(0);
            assert_eq!(AppMessage::decode(raw.into()), Err(AppError::TrailingBytes));
        }
    }
}
