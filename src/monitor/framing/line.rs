//! Line framing: a command is the bytes up to a line break (human
//! monitors). Whitespace between commands, blank lines included, is
//! skipped; the line break is not part of the command.

use super::{after_gap, discard, frame_start, FrameEnd, Mode, Size, Step, Took};

/// The scanner of [`super::Framing::Line`].
#[derive(Debug)]
pub struct LineScanner {
    pub(super) mode: Mode,
    size: Size,
}

impl LineScanner {
    /// A scanner of lines of at most `max_bytes` (the break not counted).
    pub(super) fn new(max_bytes: usize) -> LineScanner {
        LineScanner { mode: Mode::Idle, size: Size { len: 0, max: max_bytes } }
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
                Ok(start) => {
                    self.mode = Mode::Frame;
                    self.size.len = 0;
                    after_gap(self.step_frame(&chunk[start..], true), start)
                }
            },
            Mode::Frame => self.step_frame(chunk, false),
        }
    }

    /// Scans frame bytes; when `starting`, `chunk[0]` is the frame's first
    /// byte and is not whitespace.
    fn step_frame(&mut self, chunk: &[u8], starting: bool) -> Step {
        let window = self.size.window(chunk);
        let (consumed, len, end) = match memchr::memchr(b'\n', window) {
            Some(nl) if self.size.over(nl) => (nl + 1, nl, FrameEnd::rejected(self.size.too_large())),
            Some(nl) => (nl + 1, nl, FrameEnd::Complete),
            None if self.size.over(window.len()) => {
                (window.len(), window.len(), FrameEnd::rejected(self.size.too_large()))
            }
            None => (window.len(), window.len(), FrameEnd::Open),
        };
        let nonws = starting || window[..consumed].iter().any(|&b| !super::is_ws(b));
        self.mode = match end {
            FrameEnd::Open => {
                self.size.len += consumed;
                Mode::Frame
            }
            // Past the limit before its break: the rest of the line goes.
            FrameEnd::Rejected(_) if window[consumed - 1] != b'\n' => Mode::Discard,
            _ => Mode::Idle,
        };
        Step { consumed, took: Took::Frame { bytes: 0..len, nonws, end } }
    }
}
