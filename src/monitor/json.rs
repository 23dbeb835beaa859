//! Checking that bytes are one JSON object, without building it.
//!
//! Every command is validated before it is delivered: its bytes must be
//! one JSON text (RFC 8259) that is valid UTF-8, nested no deeper than the
//! connection's `max_depth`. The check goes over the bytes once, keeps no
//! copy and allocates nothing (but for a short string value that starts
//! with `/` or an escape and has escapes: it is decoded, as it could spell
//! `/dev/fd/N`), and notes on the way the highest `/dev/fd/N` among
//! the object's string values, which the connection compares with the fds
//! the command brought.
//!
//! It accepts exactly what serde_json accepts — the parser that later
//! serves the message's accessors — so no delivered command fails to
//! parse there: RFC 8259's grammar; strings of UTF-8 (RFC 3629) with no
//! raw control character (U+0000 to U+001F); `\u` escapes paired where
//! they name a surrogate (RFC 8259 section 7: a lone one names no
//! character); numbers that fit an `f64` (a number too large for one is
//! refused, as serde_json refuses it: RFC 8259 section 6 lets parsers
//! bound the range).

use crate::error::Error;
use crate::fds::fdpath;

/// What checking the start of some bytes as one JSON object found.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// A good object ends at byte `len` (exclusive); `fd_refs` is the
    /// highest `N` among its string values of the form `/dev/fd/N`.
    Object { len: usize, fd_refs: Option<usize> },
    /// The bytes end before the object does, and every byte so far could
    /// be part of one.
    Incomplete,
    /// Not JSON, not UTF-8, or nested too deep: why.
    Bad(Error),
}

/// Checks the JSON object that starts at `bytes[0]`, nested at most
/// `max_depth` levels (the object itself is level 1; at most 127).
pub fn check_object(bytes: &[u8], max_depth: usize) -> Checked {
    let mut fd_refs = None;
    match object(bytes, max_depth.min(127), &mut fd_refs) {
        Ok(len) => Checked::Object { len, fd_refs },
        Err(Stop::Incomplete) => Checked::Incomplete,
        Err(Stop::Bad(e)) => Checked::Bad(e),
    }
}

/// Validates one complete frame as JSON: an object, with only whitespace
/// before and after it. Returns the highest `/dev/fd/N` it names, so the
/// caller can check the command brought that many. Bytes that are not
/// UTF-8 anywhere in the frame are [`Error::InvalidUtf8`] whatever else is
/// wrong with them. A stream's scanner bounds the depth already; a packet
/// has none, so for a packet this is where its depth is bounded.
pub fn validate_object(frame: &[u8], max_depth: usize) -> Result<Option<usize>, Error> {
    let start = frame.iter().position(|&b| !is_ws(b)).unwrap_or(frame.len());
    let result = match frame.get(start) {
        Some(b'{') => match check_object(&frame[start..], max_depth) {
            Checked::Object { len, fd_refs } => match frame[start + len..].iter().position(|&b| !is_ws(b)) {
                None => Ok(fd_refs),
                Some(_) => Err(malformed("bytes after the object")),
            },
            Checked::Incomplete => Err(malformed("the command ends inside the object")),
            Checked::Bad(e) => Err(e),
        },
        _ => Err(malformed("expected a JSON object ('{')")),
    };
    match result {
        Err(_) if std::str::from_utf8(frame).is_err() => Err(Error::InvalidUtf8),
        r => r,
    }
}

/// JSON whitespace (RFC 8259 section 2).
pub fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn malformed(why: &str) -> Error {
    Error::MalformedJson(why.to_owned())
}

/// Why checking stopped before the object's end.
enum Stop {
    Incomplete,
    Bad(Error),
}

fn bad<T>(why: &str) -> Result<T, Stop> {
    Err(Stop::Bad(malformed(why)))
}

/// Bytes a string holds as they are: printable ASCII but `"` and `\`.
/// Everything else stops the run: the quote, an escape, a control
/// character (refused) or the first byte of a UTF-8 sequence.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x80 {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
};

/// The object at `b[0]`; returns its length. One loop over the values,
/// with the open containers as a bit stack: bit `d` of `objects` is set
/// when level `d + 1` is an object, clear when it is an array.
fn object(b: &[u8], max_depth: usize, fd_refs: &mut Option<usize>) -> Result<usize, Stop> {
    if b.first() != Some(&b'{') {
        return bad("expected a JSON object ('{')");
    }
    let mut depth = 0;
    let mut objects: u128 = 0;
    // Whether the innermost open container is an object (bit `depth - 1`).
    let mut in_object = false;
    let mut i = 0;
    // `i` is at the first byte of a value.
    'value: loop {
        match b[i] {
            c @ (b'{' | b'[') => {
                if depth >= max_depth {
                    return Err(Stop::Bad(Error::MalformedJson(format!("nested deeper than {max_depth} levels"))));
                }
                in_object = c == b'{';
                objects = objects & !(1 << depth) | (u128::from(in_object) << depth);
                depth += 1;
                i = skip_ws(b, i + 1)?;
                if b[i] != if in_object { b'}' } else { b']' } {
                    if in_object {
                        i = key(b, i)?;
                    }
                    continue 'value;
                }
                // An empty container: closed below.
            }
            b'"' => {
                let (end, escaped) = string(b, i)?;
                note_fd_path(&b[i + 1..end], escaped, fd_refs);
                i = skip_ws(b, end + 1)?;
            }
            b'-' | b'0'..=b'9' => i = skip_ws(b, number(b, i)?)?,
            b't' => i = skip_ws(b, literal(b, i, b"true")?)?,
            b'f' => i = skip_ws(b, literal(b, i, b"false")?)?,
            b'n' => i = skip_ws(b, literal(b, i, b"null")?)?,
            _ => return bad("expected a value"),
        }
        // `i` is at the first byte after a value: a comma or a close.
        loop {
            match b[i] {
                b',' => {
                    i = skip_ws(b, i + 1)?;
                    if in_object {
                        i = key(b, i)?;
                    }
                    continue 'value;
                }
                b'}' if in_object => {}
                b']' if !in_object => {}
                _ if in_object => return bad("expected ',' or '}'"),
                _ => return bad("expected ',' or ']'"),
            }
            depth -= 1;
            if depth == 0 {
                return Ok(i + 1);
            }
            in_object = objects >> (depth - 1) & 1 == 1;
            i = skip_ws(b, i + 1)?;
        }
    }
}

/// The first byte at or after `i` that is not whitespace; `Incomplete`
/// when the bytes end first. (Compact JSON has none: the first byte is
/// looked at before any loop.)
#[inline]
fn skip_ws(b: &[u8], i: usize) -> Result<usize, Stop> {
    match b.get(i) {
        Some(&c) if !is_ws(c) => Ok(i),
        _ => match b.get(i..).and_then(|rest| rest.iter().position(|&c| !is_ws(c))) {
            Some(n) => Ok(i + n),
            None => Err(Stop::Incomplete),
        },
    }
}

/// A key at `b[i]` and the `:` after it; returns where its value starts.
#[inline(always)]
fn key(b: &[u8], i: usize) -> Result<usize, Stop> {
    if b[i] != b'"' {
        return bad("expected a key (a string)");
    }
    let (end, _) = string(b, i)?;
    let colon = skip_ws(b, end + 1)?;
    if b[colon] != b':' {
        return bad("expected ':' after a key");
    }
    skip_ws(b, colon + 1)
}

/// The literal `word` at `b[i]`; returns the index after it.
fn literal(b: &[u8], i: usize, word: &[u8]) -> Result<usize, Stop> {
    let rest = &b[i..];
    let n = rest.len().min(word.len());
    if rest[..n] != word[..n] {
        return bad("unknown literal");
    }
    if n < word.len() {
        return Err(Stop::Incomplete);
    }
    end_of_scalar(b, i + n)
}

/// After a number or literal, at `b[i]`: the byte there must end it.
/// Returns `i`.
fn end_of_scalar(b: &[u8], i: usize) -> Result<usize, Stop> {
    match b.get(i) {
        None => Err(Stop::Incomplete),
        Some(&c) if is_ws(c) || matches!(c, b',' | b'}' | b']') => Ok(i),
        Some(_) => bad("a number or literal runs into other bytes"),
    }
}

/// The number of ASCII digits at `b[i..]`.
fn digits(b: &[u8], i: usize) -> usize {
    b[i..].iter().take_while(|c| c.is_ascii_digit()).count()
}

/// A number at `b[i]` (RFC 8259 section 6): `-`? (`0` | [1-9][0-9]*)
/// (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?. Returns the index after it.
fn number(b: &[u8], start: usize) -> Result<usize, Stop> {
    // The bytes ran out (more could complete the number), or `why`.
    let more_or = |i: usize, why: &str| if i == b.len() { Err(Stop::Incomplete) } else { bad(why) };
    let mut i = start + usize::from(b[start] == b'-');
    let int = digits(b, i);
    if int == 0 {
        return more_or(i, "a number needs a digit after '-'");
    }
    if int > 1 && b[i] == b'0' {
        return bad("a number has a leading zero");
    }
    i += int;
    let mut count = int;
    if b.get(i) == Some(&b'.') {
        let frac = digits(b, i + 1);
        if frac == 0 {
            return more_or(i + 1, "a number needs a digit after '.'");
        }
        i += 1 + frac;
        count += frac;
    }
    let mut exponent = false;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        exponent = true;
        i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
        let exp = digits(b, i);
        if exp == 0 {
            return more_or(i, "a number needs a digit in its exponent");
        }
        i += exp;
    }
    end_of_scalar(b, i)?;
    // Only an exponent or some 309 digits can be beyond an f64; leave
    // those to serde_json, which decides what its accessors accept.
    if exponent || count > 300 {
        let text = std::str::from_utf8(&b[start..i]).expect("a number is ASCII");
        if serde_json::from_str::<f64>(text).is_err() {
            return bad("number out of range");
        }
    }
    Ok(i)
}

/// The string whose opening quote is `b[i]`: the index of its closing
/// quote, and whether it holds escapes.
#[inline(always)]
fn string(b: &[u8], i: usize) -> Result<(usize, bool), Stop> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        j = plain_run(b, j);
        match b.get(j) {
            Some(b'"') => return Ok((j, escaped)),
            Some(b'\\') => escaped = true,
            _ => {}
        }
        j = not_plain(b, j)?;
    }
}

/// The first byte at or after `j` that a string does not hold as it is
/// (see [`PLAIN`]), or `b.len()`. Eight bytes at a time where eight are
/// left, with the classic tests for a zero byte and a byte below a bound
/// on a whole word; a word's lowest flagged byte is always a true one
/// (a false flag needs a borrow from a true one below it), which is the
/// one wanted.
#[inline(always)]
fn plain_run(b: &[u8], mut j: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    while let Some(word) = b.get(j..j + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let flagged = (w & HIGH)
            | (w.wrapping_sub(0x20 * ONES) & !w & HIGH)
            | zero_byte(w ^ (u64::from(b'"') * ONES))
            | zero_byte(w ^ (u64::from(b'\\') * ONES));
        if flagged != 0 {
            return j + flagged.trailing_zeros() as usize / 8;
        }
        j += 8;
    }
    j + b[j..].iter().position(|&c| !PLAIN[usize::from(c)]).unwrap_or(b.len() - j)
}

/// At `b[j]`, a byte in a string other than a plain one or the closing
/// quote: an escape or a UTF-8 sequence, whose end is returned, or a
/// control character (refused), or the end of the bytes.
#[inline(never)]
fn not_plain(b: &[u8], j: usize) -> Result<usize, Stop> {
    match b.get(j) {
        None => Err(Stop::Incomplete),
        Some(b'\\') => escape(b, j),
        Some(0..=0x1f) => bad("a raw control character inside a string"),
        Some(_) => utf8_char(b, j),
    }
}

/// Notes the string value `raw` (as written, escapes and all) if it is a
/// well-formed `/dev/fd/N`.
fn note_fd_path(raw: &[u8], escaped: bool, fd_refs: &mut Option<usize>) {
    // `/dev/fd/` and twenty digits, each byte written as a `\u` escape at
    // most: a longer string cannot be one.
    const LONGEST: usize = 6 * (8 + 20);
    let n = if escaped {
        if !matches!(raw.first(), Some(b'/' | b'\\')) || raw.len() > LONGEST {
            return;
        }
        fdpath::fd_index(unescape(raw).as_bytes())
    } else {
        fdpath::fd_index(raw)
    };
    if let Some(n) = n {
        *fd_refs = Some(fd_refs.map_or(n, |m| m.max(n)));
    }
}

/// Four hex digits at `b[at..]` as a number; `Incomplete` if the bytes
/// end first.
fn hex4(b: &[u8], at: usize) -> Result<u32, Stop> {
    let mut v = 0;
    for k in 0..4 {
        let Some(&c) = b.get(at + k) else { return Err(Stop::Incomplete) };
        let Some(d) = char::from(c).to_digit(16) else { return bad("a \\u escape needs four hex digits") };
        v = v << 4 | d;
    }
    Ok(v)
}

/// The escape at `b[at]` (a `\`); returns the index after it. A `\u`
/// naming a high surrogate must be followed by one naming a low surrogate
/// (the pair names one character); any other surrogate is refused.
fn escape(b: &[u8], at: usize) -> Result<usize, Stop> {
    match b.get(at + 1) {
        None => Err(Stop::Incomplete),
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 2),
        Some(b'u') => match hex4(b, at + 2)? {
            0xd800..=0xdbff => {
                match (b.get(at + 6), b.get(at + 7)) {
                    (None, _) | (Some(b'\\'), None) => return Err(Stop::Incomplete),
                    (Some(b'\\'), Some(b'u')) => {}
                    _ => return bad("a lone surrogate in a \\u escape"),
                }
                match hex4(b, at + 8)? {
                    0xdc00..=0xdfff => Ok(at + 12),
                    _ => bad("a lone surrogate in a \\u escape"),
                }
            }
            0xdc00..=0xdfff => bad("a lone surrogate in a \\u escape"),
            _ => Ok(at + 6),
        },
        Some(_) => bad("an unknown escape in a string"),
    }
}

/// The UTF-8 sequence starting at `b[at]` (not ASCII); returns the index
/// after it. Well-formed sequences are those of the Unicode Standard's
/// table 3-7 (RFC 3629 section 4): no overlong form, no surrogate, nothing
/// above U+10FFFF.
fn utf8_char(b: &[u8], at: usize) -> Result<usize, Stop> {
    let not_utf8 = || Err(Stop::Bad(Error::InvalidUtf8));
    let (len, second) = match b[at] {
        0xc2..=0xdf => (2, 0x80..=0xbf),
        0xe0 => (3, 0xa0..=0xbf),
        0xe1..=0xec | 0xee..=0xef => (3, 0x80..=0xbf),
        0xed => (3, 0x80..=0x9f),
        0xf0 => (4, 0x90..=0xbf),
        0xf1..=0xf3 => (4, 0x80..=0xbf),
        0xf4 => (4, 0x80..=0x8f),
        _ => return not_utf8(),
    };
    for k in 1..len {
        let Some(&c) = b.get(at + k) else { return Err(Stop::Incomplete) };
        let ok = if k == 1 { second.contains(&c) } else { (0x80..=0xbf).contains(&c) };
        if !ok {
            return not_utf8();
        }
    }
    Ok(at + len)
}

/// The text of a string's contents `raw`, already checked: escapes
/// decoded.
fn unescape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = std::str::from_utf8(raw).expect("checked as UTF-8");
    while let Some(p) = rest.find('\\') {
        out.push_str(&rest[..p]);
        let e = rest.as_bytes();
        let hex = |at: usize| u32::from_str_radix(&rest[at..at + 4], 16).expect("checked hex");
        let (ch, used) = match e[p + 1] {
            b'u' => match hex(p + 2) {
                hi @ 0xd800..=0xdbff => (0x10000 + ((hi - 0xd800) << 10) + (hex(p + 8) - 0xdc00), 12),
                c => (c, 6),
            },
            b'b' => (0x08, 2),
            b'f' => (0x0c, 2),
            b'n' => (0x0a, 2),
            b'r' => (0x0d, 2),
            b't' => (0x09, 2),
            c => (u32::from(c), 2),
        };
        out.push(char::from_u32(ch).expect("checked escape"));
        rest = &rest[p + used..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
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
        assert!(matches!(validate_object(br#"{"a":1,}"#, 64), Err(Error::MalformedJson(_))));
        assert!(matches!(validate_object(b"{\"a\":\"\xff\"}", 64), Err(Error::InvalidUtf8)));
        assert_eq!(validate_object(br#"{"a":[{"b":[]}]}"#, 4), Ok(None));
        assert!(matches!(validate_object(br#"{"a":[{"b":[]}]}"#, 3), Err(Error::MalformedJson(_))));
    }

    #[test]
    fn depth_and_utf8_errors() {
        let _leaks = FdLeakCheck::new();
        assert_eq!(validate_object(br#"{"a":[{"b":[]}]}"#, 4), Ok(None));
        assert!(matches!(validate_object(br#"{"a":[{"b":[]}]}"#, 3), Err(Error::MalformedJson(_))));
        assert_eq!(validate_object(b"{\"a\":\"\xff\"}", 4), Err(Error::InvalidUtf8));
        // Not UTF-8 anywhere wins over other faults.
        assert_eq!(validate_object(b"{\"a\" \xff}", 4), Err(Error::InvalidUtf8));
        assert!(matches!(validate_object(b"{\"a\":1", 4), Err(Error::MalformedJson(_))));
    }
}
