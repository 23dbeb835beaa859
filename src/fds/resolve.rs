//! Path resolution that refuses `/proc` symlinks, for kernels without
//! `openat2(2)`.
//!
//! `openat2` with `RESOLVE_NO_MAGICLINKS` (Linux 5.6) is the real guard.
//! Where it is missing — an older kernel, or a seccomp filter that answers
//! `ENOSYS` — fdctx does not fall back to a plain `open(2)`, which would
//! follow `/proc/self/root/dev/fd/3` or a client's symlink into
//! `/proc/<pid>/fd` straight into the process's own descriptors. It walks
//! the path itself instead, one component at a time with
//! `O_PATH | O_NOFOLLOW`: ordinary symlinks are read and followed, but any
//! symlink that lives on procfs (`/proc/self`, `/proc/<pid>/fd/<n>`,
//! `/proc/<pid>/root`, `cwd`, `exe`...) is refused. That is stricter than
//! `RESOLVE_NO_MAGICLINKS` (which lets the plain symlink `/proc/self`
//! through), and it fails closed. The last component is opened with the
//! caller's flags and `O_NOFOLLOW`, so swapping it for a symlink after the
//! check fails rather than escapes; it is refused before that open when it
//! is on procfs (the procfs rule of [`crate::fds::open`]).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statfs::{fstatfs, PROC_SUPER_MAGIC};

use crate::error::Error;

/// True when `fd` is on procfs (or cannot be told: then it counts as on
/// procfs, so the caller refuses).
pub(crate) fn on_procfs<Fd: std::os::fd::AsFd>(fd: Fd) -> bool {
    fstatfs(fd).map_or(true, |s| s.filesystem_type() == PROC_SUPER_MAGIC)
}

/// The most symlinks one resolution follows, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Opens `path` with `flags` and `mode`, following no symlink on procfs.
///
/// # Errors
/// [`Error::OwnFdPath`] when resolution meets a procfs symlink,
/// [`Error::ProcfsPath`] when the file it reaches is on procfs; `ELOOP`
/// past 40 symlinks; otherwise the errno of the failing `openat(2)`.
pub fn open_without_proc_links(path: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, Error> {
    let refuse = || Error::OwnFdPath(path.to_string_lossy().into_owned());
    let flags = directory_flags(path.as_os_str().as_bytes(), flags)?;
    let start: &OsStr = if path.as_os_str().as_bytes().starts_with(b"/") { "/".as_ref() } else { ".".as_ref() };
    let mut dir = openat(AT_FDCWD, start, DIR_FLAGS, Mode::empty()).map_err(|e| Error::sys("open", e))?;
    let mut pending = components(path.as_os_str());
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        let last = pending.is_empty();
        if name == ".." {
            dir = openat(&dir, "..", DIR_FLAGS, Mode::empty()).map_err(|e| Error::sys("openat", e))?;
            continue;
        }
        let step = openat(&dir, name.as_os_str(), OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty());
        let fd = match step {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if last && flags.contains(OFlag::O_CREAT) => {
                return open_last(&dir, &name, flags, mode);
            }
            Err(e) => return Err(Error::sys("openat", e)),
        };
        let st = fstat(&fd).map_err(|e| Error::sys("fstat", e))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            if on_procfs(&fd) {
                return Err(refuse());
            }
            // A final symlink is not followed under O_NOFOLLOW (ELOOP, or
            // the link itself with O_PATH) nor by O_CREAT|O_EXCL (EEXIST).
            if last && (flags.contains(OFlag::O_NOFOLLOW) || flags.contains(OFlag::O_CREAT | OFlag::O_EXCL)) {
                return open_last(&dir, &name, flags, mode);
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Error::sys("open", Errno::ELOOP));
            }
            follow(&fd, &mut dir, &mut pending)?;
            continue;
        }
        if last {
            // The procfs rule of crate::fds::open, before the caller's flags can
            // have any effect (the caller checks the opened file again).
            if on_procfs(&fd) {
                return Err(Error::ProcfsPath(path.to_string_lossy().into_owned()));
            }
            return open_last(&dir, &name, flags, mode);
        }
        dir = fd;
    }
    // The path ended in `/`, `.` or `..`: open the directory reached.
    if on_procfs(&dir) {
        return Err(Error::ProcfsPath(path.to_string_lossy().into_owned()));
    }
    open_last(&dir, OsStr::new("."), flags, mode)
}

/// How the walk opens each directory it passes through.
const DIR_FLAGS: OFlag = OFlag::O_PATH.union(OFlag::O_DIRECTORY).union(OFlag::O_CLOEXEC);

/// `flags` for a path that may name a directory by its spelling: one
/// ending in `/`, `.` or `..` does, as in the kernel (`O_DIRECTORY` is
/// added; with `O_CREAT` it is `EISDIR`). An empty path is `ENOENT`.
fn directory_flags(bytes: &[u8], flags: OFlag) -> Result<OFlag, Error> {
    if bytes.is_empty() {
        return Err(Error::sys("open", Errno::ENOENT));
    }
    if bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes.ends_with(b"/..") || bytes == b"." || bytes == b".." {
        if flags.contains(OFlag::O_CREAT) {
            return Err(Error::sys("open", Errno::EISDIR));
        }
        return Ok(flags | OFlag::O_DIRECTORY);
    }
    Ok(flags)
}

/// Follows the symlink `link` (not on procfs; the caller checked): its
/// target's components go before those still `pending`, and an absolute
/// target restarts the walk at `/`.
fn follow(link: &OwnedFd, dir: &mut OwnedFd, pending: &mut VecDeque<OsString>) -> Result<(), Error> {
    let target = readlinkat(link, "").map_err(|e| Error::sys("readlinkat", e))?;
    if target.as_bytes().starts_with(b"/") {
        *dir = openat(AT_FDCWD, "/", DIR_FLAGS, Mode::empty()).map_err(|e| Error::sys("open", e))?;
    }
    let mut rest = components(&target);
    rest.extend(std::mem::take(pending));
    *pending = rest;
    Ok(())
}

fn open_last(dir: &OwnedFd, name: &OsStr, flags: OFlag, mode: Mode) -> Result<OwnedFd, Error> {
    openat(dir, name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, mode).map_err(|e| match e {
        // A symlink put in place after the walk looked at this component.
        Errno::ELOOP => Error::sys("openat (component became a symlink)", e),
        e => Error::sys("openat", e),
    })
}

/// The names of a path, without empty and `.` components.
fn components(path: &OsStr) -> VecDeque<OsString> {
    path.as_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    fn open(p: &str) -> Result<OwnedFd, Error> {
        open_without_proc_links(Path::new(p), OFlag::O_RDONLY, Mode::empty())
    }

    #[test]
    fn proc_links_are_refused_ordinary_ones_followed() {
        let _leaks = FdLeakCheck::new();
        let d = std::env::temp_dir().join(format!("fdctx-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/file"), b"x").unwrap();
        std::os::unix::fs::symlink("sub", d.join("to-sub")).unwrap();
        std::os::unix::fs::symlink(d.join("sub/file"), d.join("abs-link")).unwrap();
        std::os::unix::fs::symlink("/proc/self/fd/0", d.join("to-stdin")).unwrap();
        std::os::unix::fs::symlink("/dev/fd", d.join("to-fd")).unwrap();
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        let ds = d.display();
        for p in [
            format!("{ds}/to-sub/file"),
            format!("{ds}/abs-link"),
            format!("{ds}/sub/../sub/./file"),
            "Cargo.toml".into(),
            "/proc/../etc/passwd".into(),
        ] {
            drop(open(&p).unwrap_or_else(|e| panic!("{p}: {e}")));
        }
        let pid = std::process::id();
        for p in [
            format!("{ds}/to-stdin"),
            format!("{ds}/to-fd/0"),
            "/proc/self/root/dev/fd/0".into(),
            "/proc/self/cwd".into(),
            format!("/proc/{pid}/fd/0"),
            format!("/proc/{pid}/root/etc/hostname"),
            "/dev/stdin".into(),
        ] {
            assert!(matches!(open(&p), Err(Error::OwnFdPath(_))), "{p} must be refused");
        }
        for p in ["/proc/1/status", "/proc/1/../1/status", "/proc/cpuinfo", "/proc/sys/", "/proc/."] {
            assert!(matches!(open(p), Err(Error::ProcfsPath(_))), "{p} is on procfs");
        }
        assert_eq!(open(&format!("{ds}/loop")).unwrap_err().errno(), libc::ELOOP);
        assert_eq!(open("").unwrap_err().errno(), libc::ENOENT);
        assert_eq!(open(&format!("{ds}/sub/file/")).unwrap_err().errno(), libc::ENOTDIR);
        let nofollow = open_without_proc_links(&d.join("abs-link"), OFlag::O_RDONLY | OFlag::O_NOFOLLOW, Mode::empty());
        assert_eq!(nofollow.unwrap_err().errno(), libc::ELOOP);
        std::os::unix::fs::symlink(d.join("victim"), d.join("dangling")).unwrap();
        let excl = open_without_proc_links(
            &d.join("dangling"),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o600),
        );
        assert_eq!(excl.unwrap_err().errno(), libc::EEXIST);
        assert!(!d.join("victim").exists(), "O_EXCL never creates through a symlink");
        assert_eq!(open(&format!("{ds}/missing")).unwrap_err().errno(), libc::ENOENT);
        let created =
            open_without_proc_links(&d.join("new"), OFlag::O_RDWR | OFlag::O_CREAT, Mode::from_bits_truncate(0o600));
        drop(created.unwrap());
        assert!(d.join("new").exists());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
