//! Security cases of opening client-supplied paths and fds.
//!
//! Every path is tried through each entry point a monitor may use:
//! `fdctx::fds::open::open` (with and without a context), `Context::open`, and
//! the C ABI `fdctx_open`. A path that would reach the process's own
//! descriptors must be refused (`EPERM`, or `EINVAL` for a malformed
//! `/dev/fd/...`), whatever its spelling (the rules of `fdctx::fds::fdpath` and
//! `fdctx::fds::open`): `/proc/<pid>/...`, `/proc/<pid>/task/<tid>/...`, magic
//! links inside `/proc`, symlinks to any of these, chains of symlinked
//! directories, relative paths through a symlink; and nothing on procfs
//! opens at all, wherever it is mounted (a bind mount of `/proc/<pid>` at a
//! path without digits, in a private user and mount namespace). Then the
//! fd checks of `fdctx::fds::open::open`: `O_PATH` fds, access modes, the
//! sender's `O_NONBLOCK`, `O_TRUNC` on files and non-files, and the same
//! file sent twice.
//!
//! Every test counts the process's open fds before and after.

mod common;

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use common::fdacct::{ino_of, marked, Marked, Tally};
use common::fdcount::FdLeakCheck;
use common::{cloexec, flags_of, gettid, pipe, set_nonblocking, tmpdir};
use fdctx::monitor::send::send_with_fds;
use fdctx::testing::ffi;
use fdctx::{Connection, Context, Framing, Limits, Message};
use nix::fcntl::{FcntlArg, OFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

// ---------------------------------------------------------------------------
// Helpers

/// A context made through the C ABI holding the read ends of `ms` (the
/// context owns them), usable from Rust as `&Context` and from C.
struct CCtx(*mut ffi::fdctx);

impl CCtx {
    fn with(fds: Vec<OwnedFd>) -> CCtx {
        let raw: Vec<RawFd> = fds.into_iter().map(IntoRawFd::into_raw_fd).collect();
        let ctx = ffi::fdctx_new();
        assert!(!ctx.is_null());
        // SAFETY: a live context; the fds are handed over.
        assert_eq!(unsafe { ffi::fdctx_adopt(ctx, raw.as_ptr(), raw.len()) }, raw.len() as i32);
        CCtx(ctx)
    }
    fn get(&self) -> &Context {
        // SAFETY: live until finish() below.
        unsafe { &*self.0 }.context()
    }
    fn finish(self) -> i32 {
        // SAFETY: made by fdctx_new, finished once.
        unsafe { ffi::fdctx_finish(self.0) }
    }
}

fn cstring(path: &[u8]) -> CString {
    CString::new(path).unwrap()
}

/// Opens `path` through every entry point; returns each result as an
/// owned fd or a positive errno.
fn open_all(ctx: &CCtx, path: &[u8], flags: i32) -> Vec<(&'static str, Result<OwnedFd, i32>)> {
    let p = Path::new(OsStr::from_bytes(path));
    let mut out = vec![
        ("open::open(ctx)", fdctx::fds::open::open(Some(ctx.get()), p, flags, 0).map_err(|e| e.errno())),
        ("Context::open", ctx.get().open(p, flags, 0).map_err(|e| e.errno())),
    ];
    if !path.contains(&0) {
        let c = cstring(path);
        // SAFETY: live context, NUL-terminated path.
        let r = unsafe { ffi::fdctx_open(ctx.0, c.as_ptr(), flags, 0) };
        // SAFETY: a non-negative result is a new fd the caller owns.
        out.push(("fdctx_open", if r >= 0 { Ok(unsafe { OwnedFd::from_raw_fd(r) }) } else { Err(-r) }));
    }
    out
}

/// Asserts that every entry point refuses `path` with `errno`, with and
/// without a context.
fn refused(ctx: &CCtx, path: impl AsRef<[u8]>, flags: i32, errno: i32) {
    let path = path.as_ref();
    let show = String::from_utf8_lossy(path).into_owned();
    for (via, r) in open_all(ctx, path, flags) {
        match r {
            Ok(fd) => {
                panic!("{via}({show:?}) opened {:?}", std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())))
            }
            Err(e) => assert_eq!(e, errno, "{via}({show:?}): errno {e}, want {errno}"),
        }
    }
    if !path.starts_with(b"/dev/fd/") {
        let r = fdctx::fds::open::open(None, Path::new(OsStr::from_bytes(path)), flags, 0);
        assert_eq!(r.map(drop).map_err(|e| e.errno()), Err(errno), "open::open(None, {show:?})");
    }
}

/// Asserts that every entry point opens `path`; returns the fds.
fn opened(ctx: &CCtx, path: impl AsRef<[u8]>, flags: i32) -> Vec<OwnedFd> {
    let path = path.as_ref();
    open_all(ctx, path, flags)
        .into_iter()
        .map(|(via, r)| r.unwrap_or_else(|e| panic!("{via}({:?}): errno {e}", String::from_utf8_lossy(path))))
        .collect()
}

/// `abs` as a path relative to the current directory (through `..` up to
/// the root), without changing the current directory.
fn relative(abs: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut rel = PathBuf::new();
    for _ in cwd.components().skip(1) {
        rel.push("..");
    }
    rel.push(abs.strip_prefix("/").unwrap());
    rel
}

fn link(target: impl AsRef<Path>, at: &Path) -> String {
    std::os::unix::fs::symlink(target, at).unwrap();
    at.display().to_string()
}

// ---------------------------------------------------------------------------
// Paths that reach the process's own descriptors

#[test]
fn lexical_spellings_of_own_fds_are_refused() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::lexical_spellings_of_own_fds_are_refused");
    let ms = marked(1);
    let mut ms = ms;
    let ctx = CCtx::with(vec![ms[0].read.take().unwrap()]);
    t.sent += 1;
    let pid = std::process::id();
    let tid = gettid();
    let eperm = [
        "/proc/self/fd/0".to_string(),
        "/proc/self/fd/".into(),
        "/proc/self/fd".into(),
        "/proc/thread-self/fd/0".into(),
        format!("/proc/{pid}/fd/0"),
        format!("/proc/{pid}/fd/1"),
        format!("/proc/{pid}/task/{tid}/fd/0"),
        format!("/proc/self/task/{tid}/fd/0"),
        format!("/proc/thread-self/../{pid}/fd/0"),
        "/proc/1/fd/0".into(),
        "/proc/self/fdinfo/0".into(),
        format!("/proc/self/task/{tid}/fdinfo/0"),
        "/proc//self//fd//0".into(),
        "/proc/./self/./fd/./0".into(),
        "/dev/stdin".into(),
        "/dev/stdout".into(),
        "/dev/stderr".into(),
        "/dev/stdin/".into(),
        "/dev//fd/0".into(),
        "/dev/./fd/0".into(),
        "//dev/fd/0".into(),
        "/./dev/fd/0".into(),
        "/tmp/../dev/fd/0".into(),
        "/dev/../dev/fd/0".into(),
        "/../../dev/fd/0".into(),
        "/dev/fd//0".into(),
    ];
    for p in &eperm {
        t.scenarios += 1;
        // "/dev/fd//0" starts with the fd prefix: it is a malformed fd path.
        let errno = if p.starts_with("/dev/fd/") { libc::EINVAL } else { libc::EPERM };
        refused(&ctx, p, libc::O_RDONLY, errno);
        refused(&ctx, p, libc::O_PATH, errno);
    }
    for p in [
        "/dev/fd/00",
        "/dev/fd/01",
        "/dev/fd/+0",
        "/dev/fd/-0",
        "/dev/fd/ 0",
        "/dev/fd/0 ",
        "/dev/fd/0/",
        "/dev/fd/0/.",
        "/dev/fd/0x0",
        "/dev/fd/",
        "/dev/fd",
        "/dev/fd/../fd/0",
        "/dev/fd/./0",
        "/dev/fd/99999999999999999999999",
        "/dev/fd/١",
    ] {
        t.scenarios += 1;
        refused(&ctx, p, libc::O_RDONLY, libc::EINVAL);
    }
    // Non-UTF-8 bytes (C callers) and embedded NULs (Rust callers).
    for (p, errno) in [
        (&b"/dev/fd/\xff"[..], libc::EINVAL),
        (b"/dev/fd/0\xff", libc::EINVAL),
        (b"/proc/self/fd/\xff", libc::EPERM),
        (b"/dev/\xff/../fd/0", libc::EPERM),
        (b"/dev/fd/0\0", libc::EINVAL),
        (b"/tmp/x\0/../../proc/self/fd/0", libc::EPERM),
    ] {
        t.scenarios += 1;
        refused(&ctx, p, libc::O_RDONLY, errno);
    }
    // A well-formed index is this command's fd, never the process's.
    t.scenarios += 1;
    refused(&ctx, "/dev/fd/1", libc::O_RDONLY, libc::EBADF);
    refused(&ctx, "/dev/fd/3", libc::O_RDONLY, libc::EBADF);
    for fd in opened(&ctx, "/dev/fd/0", libc::O_RDONLY) {
        assert_eq!(ino_of(fd.as_fd()), ms[0].ino, "/dev/fd/0 is the context's fd 0");
        assert!(cloexec(fd.as_fd()));
    }
    assert_eq!(
        fdctx::fds::open::open(None, "/dev/fd/0", libc::O_RDONLY, 0).map(drop).map_err(|e| e.errno()),
        Err(libc::EBADF),
        "no context: no fd 0"
    );
    assert_eq!(ctx.finish(), 0);
    t.delivered += 1;
    assert_eq!(t.settle(&ms), 0);
    t.report();
}

#[test]
fn symlinks_and_magic_links_into_own_fds_are_refused() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::symlinks_and_magic_links_into_own_fds_are_refused");
    let ctx = CCtx::with(Vec::new());
    let d = tmpdir("links");
    let pid = std::process::id();
    let tid = gettid();
    let ds = d.display().to_string();
    let mut paths = vec![
        // Magic links inside /proc on the way.
        "/proc/self/root/proc/self/fd/0".to_string(),
        "/proc/self/root/dev/fd/0".into(),
        "/proc/self/root/dev/stdin".into(),
        format!("/proc/{pid}/root/proc/{pid}/fd/0"),
        format!("/proc/self/cwd/{}", relative(Path::new("/proc/self/fd/0")).display()),
        "/proc/self/exe".into(),
        // Symlinks to fds and to the fd directories.
        link("/proc/self/fd/0", &d.join("to-fd")),
        link(format!("/proc/{pid}/fd/1"), &d.join("to-pid-fd")),
        link(format!("/proc/{pid}/task/{tid}/fd/0"), &d.join("to-task-fd")),
        link("/dev/fd/0", &d.join("to-dev-fd-0")),
        link("/dev/stdin", &d.join("to-stdin")),
        format!("{}/0", link("/dev/fd", &d.join("to-dev-fd"))),
        format!("{}/0", link("/proc/self/fd", &d.join("to-self-fd"))),
        format!("{}/fd/0", link("/proc/self", &d.join("to-self"))),
        format!("{}/self/fd/0", link("/proc", &d.join("to-proc"))),
        format!("{}/thread-self/fd/0", d.join("to-proc").display()),
        format!("{}/fd/0", link("/dev", &d.join("to-dev"))),
        format!("{}/stdout", d.join("to-dev").display()),
        format!("{}/root/dev/fd/0", link(format!("/proc/{pid}"), &d.join("to-pid"))),
        // Nothing on procfs opens, system-wide files included.
        "/proc/cpuinfo".into(),
        link("/proc/cpuinfo", &d.join("to-cpuinfo")),
        format!("{}/cpuinfo", d.join("to-proc").display()),
    ];
    // A chain of symlinked directories: a -> b -> c -> /proc/self/fd.
    link("/proc/self/fd", &d.join("c"));
    link(d.join("c"), &d.join("b"));
    link("b", &d.join("a"));
    paths.push(format!("{ds}/a/0"));
    // Relative links and relative paths, without changing directory.
    std::fs::create_dir(d.join("sub")).unwrap();
    link("../to-dev-fd", &d.join("sub/rel"));
    paths.push(format!("{ds}/sub/rel/0"));
    link("/", &d.join("root"));
    paths.push(relative(&d.join("to-fd")).display().to_string());
    paths.push(format!("{}/0", relative(&d.join("a")).display()));
    paths.push(format!("{}/dev/fd/0", relative(&d.join("root")).display()));
    paths.push(format!("{}/proc/self/fd/0", relative(&d.join("root")).display()));
    for p in &paths {
        t.scenarios += 1;
        refused(&ctx, p, libc::O_RDONLY, libc::EPERM);
        refused(&ctx, p, libc::O_PATH, libc::EPERM);
        refused(&ctx, p, libc::O_WRONLY | libc::O_CREAT, libc::EPERM);
    }
    // A genuine symlink loop is a loop, not an own-fd path.
    link("loop2", &d.join("loop1"));
    link("loop1", &d.join("loop2"));
    t.scenarios += 1;
    refused(&ctx, format!("{ds}/loop1"), libc::O_RDONLY, libc::ELOOP);
    // Ordinary files through symlinks still open.
    std::fs::write(d.join("file"), b"data").unwrap();
    link("file", &d.join("to-file"));
    link(d.join("sub"), &d.join("to-sub"));
    std::fs::write(d.join("sub/inner"), b"x").unwrap();
    for p in [
        format!("{ds}/to-file"),
        format!("{ds}/to-sub/inner"),
        relative(&d.join("to-file")).display().to_string(),
        "/dev/null".into(),
    ] {
        t.scenarios += 1;
        for fd in opened(&ctx, &p, libc::O_RDONLY) {
            assert!(cloexec(fd.as_fd()), "{p}");
        }
    }
    assert_eq!(ctx.finish(), 0);
    std::fs::remove_dir_all(&d).unwrap();
    t.report();
}

#[test]
fn the_fd_directories_themselves_are_unreachable() {
    // A directory fd of /proc/<pid>/fd hands the process's whole fd table
    // to whoever opens entries beneath it (a 9p/virtio-fs export rooted at
    // a client path, say). The lexical spelling is refused; so must every
    // symlink that leads to it.
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::the_fd_directories_themselves_are_unreachable");
    let ctx = CCtx::with(Vec::new());
    let d = tmpdir("fddirs");
    let pid = std::process::id();
    let paths = [
        "/proc/self/fd".to_string(),
        "/proc/thread-self/fd".into(),
        "/dev/fd".into(),
        link("/proc/self/fd", &d.join("l-self-fd")),
        link("/dev/fd", &d.join("l-dev-fd")),
        format!("{}/fd", link("/proc/self", &d.join("l-self"))),
        format!("{}/{pid}/fd", link("/proc", &d.join("l-proc"))),
        format!("{}/fd", link("/dev", &d.join("l-dev"))),
        // fdinfo is refused when spelled out (it tells every fd's flags and
        // offset); the same through a symlink.
        link("/proc/self/fdinfo", &d.join("l-fdinfo")),
        link("/proc/self/fdinfo/0", &d.join("l-fdinfo-0")),
        format!("{}/fdinfo/1", d.join("l-self").display()),
    ];
    for p in &paths {
        t.scenarios += 1;
        let errno = if p == "/dev/fd" { libc::EINVAL } else { libc::EPERM };
        let dir = if p.contains("fdinfo/") || p.ends_with("-0") { 0 } else { libc::O_DIRECTORY };
        refused(&ctx, p, libc::O_RDONLY | dir, errno);
        refused(&ctx, p, libc::O_PATH, errno);
    }
    assert_eq!(ctx.finish(), 0);
    std::fs::remove_dir_all(&d).unwrap();
    t.report();
}

// ---------------------------------------------------------------------------
// The fd checks of /dev/fd/N (fdctx::fds::open)

#[test]
fn o_path_fds_serve_only_o_path() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::o_path_fds_serve_only_o_path");
    let d = tmpdir("opath");
    std::fs::write(d.join("f"), b"secret").unwrap();
    let file = nix::fcntl::open(&d.join("f"), OFlag::O_PATH | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).unwrap();
    let dir =
        nix::fcntl::open(&d, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
            .unwrap();
    // Through a real socket: O_PATH fds travel with SCM_RIGHTS.
    let (client, server) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
    send_with_fds(
        client.as_fd(),
        br#"{"execute":"x","arguments":{"f":"/dev/fd/0","d":"/dev/fd/1"}}"#,
        &[file.as_fd(), dir.as_fd()],
    )
    .unwrap();
    drop((file, dir, client));
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let mut m: Message = conn.recv().unwrap().unwrap();
    assert_eq!(m.status(), Ok(()));
    t.scenarios += 1;
    t.sent += 2;
    let raw: Vec<OwnedFd> = (0..2).map(|i| m.fds_mut().take(i).unwrap()).collect();
    let ctx = CCtx::with(raw);
    for flags in [
        libc::O_RDONLY,
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_NONBLOCK,
        libc::O_WRONLY | libc::O_TRUNC,
    ] {
        refused(&ctx, "/dev/fd/0", flags, libc::EACCES);
        refused(&ctx, "/dev/fd/1", flags | libc::O_DIRECTORY, libc::EACCES);
    }
    for fd in opened(&ctx, "/dev/fd/0", libc::O_PATH) {
        assert!(flags_of(fd.as_fd()).contains(OFlag::O_PATH));
        assert!(nix::unistd::read(&fd, &mut [0u8; 8]).is_err(), "an O_PATH fd cannot read");
    }
    refused(&ctx, "/dev/fd/0", libc::O_PATH | libc::O_DIRECTORY, libc::ENOTDIR);
    drop(opened(&ctx, "/dev/fd/1", libc::O_PATH | libc::O_DIRECTORY));
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"secret", "O_TRUNC did nothing");
    assert_eq!(ctx.finish(), 0);
    t.delivered += 2;
    drop((m, conn));
    std::fs::remove_dir_all(&d).unwrap();
    t.report();
}

#[test]
fn read_only_fds_are_not_opened_for_writing() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::read_only_fds_are_not_opened_for_writing");
    let d = tmpdir("ro");
    std::fs::write(d.join("disk"), b"image").unwrap();
    let open = |flags: OFlag| {
        nix::fcntl::open(&d.join("disk"), flags | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).unwrap()
    };
    let ro = open(OFlag::O_RDONLY);
    let wo = open(OFlag::O_WRONLY);
    let rw = open(OFlag::O_RDWR);
    let (pr, pw) = pipe();
    let mut mk = marked(1);
    let ctx = CCtx::with(vec![ro, wo, rw, pr, pw, mk[0].read.take().unwrap()]);
    t.scenarios += 1;
    t.sent += 6;
    // Read-only file and pipe read end: no write access of any kind.
    for idx in ["/dev/fd/0", "/dev/fd/3", "/dev/fd/5"] {
        for flags in [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_WRONLY | libc::O_TRUNC,
            libc::O_RDWR | libc::O_APPEND,
            libc::O_WRONLY | libc::O_CREAT,
        ] {
            refused(&ctx, idx, flags, libc::EACCES);
        }
    }
    // Write-only file and pipe write end: no reading.
    for idx in ["/dev/fd/1", "/dev/fd/4"] {
        refused(&ctx, idx, libc::O_RDONLY, libc::EACCES);
        refused(&ctx, idx, libc::O_RDWR, libc::EACCES);
    }
    // The impossible access mode.
    refused(&ctx, "/dev/fd/2", libc::O_ACCMODE, libc::EINVAL);
    refused(&ctx, "/dev/fd/2", libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, libc::EEXIST);
    // O_TRUNC with a read-only request leaves the file alone.
    for fd in opened(&ctx, "/dev/fd/0", libc::O_RDONLY | libc::O_TRUNC) {
        assert!(nix::unistd::write(&fd, b"x").is_err(), "a read-only fd cannot write");
    }
    assert_eq!(std::fs::read(d.join("disk")).unwrap(), b"image");
    // A read-write fd serves every mode, and O_TRUNC truncates.
    drop(opened(&ctx, "/dev/fd/2", libc::O_RDONLY));
    drop(opened(&ctx, "/dev/fd/2", libc::O_WRONLY));
    drop(opened(&ctx, "/dev/fd/2", libc::O_RDWR | libc::O_TRUNC));
    assert_eq!(std::fs::read(d.join("disk")).unwrap(), b"");
    assert_eq!(ctx.finish(), 0);
    t.delivered += 6;
    assert_eq!(t.settle(&mk), 0);
    std::fs::remove_dir_all(&d).unwrap();
    t.report();
}

#[test]
fn the_senders_o_nonblock_is_not_inherited() {
    // The sender keeps O_NONBLOCK on its file description (shared with the
    // received fd): the monitor's opened fd is blocking unless it asks.
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::the_senders_o_nonblock_is_not_inherited");
    let (client, server) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let mut ms = marked(1);
    let (sa, sb) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let pipe_r = ms[0].read.take().unwrap();
    set_nonblocking(pipe_r.as_fd(), true);
    set_nonblocking(sa.as_fd(), true);
    send_with_fds(
        client.as_fd(),
        br#"{"execute":"x","arguments":{"p":"/dev/fd/0","s":"/dev/fd/1"}}"#,
        &[pipe_r.as_fd(), sa.as_fd()],
    )
    .unwrap();
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let mut m = conn.recv().unwrap().unwrap();
    assert_eq!(m.status(), Ok(()));
    // The message's context, reachable from Rust and through the C ABI.
    let mut h = ffi::fdctx::lend(std::mem::take(m.fds_mut()));
    t.scenarios += 1;
    t.sent += 2;
    for idx in ["/dev/fd/0", "/dev/fd/1"] {
        let acc = if idx.ends_with('0') { libc::O_RDONLY } else { libc::O_RDWR };
        // Rust entry points on the message's own context.
        let a = h.context().open(idx, acc, 0).unwrap();
        assert!(!flags_of(a.as_fd()).contains(OFlag::O_NONBLOCK), "{idx}: blocking unless asked");
        // The sender's copy shares the description: set it back, then ask.
        set_nonblocking(if idx.ends_with('0') { pipe_r.as_fd() } else { sa.as_fd() }, true);
        let b = fdctx::fds::open::open(Some(h.context()), idx, acc, 0).unwrap();
        assert!(!flags_of(b.as_fd()).contains(OFlag::O_NONBLOCK), "{idx}: open::open clears it too");
        let c = h.context().open(idx, acc | libc::O_NONBLOCK, 0).unwrap();
        assert!(flags_of(c.as_fd()).contains(OFlag::O_NONBLOCK), "{idx}: O_NONBLOCK when asked");
        set_nonblocking(if idx.ends_with('0') { pipe_r.as_fd() } else { sa.as_fd() }, true);
        // And through the C ABI.
        let ctx: *mut ffi::fdctx = &mut h;
        let path = cstring(idx.as_bytes());
        // SAFETY: the message's context is live; the result is ours.
        let fd = unsafe { ffi::fdctx_open(ctx, path.as_ptr(), acc, 0) };
        assert!(fd >= 0);
        // SAFETY: a new fd owned by the caller.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        assert!(!flags_of(fd.as_fd()).contains(OFlag::O_NONBLOCK), "{idx}: fdctx_open clears it");
        assert!(cloexec(fd.as_fd()));
    }
    // A blocking read really blocks: nothing to read, so it must wait for
    // the writer rather than fail with EAGAIN.
    let r = h.context().open("/dev/fd/0", libc::O_RDONLY, 0).unwrap();
    let reader = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        nix::unistd::read(&r, &mut b).map(|n| (n, b[0]))
    });
    std::thread::sleep(std::time::Duration::from_millis(50));
    nix::unistd::write(&ms[0].write, b"k").unwrap();
    assert_eq!(reader.join().unwrap(), Ok((1, b'k')));
    drop((pipe_r, sa, sb, client));
    t.delivered += 2;
    assert_eq!(h.into_context().finish(), 0);
    drop(m);
    drop(conn);
    assert_eq!(t.settle(&ms), 0);
    t.report();
}

#[test]
fn the_same_file_sent_twice_in_one_command() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::the_same_file_sent_twice_in_one_command");
    // 1. The same fd twice in one SCM_RIGHTS array; 2. the same file
    //    opened twice (two descriptions); 3. the same fd in two commands.
    let (client, server) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let mut a = marked(1);
    let ra = a[0].read.take().unwrap();
    send_with_fds(
        client.as_fd(),
        br#"{"execute":"twice","arguments":{"x":"/dev/fd/0","y":"/dev/fd/1"}}"#,
        &[ra.as_fd(), ra.as_fd()],
    )
    .unwrap();
    send_with_fds(client.as_fd(), br#"{"execute":"again","arguments":{"x":"/dev/fd/0"}}"#, &[ra.as_fd()]).unwrap();
    drop(ra);
    t.scenarios += 2;
    t.sent += 3;
    let mut m1 = conn.recv().unwrap().unwrap();
    let m2 = conn.recv().unwrap().unwrap();
    assert_eq!((m1.status(), m1.fds().count()), (Ok(()), 2));
    let (f0, f1) = (m1.fds().get(0).unwrap().as_raw_fd(), m1.fds().get(1).unwrap().as_raw_fd());
    assert_ne!(f0, f1, "two fds");
    assert_eq!(ino_of(m1.fds().get(0).unwrap()), a[0].ino);
    assert_eq!(ino_of(m1.fds().get(1).unwrap()), a[0].ino);
    // Both usable: each opens, each reads.
    let o0 = m1.fds().open("/dev/fd/0", libc::O_RDONLY, 0).unwrap();
    let o1 = m1.fds().open("/dev/fd/1", libc::O_RDONLY, 0).unwrap();
    nix::unistd::write(&a[0].write, b"ab").unwrap();
    let mut b = [0u8; 1];
    assert_eq!(nix::unistd::read(&o0, &mut b).unwrap(), 1);
    assert_eq!(nix::unistd::read(&o1, &mut b).unwrap(), 1);
    drop((o0, o1));
    // Taking one leaves the other to finish.
    let taken = m1.fds_mut().take(1).unwrap();
    assert_eq!(m1.finish(), 0);
    // SAFETY: F_GETFD only asks whether the number is open; nothing else
    // opens fds meanwhile (the leak check serialises these tests).
    assert_eq!(unsafe { libc::fcntl(f0, libc::F_GETFD) }, -1, "index 0 closed at finish");
    assert!(a[0].reader_open(), "the taken copy and the other command's copy remain");
    drop(taken);
    assert!(a[0].reader_open(), "the other command still holds its copy");
    assert_eq!(m2.fds().count(), 1);
    assert_eq!(m2.finish(), 1);
    assert!(!a[0].reader_open(), "every copy closed");
    t.delivered += 3;

    // Two descriptions of one file, one of them O_NONBLOCK.
    let d = tmpdir("twice");
    std::fs::write(d.join("img"), b"0123456789").unwrap();
    let p = d.join("img");
    let f1 = nix::fcntl::open(&p, OFlag::O_RDWR | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK, nix::sys::stat::Mode::empty())
        .unwrap();
    let f2 = nix::fcntl::open(&p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).unwrap();
    send_with_fds(
        client.as_fd(),
        br#"{"execute":"two","arguments":{"x":"/dev/fd/0","y":"/dev/fd/1"}}"#,
        &[f1.as_fd(), f2.as_fd()],
    )
    .unwrap();
    drop((f1, f2));
    t.scenarios += 1;
    t.sent += 2;
    let m = conn.recv().unwrap().unwrap();
    let w = m.fds().open("/dev/fd/0", libc::O_RDWR, 0).unwrap();
    let r = m.fds().open("/dev/fd/1", libc::O_RDONLY, 0).unwrap();
    assert!(m.fds().open("/dev/fd/1", libc::O_RDWR, 0).is_err(), "each fd keeps its own access mode");
    assert!(!flags_of(w.as_fd()).contains(OFlag::O_NONBLOCK));
    nix::sys::uio::pwrite(&w, b"AB", 0).unwrap();
    let mut buf = [0u8; 2];
    nix::sys::uio::pread(&r, &mut buf, 0).unwrap();
    assert_eq!(&buf, b"AB", "same file");
    drop((w, r));
    assert_eq!(m.finish(), 0);
    t.delivered += 2;
    drop((conn, client));
    std::fs::remove_dir_all(&d).unwrap();
    assert_eq!(t.settle(&a), 0);
    t.report();
}

#[test]
fn received_fds_and_opened_fds_are_close_on_exec() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::received_fds_and_opened_fds_are_close_on_exec");
    let (client, server) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let mut ms: Vec<Marked> = marked(3);
    let reads: Vec<OwnedFd> = ms.iter_mut().map(|m| m.read.take().unwrap()).collect();
    // The sender's copies are not close-on-exec.
    for r in &reads {
        nix::fcntl::fcntl(r, FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
    }
    let b: Vec<BorrowedFd<'_>> = reads.iter().map(|f| f.as_fd()).collect();
    send_with_fds(client.as_fd(), br#"{"execute":"x","arguments":{"f":"/dev/fd/2"}}"#, &b).unwrap();
    drop(reads);
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let mut m = conn.recv().unwrap().unwrap();
    t.scenarios += 1;
    t.sent += 3;
    for i in 0..3 {
        assert!(cloexec(m.fds().get(i).unwrap()), "received fd {i}");
    }
    let dup = m.fds().dup(0).unwrap();
    let opened = m.fds().open("/dev/fd/1", libc::O_RDONLY, 0).unwrap();
    let taken = m.fds_mut().take(2).unwrap();
    for fd in [&dup, &opened, &taken] {
        assert!(cloexec(fd.as_fd()));
    }
    drop((dup, opened, taken));
    assert_eq!(m.finish(), 0);
    t.delivered += 3;
    drop((conn, client));
    assert_eq!(t.settle(&ms), 0);
    t.report();
}

/// The master and slave ends of a new pseudo-terminal.
fn pty() -> (OwnedFd, OwnedFd) {
    // SAFETY: posix_openpt returns a new fd (or -1) that nothing else owns;
    // grantpt, unlockpt and ptsname_r only read it and fill `name`.
    unsafe {
        let raw = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(raw >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = OwnedFd::from_raw_fd(raw);
        assert_eq!(libc::grantpt(raw), 0);
        assert_eq!(libc::unlockpt(raw), 0);
        let mut name = [0 as libc::c_char; 64];
        assert_eq!(libc::ptsname_r(raw, name.as_mut_ptr(), name.len()), 0);
        let slave = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(slave >= 0, "open pty slave: {}", std::io::Error::last_os_error());
        (master, OwnedFd::from_raw_fd(slave))
    }
}

#[test]
fn o_trunc_is_ignored_on_pipes_ttys_and_char_devices_as_open_does() {
    // QEMU's chardev file backend opens its path O_WRONLY|O_CREAT|O_TRUNC;
    // given /dev/fd/N for a pipe, /dev/null or a tty, open(2) succeeds and
    // ignores O_TRUNC (fs/namei.c, do_open: only a regular file is
    // truncated), so fdctx_open must too. A regular file is truncated.
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::o_trunc_is_ignored_on_pipes_ttys_and_char_devices_as_open_does");
    let d = tmpdir("trunc");
    std::fs::write(d.join("log"), b"old contents").unwrap();
    let file =
        nix::fcntl::open(&d.join("log"), OFlag::O_WRONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).unwrap();
    let null =
        nix::fcntl::open("/dev/null", OFlag::O_WRONLY | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()).unwrap();
    let (master, slave) = pty();
    let (sa, sb) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let (pr, pw) = pipe();
    let mut mk = marked(1);
    let mr = mk[0].read.take().unwrap();
    // The pipe holds data: a truncation attempt must not touch it.
    nix::unistd::write(&pw, b"queued").unwrap();
    let ctx = CCtx::with(vec![pw, null, slave, sa, file, mr]);
    t.scenarios += 1;
    t.sent += 6;
    for flags in
        [libc::O_WRONLY | libc::O_TRUNC, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, libc::O_RDWR | libc::O_TRUNC]
    {
        for idx in ["/dev/fd/0", "/dev/fd/1", "/dev/fd/2", "/dev/fd/3"] {
            if flags & libc::O_ACCMODE == libc::O_RDWR && idx != "/dev/fd/2" && idx != "/dev/fd/3" {
                continue;
            }
            for fd in opened(&ctx, idx, flags) {
                nix::unistd::write(&fd, b"!").unwrap_or_else(|e| panic!("{idx} {flags:#o}: write: {e}"));
            }
        }
    }
    let mut buf = [0u8; 64];
    let n = nix::unistd::read(&pr, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"queued!!!!!!", "pipe data kept, writes appended");
    let n = nix::unistd::read(&master, &mut buf).unwrap();
    assert!(n > 0 && buf[..n].iter().all(|&b| b == b'!'), "tty got the writes");
    let n = nix::unistd::read(&sb, &mut buf).unwrap();
    assert!(n > 0, "socket got the writes");
    // The regular file is truncated, as open(2) would.
    drop(opened(&ctx, "/dev/fd/4", libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC));
    assert_eq!(std::fs::read(d.join("log")).unwrap(), b"");
    assert_eq!(ctx.finish(), 1, "only the marked fd was never used");
    t.delivered += 6;
    drop((pr, master, sb));
    assert_eq!(t.settle(&mk), 0);
    std::fs::remove_dir_all(&d).unwrap();
    t.report();
}

// ---------------------------------------------------------------------------
// procfs where no name tells: bind mounts in a private user+mount namespace

/// Set (to "1") for the helper run inside `unshare -rm`.
const NS_HELPER_ENV: &str = "FDCTX_TEST_PROCFS_NS_HELPER";

/// Makes `openat2(2)` fail with `ENOSYS` on the calling thread (a seccomp
/// filter, as a kernel before 5.6 or a container runtime would), so that
/// fdctx resolves paths with its own walk from then on.
fn deny_openat2_with_enosys() -> bool {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    return false;
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
        const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
        const RET_K: u16 = 0x06; // BPF_RET | BPF_K
        const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
        const ERRNO: u32 = 0x0005_0000; // SECCOMP_RET_ERRNO
        let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
        let prog = [
            f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
            f(JEQ_K, 0, 3, ARCH),
            f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
            f(JEQ_K, 0, 1, libc::SYS_openat2 as u32),
            f(RET_K, 0, 0, ERRNO | libc::ENOSYS as u32),
            f(RET_K, 0, 0, ALLOW),
        ];
        let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
        // SAFETY: prctl with plain integers, then with a pointer to a filter
        // program that outlives the call (the kernel copies it).
        unsafe {
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
                && libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const libc::sock_fprog) == 0
        }
    }
}

fn bind_mount(src: &str, dst: &Path) {
    let (s, d) = (cstring(src.as_bytes()), cstring(dst.as_os_str().as_bytes()));
    // SAFETY: NUL-terminated paths; no filesystem type or data.
    let r = unsafe { libc::mount(s.as_ptr(), d.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) };
    assert_eq!(r, 0, "bind {src} at {}: {}", dst.display(), std::io::Error::last_os_error());
}

#[test]
fn procfs_bound_at_paths_without_digits_is_refused() {
    // A client that can make a VMM open a bind mount of /proc/<pid> (or of
    // a task directory, or of one fdinfo file) at a path with no digits in
    // it must not get the VMM's memory, environment, maps or fd table:
    // the refusal follows the filesystem of the file opened, not its name.
    // Bind mounts need a private user and mount namespace: the same test
    // binary runs the helper below under `unshare -rm`.
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("security::procfs_bound_at_paths_without_digits_is_refused");
    let probe = std::process::Command::new("unshare").args(["-rm", "true"]).output();
    match probe {
        Err(e) => {
            println!("skip: unshare(1) cannot run ({e}): procfs bind mounts not tested");
            return t.report();
        }
        Ok(o) if !o.status.success() => {
            println!(
                "skip: the kernel refuses a private user+mount namespace here ({}): procfs bind mounts not tested",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return t.report();
        }
        Ok(_) => {}
    }
    let out = std::process::Command::new("unshare")
        .args(["-rm", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "procfs_ns_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env(NS_HELPER_ENV, "1")
        .env_remove("FDCTX_SUMMARY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("1 passed"), "helper failed:\n{stdout}\n{stderr}");
    // libtest prints the helper's lines after its "test ... " prefix.
    let ours = |l: &str| l.find("[ns] ").map(|i| l[i + 5..].to_owned());
    let n = stdout.lines().filter_map(ours).find_map(|l| l.strip_prefix("scenarios: ").map(str::to_owned));
    t.scenarios += n.expect("helper printed its count").trim().parse::<u64>().unwrap();
    println!("{}", stdout.lines().filter_map(ours).collect::<Vec<_>>().join("\n"));
    t.report();
}

/// Runs only as the helper of the test above, inside `unshare -rm`.
#[test]
#[ignore = "run by procfs_bound_at_paths_without_digits_is_refused in a private namespace"]
fn procfs_ns_helper() {
    if std::env::var_os(NS_HELPER_ENV).is_none() {
        return;
    }
    let _leaks = FdLeakCheck::new();
    // A tmpfs over /tmp, in this mount namespace only: every path below is
    // free of digits.
    let base = Path::new("/tmp");
    let (none, tmpfs, tmp) = (cstring(b"none"), cstring(b"tmpfs"), cstring(b"/tmp"));
    // SAFETY: NUL-terminated strings; no data.
    let r = unsafe { libc::mount(none.as_ptr(), tmp.as_ptr(), tmpfs.as_ptr(), 0, std::ptr::null()) };
    assert_eq!(r, 0, "tmpfs on /tmp: {}", std::io::Error::last_os_error());
    for dir in ["process", "thread", "fdinfo-dir", "plain"] {
        std::fs::create_dir(base.join(dir)).unwrap();
    }
    std::fs::write(base.join("fdinfo-entry"), b"").unwrap();
    std::fs::write(base.join("plain/file"), b"ok").unwrap();
    bind_mount("/proc/self", &base.join("process"));
    bind_mount("/proc/thread-self", &base.join("thread"));
    bind_mount("/proc/self/fdinfo", &base.join("fdinfo-dir"));
    bind_mount("/proc/self/fdinfo/0", &base.join("fdinfo-entry"));
    std::os::unix::fs::symlink("/tmp/process/environ", base.join("to-environ")).unwrap();
    std::os::unix::fs::symlink("process", base.join("to-process")).unwrap();
    // The bind mounts are what they claim: the monitor's own entries.
    let maps = std::fs::read_to_string(base.join("process/maps")).unwrap();
    assert!(maps.contains("[stack]"), "process/maps is this process's");

    let (r, w) = pipe();
    let ctx = CCtx::with(vec![r]);
    let mut paths: Vec<String> = Vec::new();
    for dir in ["/tmp/process", "/tmp/thread", "/tmp/to-process"] {
        for entry in ["mem", "environ", "maps", "cmdline", "status", "auxv", "fdinfo", "fd", "task", "", "."] {
            if entry == "task" && dir == "/tmp/thread" {
                continue;
            }
            paths.push(if entry.is_empty() { dir.to_string() } else { format!("{dir}/{entry}") });
        }
    }
    paths.extend([
        "/tmp/fdinfo-dir".into(),
        "/tmp/fdinfo-entry".into(),
        "/tmp/to-environ".into(),
        "/tmp/process/fd/".into(),
    ]);
    let mut scenarios = 0;
    for via in ["openat2", "the fallback walk"] {
        for p in &paths {
            assert!(!p.bytes().any(|b| b.is_ascii_digit()), "{p} has a digit");
            for flags in [libc::O_RDONLY, libc::O_PATH, libc::O_RDWR, libc::O_WRONLY | libc::O_TRUNC] {
                scenarios += 1;
                // EISDIR (directories asked for writing) is the kernel's
                // answer before ours, and also refuses.
                for (entry, r) in open_all(&ctx, p.as_bytes(), flags) {
                    match r {
                        Ok(fd) => panic!(
                            "{via}: {entry}({p}, {flags:#o}) opened {:?}",
                            std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                        ),
                        Err(e) => assert!(
                            e == libc::EPERM || (e == libc::EISDIR && flags & libc::O_ACCMODE != 0),
                            "{via}: {entry}({p}, {flags:#o}): errno {e}"
                        ),
                    }
                }
            }
            let e = fdctx::fds::open::open(None, p, libc::O_RDONLY, 0).unwrap_err();
            assert_eq!(e.errno(), libc::EPERM, "{via}: {p}: {e}");
        }
        // What a client may name still opens: its own fds and plain files.
        scenarios += 1;
        for flags in [libc::O_RDONLY, libc::O_PATH] {
            drop(opened(&ctx, "/dev/fd/0", flags));
        }
        drop(opened(&ctx, "/tmp/plain/file", libc::O_RDONLY));
        if via == "openat2" {
            if !deny_openat2_with_enosys() {
                println!(
                    "[ns] no seccomp filter here ({}): the fallback walk is not tested",
                    std::io::Error::last_os_error()
                );
                break;
            }
            let how = nix::fcntl::OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC);
            assert_eq!(nix::fcntl::openat2(nix::fcntl::AT_FDCWD, "/", how).map(drop), Err(nix::errno::Errno::ENOSYS));
        }
    }
    assert_eq!(ctx.finish(), 0);
    drop(w);
    println!("[ns] scenarios: {scenarios}");
    println!("[ns] {} paths on procfs without a digit refused, with openat2 and the fallback walk", paths.len());
}
