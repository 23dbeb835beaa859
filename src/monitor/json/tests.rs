//! The validator against serde_json, the parser it must agree with.

use super::*;
use crate::testing::fdcount::FdLeakCheck;
use proptest::prelude::*;

/// What serde_json makes of `text` as one document (the reference).
fn serde_accepts(text: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(text).is_ok_and(|v| v.is_object())
}

#[test]
fn accepts_what_serde_json_accepts() {
    let _leaks = FdLeakCheck::new();
    let cases: &[&[u8]] = &[
        br#"{}"#,
        br#" { "a" : [ 1 , -2.5e+3 , 0 , -0 , 0.0e0 , true , false , null , "x" , { } , [ ] ] } "#,
        br#"{"s":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}"#,
        "{\"é😀\":\"ü\u{10ffff}\"}".as_bytes(),
        br#"{"a":1e308,"b":1e-400,"c":123456789012345678901234567890}"#,
        br#"{"a":1e309}"#,
        br#"{"a":-1e400}"#,
        br#"{"a":01}"#,
        br#"{"a":1.}"#,
        br#"{"a":.5}"#,
        br#"{"a":1e}"#,
        br#"{"a":+1}"#,
        br#"{"a":-}"#,
        br#"{"a":1,}"#,
        br#"{"a":[1,]}"#,
        br#"{"a" 1}"#,
        br#"{,}"#,
        br#"{"a":tru}"#,
        br#"{"a":truex}"#,
        br#"{"a":nul}"#,
        br#"{"a":"\x"}"#,
        br#"{"a":"\u12"}"#,
        br#"{"a":"\ud83d"}"#,
        br#"{"a":"\ud83dx"}"#,
        br#"{"a":"\ud83d\u0041"}"#,
        br#"{"a":"\ude00"}"#,
        br#"{"\ude00":1}"#,
        b"{\"a\":\"\x01\"}",
        b"{\"a\":\"\x7f\"}",
        b"{\"a\":\"\xc0\x80\"}",
        b"{\"a\":\"\xed\xa0\x80\"}",
        b"{\"a\":\"\xf4\x90\x80\x80\"}",
        b"{\"a\":\"\xe2\x82\"}",
        b"{\"a\":\"\xff\"}",
        b"{\"a\":1}x",
        b"{\"a\":1} {}",
        b"[1]",
        b"{\"a\":[}",
        b"{\"a\":{]}",
        b"{\"a\":1]",
    ];
    for text in cases {
        let ours = validate_object(text, 64).is_ok();
        assert_eq!(ours, serde_accepts(text), "{:?}", String::from_utf8_lossy(text));
    }
}

/// Bytes that make JSON, and bytes that break it.
const ALPHABET: &[u8] = b"{}[]:,\"\\/ \n\t-+.0123456789eEtrufalsn\x00\x1f\x7f\xc3\xa9\xed\xa0\xff";

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "(/dev/fd/)?[a-z0-9\"\\\u{0}-\u{1f}é😀\u{ffff}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z\"é]{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A document of JSON text with a few bytes inserted, removed or
/// replaced.
fn mutated_json() -> impl Strategy<Value = Vec<u8>> {
    let edits = prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(ALPHABET)), 0..4);
    (json_value(), any::<bool>(), edits).prop_map(|(v, pretty, edits)| {
        let doc = serde_json::json!({ "execute": "x", "arguments": v });
        let mut text = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }.unwrap();
        for (at, kind, byte) in edits {
            let at = at.index(text.len() + 1);
            match kind {
                0 => text.insert(at, byte),
                1 if at < text.len() => drop(text.remove(at)),
                _ if at < text.len() => text[at] = byte,
                _ => {}
            }
        }
        text
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// Whatever the bytes, the validator and serde_json agree on
    /// whether they are one JSON object; and on a good one, on the
    /// highest `/dev/fd/N` among its string values.
    #[test]
    fn agrees_with_serde_json(text in prop_oneof![mutated_json(), prop::collection::vec(prop::sample::select(ALPHABET), 0..40)]) {
        let reference = serde_json::from_slice::<serde_json::Value>(&text).ok().filter(|v| v.is_object());
        let ours = validate_object(&text, 127);
        prop_assert_eq!(ours.is_ok(), reference.is_some(), "{:?}: {:?}", String::from_utf8_lossy(&text), ours);
        if let Some(v) = reference {
            prop_assert_eq!(ours.unwrap(), highest_fd_path(&v));
        }
    }
}

/// The highest `/dev/fd/N` among the string values of `v`.
fn highest_fd_path(v: &serde_json::Value) -> Option<usize> {
    use serde_json::Value;
    match v {
        Value::String(s) => match fdpath::classify(s) {
            Ok(fdpath::PathKind::FdIndex(n)) => Some(n),
            _ => None,
        },
        Value::Array(a) => a.iter().filter_map(highest_fd_path).max(),
        Value::Object(m) => m.values().filter_map(highest_fd_path).max(),
        _ => None,
    }
}

#[test]
fn every_prefix_of_a_good_object_is_incomplete() {
    let _leaks = FdLeakCheck::new();
    let text = "{\"a\":[-12.5e-3,true,null,{\"b\":\"\\ud83d\\ude00é😀\"}],\"c\":false}".as_bytes();
    for cut in 1..text.len() {
        assert_eq!(check_object(&text[..cut], 8), Checked::Incomplete, "cut {cut}");
    }
    assert_eq!(check_object(text, 8), Checked::Object { len: text.len(), fd_refs: None });
    // A number or literal at the end of the bytes might go on.
    assert_eq!(check_object(b"{\"a\":12", 8), Checked::Incomplete);
    assert_eq!(check_object(b"{\"a\":tr", 8), Checked::Incomplete);
}

#[test]
fn finds_the_end_and_the_fd_paths() {
    let _leaks = FdLeakCheck::new();
    let text = br#"{"a":"/dev/fd/2","b":["\/dev\/fd\/7","/dev/fd/01"],"/dev/fd/9":"x"} {"next":1}"#;
    let end = text.iter().position(|&b| b == b' ').unwrap();
    assert_eq!(check_object(text, 8), Checked::Object { len: end, fd_refs: Some(7) });
    assert_eq!(validate_object(br#"{"a":"/dev/fd/0"}"#, 8), Ok(Some(0)));
    assert_eq!(validate_object(br#"{"a":"/dev/fd/0x"}"#, 8), Ok(None));
}

#[test]
fn validation_finds_fd_references() {
    let _leaks = FdLeakCheck::new();
    assert_eq!(validate_object(br#"{"a":"/dev/fd/2","b":["/dev/fd/7"]}"#, 64), Ok(Some(7)));
    assert_eq!(validate_object(br#"{"/dev/fd/9":"x"}"#, 64), Ok(None));
    assert_eq!(validate_object(br#"{"a":"/dev/fd/01"}"#, 64), Ok(None));
    assert_eq!(validate_object(br#"{"a":"\/dev\/fd\/3"}"#, 64), Ok(Some(3)));
    assert!(matches!(validate_object(br#"{"a":1,}"#, 64), Err(Refusal::MalformedJson(_))));
    assert!(matches!(validate_object(b"{\"a\":\"\xff\"}", 64), Err(Refusal::InvalidUtf8)));
    assert_eq!(validate_object(br#"{"a":[{"b":[]}]}"#, 4), Ok(None));
    assert!(matches!(validate_object(br#"{"a":[{"b":[]}]}"#, 3), Err(Refusal::MalformedJson(_))));
}

#[test]
fn depth_and_utf8_errors() {
    let _leaks = FdLeakCheck::new();
    assert_eq!(validate_object(br#"{"a":[{"b":[]}]}"#, 4), Ok(None));
    assert!(matches!(validate_object(br#"{"a":[{"b":[]}]}"#, 3), Err(Refusal::MalformedJson(_))));
    assert_eq!(validate_object(b"{\"a\":\"\xff\"}", 4), Err(Refusal::InvalidUtf8));
    // Not UTF-8 anywhere wins over other faults.
    assert_eq!(validate_object(b"{\"a\" \xff}", 4), Err(Refusal::InvalidUtf8));
    assert!(matches!(validate_object(b"{\"a\":1", 4), Err(Refusal::MalformedJson(_))));
}
