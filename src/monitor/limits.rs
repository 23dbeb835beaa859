//! Bounds on what one command may bring, checked once when a connection
//! (or an association) is made.

use crate::error::Error;
#[cfg(doc)]
use crate::monitor::conn::Connection;

/// Bounds on what one command may bring. A field left 0 takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest command in bytes (default 1 MiB).
    pub max_msg_bytes: usize,
    /// Most fds one command may bring, or wait for it (default 32).
    pub max_fds: usize,
    /// Deepest JSON nesting (default 64).
    pub max_depth: usize,
    /// Longest time, in milliseconds, fds may be held for a command that
    /// has not completed, or wait for one (default 10000, at most
    /// 3600000). See "The hold deadline" in [`crate::monitor::conn`]'s doc.
    pub max_hold_ms: u32,
}

/// Default largest command: 1 MiB.
pub const DEFAULT_MAX_MSG_BYTES: usize = 1 << 20;
/// Default most fds per command.
pub const DEFAULT_MAX_FDS: usize = 32;
/// Default JSON nesting depth.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Default hold deadline: 10 s.
pub const DEFAULT_MAX_HOLD_MS: u32 = 10_000;

/// The highest `max_msg_bytes` accepted: 1 GiB.
pub const MAX_MSG_BYTES_LIMIT: usize = 1 << 30;
/// The highest `max_fds` accepted.
pub const MAX_FDS_LIMIT: usize = 1 << 16;
/// The highest `max_depth` accepted: serde_json stops at 128 levels.
pub const MAX_DEPTH_LIMIT: usize = 127;
/// The highest `max_hold_ms` accepted: one hour. A client may make the
/// monitor hold its fds this long, so it stays bounded.
pub const MAX_HOLD_MS_LIMIT: u32 = 3_600_000;

impl Limits {
    /// These limits checked, with every 0 replaced by its default: the one
    /// check, made when a connection is built ([`Connection::new`],
    /// [`Connection::new_fed`], `fdctx_assoc_new()`). A value above its maximum is refused, never
    /// lowered.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a field is above its maximum
    /// ([`MAX_MSG_BYTES_LIMIT`], [`MAX_FDS_LIMIT`], [`MAX_DEPTH_LIMIT`],
    /// [`MAX_HOLD_MS_LIMIT`]).
    pub fn validated(self) -> Result<Limits, Error> {
        if self.max_msg_bytes > MAX_MSG_BYTES_LIMIT {
            return Err(Error::InvalidArgument("max_msg_bytes is above 1 GiB"));
        }
        if self.max_fds > MAX_FDS_LIMIT {
            return Err(Error::InvalidArgument("max_fds is above 65536"));
        }
        if self.max_depth > MAX_DEPTH_LIMIT {
            return Err(Error::InvalidArgument("max_depth is above 127"));
        }
        if self.max_hold_ms > MAX_HOLD_MS_LIMIT {
            return Err(Error::InvalidArgument("max_hold_ms is above 3600000 (one hour)"));
        }
        let pick = |v: usize, default: usize| if v == 0 { default } else { v };
        Ok(Limits {
            max_msg_bytes: pick(self.max_msg_bytes, DEFAULT_MAX_MSG_BYTES),
            max_fds: pick(self.max_fds, DEFAULT_MAX_FDS),
            max_depth: pick(self.max_depth, DEFAULT_MAX_DEPTH),
            max_hold_ms: if self.max_hold_ms == 0 { DEFAULT_MAX_HOLD_MS } else { self.max_hold_ms },
        })
    }
}

impl Default for Limits {
    /// Every limit at its default.
    fn default() -> Limits {
        Limits {
            max_msg_bytes: DEFAULT_MAX_MSG_BYTES,
            max_fds: DEFAULT_MAX_FDS,
            max_depth: DEFAULT_MAX_DEPTH,
            max_hold_ms: DEFAULT_MAX_HOLD_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    #[test]
    fn zero_takes_the_default_and_the_maximum_is_accepted() {
        let _leaks = FdLeakCheck::new();
        assert_eq!(
            Limits { max_msg_bytes: 0, max_fds: 0, max_depth: 0, max_hold_ms: 0 }.validated(),
            Ok(Limits::default())
        );
        let top = Limits {
            max_msg_bytes: MAX_MSG_BYTES_LIMIT,
            max_fds: MAX_FDS_LIMIT,
            max_depth: MAX_DEPTH_LIMIT,
            max_hold_ms: MAX_HOLD_MS_LIMIT,
        };
        assert_eq!(top.validated(), Ok(top));
    }

    #[test]
    fn a_limit_above_its_maximum_is_refused_not_lowered() {
        let _leaks = FdLeakCheck::new();
        let over = [
            Limits { max_msg_bytes: MAX_MSG_BYTES_LIMIT + 1, ..Limits::default() },
            Limits { max_fds: MAX_FDS_LIMIT + 1, ..Limits::default() },
            Limits { max_depth: MAX_DEPTH_LIMIT + 1, ..Limits::default() },
            Limits { max_hold_ms: MAX_HOLD_MS_LIMIT + 1, ..Limits::default() },
        ];
        for l in over {
            assert_eq!(l.validated().map_err(|e| e.errno()), Err(libc::EINVAL), "{l:?}");
        }
    }
}
