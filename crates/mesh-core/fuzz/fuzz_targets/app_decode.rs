//! `AppMessage::decode` on arbitrary bytes: it must never panic, and every
//! message it accepts must re-encode to exactly the same bytes and decode
//! again to an equal message.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mesh_core::app::AppMessage;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    if let Ok(message) = AppMessage::decode(input.clone()) {
        let encoded = message.encode().expect("a decoded message must re-encode");
        assert_eq!(
            encoded, input,
            "re-encoding changed the bytes of {message:?}"
        );
        let again = AppMessage::decode(encoded).expect("a re-encoded message must decode");
        assert_eq!(again, message);
    }
});
