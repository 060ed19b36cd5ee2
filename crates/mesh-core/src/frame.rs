//! Client↔relay frames: what travels in each binary WebSocket message.
//!
//! Every frame starts with the same three bytes — protocol version, kind,
//! flags — followed by a fixed layout per kind (docs/PROTOCOL.md, "Frames").
//! Routed frames (`Send`, `Deliver`) carry an opaque sealed body after their
//! header: the relay reads the header and never parses the body. `Send` and
//! `Deliver` have the same header size, so a relay turns one into the other
//! in place ([`send_to_deliver`]), stamping the authenticated sender without
//! copying the body.
//!
//! Decoders are total: any input yields a frame or a [`FrameError`], never a
//! panic. Unknown flag bits are rejected rather than ignored, so a peer never
//! silently misreads a newer frame.

use bytes::{BufMut, Bytes, BytesMut};

use crate::code::ErrorCode;
use crate::codec::Reader;
use crate::identity::{AgentId, Signature};
use crate::limits::{
    MAX_ERROR_MESSAGE_LEN, MAX_FRAME_LEN, MAX_RELAY_URL_LEN, MAX_SEALED_BODY, PROTOCOL_VERSION,
    ROUTED_HEADER_LEN,
};

/// Frame kinds (second byte of every frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Relay → client: auth challenge.
    Challenge = 0x01,
    /// Client → relay: signed answer to the challenge.
    AuthResponse = 0x02,
    /// Relay → client: authenticated.
    AuthOk = 0x03,
    /// Either way: an error notice (refusal, rate limit, bad frame).
    Error = 0x04,
    /// Either way: liveness probe.
    Ping = 0x05,
    /// Either way: answer to a ping.
    Pong = 0x06,
    /// Client → relay: route a sealed body to a peer.
    Send = 0x10,
    /// Relay → client: a sealed body from a peer, sender stamped by the relay.
    Deliver = 0x11,
    /// Client → relay: a delivered frame was received and may be forgotten.
    Ack = 0x12,
    /// Relay → client: what happened to a frame the client sent.
    Status = 0x13,
}

impl FrameKind {
    /// Every kind, for docs and tests.
    pub const ALL: [FrameKind; 10] = [
        FrameKind::Challenge,
        FrameKind::AuthResponse,
        FrameKind::AuthOk,
        FrameKind::Error,
        FrameKind::Ping,
        FrameKind::Pong,
        FrameKind::Send,
        FrameKind::Deliver,
        FrameKind::Ack,
        FrameKind::Status,
    ];

    /// Reads a kind byte.
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| *k as u8 == b)
    }

    /// Flag bits defined for this kind; any other bit set is an error.
    const fn allowed_flags(self) -> u8 {
        match self {
            FrameKind::AuthResponse => flags::HAS_RESUME_TOKEN,
            FrameKind::AuthOk => flags::RESUMED,
            FrameKind::Send => flags::NO_STORE | flags::QUIET,
            FrameKind::Deliver => flags::REDELIVERY,
            _ => 0,
        }
    }
}

/// Flag bits (third byte of every frame); each is valid only on the kinds
/// named in its doc.
pub mod flags {
    /// `AuthResponse`: a resume token follows the relay URL.
    pub const HAS_RESUME_TOKEN: u8 = 0x01;
    /// `AuthOk`: the presented resume token was accepted.
    pub const RESUMED: u8 = 0x01;
    /// `Send`: do not queue for an offline recipient; refuse instead.
    pub const NO_STORE: u8 = 0x01;
    /// `Send`: omit the `forwarded` status; report only `queued`,
    /// `delivered` and refusals (saves one message per frame for clients
    /// that wait for `delivered` anyway).
    pub const QUIET: u8 = 0x02;
    /// `Deliver`: this frame may have been delivered before (from the inbox
    /// after a reconnect); the receiver de-duplicates by (sender, message id).
    pub const REDELIVERY: u8 = 0x01;
}

/// A single-use, short-lived token that lets an agent resume its previous
/// connection's unacknowledged traffic. Compared in constant time.
#[derive(Clone, Copy)]
pub struct ResumeToken(pub [u8; 32]);

impl ResumeToken {
    /// Constant-time equality.
    pub fn ct_eq(&self, other: &ResumeToken) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl PartialEq for ResumeToken {
    /// Constant-time, like [`ResumeToken::ct_eq`].
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for ResumeToken {}

impl std::fmt::Debug for ResumeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResumeToken(<redacted>)")
    }
}

/// Relay → client: prove you hold your key, for this relay and this nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The relay's own id; the client's signature is bound to it.
    pub relay_id: AgentId,
    /// Fresh random bytes, never reused.
    pub nonce: [u8; 32],
}

/// Client → relay: the signed relay-auth statement (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResponse {
    /// Who is authenticating.
    pub agent: AgentId,
    /// The URL the client dialled, as it dialled it (bound in the signature).
    pub relay_url: String,
    /// Present when resuming a previous connection.
    pub resume_token: Option<ResumeToken>,
    /// Signature over the relay-auth statement.
    pub signature: Signature,
}

/// Relay → client: authentication succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOk {
    /// Whether the presented resume token was accepted.
    pub resumed: bool,
    /// A fresh token for the next reconnect (single use).
    pub resume_token: ResumeToken,
    /// How long `resume_token` stays valid, in milliseconds.
    pub resume_ttl_ms: u32,
    /// Interval at which the relay pings, in milliseconds.
    pub heartbeat_ms: u32,
    /// Largest frame this relay accepts, in bytes.
    pub max_frame_len: u32,
}

/// An error notice. Sent before the relay closes a connection, and without
/// closing for per-frame refusals (rate limits, bad frames).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFrame {
    /// What went wrong.
    pub code: ErrorCode,
    /// The message id of the frame this refers to, 0 if none.
    pub ref_msg_id: u64,
    /// For `rate_limited`: milliseconds to wait before retrying; else 0.
    pub retry_after_ms: u32,
    /// Human-readable detail (at most [`MAX_ERROR_MESSAGE_LEN`] bytes).
    pub message: String,
}

/// Header and body of a routed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    /// `Send`: the destination. `Deliver`: the authenticated sender.
    pub peer: AgentId,
    /// Chosen by the sending client; unique per (sender, recipient) pair.
    pub msg_id: u64,
    /// Kind-specific flag bits ([`flags`]).
    pub flags: u8,
    /// Opaque sealed body; the relay never parses it.
    pub body: Bytes,
}

/// What became of a frame the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Handed to the recipient's live connection; not yet acknowledged.
    Forwarded,
    /// Stored durably in the recipient's inbox (recipient offline).
    Queued,
    /// The recipient acknowledged it.
    Delivered,
    /// Not accepted; nothing was stored.
    Refused(ErrorCode),
}

impl DeliveryStatus {
    fn to_wire(self) -> (u8, u16) {
        match self {
            DeliveryStatus::Forwarded => (1, 0),
            DeliveryStatus::Queued => (2, 0),
            DeliveryStatus::Delivered => (3, 0),
            DeliveryStatus::Refused(code) => (4, code.as_u16()),
        }
    }

    fn from_wire(status: u8, code: u16) -> Option<Self> {
        match (status, code) {
            (1, 0) => Some(DeliveryStatus::Forwarded),
            (2, 0) => Some(DeliveryStatus::Queued),
            (3, 0) => Some(DeliveryStatus::Delivered),
            (4, c) => Some(DeliveryStatus::Refused(ErrorCode::from_u16(c))),
            _ => None,
        }
    }
}

/// One client↔relay frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// See [`Challenge`].
    Challenge(Challenge),
    /// See [`AuthResponse`].
    AuthResponse(AuthResponse),
    /// See [`AuthOk`].
    AuthOk(AuthOk),
    /// See [`ErrorFrame`].
    Error(ErrorFrame),
    /// Liveness probe carrying an opaque nonce.
    Ping(u64),
    /// Answer to a ping, echoing its nonce.
    Pong(u64),
    /// Client → relay: route `body` to `peer`.
    Send(Routed),
    /// Relay → client: `body` from `peer`.
    Deliver(Routed),
    /// Client → relay: the frame `msg_id` from `peer` was received.
    Ack {
        /// The sender of the acknowledged frame.
        peer: AgentId,
        /// Its message id.
        msg_id: u64,
    },
    /// Relay → client: the fate of the frame `msg_id` sent to `peer`.
    Status {
        /// The destination of that frame.
        peer: AgentId,
        /// Its message id.
        msg_id: u64,
        /// What happened.
        status: DeliveryStatus,
    },
}

/// Why a frame could not be decoded or encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum FrameError {
    /// Fewer bytes than the kind's fixed layout needs.
    #[error("frame truncated")]
    Truncated,
    /// Bytes left over after a fixed-size frame.
    #[error("trailing bytes after frame")]
    TrailingBytes,
    /// The version byte is not [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The kind byte names no frame.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// A flag bit not defined for this kind is set.
    #[error("undefined flag bits {flags:#04x} on {kind:?}")]
    UndefinedFlags {
        /// The frame kind.
        kind: FrameKind,
        /// The flags byte as received.
        flags: u8,
    },
    /// The frame exceeds its size limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Size of the frame.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An agent id field is not a valid Ed25519 key.
    #[error("invalid agent id in frame")]
    BadAgentId,
    /// A text field is not UTF-8, or is too long.
    #[error("invalid text field: {0}")]
    BadText(&'static str),
    /// A status byte or other enumerated field has an undefined value.
    #[error("invalid field value: {0}")]
    BadValue(&'static str),
}

impl FrameError {
    /// The error code a relay answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            _ => ErrorCode::MalformedFrame,
        }
    }
}

fn agent(r: &mut Reader) -> Result<AgentId, FrameError> {
    let raw: [u8; 32] = r.array().ok_or(FrameError::Truncated)?;
    AgentId::from_bytes(&raw).map_err(|_| FrameError::BadAgentId)
}

fn need<T>(v: Option<T>) -> Result<T, FrameError> {
    v.ok_or(FrameError::Truncated)
}

fn finish(r: &Reader) -> Result<(), FrameError> {
    if r.remaining() == 0 {
        Ok(())
    } else {
        Err(FrameError::TrailingBytes)
    }
}

fn text(raw: Bytes, max: usize, what: &'static str) -> Result<String, FrameError> {
    if raw.len() > max {
        return Err(FrameError::BadText(what));
    }
    String::from_utf8(raw.to_vec()).map_err(|_| FrameError::BadText(what))
}

/// Reads version, kind and flags, checking them, without decoding the rest.
pub fn peek_kind(buf: &[u8]) -> Result<(FrameKind, u8), FrameError> {
    let (&version, rest) = buf.split_first().ok_or(FrameError::Truncated)?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    let (&kind, rest) = rest.split_first().ok_or(FrameError::Truncated)?;
    let kind = FrameKind::from_u8(kind).ok_or(FrameError::UnknownKind(kind))?;
    let &flags = rest.first().ok_or(FrameError::Truncated)?;
    if flags & !kind.allowed_flags() != 0 {
        return Err(FrameError::UndefinedFlags { kind, flags });
    }
    Ok((kind, flags))
}

impl Frame {
    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Challenge(_) => FrameKind::Challenge,
            Frame::AuthResponse(_) => FrameKind::AuthResponse,
            Frame::AuthOk(_) => FrameKind::AuthOk,
            Frame::Error(_) => FrameKind::Error,
            Frame::Ping(_) => FrameKind::Ping,
            Frame::Pong(_) => FrameKind::Pong,
            Frame::Send(_) => FrameKind::Send,
            Frame::Deliver(_) => FrameKind::Deliver,
            Frame::Ack { .. } => FrameKind::Ack,
            Frame::Status { .. } => FrameKind::Status,
        }
    }

    /// Decodes one frame. Routed bodies share `buf`'s allocation.
    pub fn decode(buf: Bytes) -> Result<Frame, FrameError> {
        if buf.len() > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge {
                len: buf.len(),
                max: MAX_FRAME_LEN,
            });
        }
        let (kind, flags) = peek_kind(&buf)?;
        let mut r = Reader::new(buf);
        r.array::<3>().ok_or(FrameError::Truncated)?;
        let frame = match kind {
            FrameKind::Challenge => {
                let relay_id = agent(&mut r)?;
                let nonce = need(r.array())?;
                Frame::Challenge(Challenge { relay_id, nonce })
            }
            FrameKind::AuthResponse => {
                let agent_id = agent(&mut r)?;
                let signature = Signature(need(r.array())?);
                let url_len = usize::from(need(r.u16())?);
                let relay_url = text(need(r.bytes(url_len))?, MAX_RELAY_URL_LEN, "relay url")?;
                let resume_token = if flags & flags::HAS_RESUME_TOKEN != 0 {
                    Some(ResumeToken(need(r.array())?))
                } else {
                    None
                };
                Frame::AuthResponse(AuthResponse {
                    agent: agent_id,
                    relay_url,
                    resume_token,
                    signature,
                })
            }
            FrameKind::AuthOk => Frame::AuthOk(AuthOk {
                resumed: flags & flags::RESUMED != 0,
                resume_token: ResumeToken(need(r.array())?),
                resume_ttl_ms: need(r.u32())?,
                heartbeat_ms: need(r.u32())?,
                max_frame_len: need(r.u32())?,
            }),
            FrameKind::Error => {
                let code = ErrorCode::from_u16(need(r.u16())?);
                let ref_msg_id = need(r.u64())?;
                let retry_after_ms = need(r.u32())?;
                let len = usize::from(need(r.u16())?);
                let message = text(need(r.bytes(len))?, MAX_ERROR_MESSAGE_LEN, "error message")?;
                Frame::Error(ErrorFrame {
                    code,
                    ref_msg_id,
                    retry_after_ms,
                    message,
                })
            }
            FrameKind::Ping => Frame::Ping(need(r.u64())?),
            FrameKind::Pong => Frame::Pong(need(r.u64())?),
            FrameKind::Send | FrameKind::Deliver => {
                let peer = agent(&mut r)?;
                let msg_id = need(r.u64())?;
                let body = r.rest();
                if body.len() > MAX_SEALED_BODY {
                    return Err(FrameError::TooLarge {
                        len: body.len() + ROUTED_HEADER_LEN,
                        max: MAX_FRAME_LEN,
                    });
                }
                let routed = Routed {
                    peer,
                    msg_id,
                    flags,
                    body,
                };
                if kind == FrameKind::Send {
                    Frame::Send(routed)
                } else {
                    Frame::Deliver(routed)
                }
            }
            FrameKind::Ack => Frame::Ack {
                peer: agent(&mut r)?,
                msg_id: need(r.u64())?,
            },
            FrameKind::Status => {
                let peer = agent(&mut r)?;
                let msg_id = need(r.u64())?;
                let status = need(r.u8())?;
                let code = need(r.u16())?;
                let status = DeliveryStatus::from_wire(status, code)
                    .ok_or(FrameError::BadValue("delivery status"))?;
                Frame::Status {
                    peer,
                    msg_id,
                    status,
                }
            }
        };
        finish(&r)?;
        Ok(frame)
    }

    /// Encodes the frame. Fails only if a field exceeds its limit (a URL or
    /// message that is too long, a body larger than [`MAX_SEALED_BODY`], or
    /// undefined flag bits).
    pub fn encode(&self) -> Result<Bytes, FrameError> {
        let kind = self.kind();
        let flags = match self {
            Frame::AuthResponse(a) if a.resume_token.is_some() => flags::HAS_RESUME_TOKEN,
            Frame::AuthOk(ok) if ok.resumed => flags::RESUMED,
            Frame::Send(r) | Frame::Deliver(r) => r.flags,
            _ => 0,
        };
        if flags & !kind.allowed_flags() != 0 {
            return Err(FrameError::UndefinedFlags { kind, flags });
        }
        let mut out = BytesMut::with_capacity(64);
        out.put_slice(&[PROTOCOL_VERSION, kind as u8, flags]);
        match self {
            Frame::Challenge(c) => {
                out.put_slice(c.relay_id.as_bytes());
                out.put_slice(&c.nonce);
            }
            Frame::AuthResponse(a) => {
                if a.relay_url.len() > MAX_RELAY_URL_LEN {
                    return Err(FrameError::BadText("relay url"));
                }
                out.put_slice(a.agent.as_bytes());
                out.put_slice(&a.signature.0);
                out.put_u16(a.relay_url.len() as u16);
                out.put_slice(a.relay_url.as_bytes());
                if let Some(t) = &a.resume_token {
                    out.put_slice(&t.0);
                }
            }
            Frame::AuthOk(ok) => {
                out.put_slice(&ok.resume_token.0);
                out.put_u32(ok.resume_ttl_ms);
                out.put_u32(ok.heartbeat_ms);
                out.put_u32(ok.max_frame_len);
            }
            Frame::Error(e) => {
                if e.message.len() > MAX_ERROR_MESSAGE_LEN {
                    return Err(FrameError::BadText("error message"));
                }
                out.put_u16(e.code.as_u16());
                out.put_u64(e.ref_msg_id);
                out.put_u32(e.retry_after_ms);
                out.put_u16(e.message.len() as u16);
                out.put_slice(e.message.as_bytes());
            }
            Frame::Ping(n) | Frame::Pong(n) => out.put_u64(*n),
            Frame::Send(r) | Frame::Deliver(r) => {
                return encode_routed(kind, r.flags, &r.peer, r.msg_id, &r.body);
            }
            Frame::Ack { peer, msg_id } => {
                out.put_slice(peer.as_bytes());
                out.put_u64(*msg_id);
            }
            Frame::Status {
                peer,
                msg_id,
                status,
            } => {
                let (s, c) = status.to_wire();
                out.put_slice(peer.as_bytes());
                out.put_u64(*msg_id);
                out.put_u8(s);
                out.put_u16(c);
            }
        }
        Ok(out.freeze())
    }
}

fn encode_routed(
    kind: FrameKind,
    flags: u8,
    peer: &AgentId,
    msg_id: u64,
    body: &[u8],
) -> Result<Bytes, FrameError> {
    if body.len() > MAX_SEALED_BODY {
        return Err(FrameError::TooLarge {
            len: body.len() + ROUTED_HEADER_LEN,
            max: MAX_FRAME_LEN,
        });
    }
    let mut out = BytesMut::with_capacity(ROUTED_HEADER_LEN + body.len());
    out.put_slice(&[PROTOCOL_VERSION, kind as u8, flags]);
    out.put_slice(peer.as_bytes());
    out.put_u64(msg_id);
    out.put_slice(body);
    Ok(out.freeze())
}

/// Builds a `Deliver` frame for a stored body (e.g. from a relay inbox).
pub fn encode_deliver(
    src: &AgentId,
    msg_id: u64,
    redelivery: bool,
    body: &[u8],
) -> Result<Bytes, FrameError> {
    let flags = if redelivery { flags::REDELIVERY } else { 0 };
    encode_routed(FrameKind::Deliver, flags, src, msg_id, body)
}

/// Like [`send_to_deliver`], but returns the destination as raw key bytes
/// without checking that they are a valid Ed25519 point. Checking costs a
/// point decompression (several µs); a relay only needs it when the
/// destination is not one of its live, already-authenticated connections.
pub fn rewrite_send_to_deliver(
    frame: &mut BytesMut,
    src: &AgentId,
) -> Result<([u8; 32], u64), FrameError> {
    let (dst, id) = routed_header(frame, FrameKind::Send)?;
    if frame.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: frame.len(),
            max: MAX_FRAME_LEN,
        });
    }
    frame[1] = FrameKind::Deliver as u8;
    frame[2] = 0;
    frame[3..35].copy_from_slice(src.as_bytes());
    Ok((dst, id))
}

/// Reads an `Ack` frame's sender and message id without validating the key
/// (see [`rewrite_send_to_deliver`] for why).
pub fn peek_ack(buf: &[u8]) -> Result<([u8; 32], u64), FrameError> {
    let header = routed_header(buf, FrameKind::Ack)?;
    if buf.len() > ROUTED_HEADER_LEN {
        return Err(FrameError::TrailingBytes);
    }
    Ok(header)
}

/// The fixed header shared by `Send`, `Deliver`, `Ack` and `Status`,
/// read without decompressing the key (see [`rewrite_send_to_deliver`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutedHeader {
    /// The frame's kind (one of the four above).
    pub kind: FrameKind,
    /// Its flags byte (already checked against the kind).
    pub flags: u8,
    /// The peer key bytes: destination of a `Send` or `Status`, sender of a
    /// `Deliver` or `Ack`.
    pub peer: [u8; 32],
    /// The message id.
    pub msg_id: u64,
}

/// Reads the routed header of a `Send`, `Deliver`, `Ack` or `Status` frame.
pub fn peek_routed(buf: &[u8]) -> Result<RoutedHeader, FrameError> {
    let (kind, flags) = peek_kind(buf)?;
    if !matches!(
        kind,
        FrameKind::Send | FrameKind::Deliver | FrameKind::Ack | FrameKind::Status
    ) {
        return Err(FrameError::BadValue("not a routed frame"));
    }
    let header = buf.get(..ROUTED_HEADER_LEN).ok_or(FrameError::Truncated)?;
    let mut peer = [0u8; 32];
    peer.copy_from_slice(&header[3..35]);
    let mut id = [0u8; 8];
    id.copy_from_slice(&header[35..43]);
    Ok(RoutedHeader {
        kind,
        flags,
        peer,
        msg_id: u64::from_be_bytes(id),
    })
}

/// Reads a `Status` frame without decompressing the destination key:
/// (destination key bytes, message id, status).
pub fn peek_status(buf: &[u8]) -> Result<([u8; 32], u64, DeliveryStatus), FrameError> {
    let h = routed_header(buf, FrameKind::Status)?;
    let rest = &buf[ROUTED_HEADER_LEN..];
    let [status, c1, c2] = <[u8; 3]>::try_from(rest).map_err(|_| {
        if rest.len() < 3 {
            FrameError::Truncated
        } else {
            FrameError::TrailingBytes
        }
    })?;
    let status = DeliveryStatus::from_wire(status, u16::from_be_bytes([c1, c2]))
        .ok_or(FrameError::BadValue("delivery status"))?;
    Ok((h.0, h.1, status))
}

/// [`peek_routed`] for one expected kind, as (peer key bytes, message id).
fn routed_header(buf: &[u8], kind: FrameKind) -> Result<([u8; 32], u64), FrameError> {
    let h = peek_routed(buf)?;
    if h.kind != kind {
        return Err(FrameError::BadValue("unexpected frame kind"));
    }
    Ok((h.peer, h.msg_id))
}

/// Turns an encoded `Send` frame into the `Deliver` frame for its
/// recipient, in place: the kind byte changes, the destination is replaced
/// by the authenticated sender `src`, and the `NO_STORE` flag is cleared.
/// The body is neither parsed nor copied. Returns the destination and
/// message id that were in the header.
pub fn send_to_deliver(frame: &mut BytesMut, src: &AgentId) -> Result<(AgentId, u64), FrameError> {
    let (kind, _) = peek_kind(frame)?;
    if kind != FrameKind::Send {
        return Err(FrameError::BadValue("not a send frame"));
    }
    let header = frame.get(3..35).ok_or(FrameError::Truncated)?;
    // Validate before rewriting, so a refused frame is left untouched.
    let dst = AgentId::from_slice(header).map_err(|_| FrameError::BadAgentId)?;
    let (_, msg_id) = rewrite_send_to_deliver(frame, src)?;
    Ok((dst, msg_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use proptest::prelude::*;

    fn id(n: u8) -> AgentId {
        Identity::from_secret_bytes(&[n; 32]).agent_id()
    }

    pub(crate) fn samples() -> Vec<Frame> {
        vec![
            Frame::Challenge(Challenge {
                relay_id: id(1),
                nonce: [7; 32],
            }),
            Frame::AuthResponse(AuthResponse {
                agent: id(2),
                relay_url: "ws://127.0.0.1:8080/v1/ws".into(),
                resume_token: Some(ResumeToken([3; 32])),
                signature: Signature([4; 64]),
            }),
            Frame::AuthResponse(AuthResponse {
                agent: id(2),
                relay_url: String::new(),
                resume_token: None,
                signature: Signature([4; 64]),
            }),
            Frame::AuthOk(AuthOk {
                resumed: true,
                resume_token: ResumeToken([5; 32]),
                resume_ttl_ms: 120_000,
                heartbeat_ms: 15_000,
                max_frame_len: MAX_FRAME_LEN as u32,
            }),
            Frame::Error(ErrorFrame {
                code: ErrorCode::RateLimited,
                ref_msg_id: 9,
                retry_after_ms: 250,
                message: "slow down".into(),
            }),
            Frame::Ping(1),
            Frame::Pong(u64::MAX),
            Frame::Send(Routed {
                peer: id(3),
                msg_id: 42,
                flags: flags::NO_STORE,
                body: Bytes::from_static(b"sealed"),
            }),
            Frame::Deliver(Routed {
                peer: id(4),
                msg_id: 43,
                flags: flags::REDELIVERY,
                body: Bytes::new(),
            }),
            Frame::Ack {
                peer: id(5),
                msg_id: 44,
            },
            Frame::Status {
                peer: id(6),
                msg_id: 45,
                status: DeliveryStatus::Refused(ErrorCode::InboxFull),
            },
            Frame::Status {
                peer: id(6),
                msg_id: 46,
                status: DeliveryStatus::Queued,
            },
        ]
    }

    #[test]
    fn every_sample_round_trips_byte_exact() {
        for f in samples() {
            let enc = f.encode().unwrap();
            let dec = Frame::decode(enc.clone()).unwrap();
            assert_eq!(dec.encode().unwrap(), enc, "{f:?}");
        }
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        for f in samples() {
            let enc = f.encode().unwrap();
            let routed = matches!(f.kind(), FrameKind::Send | FrameKind::Deliver);
            for cut in 0..enc.len() {
                let short = enc.slice(..cut);
                let ok = Frame::decode(short).is_ok();
                // A routed frame's body may be any length, so only cuts into
                // its header must fail.
                assert!(
                    !ok || (routed && cut >= ROUTED_HEADER_LEN),
                    "{f:?} cut {cut}"
                );
            }
            if !routed {
                let mut long = enc.to_vec();
                long.push(0);
                assert_eq!(
                    Frame::decode(long.into()).unwrap_err(),
                    FrameError::TrailingBytes
                );
            }
        }
    }

    #[test]
    fn version_kind_and_flags_are_checked() {
        let enc = Frame::Ping(1).encode().unwrap().to_vec();
        let mut v = enc.clone();
        v[0] = 2;
        assert_eq!(
            Frame::decode(v.into()).unwrap_err(),
            FrameError::UnsupportedVersion(2)
        );
        let mut k = enc.clone();
        k[1] = 0x7f;
        assert_eq!(
            Frame::decode(k.into()).unwrap_err(),
            FrameError::UnknownKind(0x7f)
        );
        let mut fl = enc;
        fl[2] = 0x80;
        assert!(matches!(
            Frame::decode(fl.into()).unwrap_err(),
            FrameError::UndefinedFlags { .. }
        ));
    }

    #[test]
    fn oversized_frames_are_refused() {
        let body = Bytes::from(vec![0u8; MAX_SEALED_BODY + 1]);
        let f = Frame::Send(Routed {
            peer: id(1),
            msg_id: 1,
            flags: 0,
            body,
        });
        assert!(matches!(f.encode(), Err(FrameError::TooLarge { .. })));
        let mut raw = vec![PROTOCOL_VERSION, FrameKind::Send as u8, 0];
        raw.extend_from_slice(id(1).as_bytes());
        raw.extend_from_slice(&[0; 8]);
        raw.resize(MAX_FRAME_LEN + 1, 0);
        let err = Frame::decode(raw.into()).unwrap_err();
        assert_eq!(err.code(), ErrorCode::FrameTooLarge);
        let max = Bytes::from(vec![0u8; MAX_SEALED_BODY]);
        let f = Frame::Send(Routed {
            peer: id(1),
            msg_id: 1,
            flags: 0,
            body: max,
        });
        assert_eq!(f.encode().unwrap().len(), MAX_FRAME_LEN);
    }

    #[test]
    fn send_becomes_deliver_in_place_with_the_stamped_sender() {
        let body = Bytes::from_static(b"opaque body");
        let send = Frame::Send(Routed {
            peer: id(2),
            msg_id: 77,
            flags: flags::NO_STORE,
            body: body.clone(),
        })
        .encode()
        .unwrap();
        let mut buf = BytesMut::from(&send[..]);
        let body_ptr = buf[ROUTED_HEADER_LEN..].as_ptr();
        let (dst, msg_id) = send_to_deliver(&mut buf, &id(1)).unwrap();
        assert_eq!((dst, msg_id), (id(2), 77));
        assert_eq!(buf[ROUTED_HEADER_LEN..].as_ptr(), body_ptr);
        match Frame::decode(buf.freeze()).unwrap() {
            Frame::Deliver(r) => {
                assert_eq!(r.peer, id(1));
                assert_eq!(r.msg_id, 77);
                assert_eq!(r.flags, 0);
                assert_eq!(r.body, body);
            }
            other => panic!("{other:?}"),
        }
        let mut not_send = BytesMut::from(&Frame::Ping(1).encode().unwrap()[..]);
        assert!(send_to_deliver(&mut not_send, &id(1)).is_err());
    }

    #[test]
    fn unchecked_paths_agree_with_the_checked_ones() {
        let send = Frame::Send(Routed {
            peer: id(2),
            msg_id: 5,
            flags: 0,
            body: Bytes::from_static(b"x"),
        })
        .encode()
        .unwrap();
        let mut a = BytesMut::from(&send[..]);
        let mut b = BytesMut::from(&send[..]);
        let (raw, m1) = rewrite_send_to_deliver(&mut a, &id(1)).unwrap();
        let (checked, m2) = send_to_deliver(&mut b, &id(1)).unwrap();
        assert_eq!((&raw, m1), (checked.as_bytes(), m2));
        assert_eq!(a, b);
        let ack = Frame::Ack {
            peer: id(3),
            msg_id: 9,
        }
        .encode()
        .unwrap();
        assert_eq!(peek_ack(&ack).unwrap(), (*id(3).as_bytes(), 9));
        assert!(peek_ack(&ack[..ack.len() - 1]).is_err());
        assert!(peek_ack(&send).is_err());
        let mut long = ack.to_vec();
        long.push(0);
        assert_eq!(peek_ack(&long), Err(FrameError::TrailingBytes));
        let mut map = std::collections::HashMap::new();
        map.insert(id(3), 1);
        assert_eq!(map.get(id(3).as_bytes()), Some(&1));
        let h = peek_routed(&send).unwrap();
        assert_eq!(
            (h.kind, h.flags, h.peer, h.msg_id),
            (FrameKind::Send, 0, *id(2).as_bytes(), 5)
        );
        assert!(peek_routed(&Frame::Ping(1).encode().unwrap()).is_err());
        for f in samples() {
            if let Frame::Status {
                peer,
                msg_id,
                status,
            } = &f
            {
                let enc = f.encode().unwrap();
                assert_eq!(
                    peek_status(&enc).unwrap(),
                    (*peer.as_bytes(), *msg_id, *status)
                );
                assert!(peek_status(&enc[..enc.len() - 1]).is_err());
                let mut long = enc.to_vec();
                long.push(0);
                assert_eq!(peek_status(&long), Err(FrameError::TrailingBytes));
            }
        }
    }

    #[test]
    fn decoded_bodies_share_the_input_allocation() {
        let enc = Frame::Deliver(Routed {
            peer: id(1),
            msg_id: 1,
            flags: 0,
            body: Bytes::from(vec![9u8; 1000]),
        })
        .encode()
        .unwrap();
        let start = enc.as_ptr() as usize;
        match Frame::decode(enc).unwrap() {
            Frame::Deliver(r) => assert_eq!(r.body.as_ptr() as usize, start + ROUTED_HEADER_LEN),
            other => panic!("{other:?}"),
        }
    }

    fn arb_agent() -> impl Strategy<Value = AgentId> + Clone {
        any::<[u8; 32]>().prop_map(|s| Identity::from_secret_bytes(&s).agent_id())
    }

    fn arb_frame() -> impl Strategy<Value = Frame> {
        let routed = (
            arb_agent(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..256),
        );
        prop_oneof![
            (arb_agent(), any::<[u8; 32]>())
                .prop_map(|(relay_id, nonce)| Frame::Challenge(Challenge { relay_id, nonce })),
            (
                arb_agent(),
                "[ -~]{0,80}",
                proptest::option::of(any::<[u8; 32]>()),
                proptest::collection::vec(any::<u8>(), 64)
            )
                .prop_map(|(agent, relay_url, t, sig)| {
                    Frame::AuthResponse(AuthResponse {
                        agent,
                        relay_url,
                        resume_token: t.map(ResumeToken),
                        signature: Signature::from_slice(&sig).unwrap(),
                    })
                }),
            (
                any::<bool>(),
                any::<[u8; 32]>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>()
            )
                .prop_map(|(resumed, t, a, b, c)| Frame::AuthOk(AuthOk {
                    resumed,
                    resume_token: ResumeToken(t),
                    resume_ttl_ms: a,
                    heartbeat_ms: b,
                    max_frame_len: c,
                })),
            (any::<u16>(), any::<u64>(), any::<u32>(), "\\PC{0,40}").prop_map(|(c, r, ra, m)| {
                Frame::Error(ErrorFrame {
                    code: ErrorCode::from_u16(c),
                    ref_msg_id: r,
                    retry_after_ms: ra,
                    message: m,
                })
            }),
            any::<u64>().prop_map(Frame::Ping),
            any::<u64>().prop_map(Frame::Pong),
            (routed.clone(), any::<bool>()).prop_map(|((peer, msg_id, body), ns)| {
                Frame::Send(Routed {
                    peer,
                    msg_id,
                    flags: if ns { flags::NO_STORE } else { 0 },
                    body: body.into(),
                })
            }),
            routed.prop_map(|(peer, msg_id, body)| Frame::Deliver(Routed {
                peer,
                msg_id,
                flags: 0,
                body: body.into()
            })),
            (arb_agent(), any::<u64>()).prop_map(|(peer, msg_id)| Frame::Ack { peer, msg_id }),
            (arb_agent(), any::<u64>(), 0u8..4, any::<u16>()).prop_map(|(peer, msg_id, s, c)| {
                let status = match s {
                    0 => DeliveryStatus::Forwarded,
                    1 => DeliveryStatus::Queued,
                    2 => DeliveryStatus::Delivered,
                    _ => DeliveryStatus::Refused(ErrorCode::from_u16(c)),
                };
                Frame::Status {
                    peer,
                    msg_id,
                    status,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn prop_round_trip(f in arb_frame()) {
            let enc = f.encode().unwrap();
            let dec = Frame::decode(enc.clone()).unwrap();
            prop_assert_eq!(dec.encode().unwrap(), enc);
        }

        #[test]
        fn prop_decode_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Frame::decode(raw.into());
        }

        #[test]
        fn prop_decode_never_panics_on_valid_prefix(kind in 0u8..0x20, rest in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut raw = vec![PROTOCOL_VERSION, kind, 0];
            raw.extend(rest);
            let _ = Frame::decode(raw.into());
        }
    }
}
