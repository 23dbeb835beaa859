//! Heap allocations per received command: a QMP command with its fd costs
//! the library one allocation (its bytes) through the Rust API, so two
//! through the C API (plus the message handle); a command's few fds live
//! inline in its context.
//!
//! Allocations are counted by a global allocator, on the receiving thread
//! only. Every test counts the process's open fds before and after.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use common::fdcount::FdLeakCheck;
use fdctx::monitor::send::send_with_fds;
use fdctx::{Connection, Framing, Limits};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

/// Counts allocations (and reallocations) made by the thread whose id is
/// in `COUNTED`.
struct Counting;

static COUNTED: AtomicI32 = AtomicI32::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn note(&self) {
        let who = COUNTED.load(Ordering::Relaxed);
        // SAFETY: gettid has no preconditions.
        if who != 0 && who == unsafe { libc::gettid() } {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: the caller's layout, as GlobalAlloc requires.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.note();
        // SAFETY: as for alloc.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.note();
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by this thread while running `f`.
fn allocations<T>(f: impl FnOnce() -> T) -> (usize, T) {
    ALLOCS.store(0, Ordering::Relaxed);
    // SAFETY: gettid has no preconditions.
    COUNTED.store(unsafe { libc::gettid() }, Ordering::Relaxed);
    let out = f();
    COUNTED.store(0, Ordering::Relaxed);
    (ALLOCS.load(Ordering::Relaxed), out)
}

/// A QMP command naming its first fd, and one of the same shape without.
const CMD_FD: &[u8] = br#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"disk0","filename":"/dev/fd/0","aio":"threads","read-only":false},"id":"libvirt-421"}"#;
const CMD_NOFD: &[u8] = br#"{"execute":"blockdev-add","arguments":{"driver":"file","node-name":"disk0","filename":"/srv/d0.raw","aio":"threads","read-only":false},"id":"libvirt-421"}"#;

/// Sends `count` commands with `nfds` fds each (all the same pipe), after
/// a warm-up burst as large, then receives them all: the allocations of
/// the receiving side per command (taking every fd, finishing the message).
fn per_command(count: usize, nfds: usize) -> f64 {
    let (client, server) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let fds: Vec<BorrowedFd<'_>> = (0..nfds).map(|_| r.as_fd()).collect();
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let cmd = if nfds == 0 { CMD_NOFD } else { CMD_FD };
    let receive = |conn: &mut Connection| {
        let mut msg = conn.recv().unwrap().expect("a command");
        assert!(msg.status().is_ok(), "{:?}", msg.status());
        assert_eq!(msg.fds().count(), nfds);
        for i in 0..nfds {
            let fd: OwnedFd = msg.fds_mut().take(i).unwrap();
            drop(fd);
        }
        assert_eq!(msg.finish(), 0);
    };
    // A first burst pays for the connection's and the thread's buffers,
    // which are kept (the queue of commands complete in one read grows to
    // the longest burst seen).
    for _ in 0..count {
        send_with_fds(client.as_fd(), cmd, &fds).unwrap();
    }
    for _ in 0..count {
        receive(&mut conn);
    }
    for _ in 0..count {
        send_with_fds(client.as_fd(), cmd, &fds).unwrap();
    }
    let (n, ()) = allocations(|| {
        for _ in 0..count {
            receive(&mut conn);
        }
    });
    n as f64 / count as f64
}

#[test]
fn one_allocation_per_command_with_a_few_fds() {
    let _leaks = FdLeakCheck::new();
    for nfds in [0, 1, 2, 4] {
        let per = per_command(50, nfds);
        assert!(per <= 1.0, "{per} allocations per command with {nfds} fds");
    }
}

#[test]
fn many_fds_cost_one_more_allocation() {
    let _leaks = FdLeakCheck::new();
    let per = per_command(20, 16);
    assert!(per <= 2.0, "{per} allocations per command with 16 fds");
}

/// The C API's receive loop, as a monitor runs it: receive, read the
/// command's bytes, take and close every fd, finish. Allocations per
/// command: its bytes and the message handle; reading the bytes makes no
/// copy.
#[test]
fn the_c_api_reads_a_command_with_two_allocations() {
    use ::fdctx::testing::ffi::{
        fdctx_conn_free, fdctx_conn_new, fdctx_conn_recv, fdctx_msg_data, fdctx_msg_fds, fdctx_msg_finish,
        fdctx_msg_status, fdctx_take, FDCTX_FRAMING_JSON,
    };
    use std::os::fd::AsRawFd;
    let _leaks = FdLeakCheck::new();
    let (client, server) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
    let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // SAFETY: `server` outlives the connection, which only borrows it.
    let conn = unsafe { fdctx_conn_new(server.as_raw_fd(), FDCTX_FRAMING_JSON, std::ptr::null()) };
    assert!(!conn.is_null());
    let receive = || {
        let mut msg = std::ptr::null_mut();
        // SAFETY: a live connection and a valid out pointer; the message
        // is finished before the next receive.
        unsafe {
            assert_eq!(fdctx_conn_recv(conn, &mut msg), 1);
            assert_eq!(fdctx_msg_status(msg), 0);
            let mut len = 0;
            let text = fdctx_msg_data(msg, &mut len);
            let bytes = std::slice::from_raw_parts(text.cast::<u8>(), len + 1);
            assert!(bytes[..len] == *CMD_FD && bytes[len] == 0);
            let fd = fdctx_take(fdctx_msg_fds(msg), 0);
            assert!(fd >= 0);
            libc::close(fd);
            assert_eq!(fdctx_msg_finish(msg), 0);
        }
    };
    let count = 50;
    // The first burst pays for the buffers that are kept (as above).
    for round in 0..2 {
        for _ in 0..count {
            send_with_fds(client.as_fd(), CMD_FD, &[r.as_fd()]).unwrap();
        }
        let (n, ()) = allocations(|| (0..count).for_each(|_| receive()));
        assert!(round == 0 || n <= 2 * count, "{} allocations per command", n as f64 / count as f64);
    }
    // SAFETY: the connection is live and no message of it is open.
    unsafe { fdctx_conn_free(conn) };
}
