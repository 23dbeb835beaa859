//! `open(2)` for client-supplied paths: `/dev/fd/N` from the command's
//! context, everything else from the filesystem without ever reaching the
//! process's own descriptors.
//!
//! Ordinary paths are opened with `openat2(2)` and `RESOLVE_NO_MAGICLINKS`
//! (Linux 5.6, see openat2(2) and `fs/namei.c`), so a symlink that leads to
//! `/proc/<pid>/fd/<n>` — a "magic link" — fails with `ELOOP`, which is
//! reported as [`Error::OwnFdPath`]. Where `openat2` is missing (`ENOSYS`:
//! a kernel before 5.6, or a seccomp filter), the path is resolved by
//! [`crate::resolve`] instead, which refuses every symlink on procfs: it
//! fails closed, never falling back to a plain `open(2)`.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::Mode;

use crate::context::Context;
use crate::error::Error;
use crate::fdpath::{self, PathKind};

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `path` for a command whose fds are in `ctx` (`None`: a command
/// that brought none).
///
/// * `/dev/fd/N` is resolved against `ctx` and *duplicated*: the caller owns
///   the returned fd, the context keeps (and at finish closes) the original,
///   so the same `/dev/fd/N` can be opened more than once, as a block layer
///   reopening an image expects. As `open(2)` would on that file: the fd's
///   access mode must allow the requested one ([`Error::AccessMode`]), an
///   `O_PATH` fd serves only `O_PATH` ([`Error::PathOnlyFd`]), `O_DIRECTORY`
///   needs a directory (`ENOTDIR`), `O_NONBLOCK` is set or cleared to match
///   `flags`, `O_TRUNC` truncates, and the result is close-on-exec.
/// * A malformed fd path or one that reaches the process's own fds is
///   refused ([`Error::MalformedFdPath`], [`Error::OwnFdPath`]).
/// * Anything else is opened with `flags | O_CLOEXEC` and `mode` (used only
///   with `O_CREAT`/`O_TMPFILE`), refusing `/proc` magic links.
pub fn open<P: AsRef<Path>>(ctx: Option<&Context>, path: P, flags: i32, mode: u32) -> Result<OwnedFd, Error> {
    let path = path.as_ref();
    let oflags = OFlag::from_bits_retain(flags);
    // Non-UTF-8 bytes become U+FFFD here, which no fd spelling contains;
    // the file itself is opened by its exact bytes.
    match fdpath::classify(&path.to_string_lossy())? {
        PathKind::FdIndex(index) => match ctx {
            Some(ctx) => ctx.open_index(index, oflags),
            None => Err(Error::NoSuchIndex { index, count: 0 }),
        },
        PathKind::Ordinary => open_ordinary(path, oflags | OFlag::O_CLOEXEC, mode),
    }
}

fn open_ordinary(path: &Path, flags: OFlag, mode: u32) -> Result<OwnedFd, Error> {
    let creates = flags.contains(OFlag::O_CREAT) || flags.contains(OFlag::O_TMPFILE);
    let mode = if creates { Mode::from_bits_truncate(mode) } else { Mode::empty() };
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = OpenHow::new().flags(flags).mode(mode).resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(AT_FDCWD, path, how) {
            Ok(fd) => return refuse_fd_tables(fd, path),
            Err(Errno::ELOOP) if flags.contains(OFlag::O_NOFOLLOW) => return Err(Error::sys("openat2", Errno::ELOOP)),
            Err(Errno::ELOOP) => return Err(magic_link_or_loop(path)),
            Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            Err(e) => return Err(Error::sys("openat2", e)),
        }
    }
    let fd = crate::resolve::open_without_proc_links(path, flags, mode)?;
    refuse_fd_tables(fd, path)
}

/// Refuses what a client path must not reach on procfs, wherever procfs is
/// mounted and through whatever symlinks: any process's entries
/// (`/proc/<pid>/...`: `fd`, `mem`, `environ`; `/proc/net` too, which is
/// `self/net`) and any procfs directory (from `/proc`, a fd table is one
/// `openat` away). System-wide files such as `/proc/cpuinfo` stay open.
/// Only files on procfs are looked at, by the name the kernel gives the
/// opened file.
fn refuse_fd_tables(fd: OwnedFd, path: &Path) -> Result<OwnedFd, Error> {
    if !crate::resolve::on_procfs(&fd) {
        return Ok(fd);
    }
    let is_dir = nix::sys::stat::fstat(&fd)
        .map(|st| nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT == nix::sys::stat::SFlag::S_IFDIR)
        .unwrap_or(true);
    // thread-self: a thread may have its own fd table (CLONE_FILES).
    let name = std::fs::read_link(format!("/proc/thread-self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| Error::io("readlink", &e))?;
    let name = name.to_string_lossy();
    // Kernel names spell every process directory by number, so a number
    // covers the fd tables (`<pid>/fd`, `task/<tid>/fdinfo`) as well.
    if is_dir || names_a_task(&name) {
        return Err(Error::OwnFdPath(path.to_string_lossy().into_owned()));
    }
    Ok(fd)
}

/// True for a procfs name under a process directory (`/proc/1234/mem`,
/// `/host/proc/1/environ`): whose process it is cannot be told from the
/// number alone (another pid namespace's procfs numbers differently), so
/// every process's entries are refused, this one's included.
fn names_a_task(name: &str) -> bool {
    name.split('/').any(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// `ELOOP` under `RESOLVE_NO_MAGICLINKS` is a magic link — unless the same
/// path also loops without that restriction (a genuine symlink loop).
fn magic_link_or_loop(path: &Path) -> Error {
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC);
    match openat2(AT_FDCWD, path, how) {
        Err(Errno::ELOOP) => Error::sys("openat2", Errno::ELOOP),
        _ => Error::OwnFdPath(path.to_string_lossy().into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FdLeakCheck;
    use std::os::fd::AsRawFd;

    fn flags_of(fd: &OwnedFd) -> OFlag {
        OFlag::from_bits_retain(nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap())
    }

    fn cloexec(fd: &OwnedFd) -> bool {
        let f = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        nix::fcntl::FdFlag::from_bits_retain(f).contains(nix::fcntl::FdFlag::FD_CLOEXEC)
    }

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fdctx-open-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn fd_path_access_mode_is_checked() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let ctx = Context::from_fds(vec![r, w]);
        assert!(matches!(ctx.open("/dev/fd/0", libc::O_RDWR, 0), Err(Error::AccessMode { .. })));
        assert!(matches!(ctx.open("/dev/fd/0", libc::O_WRONLY, 0), Err(Error::AccessMode { .. })));
        assert!(matches!(ctx.open("/dev/fd/1", libc::O_RDONLY, 0), Err(Error::AccessMode { .. })));
        let fd = ctx.open("/dev/fd/0", libc::O_RDONLY, 0).unwrap();
        assert!(cloexec(&fd));
        assert_ne!(fd.as_raw_fd(), ctx.get(0).unwrap().as_raw_fd(), "a duplicate, not the original");
        assert!(matches!(ctx.open("/dev/fd/2", libc::O_RDONLY, 0), Err(Error::NoSuchIndex { .. })));
        drop(fd);
        assert_eq!(ctx.finish(), 0);
    }

    #[test]
    fn nonblock_follows_the_flags() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        let ctx = Context::from_fds(vec![r]);
        let fd = ctx.open("/dev/fd/0", libc::O_RDONLY, 0).unwrap();
        assert!(!flags_of(&fd).contains(OFlag::O_NONBLOCK), "client's O_NONBLOCK cleared");
        let fd2 = ctx.open("/dev/fd/0", libc::O_RDONLY | libc::O_NONBLOCK, 0).unwrap();
        assert!(flags_of(&fd2).contains(OFlag::O_NONBLOCK));
        drop((fd, fd2, w));
    }

    #[test]
    fn o_path_and_o_directory() {
        let _leaks = FdLeakCheck::new();
        let d = tmpdir("opath");
        let file = d.join("f");
        std::fs::write(&file, b"x").unwrap();
        let p = nix::fcntl::open(&file, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let f = nix::fcntl::open(&file, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let dir = nix::fcntl::open(&d, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let ctx = Context::from_fds(vec![p, f, dir]);
        assert!(matches!(ctx.open("/dev/fd/0", libc::O_RDONLY, 0), Err(Error::PathOnlyFd)));
        drop(ctx.open("/dev/fd/0", libc::O_PATH, 0).unwrap());
        let path_only = ctx.open("/dev/fd/1", libc::O_PATH, 0).unwrap();
        assert!(flags_of(&path_only).contains(OFlag::O_PATH), "O_PATH of a readable fd is path-only");
        assert_eq!(nix::unistd::read(&path_only, &mut [0u8; 1]), Err(Errno::EBADF));
        let e = ctx.open("/dev/fd/1", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap_err();
        assert_eq!(e.errno(), libc::ENOTDIR);
        drop(ctx.open("/dev/fd/2", libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap());
        drop(ctx);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn own_fds_are_unreachable() {
        let _leaks = FdLeakCheck::new();
        let d = tmpdir("magic");
        std::os::unix::fs::symlink("/proc/self/fd/0", d.join("stdin-link")).unwrap();
        std::os::unix::fs::symlink("/dev/fd", d.join("fd-dir")).unwrap();
        let pid = std::process::id();
        let own = format!("/proc/{pid}/fd/0");
        let link = d.join("stdin-link").display().to_string();
        let via_dir = format!("{}/fd-dir/0", d.display());
        for p in ["/proc/self/fd/0", "/proc/thread-self/fd/0", own.as_str(), "/dev/stdin", "/dev//fd/0", "/dev/./fd/0", link.as_str(), via_dir.as_str()] {
            let e = open(None, p, libc::O_RDONLY, 0).unwrap_err();
            assert_eq!(e.errno(), libc::EPERM, "{p}: {e}");
        }
        let e = open(None, "/dev/fd/01", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn own_proc_entries_and_proc_directories_are_refused() {
        let _leaks = FdLeakCheck::new();
        let pid = std::process::id();
        for p in ["/proc/self/mem", "/proc/self/environ", "/proc/thread-self/status", "/proc", "/proc/1", "/proc/1/status", "/proc/net/dev", &format!("/proc/{pid}/maps")] {
            let e = open(None, p, libc::O_RDONLY, 0).unwrap_err();
            assert_eq!(e.errno(), libc::EPERM, "{p}: {e}");
        }
        for p in ["/proc/cpuinfo", "/proc/sys/kernel/ostype"] {
            drop(open(None, p, libc::O_RDONLY, 0).unwrap_or_else(|e| panic!("{p}: {e}")));
        }
    }

    #[test]
    fn process_entries_are_recognised_at_any_mount_point() {
        let _leaks = FdLeakCheck::new();
        assert!(names_a_task("/mnt/p/42/fd"));
        assert!(names_a_task("/mnt/p/42/task/43/fdinfo/3"));
        assert!(names_a_task("/proc/1/fd"));
        assert!(names_a_task("/proc/42/status"), "any process's entries, not only fd tables");
        assert!(!names_a_task("/mnt/p/sys/fd"));
        assert!(!names_a_task("/proc/cpuinfo"));
    }

    #[test]
    fn ordinary_paths_open_cloexec() {
        let _leaks = FdLeakCheck::new();
        let d = tmpdir("plain");
        let path = d.join("new").display().to_string();
        let fd = open(None, &path, libc::O_RDWR | libc::O_CREAT, 0o600).unwrap();
        assert!(cloexec(&fd));
        drop(fd);
        let e = open(None, format!("{}/missing", d.display()), libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
