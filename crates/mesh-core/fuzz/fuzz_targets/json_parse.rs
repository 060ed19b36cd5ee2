//! The strict JSON reader on arbitrary bytes: it never panics, and whatever
//! it accepts, every one of its outputs (canonical, compact, pretty) reads
//! back as the same value, with a canonical form that is a fixed point.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mesh_core::json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = Value::parse(data) else {
        return;
    };
    let canonical = value.to_canonical();
    let again = Value::parse(&canonical).expect("the canonical form reads back");
    assert_eq!(again, value);
    assert_eq!(again.to_canonical(), canonical, "canonical form is a fixed point");
    let compact = value.to_string();
    assert_eq!(Value::parse(compact.as_bytes()).expect("compact reads back"), value);
    let pretty = value.to_pretty();
    assert_eq!(Value::parse(pretty.as_bytes()).expect("pretty reads back"), value);
});
