//! The client side: send one command with its fds attached.
//!
//! The fds ride on the command's first byte(s). A stream socket may accept
//! only part of the bytes; the fds went out with that part, so the rest is
//! sent plain — attaching them again would duplicate them in the receiver.
//! The kernel accepts at most `SCM_MAX_FD` (253, `include/net/scm.h`) fds
//! per `sendmsg(2)`, so a larger set is split: each batch but the last goes
//! with exactly one byte, the last with the remaining bytes. The receiver's
//! association rule (DESIGN.md 4.2) gathers them all for the one command.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sendmsg, sockopt, ControlMessage, MsgFlags, SockType};

use crate::error::Error;

/// The most fds one `sendmsg(2)` may carry: the kernel's one limit for
/// both directions.
pub use crate::recv::SCM_MAX_FD;

/// Sends all of `buf` on `sock`, with `fds` attached to its first bytes.
///
/// Retries `EINTR`; on `EAGAIN` (a non-blocking socket) waits with `poll(2)`
/// until the socket is writable. `SIGPIPE` is suppressed (`MSG_NOSIGNAL`):
/// a closed peer is `EPIPE`. The caller keeps ownership of `fds`.
///
/// # Errors
/// [`Error::InvalidArgument`] when there are fds but too few bytes to carry
/// them (one byte per batch of 253); [`Error::TooManyFds`] for more than 253
/// fds on a packet socket, where one write is one message; otherwise the
/// failing system call's errno.
pub fn send_with_fds(sock: BorrowedFd<'_>, buf: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let batches: Vec<&[RawFd]> = raw.chunks(SCM_MAX_FD).collect();
    if batches.len() > buf.len() {
        return Err(Error::InvalidArgument("fds need at least one byte of data per 253 fds"));
    }
    if batches.len() > 1 {
        let ty = getsockopt(&sock, sockopt::SockType).map_err(|e| Error::sys("getsockopt(SO_TYPE)", e))?;
        if ty != SockType::Stream {
            return Err(Error::TooManyFds { limit: SCM_MAX_FD });
        }
    }
    let mut off = 0;
    for (i, batch) in batches.iter().enumerate() {
        let last = i + 1 == batches.len();
        let end = if last { buf.len() } else { off + 1 };
        off += write_some(sock, &buf[off..end], batch)?;
    }
    while off < buf.len() {
        off += write_some(sock, &buf[off..], &[])?;
    }
    Ok(())
}

/// One successful `sendmsg(2)` of a non-empty prefix of `bytes`, `fds`
/// attached; returns how many bytes went out.
fn write_some(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[RawFd]) -> Result<usize, Error> {
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(n) => return Ok(n),
            Err(Errno::EINTR) => continue,
            Err(Errno::EAGAIN) => wait_writable(sock)?,
            Err(e) => return Err(Error::sys("sendmsg", e)),
        }
    }
}

fn wait_writable(sock: BorrowedFd<'_>) -> Result<(), Error> {
    let mut pfd = [PollFd::new(sock, PollFlags::POLLOUT)];
    loop {
        match poll(&mut pfd, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll", e)),
        }
    }
}
