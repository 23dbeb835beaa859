//! Framing: where one command ends in a byte stream.
//!
//! A stream connection splits its input with a [`Scanner`]: the JSON
//! scanner ([`json`], QMP) or the line scanner ([`line`](mod@line), human monitors).
//! Packet framing has none: one packet is one command. Both scanners are
//! incremental: they keep their state between reads and look at every
//! byte once, so a 1 MiB command arriving 4 KiB at a time costs one pass,
//! not one pass per read. Both report what they found in the same
//! [`Step`]s, and both bound a frame's size at the same byte however the
//! stream was cut into reads: a frame that grows past the limit is
//! rejected at the byte past it.
//!
//! After a bad frame the scanner discards input up to the next line break
//! and resumes there; so does a connection after a complete frame that
//! fails validation ([`Scanner::abandon`]). An object later on the same
//! line as a bad one is discarded with it: after an error the reader
//! cannot know where the client meant a command to start, and a line break
//! is the one boundary both sides agree on.

use std::ops::Range;

use crate::monitor::json::is_ws;
use crate::monitor::message::Refusal;

mod json;
mod line;

use json::JsonScanner;
use line::LineScanner;

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

/// What a scanner found in one step over a chunk of input: how many bytes
/// it took, and what they were. A step takes bytes of one kind only and
/// ends at the chunk's end, a frame's end, or the end of discarding.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the chunk this step consumed.
    pub consumed: usize,
    /// What they were.
    pub took: Took,
}

/// The kind of bytes one [`Step`] took.
///
/// `repr(u8)` here and on [`FrameEnd`]: a tag byte of their own, which
/// the receive path tests with one compare on every step (folded into a
/// niche of the payload, the tag is decoded with arithmetic instead).
#[derive(Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Took {
    /// Whitespace between frames.
    Gap,
    /// Input discarded after a rejected frame, up to a line break;
    /// `nonws` when a byte of it is not whitespace.
    Discarded { nonws: bool },
    /// Bytes of the current frame, perhaps after whitespace that precedes
    /// it: `bytes` is where they lie within the step (a line's break is
    /// not among them). `nonws` when one of them is not whitespace.
    Frame { bytes: Range<usize>, nonws: bool, end: FrameEnd },
}

/// Where the current frame stands after a step that took its bytes.
#[derive(Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameEnd {
    /// It goes on in the next step.
    Open,
    /// It ended; its bytes are still to be validated.
    Complete,
    /// It ended, and lay whole in the step: the pass that found its end
    /// validated it ([`crate::monitor::json::validate_object`] would
    /// return `Ok(fd_refs)`, the highest `/dev/fd/N` it names).
    Valid { fd_refs: Option<usize> },
    /// It was rejected, for this reason. The scanner now discards input up
    /// to the next line break, or starts the next frame at once (a JSON
    /// frame cut short by a line that starts with `{`). Boxed: a rejection
    /// is rare, and a step without the error inline stays small enough to
    /// move through the receive path without copies.
    Rejected(Box<Refusal>),
}

impl FrameEnd {
    /// The frame was rejected because of `e`.
    #[cold]
    fn rejected(e: Refusal) -> FrameEnd {
        FrameEnd::Rejected(Box::new(e))
    }
}

/// The incremental boundary finder of a stream connection.
#[derive(Debug)]
pub enum Scanner {
    /// For [`Framing::Json`].
    Json(JsonScanner),
    /// For [`Framing::Line`].
    Line(LineScanner),
}

impl Scanner {
    /// The scanner for `framing` with the given limits: `None` for
    /// [`Framing::Packet`], which needs none.
    pub fn new(framing: Framing, max_bytes: usize, max_depth: usize) -> Option<Scanner> {
        match framing {
            Framing::Json => Some(Scanner::Json(JsonScanner::new(max_bytes, max_depth))),
            Framing::Line => Some(Scanner::Line(LineScanner::new(max_bytes))),
            Framing::Packet => None,
        }
    }

    /// Scans `chunk` from its start; see [`Step`].
    #[inline]
    pub fn step(&mut self, chunk: &[u8]) -> Step {
        match self {
            Scanner::Json(s) => s.step(chunk),
            Scanner::Line(s) => s.step(chunk),
        }
    }

    /// Whether a frame is in progress (some of its bytes were scanned, its
    /// end not yet).
    pub fn in_frame(&self) -> bool {
        self.mode() == Mode::Frame
    }

    /// Gives up the frame in progress: the scanner discards input up to
    /// the next line break, as after a rejected frame.
    pub fn abandon(&mut self) {
        match self {
            Scanner::Json(s) => s.mode = Mode::Discard,
            Scanner::Line(s) => s.mode = Mode::Discard,
        }
    }

    fn mode(&self) -> Mode {
        match self {
            Scanner::Json(s) => s.mode,
            Scanner::Line(s) => s.mode,
        }
    }
}

/// Where a stream scanner is, between steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between frames, skipping whitespace.
    Idle,
    /// Inside a frame.
    Frame,
    /// Skipping a rejected frame's rest, up to and including `\n`.
    Discard,
}

/// A frame's size so far against its limit.
#[derive(Debug)]
struct Size {
    len: usize,
    max: usize,
}

impl Size {
    /// The part of `chunk` worth looking at: no further than one byte past
    /// the limit, so a frame that is too long is rejected at the same
    /// byte, and discarding starts there, however the stream was cut.
    #[inline]
    fn window<'a>(&self, chunk: &'a [u8]) -> &'a [u8] {
        let room = self.max.saturating_sub(self.len);
        &chunk[..chunk.len().min(room.saturating_add(1))]
    }

    /// Whether the frame, `more` bytes longer, is over the limit.
    #[inline]
    fn over(&self, more: usize) -> bool {
        self.len + more > self.max
    }

    fn too_large(&self) -> Refusal {
        Refusal::TooLarge { limit: self.max }
    }
}

/// In [`Mode::Idle`]: where the next frame starts in `chunk`, or the step
/// that takes `chunk` whole, whitespace between frames.
#[inline]
fn frame_start(chunk: &[u8]) -> Result<usize, Step> {
    chunk.iter().position(|&b| !is_ws(b)).ok_or(Step { consumed: chunk.len(), took: Took::Gap })
}

/// In [`Mode::Discard`]: the step that discards `chunk` up to and including
/// its first line break, and whether it found one (discarding ends).
fn discard(chunk: &[u8]) -> (Step, bool) {
    let (consumed, done) = match memchr::memchr(b'\n', chunk) {
        Some(nl) => (nl + 1, true),
        None => (chunk.len(), false),
    };
    let nonws = chunk[..consumed].iter().any(|&b| !is_ws(b));
    (Step { consumed, took: Took::Discarded { nonws } }, done)
}

/// Moves a step over a frame that started `start` bytes into the chunk, so
/// that it covers the whitespace before the frame too.
fn after_gap(mut step: Step, start: usize) -> Step {
    step.consumed += start;
    if let Took::Frame { bytes, .. } = &mut step.took {
        *bytes = bytes.start + start..bytes.end + start;
    }
    step
}

/// Validates one complete frame that is not JSON: it must be UTF-8. Same
/// result type as [`crate::monitor::json::validate_object`], naming no fds.
pub fn validate_text(frame: &[u8]) -> Result<Option<usize>, Refusal> {
    std::str::from_utf8(frame).map(|_| None).map_err(|_| Refusal::InvalidUtf8)
}

#[cfg(test)]
mod tests;
