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

use crate::fds::fdpath;
use crate::monitor::message::Refusal;

mod nesting;
pub(crate) use nesting::Nesting;

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
    Bad(Refusal),
}

/// Checks the JSON object that starts at `bytes[0]`, nested at most
/// `max_depth` levels (the object itself is level 1; at most 127, the
/// depth a nesting stack holds).
pub fn check_object(bytes: &[u8], max_depth: usize) -> Checked {
    let mut fd_refs = None;
    match object(bytes, max_depth, &mut fd_refs) {
        Ok(len) => Checked::Object { len, fd_refs },
        Err(Stop::Incomplete) => Checked::Incomplete,
        Err(Stop::Bad(e)) => Checked::Bad(e),
    }
}

/// Validates one complete frame as JSON: an object, with only whitespace
/// before and after it. Returns the highest `/dev/fd/N` it names, so the
/// caller can check the command brought that many. Bytes that are not
/// UTF-8 anywhere in the frame are [`Refusal::InvalidUtf8`] whatever else is
/// wrong with them. A stream's scanner bounds the depth already; a packet
/// has none, so for a packet this is where its depth is bounded.
pub fn validate_object(frame: &[u8], max_depth: usize) -> Result<Option<usize>, Refusal> {
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
        Err(_) if std::str::from_utf8(frame).is_err() => Err(Refusal::InvalidUtf8),
        r => r,
    }
}

/// JSON whitespace (RFC 8259 section 2).
pub fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn malformed(why: &str) -> Refusal {
    Refusal::MalformedJson(why.to_owned())
}

/// Why checking stopped before the object's end.
enum Stop {
    Incomplete,
    Bad(Refusal),
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
/// with the open containers on a [`Nesting`] stack and whether the
/// innermost is an object in `in_object`. JSON's token order (a key, `:`,
/// a value, then `,` or a close) is this loop's control flow; the stream
/// scanner follows the same order a byte at a time, where a frame may
/// stop anywhere (`Expect` in `crate::monitor::framing::json`).
fn object(b: &[u8], max_depth: usize, fd_refs: &mut Option<usize>) -> Result<usize, Stop> {
    if b.first() != Some(&b'{') {
        return bad("expected a JSON object ('{')");
    }
    let mut nesting = Nesting::new(max_depth);
    let mut in_object = false;
    let mut i = 0;
    // `i` is at the first byte of a value.
    'value: loop {
        match b[i] {
            c @ (b'{' | b'[') => {
                in_object = c == b'{';
                nesting.open(in_object).map_err(|e| Stop::Bad(e.into()))?;
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
            match nesting.close() {
                None => return Ok(i + 1),
                Some(object) => in_object = object,
            }
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

/// A number at `b[i]` (RFC 8259 section 6): `-? (0 | [1-9][0-9]*)
/// (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. Returns the index after it.
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
    let not_utf8 = || Err(Stop::Bad(Refusal::InvalidUtf8));
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
mod tests;
