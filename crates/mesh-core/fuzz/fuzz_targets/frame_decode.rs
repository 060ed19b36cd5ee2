//! `Frame::decode` on arbitrary bytes: it must never panic, and every frame
//! it accepts must re-encode to exactly the bytes it came from (each frame
//! has one encoding) and decode again to an equal frame. The relay's
//! in-place `send_to_deliver` must accept exactly the `Send` frames the
//! decoder accepts, and produce the `Deliver` frame the decoder expects.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mesh_core::frame::{send_to_deliver, Frame, Routed};
use mesh_core::identity::{AgentId, Identity};
use std::sync::OnceLock;

fn relay_stamped_sender() -> AgentId {
    static ID: OnceLock<AgentId> = OnceLock::new();
    *ID.get_or_init(|| Identity::from_secret_bytes(&[1; 32]).agent_id())
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let decoded = Frame::decode(input.clone());
    if let Ok(frame) = &decoded {
        let encoded = frame.encode().expect("a decoded frame must re-encode");
        assert_eq!(encoded, input, "re-encoding changed the bytes of {frame:?}");
        let again = Frame::decode(encoded).expect("a re-encoded frame must decode");
        assert_eq!(&again, frame);
    }

    let src = relay_stamped_sender();
    let mut buf = BytesMut::from(data);
    let rewritten = send_to_deliver(&mut buf, &src);
    match (&decoded, rewritten) {
        (Ok(Frame::Send(send)), Ok((dst, msg_id))) => {
            assert_eq!((dst, msg_id), (send.peer, send.msg_id));
            let deliver = Frame::decode(buf.freeze()).expect("rewritten frame must decode");
            let expected = Frame::Deliver(Routed {
                peer: src,
                msg_id: send.msg_id,
                flags: 0,
                body: send.body.clone(),
            });
            assert_eq!(deliver, expected);
        }
        (Ok(Frame::Send(send)), Err(e)) => {
            panic!("decoder accepted {send:?} but send_to_deliver refused it: {e}")
        }
        (_, Ok(r)) => panic!("send_to_deliver accepted {r:?}, decoder said {decoded:?}"),
        (_, Err(_)) => {}
    }
});
