//! Fuzz target: the JSON validator against serde_json.
//! See fuzz/README.md for the invariants.

#![no_main]

use fdctx::testing::{check_object, validate_object, Checked};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reference = serde_json::from_slice::<serde_json::Value>(data).ok().filter(|v| v.is_object());
    let ours = validate_object(data, 127);
    assert_eq!(ours.is_ok(), reference.is_some(), "validator and serde_json disagree: {ours:?}");
    // Where an object starts at the first byte, no prefix of the bytes
    // ends it elsewhere or calls good bytes bad.
    if data.first() == Some(&b'{') {
        let whole = check_object(data, 127);
        if let Checked::Object { len, .. } = whole {
            for cut in 1..len {
                assert_eq!(check_object(&data[..cut], 127), Checked::Incomplete, "cut {cut}");
            }
        }
    }
});
