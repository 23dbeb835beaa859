//! Helpers shared by the integration tests.
//!
//! * [`fdcount`]: the process's open fds, and [`fdcount::FdLeakCheck`],
//!   which every test holds to prove it leaked none.
//! * [`fdacct`]: fd accounting fd by fd for the robustness tests (marked
//!   pipes and the per-test tally).
//! * Below: sockets, pipes, inodes, fd flags and a scratch directory.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod fdacct;
pub use fdctx::testing::fdcount;

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use fdctx::monitor::send::send_with_fds;
use fdctx::{Connection, Error, Message, Refusal};
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};

pub use fdacct::ino_of;

/// A connected pair of close-on-exec Unix sockets of type `ty`.
pub fn pair(ty: SockType) -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).unwrap()
}

/// A connected pair of close-on-exec Unix stream sockets.
pub fn stream_pair() -> (OwnedFd, OwnedFd) {
    pair(SockType::Stream)
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> (OwnedFd, OwnedFd) {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap()
}

/// `n` fresh pipe read ends, each marked by a distinct inode.
pub fn pipes(n: usize) -> Vec<OwnedFd> {
    (0..n).map(|_| pipe().0).collect()
}

/// The inodes of `fds`, in order.
pub fn inos(fds: &[OwnedFd]) -> Vec<u64> {
    fds.iter().map(|f| ino_of(f.as_fd())).collect()
}

/// The inodes of the fds a message holds, in index order.
pub fn msg_inos(m: &Message) -> Vec<u64> {
    (0..m.fds().count()).map(|i| ino_of(m.fds().get(i).unwrap())).collect()
}

/// Sends `bytes` with `fds` attached, as a client would.
pub fn send(sock: &OwnedFd, bytes: &[u8], fds: &[OwnedFd]) {
    let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    send_with_fds(sock.as_fd(), bytes, &b).unwrap();
}

/// One `sendmsg(2)` exactly as given, as a client without fdctx_send does
/// (`qemu.qmp` sends its fds on a lone space, which fdctx_send refuses):
/// the test's writes are the client's writes.
pub fn send_raw(sock: &OwnedFd, bytes: &[u8], fds: &[OwnedFd]) {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(bytes)], cmsgs, MsgFlags::empty(), None).unwrap();
    assert_eq!(n, bytes.len());
}

/// Bytes sent on `sock` that the peer has not read yet (`SIOCOUTQ`).
pub fn pending_out(sock: &OwnedFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ) writes one int to the pointer given.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    assert_eq!(r, 0, "ioctl(SIOCOUTQ)");
    n
}

/// The next message; panics on an error or at end of stream.
pub fn recv<S: AsFd>(conn: &mut Connection<S>) -> Message {
    conn.recv().expect("recv").expect("a message")
}

/// A message's bytes as text.
pub fn text(m: &Message) -> &str {
    std::str::from_utf8(m.data()).unwrap()
}

/// The status of a message as a positive errno, 0 when it is good.
pub fn errno_of(m: &Message) -> i32 {
    m.status().err().map_or(0, Refusal::errno)
}

/// True for the `EAGAIN` of a non-blocking or fed connection.
pub fn is_eagain(r: &Result<Option<Message>, Error>) -> bool {
    matches!(r, Err(e) if e.errno() == libc::EAGAIN)
}

/// The file status flags of `fd` (`F_GETFL`).
pub fn flags_of(fd: BorrowedFd<'_>) -> OFlag {
    OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap())
}

/// Sets or clears `O_NONBLOCK` on `fd`'s open file description.
pub fn set_nonblocking(fd: impl AsFd, on: bool) {
    let mut fl = flags_of(fd.as_fd());
    fl.set(OFlag::O_NONBLOCK, on);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(fl)).unwrap();
}

/// True if `fd` is close-on-exec.
pub fn cloexec(fd: BorrowedFd<'_>) -> bool {
    FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
}

/// The calling thread's id.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// A fresh, empty temporary directory for one test, named by `tag`.
pub fn tmpdir(tag: &str) -> PathBuf {
    let base = option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let d = base.join(format!("fdctx-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
