//! The `/dev/fd/N` grammar, and the paths that must never reach the
//! process's own descriptor table.
//!
//! Inside a command's arguments `/dev/fd/N` means "the N-th fd sent with
//! this command". The grammar is strict: `/dev/fd/` followed by a decimal
//! number with no sign, no leading zero (except `0` itself), no space and
//! nothing after it.
//!
//! Every other spelling that the kernel would resolve to one of *our* fds —
//! `/dev//fd/1`, `/dev/./fd/1`, `/proc/self/fd/1`, `/proc/<pid>/fd/1`,
//! `/proc/thread-self/fd/1`, `/dev/stdin` — is refused here, lexically.
//! Symlinks that lead into `/proc/*/fd` cannot be seen lexically; the open
//! path uses `openat2(2)` with `RESOLVE_NO_MAGICLINKS` for those (see
//! [`crate::fds::open`]).

use crate::error::Error;

/// The prefix of an fd path.
pub const FD_PATH_PREFIX: &str = "/dev/fd/";

/// What a path means to fdctx.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// `/dev/fd/N`: the N-th fd of the command's context.
    FdIndex(usize),
    /// Any other path: opened as a file (still subject to symlink checks).
    Ordinary,
}

/// Classifies `path`.
///
/// Returns [`PathKind::FdIndex`] for a well-formed `/dev/fd/N`,
/// [`PathKind::Ordinary`] for a path with nothing to do with fds, and an
/// error for a path that looks like an fd path but is malformed
/// ([`Error::MalformedFdPath`]) or that spells a way into the process's own
/// descriptors ([`Error::OwnFdPath`]).
pub fn classify(path: &str) -> Result<PathKind, Error> {
    if let Some(digits) = path.strip_prefix(FD_PATH_PREFIX) {
        return parse_index(digits.as_bytes())
            .map(PathKind::FdIndex)
            .ok_or_else(|| Error::MalformedFdPath(path.to_owned()));
    }
    if path == "/dev/fd" {
        return Err(Error::MalformedFdPath(path.to_owned()));
    }
    if reaches_own_fds(path) {
        return Err(Error::OwnFdPath(path.to_owned()));
    }
    Ok(PathKind::Ordinary)
}

/// The `N` of a well-formed `/dev/fd/N` (what [`classify`] calls
/// [`PathKind::FdIndex`]), from the path's bytes; `None` for any other
/// path.
pub fn fd_index(path: &[u8]) -> Option<usize> {
    // The prefix compared as one eight-byte word: this runs for every
    // string value of every command.
    match path.split_first_chunk::<8>() {
        Some((b"/dev/fd/", digits)) => parse_index(digits),
        _ => None,
    }
}

/// Parses the digits after `/dev/fd/`: decimal, no sign, no leading zero
/// except `0` itself, and the value must fit `usize`.
fn parse_index(digits: &[u8]) -> Option<usize> {
    match digits {
        [] => None,
        [b'0'] => Some(0),
        [b'0', ..] => None,
        _ => digits.iter().try_fold(0usize, |n, &d| {
            if !d.is_ascii_digit() {
                return None;
            }
            n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        }),
    }
}

/// True when a lexically normalised `path` lands in `/dev/fd`, `/dev/std*`
/// or a `/proc/<task>/fd` (or `fdinfo`) directory.
pub(crate) fn reaches_own_fds(path: &str) -> bool {
    match normalise(path).as_slice() {
        // Any spelling of /dev/fd that was not the exact `/dev/fd/N` form.
        ["dev", "fd", ..] => true,
        ["dev", "stdin" | "stdout" | "stderr", ..] => true,
        // /proc/<self|thread-self|pid>/fd/... and .../task/<tid>/fd/...
        // (fdinfo too: it reaches no fd, but tells flags and offsets.)
        ["proc", _, "fd" | "fdinfo", ..] => true,
        ["proc", _, "task", _, "fd" | "fdinfo", ..] => true,
        _ => false,
    }
}

/// Splits an absolute path into components with `.` and empty components
/// removed and `..` applied lexically. Relative paths give no components
/// (the kernel-side `RESOLVE_NO_MAGICLINKS` check covers them).
fn normalise(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    if !path.starts_with('/') {
        return out;
    }
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    #[test]
    fn well_formed_indices() {
        let _leaks = FdLeakCheck::new();
        assert_eq!(classify("/dev/fd/0"), Ok(PathKind::FdIndex(0)));
        assert_eq!(classify("/dev/fd/7"), Ok(PathKind::FdIndex(7)));
        assert_eq!(classify("/dev/fd/252"), Ok(PathKind::FdIndex(252)));
    }

    #[test]
    fn fd_index_is_what_classify_calls_an_index() {
        let _leaks = FdLeakCheck::new();
        let max = usize::MAX.to_string();
        let over = format!("{max}0");
        for digits in ["0", "7", "252", "01", "00", "", "-1", "+1", " 1", "1 ", "1x", "x", "\u{661}", &max, &over] {
            let path = format!("/dev/fd/{digits}");
            let want = match classify(&path) {
                Ok(PathKind::FdIndex(n)) => Some(n),
                _ => None,
            };
            assert_eq!(fd_index(path.as_bytes()), want, "{path:?}");
        }
        assert_eq!(fd_index(b"/dev/fd/3"), Some(3));
        assert_eq!(fd_index(b"/dev//fd/3"), None);
        assert_eq!(fd_index(b"/proc/self/fd/3"), None);
    }

    #[test]
    fn malformed_forms_are_errors() {
        let _leaks = FdLeakCheck::new();
        for p in [
            "/dev/fd/01",
            "/dev/fd/+1",
            "/dev/fd/-1",
            "/dev/fd/ 1",
            "/dev/fd/1 ",
            "/dev/fd/1/",
            "/dev/fd/1x",
            "/dev/fd/",
            "/dev/fd",
            "/dev/fd/0x1",
            "/dev/fd/../fd/1",
            "/dev/fd/99999999999999999999999",
            "/dev/fd/١",
        ] {
            assert!(matches!(classify(p), Err(Error::MalformedFdPath(_))), "{p:?} must be malformed");
        }
    }

    #[test]
    fn own_fd_spellings_are_refused() {
        let _leaks = FdLeakCheck::new();
        for p in [
            "/dev//fd/1",
            "/dev/./fd/1",
            "//dev/fd/1",
            "/tmp/../dev/fd/1",
            "/dev/stdin",
            "/dev/stdout",
            "/dev/stderr",
            "/proc/self/fd/0",
            "/proc/self/fd",
            "/proc/thread-self/fd/3",
            "/proc/1/fd/3",
            "/proc/self/task/1/fd/3",
            "/proc//self/./fd/3",
            "/proc/self/fdinfo/3",
            "/proc/thread-self/fdinfo/0",
        ] {
            assert!(matches!(classify(p), Err(Error::OwnFdPath(_))), "{p:?} must be refused");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        let _leaks = FdLeakCheck::new();
        for p in ["/tmp/disk.qcow2", "disk.img", "/dev/null", "/dev/fdx/1", "/proc/self/status", "/dev/fd0"] {
            assert_eq!(classify(p), Ok(PathKind::Ordinary), "{p:?}");
        }
    }
}
