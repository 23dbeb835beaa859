//! Fault injection: the library under resource exhaustion, signals, dying
//! and hostile peers, and misuse of the C ABI.
//!
//! Every test counts the process's open fds before and after
//! ([`FdLeakCheck`]) and proves, fd by fd, that each fd it sent was either
//! delivered or closed by the library (marked pipes, see `common/fdacct.rs`).
//!
//! Defined C-ABI behaviour tested here: NULL arguments give `-EINVAL` (or
//! NULL / a no-op for the calls documented so); finishing a message's
//! context with `fdctx_finish` is refused; a context made current and then
//! finished is no longer current. Using a message or context after it was
//! finished, and finishing it twice, is undefined (documented in fdctx.h)
//! and is not exercised.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::{CStr, CString};
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fdacct::{marked, Marked, Tally};
use common::fdcount::FdLeakCheck;
use common::{errno_of, gettid, msg_inos, pending_out, recv, set_nonblocking, stream_pair};
use fdctx::monitor::send::send_with_fds;
use fdctx::testing::ffi;
use fdctx::{Connection, Framing, Limits, Message};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

// ---------------------------------------------------------------------------
// Heap accounting (for the endless command)

struct Counting;

static HEAP_NOW: AtomicIsize = AtomicIsize::new(0);
static HEAP_PEAK: AtomicIsize = AtomicIsize::new(0);

fn heap_add(n: isize) {
    let now = HEAP_NOW.fetch_add(n, Ordering::Relaxed) + n;
    HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only
// counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        heap_add(l.size() as isize);
        // SAFETY: forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        heap_add(l.size() as isize);
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        heap_add(-(l.size() as isize));
        // SAFETY: forwarded.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        heap_add(new as isize - l.size() as isize);
        // SAFETY: forwarded.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Starts a heap window: returns the current heap size and resets the peak.
fn heap_window() -> isize {
    let now = HEAP_NOW.load(Ordering::Relaxed);
    HEAP_PEAK.store(now, Ordering::Relaxed);
    now
}

// ---------------------------------------------------------------------------
// Helpers

/// One `sendmsg(2)` with the marked pipes' read ends attached; the test's
/// copies of those read ends are closed right after.
fn send_marked(sock: &OwnedFd, bytes: &[u8], fds: &mut [Marked]) {
    let owned: Vec<OwnedFd> = fds.iter_mut().map(|m| m.read.take().expect("read end")).collect();
    let raw: Vec<RawFd> = owned.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(bytes)], cmsgs, MsgFlags::MSG_NOSIGNAL, None).unwrap();
    assert_eq!(n, bytes.len());
}

fn inos(ms: &[Marked]) -> Vec<u64> {
    ms.iter().map(|m| m.ino).collect()
}

/// Asserts that none of `ms` is open any more, and counts them as closed
/// by the library.
fn all_closed(t: &mut Tally, ms: &[Marked], what: &str) {
    for (i, m) in ms.iter().enumerate() {
        assert!(!m.reader_open(), "{what}: fd {i} is still open");
    }
    t.closed += ms.len() as u64;
}

/// Counts delivered fds and checks they are open while the message lives.
fn delivered(t: &mut Tally, m: &Message, ms: &[Marked]) {
    assert_eq!(msg_inos(m), inos(ms), "the message holds exactly these fds, in order");
    for m in ms {
        assert!(m.reader_open(), "a delivered fd is open");
    }
    t.delivered += ms.len() as u64;
}

/// Restores `RLIMIT_NOFILE` when dropped (also on panic).
struct RlimitGuard {
    soft: u64,
    hard: u64,
}

impl RlimitGuard {
    fn new() -> RlimitGuard {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        RlimitGuard { soft, hard }
    }
    /// Lowers the soft limit so that exactly `room` more fds can be opened.
    fn room_for(&self, room: usize) {
        let open = common::fdcount::open_fds();
        let (mut free, mut limit) = (0, 0);
        while free < room {
            if !open.contains_key(&limit) {
                free += 1;
            }
            limit += 1;
        }
        // With room 0 the limit is the lowest free fd number.
        if room == 0 {
            while open.contains_key(&limit) {
                limit += 1;
            }
        }
        setrlimit(Resource::RLIMIT_NOFILE, limit as u64, self.hard).unwrap();
    }
    fn restore(&self) {
        setrlimit(Resource::RLIMIT_NOFILE, self.soft, self.hard).unwrap();
    }
}

impl Drop for RlimitGuard {
    fn drop(&mut self) {
        self.restore();
    }
}

// ---------------------------------------------------------------------------
// RLIMIT_NOFILE

#[test]
fn rlimit_nofile_reached_while_fds_arrive() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::rlimit_nofile_reached_while_fds_arrive");
    let limit = RlimitGuard::new();

    // 1. Room for 3 of a command's 8 fds: the command is delivered as
    //    "fds lost", the 3 that arrived are closed, the next command is fine.
    {
        t.scenarios += 1;
        let (client, server) = stream_pair();
        let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
        let mut a = marked(8);
        let mut b = marked(2);
        send_marked(&client, br#"{"execute":"a","arguments":{"f":"/dev/fd/0"}}"#, &mut a);
        send_marked(&client, br#"{"execute":"b","arguments":{"f":"/dev/fd/1"}}"#, &mut b);
        t.sent += 10;
        limit.room_for(3);
        let got = conn.recv();
        limit.restore();
        let m = got.unwrap().unwrap();
        assert_eq!(errno_of(&m), libc::ECOMM);
        assert_eq!(m.fds().count(), 0);
        assert!(m.status().unwrap_err().to_string().contains("lost"));
        assert_eq!(m.get_str("/execute").unwrap(), "a", "the command can still be answered");
        all_closed(&mut t, &a, "lost command");
        let m = recv(&mut conn);
        assert_eq!(errno_of(&m), 0);
        delivered(&mut t, &m, &b);
        drop((m, conn, client));
        assert_eq!(t.settle(&b), 0);
    }

    // 2. Fds sent ahead with one space (qemu.qmp style) are lost: the
    //    command they wait for must not run without them.
    {
        t.scenarios += 1;
        let (client, server) = stream_pair();
        let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
        let mut a = marked(4);
        let mut c = marked(1);
        send_marked(&client, b" ", &mut a);
        send_marked(&client, br#"{"execute":"getfd","arguments":{"fdname":"x"}}"#, &mut []);
        send_marked(&client, br#"{"execute":"c"}"#, &mut c);
        t.sent += 5;
        limit.room_for(1);
        let got = conn.recv();
        limit.restore();
        let m = got.unwrap().unwrap();
        assert_eq!(m.get_str("/execute").unwrap(), "getfd");
        assert_eq!(errno_of(&m), libc::ECOMM, "the command the lost fds were for fails");
        all_closed(&mut t, &a, "lost waiting fds");
        let m = recv(&mut conn);
        assert_eq!(errno_of(&m), 0);
        delivered(&mut t, &m, &c);
        drop((m, conn, client));
        assert_eq!(t.settle(&c), 0);
    }

    // 3. A command in two writes; the second write's fds are lost: the
    //    fds of the first write are closed too.
    {
        t.scenarios += 1;
        let (client, server) = stream_pair();
        set_nonblocking(&server, true);
        let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
        let mut first = marked(2);
        let mut second = marked(3);
        send_marked(&client, br#"{"execute":"x","arguments":{"#, &mut first);
        assert_eq!(conn.recv().unwrap_err().errno(), libc::EAGAIN);
        for m in &first {
            assert!(m.reader_open(), "held for the command in progress");
        }
        send_marked(&client, br#""a":"/dev/fd/0"}}"#, &mut second);
        t.sent += 5;
        limit.room_for(0);
        let got = conn.recv();
        limit.restore();
        let m = got.unwrap().unwrap();
        assert_eq!(errno_of(&m), libc::ECOMM);
        all_closed(&mut t, &first, "first write of a command whose later fds were lost");
        all_closed(&mut t, &second, "lost fds");
    }

    // 4. The same through the C ABI.
    {
        t.scenarios += 1;
        let (client, server) = stream_pair();
        // SAFETY: `server` stays open until after fdctx_conn_free.
        let conn = unsafe { ffi::fdctx_conn_new(server.as_raw_fd(), ffi::FDCTX_FRAMING_JSON, std::ptr::null()) };
        assert!(!conn.is_null());
        let mut a = marked(6);
        send_marked(&client, br#"{"execute":"a"}"#, &mut a);
        t.sent += 6;
        let mut msg = std::ptr::null_mut();
        limit.room_for(2);
        // SAFETY: live connection, valid out pointer.
        let r = unsafe { ffi::fdctx_conn_recv(conn, &mut msg) };
        limit.restore();
        assert_eq!(r, 1);
        // SAFETY: `msg` is a live message until fdctx_msg_finish.
        unsafe {
            assert_eq!(ffi::fdctx_msg_status(msg), -libc::ECOMM);
            assert_eq!(ffi::fdctx_count(ffi::fdctx_msg_fds(msg)), 0);
            assert!(!ffi::fdctx_msg_error(msg).is_null());
            assert_eq!(ffi::fdctx_msg_finish(msg), 0);
            ffi::fdctx_conn_free(conn);
        }
        all_closed(&mut t, &a, "C ABI lost fds");
        drop((server, client));
    }
    drop(limit);
    t.report();
}

// ---------------------------------------------------------------------------
// EINTR

static USR1_HITS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1_HITS.fetch_add(1, Ordering::Relaxed);
}

/// Installs a no-op SIGUSR1 handler WITHOUT `SA_RESTART`, so a blocked
/// `recvmsg`/`sendmsg` returns `EINTR`. It stays installed for the rest of
/// the test process: a signal still in flight when a test ends must not
/// meet the default disposition (which ends the process).
fn install_usr1() {
    // SAFETY: plain sigaction call with a zeroed-then-filled struct; the
    // handler is async-signal-safe (one atomic add).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

/// Sends SIGUSR1 to `thread` every `every` until `stop` is set (or the
/// thread is gone); returns how many were sent.
fn pester(thread: libc::pthread_t, every: Duration, stop: &AtomicBool) -> usize {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `thread` is a thread of this process not yet joined.
        if unsafe { libc::pthread_kill(thread, libc::SIGUSR1) } != 0 {
            break;
        }
        n += 1;
        std::thread::sleep(every);
    }
    n
}

/// The kernel's scheduler state letter of a thread ('S' while blocked).
fn thread_state(tid: libc::pid_t) -> char {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    stat.rsplit(')').next().and_then(|s| s.trim_start().chars().next()).unwrap_or('?')
}

#[test]
fn eintr_during_a_long_receive() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::eintr_during_a_long_receive");
    install_usr1();
    let before = USR1_HITS.load(Ordering::Relaxed);
    let (client, server) = stream_pair();
    let mut first = marked(2);
    let mut second = marked(1);
    let want = [inos(&first), inos(&second)].concat();
    let (tx, rx) = std::sync::mpsc::channel();
    let receiver = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send((unsafe { libc::pthread_self() }, gettid())).unwrap();
        let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
        let m = conn.recv().map(|m| m.map(|m| (msg_inos(&m), m.data().to_vec(), errno_of(&m))));
        let end = conn.recv().map(|m| m.is_none());
        (m, end)
    });
    let (thread, tid) = rx.recv().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let pesterer = {
        let stop = stop.clone();
        std::thread::spawn(move || pester(thread, Duration::from_micros(500), &stop))
    };
    // Blocked in recvmsg while signals arrive...
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_state(tid) != 'S' && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(60));
    // ...then a command in two writes, with signals in between.
    send_marked(&client, br#"{"execute":"x","arguments":{"a":"/dev/fd/0","#, &mut first);
    std::thread::sleep(Duration::from_millis(60));
    send_marked(&client, br#""b":"/dev/fd/1","c":"/dev/fd/2"}}"#, &mut second);
    std::thread::sleep(Duration::from_millis(20));
    // On a loaded machine the pesterer may start late: the end of stream
    // comes only once the receiver has been interrupted a few times.
    let deadline = Instant::now() + Duration::from_secs(20);
    while USR1_HITS.load(Ordering::Relaxed) - before <= 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(client);
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    let sent_signals = pesterer.join().unwrap();
    let (m, end) = receiver.join().unwrap();
    let (got_inos, data, errno) = m.expect("recv survives EINTR").expect("a message");
    assert_eq!(errno, 0);
    assert!(data.starts_with(b"{\"execute\":\"x\""));
    assert_eq!(got_inos, want, "all three fds, once, in order");
    assert!(end.expect("end of stream survives EINTR"));
    let hits = USR1_HITS.load(Ordering::Relaxed) - before;
    assert!(sent_signals > 10 && hits > 10, "signals were delivered ({sent_signals} sent, {hits} handled)");
    t.scenarios += 1;
    t.sent += 3;
    t.delivered += 3;
    assert_eq!(t.settle(&first) + t.settle(&second), 0);
    t.report();
}

#[test]
fn eintr_during_a_big_send() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::eintr_during_a_big_send");
    install_usr1();
    let before = USR1_HITS.load(Ordering::Relaxed);
    let (client, server) = stream_pair();
    nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::SndBuf, &8192).unwrap();
    let mut fds = marked(3);
    let want = inos(&fds);
    let owned: Vec<OwnedFd> = fds.iter_mut().map(|m| m.read.take().unwrap()).collect();
    let big =
        format!("{{\"execute\":\"x\",\"arguments\":{{\"f\":\"/dev/fd/2\",\"pad\":\"{}\"}}}}", "p".repeat(2 << 20));
    let len = big.len();
    let (tx, rx) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        // SAFETY: pthread_self has no preconditions.
        tx.send((unsafe { libc::pthread_self() }, gettid())).unwrap();
        let b: Vec<BorrowedFd<'_>> = owned.iter().map(|f| f.as_fd()).collect();
        let r = send_with_fds(client.as_fd(), big.as_bytes(), &b);
        drop(owned);
        drop(client);
        r
    });
    let (thread, tid) = rx.recv().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let pesterer = {
        let stop = stop.clone();
        std::thread::spawn(move || pester(thread, Duration::from_micros(300), &stop))
    };
    // The sender blocks on a full socket buffer while signals arrive.
    let deadline = Instant::now() + Duration::from_secs(5);
    while thread_state(tid) != 'S' && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(80));
    let mut conn =
        Connection::new(server, Framing::Json, Limits { max_msg_bytes: 4 << 20, ..Limits::default() }).unwrap();
    // Read slowly at first, so the sender keeps blocking and being hit.
    let m = recv(&mut conn);
    stop.store(true, Ordering::Relaxed);
    let sent_signals = pesterer.join().unwrap();
    sender.join().unwrap().expect("send survives EINTR");
    assert_eq!(errno_of(&m), 0);
    assert_eq!(m.data().len(), len, "every byte once");
    assert_eq!(msg_inos(&m), want, "the fds once");
    assert!(conn.recv().unwrap().is_none(), "nothing sent twice");
    let hits = USR1_HITS.load(Ordering::Relaxed) - before;
    assert!(sent_signals > 10 && hits > 10, "signals were delivered ({sent_signals} sent, {hits} handled)");
    t.scenarios += 1;
    t.sent += 3;
    t.delivered += 3;
    drop((m, conn));
    assert_eq!(t.settle(&fds), 0);
    t.report();
}

// ---------------------------------------------------------------------------
// A peer killed in the middle of a command

/// Prepared `sendmsg(2)` calls, built before `fork()` so that the child
/// only makes async-signal-safe system calls.
struct Prepared {
    bufs: Vec<Vec<u8>>,
    cmsgs: Vec<Vec<u64>>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::msghdr>,
}

fn prepare(writes: &[(Vec<u8>, Vec<RawFd>)]) -> Prepared {
    let mut p = Prepared { bufs: Vec::new(), cmsgs: Vec::new(), iovs: Vec::new(), hdrs: Vec::new() };
    for (bytes, fds) in writes {
        p.bufs.push(bytes.clone());
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE((fds.len() * 4) as u32) } as usize;
        p.cmsgs.push(vec![0u64; space.div_ceil(8)]);
    }
    for b in &mut p.bufs {
        p.iovs.push(libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() });
    }
    for (i, (_, fds)) in writes.iter().enumerate() {
        // SAFETY: a zeroed msghdr is valid; fields set below.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_iov = &mut p.iovs[i];
        h.msg_iovlen = 1;
        if !fds.is_empty() {
            let c = &mut p.cmsgs[i];
            h.msg_control = c.as_mut_ptr().cast();
            h.msg_controllen = c.len() * 8;
            // SAFETY: the control buffer has CMSG_SPACE bytes for these fds.
            unsafe {
                let cm = libc::CMSG_FIRSTHDR(&h);
                (*cm).cmsg_level = libc::SOL_SOCKET;
                (*cm).cmsg_type = libc::SCM_RIGHTS;
                (*cm).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as _;
                std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cm).cast::<RawFd>(), fds.len());
            }
        }
        p.hdrs.push(h);
    }
    p
}

/// Forks a child that performs the prepared writes on `sock`, writes one
/// byte to `done`, and then sleeps until killed.
fn fork_writer(sock: RawFd, done: RawFd, p: &Prepared) -> libc::pid_t {
    // SAFETY: the child runs only async-signal-safe calls (sendmsg, write,
    // pause, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        for h in &p.hdrs {
            // SAFETY: headers point into `p`, alive in the child's copy.
            if unsafe { libc::sendmsg(sock, h, libc::MSG_NOSIGNAL) } < 0 {
                // SAFETY: async-signal-safe exit.
                unsafe { libc::_exit(1) };
            }
        }
        // SAFETY: async-signal-safe; one byte from a static buffer.
        unsafe { libc::write(done, b"!".as_ptr().cast(), 1) };
        loop {
            // SAFETY: async-signal-safe; waits for SIGKILL.
            unsafe { libc::pause() };
        }
    }
    pid
}

#[test]
fn peer_killed_in_the_middle_of_a_command_with_fds() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::peer_killed_in_the_middle_of_a_command_with_fds");
    for variant in 0..3 {
        t.scenarios += 1;
        let (client, server) = stream_pair();
        let mut done = marked(2);
        let mut half = marked(3);
        let mut ahead = marked(1);
        let mut writes: Vec<(Vec<u8>, Vec<RawFd>)> = Vec::new();
        let raw = |ms: &[Marked]| ms.iter().map(|m| m.read.as_ref().unwrap().as_raw_fd()).collect::<Vec<_>>();
        if variant >= 1 {
            writes.push((br#"{"execute":"done","arguments":{"f":"/dev/fd/1"}}"#.to_vec(), raw(&done)));
        }
        writes.push((br#"{"execute":"blockdev-add","arguments":{"file"#.to_vec(), raw(&half)));
        if variant == 2 {
            writes.push((b" ".to_vec(), raw(&ahead)));
        }
        let prepared = prepare(&writes);
        let (note_r, note_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let pid = fork_writer(client.as_raw_fd(), note_w.as_raw_fd(), &prepared);
        drop(note_w);
        drop(prepared);
        // The child holds the read ends now.
        for m in done.iter_mut().chain(half.iter_mut()).chain(ahead.iter_mut()) {
            m.read = None;
        }
        let receiver = std::thread::spawn(move || {
            let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
            let mut got = Vec::new();
            while let Some(m) = conn.recv().expect("recv") {
                got.push((msg_inos(&m), errno_of(&m), m));
            }
            got
        });
        // The child has written; wait until the monitor read it all, so the
        // kill lands while the monitor holds half a command.
        let mut b = [0u8; 1];
        assert_eq!(nix::unistd::read(&note_r, &mut b).unwrap(), 1, "the child wrote");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pending_out(&client) != 0 {
            assert!(Instant::now() < deadline, "the child's writes were not read");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        drop(client);
        // SAFETY: `pid` is our child.
        unsafe {
            assert_eq!(libc::kill(pid, libc::SIGKILL), 0);
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(
                libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
                "child exited early: {status}"
            );
        }
        let got = receiver.join().unwrap();
        t.sent += if variant >= 1 { 2 } else { 0 } + 3 + if variant == 2 { 1 } else { 0 };
        if variant >= 1 {
            assert_eq!(got.len(), 1, "only the complete command");
            assert_eq!((&got[0].0, got[0].1), (&inos(&done), 0));
            t.delivered += 2;
        } else {
            assert!(got.is_empty());
        }
        all_closed(&mut t, &half, "fds of the command cut by the killed peer");
        if variant == 2 {
            all_closed(&mut t, &ahead, "fds waiting for a command that never came");
        }
        drop(got);
        assert_eq!(t.settle(&done), 0);
    }
    t.report();
}

// ---------------------------------------------------------------------------
// Many clients that die mid-command

#[test]
fn three_hundred_clients_die_mid_command() {
    let leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::three_hundred_clients_die_mid_command");
    for i in 0..300usize {
        t.scenarios += 1;
        let (client, server) = stream_pair();
        match i % 5 {
            // A complete command with fds, then half of one with fds.
            0 => {
                let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
                let mut a = marked(2);
                let mut b = marked(1 + i % 3);
                send_marked(&client, br#"{"execute":"a","arguments":{"f":"/dev/fd/1"}}"#, &mut a);
                send_marked(&client, br#"{"execute":"b","argu"#, &mut b);
                t.sent += (a.len() + b.len()) as u64;
                drop(client);
                let m = recv(&mut conn);
                delivered(&mut t, &m, &a);
                assert!(conn.recv().unwrap().is_none());
                all_closed(&mut t, &b, "half command");
                drop((m, conn));
                assert_eq!(t.settle(&a), 0);
            }
            // Half a command with fds, then fds sent ahead of a next one.
            1 => {
                let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
                let mut a = marked(3);
                let mut b = marked(1);
                send_marked(&client, br#"{"execute":"#, &mut a);
                send_marked(&client, b"\n", &mut b);
                t.sent += 4;
                drop(client);
                assert!(conn.recv().unwrap().is_none());
                all_closed(&mut t, &a, "half command");
                all_closed(&mut t, &b, "fds waiting for a command");
            }
            // Line framing: an unterminated line with fds.
            2 => {
                let mut conn = Connection::new(server, Framing::Line, Limits::default()).unwrap();
                let mut a = marked(2);
                send_marked(&client, b"drive_add 0 file=/dev/fd/0,if=no", &mut a);
                t.sent += 2;
                drop(client);
                assert!(conn.recv().unwrap().is_none());
                all_closed(&mut t, &a, "unterminated line");
            }
            // C ABI: the monitor frees the connection mid-command while the
            // client is still there; the socket stays the caller's.
            3 => {
                set_nonblocking(&server, true);
                // SAFETY: `server` outlives the connection.
                let conn =
                    unsafe { ffi::fdctx_conn_new(server.as_raw_fd(), ffi::FDCTX_FRAMING_JSON, std::ptr::null()) };
                let mut a = marked(2);
                let mut b = marked(1);
                send_marked(&client, br#"{"execute":"x","#, &mut a);
                send_marked(&client, b" ", &mut b);
                t.sent += 3;
                let mut msg = std::ptr::null_mut();
                // SAFETY: live connection, valid out pointer.
                assert_eq!(unsafe { ffi::fdctx_conn_recv(conn, &mut msg) }, -libc::EAGAIN);
                assert!(msg.is_null());
                // SAFETY: frees the connection once.
                unsafe { ffi::fdctx_conn_free(conn) };
                all_closed(&mut t, &a, "fds of a command held by a freed connection");
                all_closed(&mut t, &b, "waiting fds held by a freed connection");
                assert!(nix::sys::stat::fstat(&server).is_ok(), "the socket is not closed");
                drop((client, server));
            }
            // The client half-closes (shutdown(SHUT_WR)) mid-command and stays.
            _ => {
                let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
                let mut a = marked(1 + i % 4);
                send_marked(&client, br#"{"execute":"x","arguments":{"f":"/dev/fd/0"#, &mut a);
                t.sent += a.len() as u64;
                nix::sys::socket::shutdown(client.as_raw_fd(), nix::sys::socket::Shutdown::Write).unwrap();
                assert!(conn.recv().unwrap().is_none());
                all_closed(&mut t, &a, "half-closed client");
                drop(client);
            }
        }
        assert_eq!(leaks.delta(), 0, "client {i}");
    }
    t.report();
}

// ---------------------------------------------------------------------------
// A client that trickles one byte at a time

fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn a_trickling_client_does_not_make_the_monitor_spin() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::a_trickling_client_does_not_make_the_monitor_spin");
    let (client, server) = stream_pair();
    let cmd = format!(
        "{{\"execute\":\"trickle\",\"arguments\":{{\"a\":\"/dev/fd/0\",\"b\":\"/dev/fd/1\",\"pad\":\"{}\"}}}}",
        "t".repeat(1500)
    );
    let mut first = marked(1);
    let mut middle = marked(1);
    let want = [inos(&first), inos(&middle)].concat();
    let monitor = std::thread::spawn(move || {
        let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
        let (cpu0, wall0) = (thread_cpu(), Instant::now());
        let m = conn.recv().unwrap().unwrap();
        let (cpu, wall) = (thread_cpu() - cpu0, wall0.elapsed());
        (msg_inos(&m), errno_of(&m), m.data().len(), cpu, wall)
    });
    let bytes = cmd.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        let mut none: [Marked; 0] = [];
        let fds: &mut [Marked] = match i {
            0 => &mut first,
            700 => &mut middle,
            _ => &mut none,
        };
        send_marked(&client, std::slice::from_ref(b), fds);
        std::thread::sleep(Duration::from_micros(200));
    }
    let (got, errno, len, cpu, wall) = monitor.join().unwrap();
    assert_eq!((errno, len), (0, bytes.len()));
    assert_eq!(got, want, "both fds, in arrival order, for the one command");
    eprintln!("trickle: {} one-byte writes, monitor cpu {cpu:?} over {wall:?}", bytes.len());
    assert!(
        cpu < wall / 3 && cpu < Duration::from_millis(400),
        "the monitor thread used {cpu:?} of CPU over {wall:?}: it must block, not spin"
    );
    drop(client);
    t.scenarios += 1;
    t.sent += 2;
    t.delivered += 2;
    assert_eq!(t.settle(&first) + t.settle(&middle), 0);
    t.report();
}

// ---------------------------------------------------------------------------
// An endless command

#[test]
fn an_endless_command_is_refused_at_the_limit_with_bounded_memory() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::an_endless_command_is_refused_at_the_limit_with_bounded_memory");
    const LIMIT: usize = 256 << 10;
    const TOTAL: usize = 8 << 20;
    let (client, server) = stream_pair();
    let mut head = marked(2);
    let mut middle = marked(2);
    let mut after = marked(1);
    let chunk = vec![b'x'; 64 << 10];
    let finished = Arc::new(AtomicBool::new(false));
    let sender = {
        let finished = finished.clone();
        let mut head = std::mem::take(&mut head);
        let mut middle = std::mem::take(&mut middle);
        let mut after = std::mem::take(&mut after);
        std::thread::spawn(move || {
            send_marked(&client, br#"{"execute":"endless","arguments":{"data":""#, &mut head);
            let mut sent = 0;
            let mut k = 0;
            while sent < TOTAL {
                if k == 40 {
                    send_marked(&client, b"x", &mut middle);
                }
                let n = nix::sys::socket::send(client.as_raw_fd(), &chunk, MsgFlags::MSG_NOSIGNAL).unwrap();
                sent += n;
                k += 1;
            }
            finished.store(true, Ordering::SeqCst);
            send_marked(&client, b"\"}}\n", &mut []);
            send_marked(&client, br#"{"execute":"after","arguments":{"f":"/dev/fd/0"}}"#, &mut after);
            (head, middle, after)
        })
    };
    let heap0 = heap_window();
    let mut conn =
        Connection::new(server, Framing::Json, Limits { max_msg_bytes: LIMIT, ..Limits::default() }).unwrap();
    let m = recv(&mut conn);
    assert!(!finished.load(Ordering::SeqCst), "refused at the limit, not at the end of the command");
    assert_eq!(errno_of(&m), libc::EMSGSIZE);
    assert!(m.data().is_empty() && m.fds().count() == 0);
    drop(m);
    let next = recv(&mut conn);
    let peak = HEAP_PEAK.load(Ordering::Relaxed) - heap0;
    let (head, middle, after) = sender.join().unwrap();
    assert_eq!(next.get_str("/execute").unwrap(), "after", "resynchronised at the next line break");
    assert_eq!(errno_of(&next), 0);
    eprintln!("endless command: {TOTAL} bytes sent, heap peak +{peak} bytes (limit {LIMIT})");
    assert!(peak < (2 * LIMIT + (512 << 10)) as isize, "heap grew by {peak} bytes for a {LIMIT}-byte limit");
    t.scenarios += 1;
    t.sent += 5;
    delivered(&mut t, &next, &after);
    all_closed(&mut t, &head, "fds of the refused command");
    all_closed(&mut t, &middle, "fds sent with its discarded rest");
    drop(next);
    assert!(conn.recv().unwrap().is_none());
    drop(conn);
    assert_eq!(t.settle(&after), 0);
    t.report();
}

#[test]
fn an_endless_line_is_refused_at_the_limit() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::an_endless_line_is_refused_at_the_limit");
    let (client, server) = stream_pair();
    let mut conn = Connection::new(server, Framing::Line, Limits { max_msg_bytes: 4096, ..Limits::default() }).unwrap();
    let mut a = marked(1);
    let mut b = marked(1);
    let sender = {
        let mut a = std::mem::take(&mut a);
        let mut b = std::mem::take(&mut b);
        std::thread::spawn(move || {
            send_marked(&client, b"drive_add ", &mut a);
            for _ in 0..64 {
                send_marked(&client, &[b'y'; 1024], &mut []);
            }
            send_marked(&client, b"\r\ninfo block\n", &mut b);
            (a, b)
        })
    };
    let m = recv(&mut conn);
    assert_eq!(errno_of(&m), libc::EMSGSIZE);
    let (a, b) = sender.join().unwrap();
    let m2 = recv(&mut conn);
    assert_eq!(m2.data(), b"info block");
    t.scenarios += 1;
    t.sent += 2;
    delivered(&mut t, &m2, &b);
    all_closed(&mut t, &a, "endless line");
    drop((m, m2, conn));
    assert_eq!(t.settle(&b), 0);
    t.report();
}

// ---------------------------------------------------------------------------
// Overlong commands: the same messages whatever the reads

/// Receives `stream` sent as the given writes, one read per write.
fn messages_for(stream: &[u8], cuts: &[usize], limits: Limits) -> Vec<(i32, Vec<u8>)> {
    let (client, server) = stream_pair();
    set_nonblocking(&server, true);
    let mut conn = Connection::new(server, Framing::Json, limits).unwrap();
    let mut out = Vec::new();
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < stream.len()));
    bounds.push(stream.len());
    for w in bounds.windows(2) {
        send_marked(&client, &stream[w[0]..w[1]], &mut []);
        loop {
            match conn.recv() {
                Ok(Some(m)) => out.push((errno_of(&m), m.data().to_vec())),
                Ok(None) => break,
                Err(e) if e.errno() == libc::EAGAIN => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    drop(client);
    while let Some(m) = conn.recv().unwrap() {
        out.push((errno_of(&m), m.data().to_vec()));
    }
    out
}

#[test]
fn overlong_command_gives_the_same_messages_whatever_the_reads() {
    // A command longer than max_msg_bytes is refused and the input is
    // discarded up to the next line break (the framing module's doc). Where the discarding
    // starts must not depend on how the kernel split the stream into reads:
    // here a pretty-printed command of 120 bytes (limit 40) is followed by
    // a good one.
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::overlong_command_gives_the_same_messages_whatever_the_reads");
    let stream = b"{\n  \"execute\": \"blockdev-add\",\n  \"arguments\": {\n    \"node-name\": \"disk0\"\n  }\n}\n{\"execute\":\"query-block\"}\n";
    let limits = Limits { max_msg_bytes: 40, ..Limits::default() };
    let whole = messages_for(stream, &[], limits);
    for cut in 1..stream.len() {
        t.scenarios += 1;
        let got = messages_for(stream, &[cut], limits);
        assert_eq!(got, whole, "one cut at byte {cut} changes the messages");
    }
    t.report();
}

// ---------------------------------------------------------------------------
// Floods of fds

#[test]
fn a_flood_of_fds_sent_ahead_is_refused_and_closed() {
    // Batches of 253 fds, each with one space, waiting for a command: more
    // than max_fds wait, so the command they precede is refused and every
    // fd is closed, without the monitor holding more than a bounded number
    // at a time.
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::a_flood_of_fds_sent_ahead_is_refused_and_closed");
    let (client, server) = stream_pair();
    let mut conn = Connection::new(server, Framing::Json, Limits { max_fds: 40, ..Limits::default() }).unwrap();
    let mut flood: Vec<Vec<Marked>> = (0..3).map(|_| marked(253)).collect();
    let mut good = marked(1);
    let sender = {
        let mut flood = std::mem::take(&mut flood);
        let mut good = std::mem::take(&mut good);
        std::thread::spawn(move || {
            for batch in flood.iter_mut() {
                send_marked(&client, b" ", batch);
            }
            send_marked(&client, br#"{"execute":"x"}"#, &mut []);
            send_marked(&client, br#"{"execute":"y","arguments":{"f":"/dev/fd/0"}}"#, &mut good);
            (flood, good)
        })
    };
    let x = recv(&mut conn);
    let (flood, good) = sender.join().unwrap();
    assert_eq!(errno_of(&x), libc::ETOOMANYREFS);
    let y = recv(&mut conn);
    assert_eq!(errno_of(&y), 0);
    t.scenarios += 1;
    t.sent += 3 * 253 + 1;
    delivered(&mut t, &y, &good);
    for batch in &flood {
        all_closed(&mut t, batch, "flooded fds");
    }
    drop((x, y, conn));
    assert_eq!(t.settle(&good), 0);
    t.report();
}

// ---------------------------------------------------------------------------
// A handler that panics

#[test]
fn a_panicking_handler_still_closes_its_commands_fds() {
    // The library has no callbacks; the Rust-side equivalent is a handler
    // that panics while it holds a message: unwinding ends the message and
    // closes its fds, and the connection goes on.
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::a_panicking_handler_still_closes_its_commands_fds");
    let (client, server) = stream_pair();
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let mut a = marked(3);
    let mut b = marked(1);
    send_marked(&client, br#"{"execute":"boom","arguments":{"f":"/dev/fd/2"}}"#, &mut a);
    send_marked(&client, br#"{"execute":"next","arguments":{"f":"/dev/fd/0"}}"#, &mut b);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let m = recv(&mut conn);
        let _borrowed = m.fds().get(0).unwrap();
        panic!("handler failed");
    }));
    std::panic::set_hook(hook);
    assert!(r.is_err());
    t.scenarios += 1;
    t.sent += 4;
    // Delivered to the handler, then closed as its message unwound.
    for m in &a {
        assert!(!m.reader_open(), "fds of a message dropped by unwinding");
    }
    t.delivered += 3;
    let m = recv(&mut conn);
    delivered(&mut t, &m, &b);
    drop((m, conn, client));
    assert_eq!(t.settle(&b), 0);
    t.report();
}

// ---------------------------------------------------------------------------
// C ABI misuse that has defined behaviour

/// A C string (kept alive by the caller's temporary).
fn cs(s: &str) -> CString {
    CString::new(s).unwrap()
}

fn last_error() -> String {
    // SAFETY: never NULL, NUL-terminated, valid until the next failure.
    unsafe { CStr::from_ptr(ffi::fdctx_last_error()) }.to_string_lossy().into_owned()
}

#[test]
fn c_abi_null_and_misuse_are_errors_not_crashes() {
    let _leaks = FdLeakCheck::new();
    let mut t = Tally::new("faults::c_abi_null_and_misuse_are_errors_not_crashes");
    let null_ctx: *mut ffi::fdctx = std::ptr::null_mut();
    let null_msg: *mut ffi::fdctx_msg = std::ptr::null_mut();
    let path = cs("/dev/fd/0");
    // SAFETY: every call below passes NULL or live objects as documented.
    unsafe {
        assert!(!ffi::fdctx_last_error().is_null());
        assert_eq!(ffi::fdctx_finish(null_ctx), -libc::EINVAL);
        assert!(!last_error().is_empty());
        assert_eq!(ffi::fdctx_msg_finish(null_msg), -libc::EINVAL);
        assert_eq!(ffi::fdctx_get(null_ctx, 0), -libc::EINVAL);
        assert_eq!(ffi::fdctx_take(null_ctx, 0), -libc::EINVAL);
        assert_eq!(ffi::fdctx_dup(null_ctx, 0), -libc::EINVAL);
        assert_eq!(ffi::fdctx_count(null_ctx), 0);
        assert_eq!(ffi::fdctx_adopt(null_ctx, std::ptr::null(), 0), -libc::EINVAL, "NULL context, nothing to adopt");
        assert_eq!(ffi::fdctx_index(std::ptr::null(), std::ptr::null_mut()), -libc::EINVAL);
        assert_eq!(ffi::fdctx_open(null_ctx, std::ptr::null(), libc::O_RDONLY, 0), -libc::EINVAL);
        assert_eq!(ffi::fdctx_open(null_ctx, path.as_ptr(), libc::O_RDONLY, 0), -libc::EBADF, "no current context");
        assert_eq!(ffi::fdctx_msg_status(null_msg), -libc::EINVAL);
        assert!(ffi::fdctx_msg_error(null_msg).is_null());
        assert!(ffi::fdctx_msg_data(null_msg, std::ptr::null_mut()).is_null());
        assert!(ffi::fdctx_msg_fds(null_msg).is_null());
        assert!(ffi::fdctx_msg_get_str(null_msg, cs("/x").as_ptr(), std::ptr::null_mut()).is_null());
        assert!(ffi::fdctx_msg_get_json(null_msg, cs("/x").as_ptr(), std::ptr::null_mut()).is_null());
        let mut b = false;
        let mut i = 0i64;
        assert_eq!(ffi::fdctx_msg_get_bool(null_msg, cs("/x").as_ptr(), &mut b), -libc::EINVAL);
        assert_eq!(ffi::fdctx_msg_get_int(null_msg, cs("/x").as_ptr(), &mut i), -libc::EINVAL);
        ffi::fdctx_conn_free(std::ptr::null_mut());
        let mut out = std::ptr::null_mut();
        assert_eq!(ffi::fdctx_conn_recv(std::ptr::null_mut(), &mut out), -libc::EINVAL);
        assert!(ffi::fdctx_conn_new(-1, ffi::FDCTX_FRAMING_JSON, std::ptr::null()).is_null());
        assert_eq!(ffi::fdctx_send(-1, cs("x").as_ptr().cast(), 1, std::ptr::null(), 0), -libc::EBADF);
        assert_eq!(ffi::fdctx_send(0, std::ptr::null(), 1, std::ptr::null(), 0), -libc::EINVAL);
        assert_eq!(ffi::fdctx_send(0, cs("x").as_ptr().cast(), 1, std::ptr::null(), 2), -libc::EINVAL);
        assert!(ffi::fdctx_current().is_null());
    }

    // fdctx_adopt owns the fds even when it fails.
    t.scenarios += 1;
    {
        let mut ms = marked(2);
        let raw: Vec<i32> =
            ms.iter_mut().map(|m| std::os::fd::IntoRawFd::into_raw_fd(m.read.take().unwrap())).collect();
        t.sent += 2;
        // SAFETY: the fds are handed over to the call.
        assert_eq!(unsafe { ffi::fdctx_adopt(null_ctx, raw.as_ptr(), 2) }, -libc::EINVAL);
        all_closed(&mut t, &ms, "fds adopted by a NULL context");
    }
    t.scenarios += 1;
    {
        let mut ms = marked(2);
        let mut raw: Vec<i32> =
            ms.iter_mut().map(|m| std::os::fd::IntoRawFd::into_raw_fd(m.read.take().unwrap())).collect();
        raw.push(raw[0]);
        raw.push(-5);
        t.sent += 2;
        // SAFETY: new context, fds handed over.
        unsafe {
            let ctx = ffi::fdctx_new();
            let r = ffi::fdctx_adopt(ctx, raw.as_ptr(), raw.len());
            assert!(r == -libc::EINVAL || r == -libc::EBADF, "duplicate and negative entries are errors: {r}");
            assert_eq!(ffi::fdctx_count(ctx), 2, "each open fd adopted once");
            let fd = ffi::fdctx_take(ctx, 1);
            assert!(fd >= 0);
            assert_eq!(ffi::fdctx_take(ctx, 1), -libc::EBADFD, "second take");
            assert_eq!(ffi::fdctx_get(ctx, 1), -libc::EBADFD);
            assert_eq!(ffi::fdctx_get(ctx, 2), -libc::EBADF);
            // Current context cleared when it is finished.
            let prev = ffi::fdctx_enter(ctx);
            assert!(prev.is_null());
            assert_eq!(ffi::fdctx_current(), ctx);
            assert_eq!(ffi::fdctx_finish(ctx), 1, "fd 0 was never used");
            assert!(ffi::fdctx_current().is_null(), "a finished context is no longer current");
            assert_eq!(ffi::fdctx_open(std::ptr::null_mut(), path.as_ptr(), libc::O_RDONLY, 0), -libc::EBADF);
            assert!(!ms[0].reader_open(), "finish closed the fd it owned");
            assert!(ms[1].reader_open(), "the taken fd is the caller's");
            libc::close(fd);
        }
        t.closed += 1;
        t.delivered += 1;
        assert_eq!(t.settle(&ms), 0);
    }

    // A message's context cannot be finished on its own; the message can.
    t.scenarios += 1;
    {
        let (client, server) = stream_pair();
        let mut ms = marked(2);
        send_marked(&client, br#"{"execute":"x","id":{"n":1},"arguments":{"f":"/dev/fd/1","ro":true}}"#, &mut ms);
        t.sent += 2;
        drop(client);
        // SAFETY: the socket outlives the connection; every object is live
        // until freed once.
        unsafe {
            let conn = ffi::fdctx_conn_new(server.as_raw_fd(), ffi::FDCTX_FRAMING_JSON, std::ptr::null());
            let mut msg = std::ptr::null_mut();
            assert_eq!(ffi::fdctx_conn_recv(conn, std::ptr::null_mut()), -libc::EINVAL);
            assert_eq!(ffi::fdctx_conn_recv(conn, &mut msg), 1);
            assert_eq!(ffi::fdctx_conn_recv(conn, &mut std::ptr::null_mut()), 0);
            assert_eq!(ffi::fdctx_conn_recv(conn, &mut std::ptr::null_mut()), 0, "end of stream stays the end");
            ffi::fdctx_conn_free(conn);
            // The message outlives its connection.
            let ctx = ffi::fdctx_msg_fds(msg);
            assert_eq!(ffi::fdctx_finish(ctx), -libc::EINVAL, "a message's context ends with the message");
            assert_eq!(ffi::fdctx_count(ctx), 2);
            let mut len = 0;
            let data = ffi::fdctx_msg_data(msg, &mut len);
            assert_eq!(CStr::from_ptr(data).to_bytes().len(), len, "the bytes are NUL-terminated");
            assert_eq!(ffi::fdctx_msg_data(msg, std::ptr::null_mut()), data, "the same bytes each call");
            let id = ffi::fdctx_msg_get_json(msg, cs("/id").as_ptr(), &mut len);
            assert_eq!(CStr::from_ptr(id).to_bytes(), br#"{"n":1}"#);
            assert_eq!(ffi::fdctx_msg_get_bool(msg, cs("/arguments/ro").as_ptr(), std::ptr::null_mut()), -libc::EINVAL);
            assert_eq!(ffi::fdctx_msg_get_str(msg, std::ptr::null(), std::ptr::null_mut()), std::ptr::null());
            let prev = ffi::fdctx_enter(ctx);
            let fd = ffi::fdctx_open(std::ptr::null_mut(), cs("/dev/fd/1").as_ptr(), libc::O_RDONLY, 0);
            assert!(fd >= 0, "{}", last_error());
            assert_eq!(ffi::fdctx_msg_finish(msg), 1, "fd 0 never used");
            assert!(ffi::fdctx_current().is_null(), "the finished message's context is no longer current");
            ffi::fdctx_leave(prev);
            assert!(!ms[0].reader_open());
            assert!(ms[1].reader_open(), "the opened duplicate is the caller's");
            libc::close(fd);
        }
        t.closed += 1;
        t.delivered += 1;
        assert_eq!(t.settle(&ms), 0);
    }
    t.report();
}
