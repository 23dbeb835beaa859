//! Socket pairs, marked fds and writes sent exactly as given, for the
//! integration tests that play a client.

#![allow(dead_code)]

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType};

/// A connected Unix socket pair of the given type, close-on-exec.
pub fn pair(ty: SockType) -> (OwnedFd, OwnedFd) {
    socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).unwrap()
}

/// `n` fresh pipe read ends, each marked by a distinct inode.
pub fn pipes(n: usize) -> Vec<OwnedFd> {
    (0..n).map(|_| nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap().0).collect()
}

pub fn ino(fd: BorrowedFd<'_>) -> u64 {
    nix::sys::stat::fstat(fd).unwrap().st_ino
}

pub fn inos(fds: &[OwnedFd]) -> Vec<u64> {
    fds.iter().map(|f| ino(f.as_fd())).collect()
}

/// One `sendmsg(2)` of all of `bytes` with `fds` attached, exactly as
/// given: a client that does not use fdctx_send (`qemu.qmp` sends its fds
/// on a lone space, which fdctx_send refuses).
pub fn sendmsg_raw(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let n = sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(bytes)], cmsgs, MsgFlags::MSG_NOSIGNAL, None).unwrap();
    assert_eq!(n, bytes.len(), "one write, all bytes");
}

/// [`sendmsg_raw`] with owned fds.
pub fn sendmsg_owned(sock: &OwnedFd, bytes: &[u8], fds: &[OwnedFd]) {
    let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    sendmsg_raw(sock.as_fd(), bytes, &b);
}
