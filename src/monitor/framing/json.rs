//! JSON framing (QMP): a stream of JSON objects, whitespace between them.
//!
//! The scanner follows strings and escapes, nesting, size, and the order
//! of JSON's tokens (a key, `:`, a value, `,` or a close — not the
//! spelling of numbers and literals), so a frame that can no longer become
//! JSON is rejected at the byte where that shows; a complete frame is then
//! validated once ([`validate_object`]).
//!
//! A frame that starts and ends within one read — nearly every QMP command
//! — takes one pass instead of two: the validator reads it from its `{`,
//! which validates it and finds its end at once ([`FrameEnd::Valid`]).
//! Whatever that pass does not accept outright (a frame cut by the end of
//! the read, too large, too deep, not UTF-8, not JSON) is scanned from its
//! first byte as above, so every frame ends, or is rejected, at the same
//! byte and with the same result whichever way it was taken.
//!
//! A frame cut short — a line break inside a string, or a `{` that starts
//! a line where the frame has no place for a value (`{"execute":"cont"`
//! then a line break) — ends at that line break, and the next line is a
//! command of its own: a client loses the command it broke, not the ones
//! after it.
//!
//! [`validate_object`]: crate::monitor::json::validate_object

use super::{after_gap, discard, frame_start, FrameEnd, Mode, Size, Step, Took};
use crate::monitor::json::{check_object, is_ws, Checked, Nesting};
use crate::monitor::message::Refusal;

/// The scanner of [`super::Framing::Json`].
#[derive(Debug)]
pub struct JsonScanner {
    pub(super) mode: Mode,
    size: Size,
    max_depth: usize,
    /// Where the frame in progress stands in JSON's token order.
    tokens: Tokens,
    /// A line break outside strings since the frame's last token.
    line_break: bool,
    /// The frame was rejected at a `{` that starts a line: the next frame
    /// starts at that byte instead of after the next line break.
    resync: bool,
}

/// The token order of a frame in progress, outside what the validator
/// checks when the frame is complete (the spelling of numbers, literals,
/// escapes and UTF-8).
#[derive(Debug)]
struct Tokens {
    /// What the grammar allows next, outside strings.
    expect: Expect,
    nesting: Nesting,
    in_string: bool,
    /// The byte after a `\` in a string comes next.
    escape: bool,
    /// The string being scanned is an object key.
    key: bool,
    /// Inside a number or literal (`true`, `null`, ...).
    scalar: bool,
}

/// What the JSON grammar allows next in a frame, outside strings. Only
/// the order of tokens is followed (strings, brackets, `:`, `,`, and runs
/// of other bytes as numbers or literals); the validator checks the rest
/// when the frame is complete. This is what lets a frame that can no
/// longer become JSON be rejected at the byte where that is known, rather
/// than when its brackets happen to balance.
///
/// The validator follows the same order in its control flow (a value,
/// then `,` and a key or value, or a close), where it costs no state per
/// byte; the two share the [`Nesting`] stack, and every frame this order
/// accepts is checked by the validator once complete, so a gap between
/// the two could only let a bad frame reach the validator, never deliver it.
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

/// How a frame's scan over a window ended, when it did: the byte count
/// the step consumed and the frame's end.
type Ended = (usize, FrameEnd);

impl JsonScanner {
    /// A scanner of objects of at most `max_bytes`, nested at most
    /// `max_depth` levels.
    pub(super) fn new(max_bytes: usize, max_depth: usize) -> JsonScanner {
        JsonScanner {
            mode: Mode::Idle,
            size: Size { len: 0, max: max_bytes },
            max_depth,
            tokens: Tokens::new(max_depth),
            line_break: false,
            resync: false,
        }
    }

    pub(super) fn step(&mut self, chunk: &[u8]) -> Step {
        match self.mode {
            Mode::Discard => {
                let (step, done) = discard(chunk);
                if done {
                    self.mode = Mode::Idle;
                }
                step
            }
            Mode::Idle => match frame_start(chunk) {
                Err(gap) => gap,
                Ok(start) => after_gap(self.start_frame(&chunk[start..]), start),
            },
            Mode::Frame => self.step_frame(chunk, false),
        }
    }

    /// A frame starts at `chunk[0]`: in one pass if it lies whole there
    /// and is good, else incrementally.
    fn start_frame(&mut self, chunk: &[u8]) -> Step {
        if chunk[0] == b'{' {
            if let Some(step) = self.whole_frame(chunk) {
                return step;
            }
        }
        self.mode = Mode::Frame;
        self.size.len = 0;
        self.tokens = Tokens::new(self.max_depth);
        self.line_break = false;
        self.resync = false;
        self.step_frame(chunk, true)
    }

    /// One pass over a frame that starts at `bytes[0]` (a `{`): the step
    /// that takes it when it ends within `bytes` and is good — valid JSON
    /// and UTF-8, within the size and depth limits. `None` for anything
    /// else; the frame is then scanned incrementally from its first byte.
    ///
    /// For a frame accepted here the incremental scan would end at the same
    /// byte (in valid JSON the brackets outside strings nest exactly as the
    /// values do) without rejecting it (its nesting and size are within the
    /// limits), and the validator would return the same result (it runs the
    /// same check over the same bytes).
    #[inline]
    fn whole_frame(&self, bytes: &[u8]) -> Option<Step> {
        // A frame longer than the limit ends past it: not whole here.
        let limit = bytes.len().min(self.size.max);
        match check_object(&bytes[..limit], self.max_depth) {
            Checked::Object { len, fd_refs } => Some(Step {
                consumed: len,
                took: Took::Frame { bytes: 0..len, nonws: true, end: FrameEnd::Valid { fd_refs } },
            }),
            Checked::Incomplete | Checked::Bad(_) => None,
        }
    }

    /// Scans frame bytes; when `starting`, `chunk[0]` is the frame's first
    /// byte and is not whitespace.
    fn step_frame(&mut self, chunk: &[u8], starting: bool) -> Step {
        let window = self.size.window(chunk);
        let (consumed, end) = match self.scan(window) {
            Some(ended) => ended,
            None if self.size.over(window.len()) => (window.len(), FrameEnd::rejected(self.size.too_large())),
            None => (window.len(), FrameEnd::Open),
        };
        let nonws = starting || window[..consumed].iter().any(|&b| !is_ws(b));
        match end {
            FrameEnd::Open => self.size.len += consumed,
            FrameEnd::Rejected(_) => {
                let at_newline = consumed > 0 && window[consumed - 1] == b'\n';
                self.mode = if at_newline || self.resync { Mode::Idle } else { Mode::Discard };
            }
            FrameEnd::Complete | FrameEnd::Valid { .. } => self.mode = Mode::Idle,
        }
        Step { consumed, took: Took::Frame { bytes: 0..consumed, nonws, end } }
    }

    /// Scans the frame's next bytes, `chunk`: how it ended, if it did
    /// (else it goes on past `chunk`).
    ///
    /// A frame is rejected at the first byte the JSON grammar does not
    /// allow there (see [`Expect`]), at a line break inside a string (JSON
    /// strings hold none: RFC 8259 section 7), or past its depth limit.
    /// When the byte not allowed is a `{` that is the first token of a
    /// line, the frame ends before it and the next frame starts there: a
    /// client whose command was cut short (`{"execute":"cont"` and a line
    /// break) loses that command only, not the next one.
    fn scan(&mut self, chunk: &[u8]) -> Option<Ended> {
        if self.size.len == 0 && self.tokens.nesting.depth() == 0 && !self.tokens.in_string && chunk[0] != b'{' {
            // Frame start: it must be an object.
            return Some((1, FrameEnd::rejected(malformed("expected a JSON object ('{')"))));
        }
        let mut i = 0;
        while i < chunk.len() {
            let t = &mut self.tokens;
            if t.in_string {
                let (used, line_break) = t.skip_string(&chunk[i..]);
                i += used;
                if line_break {
                    return Some((i, FrameEnd::rejected(malformed("line break inside a string"))));
                }
                continue;
            }
            let b = chunk[i];
            if is_ws(b) {
                self.line_break |= b == b'\n';
                t.scalar = false;
            } else if !t.scalar || is_json_punct(b) {
                t.scalar = false;
                if let Some(ended) = self.token(b, i) {
                    return Some(ended);
                }
                self.line_break = false;
            }
            i += 1;
        }
        None
    }

    /// Takes the token byte `b`, at `i` in the scanned bytes: how the frame
    /// ended if it did.
    #[inline]
    fn token(&mut self, b: u8, i: usize) -> Option<Ended> {
        match self.tokens.take(b) {
            Ok(false) => None,
            Ok(true) if self.size.over(i + 1) => Some((i + 1, FrameEnd::rejected(self.size.too_large()))),
            Ok(true) => Some((i + 1, FrameEnd::Complete)),
            // (Where a value may start, the `{` was too deep instead.)
            Err(e) if b == b'{' && self.line_break && !self.tokens.value_may_start() => {
                self.resync = true;
                Some((i, FrameEnd::rejected(e)))
            }
            Err(e) => Some((i + 1, FrameEnd::rejected(e))),
        }
    }
}

fn malformed(why: &str) -> Refusal {
    Refusal::MalformedJson(why.to_owned())
}

impl Tokens {
    fn new(max_depth: usize) -> Tokens {
        Tokens {
            expect: Expect::Value,
            nesting: Nesting::new(max_depth),
            in_string: false,
            escape: false,
            key: false,
            scalar: false,
        }
    }

    /// Takes one token byte outside strings (not whitespace, not inside a
    /// number or literal): `Ok(true)` when it closes the frame.
    fn take(&mut self, b: u8) -> Result<bool, Refusal> {
        use Expect::*;
        let in_object = self.nesting.in_object();
        let unexpected = |what: &str| Err(Refusal::MalformedJson(format!("unexpected {what}")));
        match (b, self.expect) {
            (b'"', KeyOrClose | Key) => (self.in_string, self.key) = (true, true),
            (b'"', Value | ValueOrClose) => (self.in_string, self.key) = (true, false),
            (b'{' | b'[', Value | ValueOrClose) => {
                let object = b == b'{';
                self.nesting.open(object)?;
                self.expect = if object { KeyOrClose } else { ValueOrClose };
            }
            (b'}', KeyOrClose | CommaOrClose) if in_object => return Ok(self.close()),
            (b']', ValueOrClose | CommaOrClose) if !in_object && self.nesting.depth() > 0 => return Ok(self.close()),
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
        self.expect = Expect::CommaOrClose;
        self.nesting.close().is_none()
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
}
