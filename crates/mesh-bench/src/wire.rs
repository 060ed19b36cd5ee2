//! The frames the bench exchanges by the hundred thousand, read cheaply.
//!
//! `Frame::decode` checks that every agent id in a frame is a valid curve
//! point — right for a client, but it costs ≈ 4.7 µs per frame here
//! (`frame/decode_send_1KiB` in mesh-core's criterion bench). Receiving a
//! `Deliver` and two `Status` frames per routed frame, the load generator
//! would spend more CPU than the relay it measures, on a machine the two
//! share. The bench already knows its peers, so for the hot frames it uses
//! mesh-core's `peek_routed` / `peek_status`, which read the header without
//! the point check, and compares id bytes. Every other frame goes through
//! `Frame::decode`.
//!
//! Baseline (forwarder) messages are `destination id (32) || body`.

use bytes::{BufMut, Bytes, BytesMut};
use mesh_core::frame::{self, DeliveryStatus, FrameError, FrameKind, Routed};
use mesh_core::limits::ROUTED_HEADER_LEN;
use mesh_core::{AgentId, Frame};

/// Length of the baseline's destination prefix.
pub const BASELINE_HEADER_LEN: usize = 32;

/// A frame from the relay, as far as the bench needs to read it.
#[derive(Debug, PartialEq, Eq)]
pub enum FromRelay {
    /// A `Deliver`: who sent it (unchecked bytes), its id and body.
    Deliver {
        /// The sender id bytes from the header.
        peer: [u8; 32],
        /// The sender's message id.
        msg_id: u64,
        /// The body, sharing the frame's allocation.
        body: Bytes,
    },
    /// `Status forwarded` for one of our frames.
    Forwarded,
    /// `Status delivered` for one of our frames.
    Delivered,
    /// Anything else, fully decoded.
    Other(Frame),
}

/// Reads a frame from the relay.
pub fn from_relay(buf: Bytes) -> Result<FromRelay, FrameError> {
    let (kind, _) = frame::peek_kind(&buf)?;
    match kind {
        FrameKind::Deliver => {
            let h = frame::peek_routed(&buf)?;
            Ok(FromRelay::Deliver {
                peer: h.peer,
                msg_id: h.msg_id,
                body: buf.slice(ROUTED_HEADER_LEN..),
            })
        }
        FrameKind::Status => match frame::peek_status(&buf)? {
            (_, _, DeliveryStatus::Forwarded) => Ok(FromRelay::Forwarded),
            (_, _, DeliveryStatus::Delivered) => Ok(FromRelay::Delivered),
            _ => Frame::decode(buf).map(FromRelay::Other),
        },
        _ => Frame::decode(buf).map(FromRelay::Other),
    }
}

/// A `Send` of `body` to `to` with message id `msg_id`.
pub fn send(to: AgentId, msg_id: u64, body: Bytes) -> Result<Bytes, FrameError> {
    Frame::Send(Routed {
        peer: to,
        msg_id,
        flags: 0,
        body,
    })
    .encode()
}

/// A baseline message: `to`'s id, then `body`.
pub fn baseline(to: &AgentId, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(BASELINE_HEADER_LEN + body.len());
    out.put_slice(to.as_bytes());
    out.put_slice(body);
    out.freeze()
}

/// A benchmark body: the send time (ns, big-endian), then zeros up to
/// `size` bytes (`size` ≥ 8).
pub fn timed_body(sent_ns: u64, size: usize) -> Bytes {
    let mut body = BytesMut::zeroed(size.max(8));
    body[..8].copy_from_slice(&sent_ns.to_be_bytes());
    body.freeze()
}

/// The send time carried by a body from [`timed_body`].
pub fn sent_ns(body: &[u8]) -> Option<u64> {
    let stamp: [u8; 8] = body.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(stamp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::frame::DeliveryStatus;
    use mesh_core::{ErrorCode, Identity};

    fn id(n: u8) -> AgentId {
        Identity::from_secret_bytes(&[n; 32]).agent_id()
    }

    fn status(s: DeliveryStatus) -> Bytes {
        Frame::Status {
            peer: id(2),
            msg_id: 9,
            status: s,
        }
        .encode()
        .expect("encodes")
    }

    #[test]
    fn reads_a_deliver_as_mesh_core_writes_it() {
        let body = timed_body(123_456_789, 1024);
        for redelivery in [false, true] {
            let frame = frame::encode_deliver(&id(1), 77, redelivery, &body).expect("encodes");
            let got = from_relay(frame).expect("reads");
            assert_eq!(
                got,
                FromRelay::Deliver {
                    peer: *id(1).as_bytes(),
                    msg_id: 77,
                    body: body.clone()
                }
            );
        }
        assert_eq!(sent_ns(&body), Some(123_456_789));
        assert_eq!(sent_ns(&[1, 2, 3]), None);
    }

    #[test]
    fn reads_the_two_common_statuses_and_decodes_the_rest() {
        assert_eq!(
            from_relay(status(DeliveryStatus::Forwarded)),
            Ok(FromRelay::Forwarded)
        );
        assert_eq!(
            from_relay(status(DeliveryStatus::Delivered)),
            Ok(FromRelay::Delivered)
        );
        for rare in [
            DeliveryStatus::Queued,
            DeliveryStatus::Refused(ErrorCode::InboxFull),
        ] {
            assert_eq!(
                from_relay(status(rare)),
                Ok(FromRelay::Other(Frame::Status {
                    peer: id(2),
                    msg_id: 9,
                    status: rare
                }))
            );
        }
        assert_eq!(
            from_relay(Frame::Ping(5).encode().expect("encodes")),
            Ok(FromRelay::Other(Frame::Ping(5)))
        );
    }

    #[test]
    fn refuses_what_mesh_core_refuses() {
        let mut bad_version = status(DeliveryStatus::Forwarded).to_vec();
        bad_version[0] = 2;
        assert!(from_relay(Bytes::from(bad_version)).is_err());
        let mut trailing = status(DeliveryStatus::Forwarded).to_vec();
        trailing.push(0);
        assert!(from_relay(Bytes::from(trailing)).is_err());
        let deliver = frame::encode_deliver(&id(1), 1, false, b"x").expect("encodes");
        assert!(from_relay(deliver.slice(..20)).is_err());
    }

    #[test]
    fn a_send_is_what_the_relay_expects() {
        let body = timed_body(5, 64);
        let frame = send(id(3), 11, body.clone()).expect("encodes");
        assert_eq!(
            Frame::decode(frame),
            Ok(Frame::Send(Routed {
                peer: id(3),
                msg_id: 11,
                flags: 0,
                body
            }))
        );
        let msg = baseline(&id(3), b"hello");
        assert_eq!(&msg[..BASELINE_HEADER_LEN], id(3).as_bytes());
        assert_eq!(&msg[BASELINE_HEADER_LEN..], b"hello");
    }
}
