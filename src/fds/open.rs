//! `open(2)` for client-supplied paths: `/dev/fd/N` from the command's
//! context, everything else from the filesystem without ever reaching the
//! process's own descriptors or anything on procfs.
//!
//! # `/dev/fd/N`
//!
//! `open_fd` behaves as `open(2)` would on the file the fd refers to:
//! the fd's access mode must allow the requested one, an `O_PATH` fd serves
//! only `O_PATH`, `O_DIRECTORY` needs a directory, `O_NONBLOCK` is set or
//! cleared to match the flags, `O_TRUNC` truncates a regular file only (as
//! `do_open()` in `fs/namei.c`: on a FIFO, a tty, a character device or a
//! socket open(2) ignores it), and the result is a close-on-exec duplicate.
//! Nothing here opens a path: an `O_PATH` view of a readable fd comes from
//! `open_tree(2)` on the fd itself (Linux 5.2), with a reopen through
//! `/proc/thread-self/fd` only where that call is missing (an `O_PATH`
//! open, which Landlock does not check).
//!
//! # Ordinary paths
//!
//! They are opened with `openat2(2)` and `RESOLVE_NO_MAGICLINKS` (Linux
//! 5.6, see openat2(2) and `fs/namei.c`), so a symlink that leads to
//! `/proc/<pid>/fd/<n>` — a "magic link" — fails with `ELOOP`, which is
//! reported as [`Error::OwnFdPath`]. Where `openat2` is missing (`ENOSYS`:
//! a kernel before 5.6, or a seccomp filter), the path is resolved by
//! `resolve` instead, which refuses every symlink on procfs: it
//! fails closed, never falling back to a plain `open(2)`.
//!
//! **The procfs rule.** Whatever opened, if the file is on procfs
//! (`fstatfs(2)` says `PROC_SUPER_MAGIC`) it is closed and refused with
//! [`Error::ProcfsPath`] — `O_PATH` opens included. The decision is the
//! filesystem's of the object actually opened, never its name: a bind mount
//! of `/proc/<pid>` or `/proc/<pid>/task/<tid>` at a path with no digits, a
//! procfs mounted elsewhere, a symlink, all fail alike; a VMM never needs a
//! client to name a procfs file. The lexical refusals of [`crate::fds::fdpath`]
//! only give the common spellings a clearer message.
//!
//! Under [`crate::fds::confine`] a path the kernel refuses with `EACCES` is
//! reported as [`Error::Confined`], whose text says the process is
//! confined. `/dev/fd/N` opens no path, so confinement changes nothing
//! for it.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fcntl, openat2, FcntlArg, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::{fstat, Mode, SFlag};

use crate::error::Error;
use crate::fds::context::Context;
use crate::fds::fdpath::{self, PathKind};

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
static NO_OPEN_TREE: AtomicBool = AtomicBool::new(false);

/// Opens `path` for a command whose fds are in `ctx` (`None`: a command
/// that brought none).
///
/// * `/dev/fd/N` is resolved against `ctx` and *duplicated* (`open_fd`):
///   the caller owns the returned fd, the context keeps (and at finish
///   closes) the original, so the same `/dev/fd/N` can be opened more than
///   once, as a block layer reopening an image expects.
/// * A malformed fd path or one that reaches the process's own fds is
///   refused ([`Error::MalformedFdPath`], [`Error::OwnFdPath`]).
/// * Anything else is opened with `flags | O_CLOEXEC` and `mode` (used only
///   with `O_CREAT`/`O_TMPFILE`), refusing `/proc` magic links and anything
///   on procfs ([`Error::ProcfsPath`]); `EACCES` while the process is
///   confined is [`Error::Confined`].
pub fn open<P: AsRef<Path>>(ctx: Option<&Context>, path: P, flags: i32, mode: u32) -> Result<OwnedFd, Error> {
    let path = path.as_ref();
    let oflags = OFlag::from_bits_retain(flags);
    // Non-UTF-8 bytes become U+FFFD here, which no fd spelling contains;
    // the file itself is opened by its exact bytes.
    match fdpath::classify(&path.to_string_lossy())? {
        PathKind::FdIndex(index) => match ctx {
            Some(ctx) => open_fd(ctx.get(index)?, oflags),
            None => Err(Error::NoSuchIndex { index, count: 0 }),
        },
        PathKind::Ordinary => open_ordinary(path, oflags | OFlag::O_CLOEXEC, mode),
    }
}

impl Context {
    /// A drop-in for `open(2)` (see [`open`]): `/dev/fd/N` resolves against
    /// this context and is duplicated, any other path is opened with
    /// `O_CLOEXEC` and without crossing `/proc` magic links.
    pub fn open<P: AsRef<Path>>(&self, path: P, flags: i32, mode: u32) -> Result<OwnedFd, Error> {
        open(Some(self), path, flags, mode)
    }
}

/// `open(2)` with `flags` on the file `fd` refers to, without opening any
/// path: the caller owns the result (a close-on-exec duplicate, or a new
/// `O_PATH` fd).
///
/// # Errors
/// [`Error::AccessMode`] when the fd's `O_ACCMODE` does not allow the
/// requested access, [`Error::PathOnlyFd`] for I/O asked of an `O_PATH` fd,
/// `EINVAL` for `O_TMPFILE` (it makes a new file, so it cannot name a
/// passed one; the fd of a passed directory is not a place to make files
/// in), `ENOTDIR` for `O_DIRECTORY` on a non-directory, `EEXIST` for
/// `O_CREAT | O_EXCL` (the file exists), `EINVAL` for an access mode with
/// both bits set; a failing `fcntl(2)`, `fstat(2)` or `ftruncate(2)`.
pub(crate) fn open_fd(fd: BorrowedFd<'_>, flags: OFlag) -> Result<OwnedFd, Error> {
    if flags.contains(OFlag::O_TMPFILE) {
        return Err(Error::sys("open /dev/fd/N with O_TMPFILE", Errno::EINVAL));
    }
    let have = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).map_err(|e| Error::sys("fcntl(F_GETFL)", e))?);
    check_access(have, flags)?;
    let file_type = || -> Result<SFlag, Error> {
        let st = fstat(fd).map_err(|e| Error::sys("fstat", e))?;
        Ok(SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT)
    };
    if flags.contains(OFlag::O_DIRECTORY) && file_type()? != SFlag::S_IFDIR {
        return Err(Error::sys("open /dev/fd/N with O_DIRECTORY", Errno::ENOTDIR));
    }
    if flags.contains(OFlag::O_CREAT | OFlag::O_EXCL) {
        return Err(Error::sys("open /dev/fd/N with O_CREAT|O_EXCL", Errno::EEXIST));
    }
    if flags.contains(OFlag::O_PATH) && !have.contains(OFlag::O_PATH) {
        // open(2) with O_PATH gives a path-only fd, never one that can read
        // or write: make one for the same file rather than dup this one.
        return path_only(fd);
    }
    let new = fd.try_clone_to_owned().map_err(|e| Error::io("fcntl(F_DUPFD_CLOEXEC)", &e))?;
    if !have.contains(OFlag::O_PATH) {
        // The status flags live in the open file description, which the
        // sender shares: match O_NONBLOCK to what this caller asked for.
        let want_nb = flags.contains(OFlag::O_NONBLOCK);
        if have.contains(OFlag::O_NONBLOCK) != want_nb {
            let mut set = have & !OFlag::O_ACCMODE;
            set.set(OFlag::O_NONBLOCK, want_nb);
            fcntl(&new, FcntlArg::F_SETFL(set)).map_err(|e| Error::sys("fcntl(F_SETFL)", e))?;
        }
        // As do_open() in fs/namei.c: only a regular file is truncated;
        // open(2) ignores O_TRUNC on FIFOs, ttys, devices and sockets.
        if flags.contains(OFlag::O_TRUNC) && access_of(flags) != OFlag::O_RDONLY && file_type()? == SFlag::S_IFREG {
            nix::unistd::ftruncate(&new, 0).map_err(|e| Error::sys("ftruncate", e))?;
        }
    }
    Ok(new)
}

/// A new close-on-exec `O_PATH` fd for the file `fd` refers to.
///
/// `open_tree(fd, "", AT_EMPTY_PATH | OPEN_TREE_CLOEXEC)` without
/// `OPEN_TREE_CLONE` is exactly that (`fs/namespace.c`: a `dentry_open`
/// with `O_PATH`), and opens no path. Where the call is missing (`ENOSYS`
/// before Linux 5.2, or a seccomp filter; `EPERM` from some filters) the
/// same file is reopened `O_PATH` through `/proc/thread-self/fd` (procfs
/// must then be mounted; Landlock does not check `O_PATH` opens).
fn path_only(fd: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    if !NO_OPEN_TREE.load(Ordering::Relaxed) {
        match path_only_by_open_tree(fd) {
            Err(Errno::ENOSYS | Errno::EPERM) => NO_OPEN_TREE.store(true, Ordering::Relaxed),
            r => return r.map_err(|e| Error::sys("open_tree", e)),
        }
    }
    path_only_by_procfs(fd)
}

fn path_only_by_open_tree(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let flags = (libc::AT_EMPTY_PATH as libc::c_uint) | libc::OPEN_TREE_CLOEXEC;
    // SAFETY: a valid fd, a NUL-terminated empty path and plain flags.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if r < 0 {
        return Err(Errno::last());
    }
    let raw = i32::try_from(r).map_err(|_| Errno::EBADF)?;
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn path_only_by_procfs(fd: BorrowedFd<'_>) -> Result<OwnedFd, Error> {
    // thread-self: a thread may have its own fd table (CLONE_FILES).
    let own = format!("/proc/thread-self/fd/{}", fd.as_raw_fd());
    nix::fcntl::open(own.as_str(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| Error::sys("reopening /dev/fd/N with O_PATH", e))
}

fn open_ordinary(path: &Path, flags: OFlag, mode: u32) -> Result<OwnedFd, Error> {
    let creates = flags.contains(OFlag::O_CREAT) || flags.contains(OFlag::O_TMPFILE);
    let mode = if creates { Mode::from_bits_truncate(mode) } else { Mode::empty() };
    let fd = if NO_OPENAT2.load(Ordering::Relaxed) {
        walk(path, flags, mode)?
    } else {
        let how = OpenHow::new().flags(flags).mode(mode).resolve(ResolveFlag::RESOLVE_NO_MAGICLINKS);
        match openat2(AT_FDCWD, path, how) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) if flags.contains(OFlag::O_NOFOLLOW) => return Err(Error::sys("openat2", Errno::ELOOP)),
            Err(Errno::ELOOP) => return Err(magic_link_or_loop(path)),
            Err(Errno::EACCES) => return Err(denied(path, Error::sys("openat2", Errno::EACCES))),
            Err(Errno::ENOSYS) => {
                NO_OPENAT2.store(true, Ordering::Relaxed);
                walk(path, flags, mode)?
            }
            Err(e) => return Err(Error::sys("openat2", e)),
        }
    };
    refuse_procfs(fd, path)
}

/// The fallback resolution of [`crate::fds::resolve`], with `EACCES` reported
/// as under openat2.
fn walk(path: &Path, flags: OFlag, mode: Mode) -> Result<OwnedFd, Error> {
    crate::fds::resolve::open_without_proc_links(path, flags, mode).map_err(|e| match e.errno() {
        libc::EACCES => denied(path, e),
        _ => e,
    })
}

/// `EACCES` for `path`: [`Error::Confined`] when the process is confined
/// (the likely reason, and the one a VMM author needs told), else `e`.
fn denied(path: &Path, e: Error) -> Error {
    if crate::fds::confine::is_confined() {
        Error::Confined(path.to_string_lossy().into_owned())
    } else {
        e
    }
}

/// The procfs rule (see the module doc): closes `fd` and refuses it when
/// it is on procfs, or when its filesystem cannot be told.
fn refuse_procfs(fd: OwnedFd, path: &Path) -> Result<OwnedFd, Error> {
    if crate::fds::resolve::on_procfs(&fd) {
        return Err(Error::ProcfsPath(path.to_string_lossy().into_owned()));
    }
    Ok(fd)
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

fn access_of(flags: OFlag) -> OFlag {
    flags & OFlag::O_ACCMODE
}

fn access_name(acc: OFlag) -> &'static str {
    match acc {
        a if a == OFlag::O_RDONLY => "O_RDONLY",
        a if a == OFlag::O_WRONLY => "O_WRONLY",
        a if a == OFlag::O_RDWR => "O_RDWR",
        _ => "invalid access mode",
    }
}

/// The access rule of `open(2)` applied to an fd that already exists.
fn check_access(have: OFlag, want: OFlag) -> Result<(), Error> {
    if want.contains(OFlag::O_PATH) {
        return Ok(());
    }
    if have.contains(OFlag::O_PATH) {
        return Err(Error::PathOnlyFd);
    }
    let (have_acc, want_acc) = (access_of(have), access_of(want));
    if want_acc == OFlag::O_ACCMODE {
        return Err(Error::InvalidArgument("flags: O_ACCMODE bits are all set"));
    }
    let ok = have_acc == OFlag::O_RDWR || have_acc == want_acc;
    if ok {
        Ok(())
    } else {
        Err(Error::AccessMode { wanted: access_name(want_acc), have: access_name(have_acc) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;
    use std::os::fd::{AsFd, AsRawFd};

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
        for acc in [libc::O_RDONLY, libc::O_RDWR] {
            let e = ctx.open("/dev/fd/2", acc | libc::O_TMPFILE, 0o600).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "O_TMPFILE never dups a passed directory");
        }
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
        for p in [
            "/proc/self/fd/0",
            "/proc/thread-self/fd/0",
            own.as_str(),
            "/dev/stdin",
            "/dev//fd/0",
            "/dev/./fd/0",
            link.as_str(),
            via_dir.as_str(),
        ] {
            let e = open(None, p, libc::O_RDONLY, 0).unwrap_err();
            assert_eq!(e.errno(), libc::EPERM, "{p}: {e}");
        }
        let e = open(None, "/dev/fd/01", libc::O_RDONLY, 0).unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn nothing_on_procfs_opens() {
        let _leaks = FdLeakCheck::new();
        let pid = std::process::id();
        let own = format!("/proc/{pid}/maps");
        for p in [
            "/proc/self/mem",
            "/proc/self/environ",
            "/proc/thread-self/status",
            "/proc",
            "/proc/1",
            "/proc/1/status",
            "/proc/net/dev",
            &own,
            "/proc/cpuinfo",
            "/proc/sys/kernel/ostype",
            "/proc/self/root/proc/cpuinfo",
        ] {
            for flags in [libc::O_RDONLY, libc::O_PATH] {
                let e = open(None, p, flags, 0).unwrap_err();
                assert_eq!(e.errno(), libc::EPERM, "{p} {flags:#o}: {e}");
            }
        }
        let e = open(None, "/proc/cpuinfo", libc::O_RDONLY, 0).unwrap_err();
        assert!(e.to_string().contains("procfs"), "{e}");
    }

    #[test]
    fn path_only_views_by_open_tree_and_by_procfs_agree() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let f = nix::fcntl::open("Cargo.toml", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        for fd in [&r, &w, &f] {
            let a = path_only_by_open_tree(fd.as_fd()).unwrap();
            let b = path_only_by_procfs(fd.as_fd()).unwrap();
            for p in [&a, &b] {
                assert!(flags_of(p).contains(OFlag::O_PATH));
                assert!(cloexec(p));
                let (x, y) = (fstat(p).unwrap(), fstat(fd).unwrap());
                assert_eq!((x.st_dev, x.st_ino), (y.st_dev, y.st_ino), "same file");
            }
        }
    }

    #[test]
    fn access_rules() {
        let _leaks = FdLeakCheck::new();
        use OFlag as F;
        assert!(check_access(F::O_RDWR, F::O_RDONLY).is_ok());
        assert!(check_access(F::O_RDWR, F::O_WRONLY).is_ok());
        assert!(check_access(F::O_RDONLY, F::O_RDONLY).is_ok());
        assert!(check_access(F::O_RDONLY, F::O_RDWR).is_err());
        assert!(check_access(F::O_RDONLY, F::O_WRONLY).is_err());
        assert!(check_access(F::O_WRONLY, F::O_RDONLY).is_err());
        assert!(matches!(check_access(F::O_PATH, F::O_RDONLY), Err(Error::PathOnlyFd)));
        assert!(check_access(F::O_PATH, F::O_PATH).is_ok());
        assert_eq!(Error::AccessMode { wanted: "", have: "" }.errno(), libc::EACCES);
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
