//! The client side: send one command with its fds attached so that the
//! receiver gives them to exactly that command.
//!
//! # Why the fds ride on a non-whitespace byte
//!
//! On a stream socket the kernel hands the fds of one `sendmsg(2)` to the
//! `recvmsg(2)` that returns the first byte of that write, and such a read
//! may begin with the unread tail of earlier writes
//! (`unix_stream_read_generic()` in `net/unix/af_unix.c`). The receiver
//! ([`crate::monitor::conn`], "The association rule") therefore gives the fds of a
//! read to the last command with a non-whitespace byte in it. That places
//! the fds exactly when, and only when, **the write that carries them
//! starts at a non-whitespace byte of their command**: then that byte is in
//! the read, and no later command's byte can be (the read stops after the
//! write's bytes). A write that starts on whitespace — a space or the
//! `\r\n` of a previous line — can be read together with the previous
//! command's last bytes, and its fds go to that command.
//!
//! So [`send_with_fds`], on a stream socket:
//!
//! * sends leading whitespace first, without fds;
//! * attaches the fds to the write that starts at the first non-whitespace
//!   byte; more than `SCM_MAX_FD` (253, `include/net/scm.h`) fds are split
//!   into batches, batch *i* riding on the *i*-th non-whitespace byte (with
//!   the bytes up to the next one), the last batch on the rest;
//! * refuses, before sending anything, a command with fewer non-whitespace
//!   bytes than batches;
//! * never attaches a batch twice: when the kernel accepts only part of a
//!   write, the fds went with that part and the rest is sent plain.
//!
//! On a packet socket (`SOCK_SEQPACKET`, `SOCK_DGRAM`) one write is one
//! message and the association is exact: the whole command goes in one
//! write with all its fds, at most 253.
//!
//! Whitespace is JSON's (space, tab, `\n`, `\r`: RFC 8259 section 2), the
//! same set the receiver's framing skips between commands.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sendmsg, sockopt, ControlMessage, MsgFlags, SockType};

use crate::error::Error;
use crate::monitor::json::is_ws;

/// The most fds one `sendmsg(2)` may carry: the kernel's one limit for
/// both directions.
pub use crate::monitor::recv::SCM_MAX_FD;

/// Sends all of `buf` (one command) on `sock`, with `fds` attached so that
/// the receiver associates them with this command (see the module docs).
///
/// Retries `EINTR`; on `EAGAIN` (a non-blocking socket) waits with `poll(2)`
/// until the socket is writable. `SIGPIPE` is suppressed (`MSG_NOSIGNAL`):
/// a closed peer is `EPIPE`. The caller keeps ownership of `fds`.
///
/// # Errors
/// [`Error::InvalidArgument`], with nothing sent, when there are fds but
/// fewer non-whitespace bytes in `buf` than batches of 253 fds (stream
/// sockets), or fds and an empty `buf`; [`Error::TooManyFds`] for more than
/// 253 fds on a packet socket, where one write is one message; otherwise
/// the failing system call's errno (`getsockopt(2)`, `sendmsg(2)`,
/// `poll(2)`). After a failed `sendmsg` part of the command may have gone
/// out.
pub fn send_with_fds(sock: BorrowedFd<'_>, buf: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), Error> {
    if fds.is_empty() {
        return write_all(sock, buf);
    }
    if buf.is_empty() {
        return Err(Error::InvalidArgument("fds need at least one byte of data to ride on"));
    }
    let raw: Vec<RawFd> = fds.iter().map(|fd| fd.as_raw_fd()).collect();
    let ty = getsockopt(&sock, sockopt::SockType).map_err(|e| Error::sys("getsockopt(SO_TYPE)", e))?;
    if ty != SockType::Stream {
        if raw.len() > SCM_MAX_FD {
            return Err(Error::TooManyFds { limit: SCM_MAX_FD });
        }
        let n = write_some(sock, buf, &raw)?;
        return write_all(sock, &buf[n..]);
    }
    let batches: Vec<&[RawFd]> = raw.chunks(SCM_MAX_FD).collect();
    let starts: Vec<usize> =
        buf.iter().enumerate().filter(|(_, &b)| !is_ws(b)).map(|(i, _)| i).take(batches.len()).collect();
    if starts.len() < batches.len() {
        return Err(Error::InvalidArgument(
            "fds need a non-whitespace byte of the command per batch of 253 (none in leading or trailing whitespace)",
        ));
    }
    write_all(sock, &buf[..starts[0]])?;
    for (i, (batch, &start)) in batches.iter().zip(&starts).enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(buf.len());
        let n = write_some(sock, &buf[start..end], batch)?;
        write_all(sock, &buf[start + n..end])?;
    }
    Ok(())
}

/// Every byte of `bytes`, no fds attached.
fn write_all(sock: BorrowedFd<'_>, mut bytes: &[u8]) -> Result<(), Error> {
    while !bytes.is_empty() {
        let n = write_some(sock, bytes, &[])?;
        bytes = &bytes[n..];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;
    use std::os::fd::AsFd;

    #[test]
    fn fds_with_no_bytes_are_refused() {
        let _leaks = FdLeakCheck::new();
        let (a, _b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let fds = [a.as_fd()];
        assert!(matches!(send_with_fds(a.as_fd(), b"", &fds), Err(Error::InvalidArgument(_))));
        assert!(matches!(send_with_fds(a.as_fd(), b" \r\n\t", &fds), Err(Error::InvalidArgument(_))));
    }
}
