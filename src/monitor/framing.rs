//! Framing: where one command ends in a byte stream.
//!
//! The [`Scanner`] is incremental: it keeps its state between reads and
//! looks at every byte once, so a 1 MiB command arriving 4 KiB at a time
//! costs one pass, not one pass per read. It follows strings and escapes,
//! nesting, size, and the order of JSON's tokens (a key, `:`, a value, `,`
//! or a close — not the spelling of numbers and literals), so a frame that
//! can no longer become JSON is rejected at the byte where that shows; a
//! complete JSON frame is then validated once ([`json::validate_object`], see
//! [`crate::monitor::json`]).
//!
//! A JSON frame that starts and ends within one read — nearly every QMP
//! command — takes one pass instead of two: the validator reads it from its
//! `{`, which validates it and finds its end at once ([`Step::validated`]).
//! Whatever that pass does not accept outright (a frame cut by the end of
//! the read, too large, too deep, not UTF-8, not JSON) is scanned from its
//! first byte as above, so every frame ends, or is rejected, at the same
//! byte and with the same result whichever way it was taken.
//!
//! After a bad frame (not an object, out of token order, too deep, too
//! large) the scanner discards input up to the next line break and resumes
//! there; so does a connection after a complete frame that fails
//! validation ([`Scanner::abandon`]). A frame cut short — a line break
//! inside a string, or a `{` that starts a line where the frame has no
//! place for a value (`{"execute":"cont"` then a line break) — ends at
//! that line break, and the next line is a command of its own: a client
//! loses the command it broke, not the ones after it. An object later on the same line as a bad one
//! is discarded with it: after an error the reader cannot know where the
//! client meant a command to start, and a line break is the one boundary
//! both sides agree on.

use std::ops::Range;

use crate::error::Error;
use crate::monitor::json::{self, is_ws, Checked};

/// How a connection splits its input into commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A stream of JSON objects, optional whitespace between them (QMP).
    Json,
    /// Newline-terminated commands (human monitors).
    Line,
    /// One `SOCK_SEQPACKET`/`SOCK_DGRAM` packet is one command.
    Packet,
}

/// What a stream scanner found in one step over a chunk of input.
///
/// A step covers bytes of one kind only — part of the current frame, or
/// discarded input — and ends at the chunk's end, a frame's end, or the
/// end of discarding.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the chunk this step consumed.
    pub consumed: usize,
    /// The current frame's bytes within those (relative to the step start).
    pub frame: Range<usize>,
    /// The current frame received a non-whitespace byte in this step.
    pub frame_nonws: bool,
    /// A non-whitespace byte was discarded in this step.
    pub discard_nonws: bool,
    /// The current frame ended: `Ok` complete, `Err` rejected (the scanner
    /// now discards up to the next line break).
    pub end: Option<Result<(), Error>>,
    /// The frame that ended (`Ok`) in this step lay whole within it and was
    /// validated in the same pass that found its end: what
    /// [`json::validate_object`] returns for it, so it need not be run again.
    pub validated: Option<Option<usize>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between frames, skipping whitespace.
    Idle,
    /// Inside a frame.
    Frame,
    /// Skipping a rejected frame's rest, up to and including `\n`.
    Discard,
}

/// The incremental boundary finder for [`Framing::Json`] and
/// [`Framing::Line`].
#[derive(Debug)]
pub struct Scanner {
    json: bool,
    max_bytes: usize,
    max_depth: usize,
    mode: Mode,
    len: usize,
    depth: usize,
    in_string: bool,
    escape: bool,
    /// The string being scanned is an object key.
    key: bool,
    /// Inside a number or literal (`true`, `null`, ...).
    scalar: bool,
    /// What the JSON grammar allows next, outside strings.
    expect: Expect,
    /// One bit per open container, bit `d` for nesting level `d + 1`: set
    /// for an object, clear for an array (`max_depth` is at most 127).
    objects: u128,
    /// A line break outside strings since the frame's last token.
    line_break: bool,
    /// The frame was rejected at a `{` that starts a line: the next frame
    /// starts at that byte instead of after the next line break.
    resync: bool,
    /// Take frames whole within a read in one pass (see the module doc);
    /// off only in tests, to compare with the incremental scan.
    one_pass: bool,
}

/// What the JSON grammar allows next in a frame, outside strings. Only
/// the order of tokens is followed (strings, brackets, `:`, `,`, and runs
/// of other bytes as numbers or literals); [`json::validate_object`] checks the
/// rest when the frame is complete. This is what lets a frame that can no longer
/// become JSON be rejected at the byte where that is known, rather than
/// when its brackets happen to balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Just after `{`: a key or `}`.
    KeyOrClose,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `:`, or `,` in an array: a value.
    Value,
    /// Just after `[`: a value or `]`.
    ValueOrClose,
    /// After a value: `,` or the close of its container.
    CommaOrClose,
}

/// A byte that ends a number or literal: JSON's structural characters and
/// the quote (RFC 8259 section 2).
fn is_json_punct(b: u8) -> bool {
    matches!(b, b'{' | b'}' | b'[' | b']' | b':' | b',' | b'"')
}

impl Scanner {
    /// A scanner for `framing` (`Json` or `Line`) with the given limits.
    pub fn new(framing: Framing, max_bytes: usize, max_depth: usize) -> Scanner {
        Scanner {
            json: framing == Framing::Json,
            max_bytes,
            max_depth,
            mode: Mode::Idle,
            len: 0,
            depth: 0,
            in_string: false,
            escape: false,
            key: false,
            scalar: false,
            expect: Expect::Value,
            objects: 0,
            line_break: false,
            resync: false,
            one_pass: true,
        }
    }

    /// Whether a frame is in progress (some of its bytes were scanned, its
    /// end not yet).
    pub fn in_frame(&self) -> bool {
        self.mode == Mode::Frame
    }

    /// Gives up the frame in progress: the scanner discards input up to
    /// the next line break, as after a rejected frame.
    pub fn abandon(&mut self) {
        self.mode = Mode::Discard;
    }

    /// Scans `chunk` from its start; see [`Step`].
    pub fn step(&mut self, chunk: &[u8]) -> Step {
        match self.mode {
            Mode::Discard => self.step_discard(chunk),
            Mode::Idle => {
                let Some(start) = chunk.iter().position(|&b| !is_ws(b)) else {
                    return Step { consumed: chunk.len(), frame: 0..0, ..Step::default() };
                };
                if self.json && self.one_pass && chunk[start] == b'{' {
                    if let Some((len, refs)) = self.whole_frame(&chunk[start..]) {
                        return Step {
                            consumed: start + len,
                            frame: start..start + len,
                            frame_nonws: true,
                            discard_nonws: false,
                            end: Some(Ok(())),
                            validated: Some(refs),
                        };
                    }
                }
                self.mode = Mode::Frame;
                self.len = 0;
                self.depth = 0;
                self.in_string = false;
                self.escape = false;
                self.scalar = false;
                self.expect = Expect::Value;
                self.objects = 0;
                self.line_break = false;
                self.resync = false;
                let mut step = self.step_frame(&chunk[start..], true);
                step.consumed += start;
                step.frame = step.frame.start + start..step.frame.end + start;
                step
            }
            Mode::Frame => self.step_frame(chunk, false),
        }
    }

    /// One pass over a frame that starts at `bytes[0]` (a `{`): when the
    /// frame ends within `bytes` and is good — valid JSON and UTF-8, within
    /// the size and depth limits — its length and the highest `/dev/fd/N`
    /// it names. `None` for anything else; the caller then scans the frame
    /// incrementally from its first byte.
    ///
    /// For a frame accepted here the incremental scan would end at the same
    /// byte (in valid JSON the brackets outside strings nest exactly as the
    /// values do) without rejecting it (its nesting and size are within the
    /// limits), and [`json::validate_object`] would return the same result (it runs
    /// the same check over the same bytes).
    fn whole_frame(&self, bytes: &[u8]) -> Option<(usize, Option<usize>)> {
        // A frame longer than the limit ends past it: not whole here.
        let limit = bytes.len().min(self.max_bytes);
        match json::check_object(&bytes[..limit], self.max_depth) {
            Checked::Object { len, fd_refs } => Some((len, fd_refs)),
            Checked::Incomplete | Checked::Bad(_) => None,
        }
    }

    fn step_discard(&mut self, chunk: &[u8]) -> Step {
        let (consumed, done) = match memchr::memchr(b'\n', chunk) {
            Some(nl) => (nl + 1, true),
            None => (chunk.len(), false),
        };
        if done {
            self.mode = Mode::Idle;
        }
        let discard_nonws = chunk[..consumed].iter().any(|&b| !is_ws(b));
        Step { consumed, frame: 0..0, discard_nonws, ..Step::default() }
    }

    /// Scans frame bytes; when `starting`, `chunk[0]` is the frame's first
    /// byte and is not whitespace.
    fn step_frame(&mut self, chunk: &[u8], starting: bool) -> Step {
        // Look no further than one byte past the size limit: a command that
        // is too long is rejected at the same byte, and discarding starts
        // there, however the stream was cut into reads.
        let room = self.max_bytes.saturating_sub(self.len);
        let window = &chunk[..chunk.len().min(room.saturating_add(1))];
        let (used, end) = if self.json { self.scan_json(window) } else { self.scan_line(window) };
        // Line framing keeps the newline out of the frame.
        let frame_end =
            if !self.json && end.is_some() && used > 0 && chunk[used - 1] == b'\n' { used - 1 } else { used };
        let frame_nonws = starting || chunk[..used].iter().any(|&b| !is_ws(b));
        let mut end = end;
        if end.is_none() {
            self.len += used;
            if self.len > self.max_bytes {
                end = Some(Err(Error::TooLarge { limit: self.max_bytes }));
            }
        }
        match &end {
            Some(Ok(())) => self.mode = Mode::Idle,
            Some(Err(_)) => self.reject(chunk.get(used.wrapping_sub(1)) == Some(&b'\n')),
            None => {}
        }
        Step { consumed: used, frame: 0..frame_end, frame_nonws, discard_nonws: false, end, validated: None }
    }

    fn reject(&mut self, at_newline: bool) {
        self.mode = if at_newline || self.resync { Mode::Idle } else { Mode::Discard };
    }

    fn too_large(&self, upto: usize) -> bool {
        self.len + upto > self.max_bytes
    }

    /// Returns bytes used and, when the frame ended, how.
    ///
    /// A frame is rejected at the first byte the JSON grammar does not
    /// allow there (see [`Expect`]), at a line break inside a string (JSON
    /// strings hold none: RFC 8259 section 7), or past `max_depth`. When
    /// the byte not allowed is a `{` that is the first token of a line, the
    /// frame ends before it and the next frame starts there: a client whose
    /// command was cut short (`{"execute":"cont"` and a line break) loses
    /// that command only, not the next one.
    fn scan_json(&mut self, chunk: &[u8]) -> (usize, Option<Result<(), Error>>) {
        let mut i = 0;
        if self.len == 0 && self.depth == 0 && !self.in_string {
            // Frame start: it must be an object.
            if chunk[0] != b'{' {
                return (1, Some(Err(Error::MalformedJson("expected a JSON object ('{')".into()))));
            }
        }
        while i < chunk.len() {
            if self.in_string {
                let (used, line_break) = self.skip_string(&chunk[i..]);
                i += used;
                if line_break {
                    return (i, Some(Err(Error::MalformedJson("line break inside a string".into()))));
                }
                continue;
            }
            let b = chunk[i];
            if is_ws(b) {
                self.line_break |= b == b'\n';
                self.scalar = false;
                i += 1;
                continue;
            }
            if self.scalar && !is_json_punct(b) {
                i += 1;
                continue;
            }
            self.scalar = false;
            match self.token(b) {
                Ok(false) => {}
                Ok(true) => {
                    if self.too_large(i + 1) {
                        return (i + 1, Some(Err(Error::TooLarge { limit: self.max_bytes })));
                    }
                    return (i + 1, Some(Ok(())));
                }
                // (Where a value may start, the `{` was too deep instead.)
                Err(e) if b == b'{' && self.line_break && !self.value_may_start() => {
                    self.resync = true;
                    return (i, Some(Err(e)));
                }
                Err(e) => return (i + 1, Some(Err(e))),
            }
            self.line_break = false;
            i += 1;
        }
        (i, None)
    }

    /// Takes one token byte outside strings (not whitespace, not inside a
    /// number or literal): `Ok(true)` when it closes the frame.
    fn token(&mut self, b: u8) -> Result<bool, Error> {
        use Expect::*;
        let in_object = self.depth > 0 && self.objects >> (self.depth - 1) & 1 == 1;
        let unexpected = |what: &str| Err(Error::MalformedJson(format!("unexpected {what}")));
        match (b, self.expect) {
            (b'"', KeyOrClose | Key) => (self.in_string, self.key) = (true, true),
            (b'"', Value | ValueOrClose) => (self.in_string, self.key) = (true, false),
            (b'{' | b'[', Value | ValueOrClose) => {
                if self.depth >= self.max_depth {
                    return Err(Error::MalformedJson(format!("nested deeper than {} levels", self.max_depth)));
                }
                let object = b == b'{';
                self.objects = self.objects & !(1 << self.depth) | (u128::from(object) << self.depth);
                self.depth += 1;
                self.expect = if object { KeyOrClose } else { ValueOrClose };
            }
            (b'}', KeyOrClose | CommaOrClose) if in_object => return Ok(self.close()),
            (b']', ValueOrClose | CommaOrClose) if !in_object && self.depth > 0 => return Ok(self.close()),
            (b':', Colon) => self.expect = Value,
            (b',', CommaOrClose) => self.expect = if in_object { Key } else { Value },
            (b'"', _) => return unexpected("string"),
            (b'{' | b'}' | b'[' | b']' | b':' | b',', _) => return unexpected(&format!("'{}'", b as char)),
            (_, Value | ValueOrClose) => {
                self.scalar = true;
                self.expect = CommaOrClose;
            }
            _ => return unexpected("value"),
        }
        Ok(false)
    }

    fn value_may_start(&self) -> bool {
        matches!(self.expect, Expect::Value | Expect::ValueOrClose)
    }

    /// Closes the innermost container: true when that ends the frame.
    fn close(&mut self) -> bool {
        self.depth -= 1;
        self.expect = Expect::CommaOrClose;
        self.depth == 0
    }

    /// Inside a string: the bytes up to and including the next unescaped
    /// `"` (the string then ends), `\` (an escape follows) or line break
    /// (the frame is malformed: the second value is true), or all of
    /// `chunk`; an escaped byte is skipped.
    fn skip_string(&mut self, chunk: &[u8]) -> (usize, bool) {
        if self.escape {
            self.escape = false;
            return (1, chunk[0] == b'\n');
        }
        match memchr::memchr3(b'"', b'\\', b'\n', chunk) {
            None => (chunk.len(), false),
            Some(p) => {
                match chunk[p] {
                    b'\\' => self.escape = true,
                    b'\n' => return (p + 1, true),
                    _ => {
                        self.in_string = false;
                        self.expect = if self.key { Expect::Colon } else { Expect::CommaOrClose };
                    }
                }
                (p + 1, false)
            }
        }
    }

    fn scan_line(&mut self, chunk: &[u8]) -> (usize, Option<Result<(), Error>>) {
        match memchr::memchr(b'\n', chunk) {
            Some(nl) if self.too_large(nl) => (nl + 1, Some(Err(Error::TooLarge { limit: self.max_bytes }))),
            Some(nl) => (nl + 1, Some(Ok(()))),
            None => (chunk.len(), None),
        }
    }
}

/// Validates one complete frame that is not JSON: it must be UTF-8. Same
/// result type as [`json::validate_object`], naming no fds.
pub fn validate_text(frame: &[u8]) -> Result<Option<usize>, Error> {
    std::str::from_utf8(frame).map(|_| None).map_err(|_| Error::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::json::validate_object;
    use crate::testing::fdcount::FdLeakCheck;

    /// Feeds `input` in pieces of `cut` bytes; returns (frame text or error
    /// errno) for every frame end.
    fn frames(framing: Framing, input: &[u8], cut: usize) -> Vec<Result<String, i32>> {
        let mut s = Scanner::new(framing, 64, 4);
        scan(&mut s, input, cut, |frame, end, _| end.map(|()| String::from_utf8(frame).unwrap()).map_err(|e| e.errno()))
    }

    /// Feeds `input` to `s` in pieces of `cut` bytes; `done` turns each
    /// frame end (the frame's bytes, how it ended, what the one pass
    /// validated) into an entry of the result.
    fn scan<T>(
        s: &mut Scanner,
        input: &[u8],
        cut: usize,
        mut done: impl FnMut(Vec<u8>, Result<(), Error>, Option<Option<usize>>) -> T,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        for chunk in input.chunks(cut) {
            let mut pos = 0;
            while pos < chunk.len() {
                let st = s.step(&chunk[pos..]);
                // Only a frame rejected at a `{` that starts a line (and
                // the next frame) ends without consuming a byte.
                assert!(st.consumed > 0 || matches!(st.end, Some(Err(_))));
                cur.extend_from_slice(&chunk[pos..][st.frame.clone()]);
                if let Some(end) = st.end {
                    out.push(done(std::mem::take(&mut cur), end, st.validated));
                }
                pos += st.consumed;
            }
        }
        out
    }

    /// Feeds `input` in pieces of `cut` bytes to a JSON scanner (limits
    /// `max_bytes`, depth 4), with or without the one-pass path; returns every
    /// frame end with the frame's bytes and its validation (the highest fd
    /// reference, or the errno).
    #[allow(clippy::type_complexity)]
    fn checked_frames(
        input: &[u8],
        cut: usize,
        one_pass: bool,
        max_bytes: usize,
    ) -> Vec<(Vec<u8>, Result<Option<usize>, i32>)> {
        let mut s = Scanner { one_pass, ..Scanner::new(Framing::Json, max_bytes, 4) };
        scan(&mut s, input, cut, |frame, end, validated| {
            let check = match (end, validated) {
                (Err(e), _) => Err(e.errno()),
                (Ok(()), Some(refs)) => {
                    assert_eq!(validate_object(&frame, 4), Ok(refs), "one pass and validation agree");
                    Ok(refs)
                }
                (Ok(()), None) => validate_object(&frame, 4).map_err(|e| e.errno()),
            };
            (frame, check)
        })
    }

    #[test]
    fn one_pass_frames_like_the_incremental_scan() {
        let _leaks = FdLeakCheck::new();
        let inputs: &[&[u8]] = &[
            br#"{"execute":"add-fd","arguments":{"opaque":"/dev/fd/0"}}"#,
            b"{\"a\":\"/dev/fd/3\",\"b\":[\"/dev/fd/1\"]}\r\n{\"c\":\"\\/dev\\/fd\\/7\"}  {}",
            // Not JSON, with brackets that still balance, then good ones.
            b"{\"a\" 1}{\"b\":1}\n{\"a\":1,}{\"ok\":[]}\n{\"a\":tru}{\"x\":\"}\"}",
            // Too deep (limit 4), and at the limit.
            b"{\"a\":[[[[1]]]]}{\"a\":[[1]]}\n{\"b\":[{\"c\":[1]}]}{\"a\":[[[1]]]}",
            // Too large (limit 64), and exactly 64 bytes.
            b"{\"a\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n{\"a\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
            // Not UTF-8 in a key and in a value; a raw control character.
            b"{\"\xff\":1}{\"a\":\"\xc3\x28\"}\n{\"a\":\"\x01\"}\n{\"ok\":1}",
            // Escapes, numbers, literals, a lone surrogate escape.
            br#"{"s":"\"}\\","n":-1.5e3,"t":true,"f":false,"z":null,"u":"\u00e9\ud83d\ude00"}{"v":"\udc00"}"#,
            b"[1]{\"x\":1}\n{\"y\":\"/dev/fd/01\",\"z\":\"/dev/fd/12\"}",
        ];
        // The one pass is taken for a good frame whole in the read.
        let mut s = Scanner::new(Framing::Json, 64, 4);
        assert_eq!(s.step(inputs[0]).validated, Some(Some(0)));
        for input in inputs {
            let want = checked_frames(input, input.len(), false, 64);
            assert!(!want.is_empty());
            for cut in 1..=input.len() {
                assert_eq!(
                    checked_frames(input, cut, true, 64),
                    want,
                    "cut {cut} of {:?}",
                    String::from_utf8_lossy(input)
                );
                assert_eq!(checked_frames(input, cut, false, 64), want, "cut {cut}, incremental only");
            }
        }
    }

    #[test]
    fn one_pass_windows_grow_over_long_frames() {
        let _leaks = FdLeakCheck::new();
        // Frames past the first window (256 bytes) and its growths, with
        // multi-byte characters across every window edge, invalid UTF-8
        // beyond the first window, and a frame over the limit (2000).
        let mut input = Vec::new();
        for (i, len) in [300usize, 600, 1100, 1999].into_iter().enumerate() {
            let mut frame = format!("{{\"n\":{i},\"fd\":\"/dev/fd/{i}\",\"s\":\"");
            while frame.len() < len - 6 {
                frame.push(if frame.len() % 7 == 0 { '\u{1F600}' } else { 'é' });
            }
            while frame.len() < len - 2 {
                frame.push('a');
            }
            frame.push_str("\"}");
            input.extend_from_slice(frame.as_bytes());
        }
        input.extend_from_slice(b"\n{\"a\":\"");
        input.extend_from_slice(&[b'x'; 400]);
        input.extend_from_slice(b"\xff\"}\n{\"b\":\"");
        input.extend_from_slice(&[b'y'; 2100]);
        input.extend_from_slice(b"\"}\n{\"ok\":true}");
        let want = checked_frames(&input, input.len(), false, 2000);
        assert_eq!(want.len(), 7);
        let summary: Vec<_> = want.iter().map(|(f, r)| (f.len(), *r)).collect();
        assert!(want[..4].iter().enumerate().all(|(i, (_, r))| *r == Ok(Some(i))), "{summary:?}");
        assert_eq!(want[4].1, Err(libc::EILSEQ));
        assert_eq!(want[5].1, Err(libc::EMSGSIZE));
        for cut in [1, 2, 3, 7, 255, 256, 257, 511, 512, 1000, 1023, 1024, 1025, 4096, input.len()] {
            assert_eq!(checked_frames(&input, cut, true, 2000), want, "cut {cut}");
        }
        let mut s = Scanner::new(Framing::Json, 2000, 4);
        assert_eq!(s.step(&input).validated, Some(Some(0)), "a 300-byte frame in one pass");
    }

    #[test]
    fn json_frames_at_any_cut() {
        let _leaks = FdLeakCheck::new();
        let input = br#" {"a":"}{\"x"} 
{"b":[1,{"c":2}]}{"d":"\\"}"#;
        for cut in 1..input.len() {
            assert_eq!(
                frames(Framing::Json, input, cut),
                vec![
                    Ok(r#"{"a":"}{\"x"}"#.to_string()),
                    Ok(r#"{"b":[1,{"c":2}]}"#.to_string()),
                    Ok(r#"{"d":"\\"}"#.to_string())
                ],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn json_rejects_then_resynchronises_at_newline() {
        let _leaks = FdLeakCheck::new();
        let ebadmsg = libc::EBADMSG;
        let input = b"[1]{\"x\":1}\n{\"a\":[[[[[1]]]]]} {\"y\":1}\n{\"ok\":1}";
        assert_eq!(frames(Framing::Json, input, 5), vec![Err(ebadmsg), Err(ebadmsg), Ok("{\"ok\":1}".into())]);
    }

    #[test]
    fn a_command_cut_short_does_not_swallow_the_next_lines() {
        let _leaks = FdLeakCheck::new();
        let bad = || Err(libc::EBADMSG);
        let ok = |s: &str| Ok(s.to_string());
        type Case = (&'static [u8], Vec<Result<String, i32>>);
        let cases: &[Case] = &[
            // Unclosed: the next line's command starts a frame of its own.
            (b"{\"execute\":\"cont\"\n{\"b\":1}\n{\"c\":2}", vec![bad(), ok("{\"b\":1}"), ok("{\"c\":2}")]),
            (b"{\"a\":1,\n  {\"b\":1}\n", vec![bad(), ok("{\"b\":1}")]),
            (b"{\"a\":[1]\r\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
            // Where a `{` may begin a value, it does: the frame goes on.
            (b"{\"a\":[1,\n{\"b\":1}]}", vec![ok("{\"a\":[1,\n{\"b\":1}]}")]),
            // A line break inside a string ends the frame there.
            (b"{\"a\":\"unterminated\n{\"b\":1}\n", vec![bad(), ok("{\"b\":1}")]),
            (b"{\"a\":\"x\\\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
            // Rejected at the byte: the rest of that line is discarded.
            (b"{x {\"smuggled\":1}\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
            (b"{\"a\" {\"smuggled\":1}}\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
            (b"{\"a\":1 2}{\"smuggled\":1}\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
            (b"{\"a\":1]\n{\"b\":[}]}\n{\"c\":{\"d\"}}\n{}", vec![bad(), bad(), bad(), ok("{}")]),
            // Valid JSON over several lines is one command.
            (b"{\n \"a\": {\n  \"b\": [1,\n 2]\n }\n}\n", vec![ok("{\n \"a\": {\n  \"b\": [1,\n 2]\n }\n}")]),
            (b"{\"a\":\n{\"b\":1}}", vec![ok("{\"a\":\n{\"b\":1}}")]),
        ];
        for (input, want) in cases {
            for cut in 1..=input.len() {
                assert_eq!(
                    &frames(Framing::Json, input, cut),
                    want,
                    "cut {cut} of {:?}",
                    String::from_utf8_lossy(input)
                );
            }
        }
    }

    #[test]
    fn json_too_large() {
        let _leaks = FdLeakCheck::new();
        let big = format!("{{\"a\":\"{}\"}}\n{{}}", "x".repeat(100));
        assert_eq!(frames(Framing::Json, big.as_bytes(), 7), vec![Err(libc::EMSGSIZE), Ok("{}".into())]);
        let exact = format!("{{\"a\":\"{}\"}}", "x".repeat(56));
        assert_eq!(exact.len(), 64);
        assert_eq!(frames(Framing::Json, exact.as_bytes(), 9), vec![Ok(exact.clone())]);
    }

    #[test]
    fn too_large_is_rejected_at_the_same_byte_whatever_the_cuts() {
        let _leaks = FdLeakCheck::new();
        // Limit 64: rejected at byte 65, inside the second line; discarding
        // ends with that line, so the third line is garbage of its own.
        let input = b"{\"a\":\n\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\n\"b\":1}\n{\"c\":2}";
        let whole = frames(Framing::Json, input, input.len());
        assert_eq!(whole, vec![Err(libc::EMSGSIZE), Err(libc::EBADMSG), Ok("{\"c\":2}".into())]);
        for cut in 1..input.len() {
            assert_eq!(frames(Framing::Json, input, cut), whole, "cut {cut}");
        }
    }

    #[test]
    fn line_frames() {
        let _leaks = FdLeakCheck::new();
        let input = b"info block\r\n\n  \nquit\n";
        assert_eq!(frames(Framing::Line, input, 3), vec![Ok("info block\r".into()), Ok("quit".into())]);
        let long = format!("{}\nnext\n", "y".repeat(65));
        assert_eq!(frames(Framing::Line, long.as_bytes(), 10), vec![Err(libc::EMSGSIZE), Ok("next".into())]);
    }
}
