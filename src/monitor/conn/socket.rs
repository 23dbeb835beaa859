//! A socket connection's own reads. A connection made with
//! [`Connection::new`] is a fed one plus this loop: each `recvmsg(2)` here
//! is what a caller's read is to [`Connection::feed`], and goes through the
//! same framing and association code. Packet sockets also tell an empty
//! packet from the end of the stream here.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use super::Connection;
use crate::error::Error;
use crate::monitor::assoc::ms_rounded_up;
use crate::monitor::framing::Framing;
use crate::monitor::recv::{peek_packet_len, recv_fd_list, CMSG_WORDS};

/// Turns on `SO_TIMESTAMP` on a packet socket: the kernel then attaches a
/// timestamp to every packet it returns, an empty one included, and none
/// to the end of the stream (`__unix_dgram_recvmsg()` in
/// `net/unix/af_unix.c` adds it only when it dequeued a packet). That is
/// how an empty packet is told from the end, even when more empty packets
/// are queued behind it. Best effort: without it, an empty packet that
/// arrives just before the peer closes may read as the end.
fn enable_timestamps(sock: BorrowedFd<'_>) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(&sock, sockopt::ReceiveTimestamp, &true);
}

/// Bytes asked of the kernel per read on a stream socket.
const STREAM_READ: usize = 64 * 1024;

/// Per-thread receive buffers: a connection keeps only the frame in
/// progress, so an idle connection costs a few hundred bytes.
struct Scratch {
    buf: Vec<u8>,
    cmsg: Box<[u64; CMSG_WORDS]>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { buf: Vec::new(), cmsg: Box::new([0; CMSG_WORDS]) }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Runs `f` with this thread's buffers, or with fresh ones while the
/// thread's locals are being torn down.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    let mut f = Some(f);
    let done = SCRATCH.try_with(|s| match s.try_borrow_mut() {
        Ok(mut scratch) => Some((f.take().expect("called once"))(&mut scratch)),
        Err(_) => None,
    });
    match done {
        Ok(Some(v)) => v,
        _ => (f.take().expect("called once"))(&mut Scratch::new()),
    }
}

/// Checks that `sock` is a socket that `framing` can read: packet framing
/// needs a `SOCK_SEQPACKET` or `SOCK_DGRAM` socket (on a stream it would
/// never see a message boundary), and then turns on its timestamps (see
/// [`enable_timestamps`]); JSON and line framing need a `SOCK_STREAM`
/// socket (on a packet socket a read of a fixed size would cut a larger
/// packet, and the kernel drops the rest: `MSG_TRUNC` in `recvmsg(2)`).
pub(super) fn check_socket(sock: BorrowedFd<'_>, framing: Framing) -> Result<(), Error> {
    use nix::sys::socket::{getsockopt, sockopt, SockType};
    let ty = getsockopt(&sock, sockopt::SockType).map_err(|e| Error::sys("getsockopt(SO_TYPE)", e))?;
    if framing == Framing::Packet {
        if ty == SockType::Stream {
            return Err(Error::InvalidArgument("packet framing needs a SOCK_SEQPACKET or SOCK_DGRAM socket"));
        }
        enable_timestamps(sock);
    } else if ty != SockType::Stream {
        return Err(Error::InvalidArgument("JSON and line framing need a SOCK_STREAM socket (use packet framing)"));
    }
    Ok(())
}

impl<S: AsFd> Connection<S> {
    /// Waits up to `left` for the socket to become readable, when it is in
    /// blocking mode; `Ok(false)` when the time ran out (or a signal came).
    /// A non-blocking socket is not waited for.
    pub(super) fn readable_within(&self, left: Duration) -> Result<bool, Error> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let fl = fcntl(self.sock(), FcntlArg::F_GETFL).map_err(|e| Error::sys("fcntl(F_GETFL)", e))?;
        if OFlag::from_bits_retain(fl).contains(OFlag::O_NONBLOCK) {
            return Ok(true);
        }
        // Rounded up, so a wake-up never comes before the deadline.
        let ms = ms_rounded_up(left);
        let mut pfd = libc::pollfd { fd: self.sock().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = nix::errno::Errno::last();
            return if e == nix::errno::Errno::EINTR { Ok(false) } else { Err(Error::sys("poll", e)) };
        }
        Ok(n > 0)
    }

    pub(super) fn read_once(&mut self) -> Result<(), Error> {
        with_scratch(|scratch| match self.framing {
            Framing::Packet => self.read_packet(scratch),
            _ => self.read_stream(scratch),
        })
    }

    fn read_stream(&mut self, scratch: &mut Scratch) -> Result<(), Error> {
        if scratch.buf.len() < STREAM_READ {
            scratch.buf.resize(STREAM_READ, 0);
        }
        let got = recv_fd_list(self.sock(), &mut scratch.buf[..STREAM_READ], &mut scratch.cmsg)
            .map_err(|e| Error::sys("recvmsg", e))?;
        if got.bytes == 0 {
            // End of stream; a stream read returns fds only with bytes.
            drop(got.fds);
            self.end_of_stream();
        } else {
            let fault = self.fault(&got.fds, got.fds_lost);
            self.on_stream(&scratch.buf[..got.bytes], got.fds, fault);
        }
        Ok(())
    }

    /// One packet, received into a buffer of exactly its size: memory
    /// follows what arrives, not `max_msg_bytes`.
    fn read_packet(&mut self, scratch: &mut Scratch) -> Result<(), Error> {
        let size = peek_packet_len(self.sock()).map_err(|e| Error::sys("recv(MSG_PEEK)", e))?;
        let max = self.limits.max_msg_bytes;
        let mut data = Vec::new();
        if size <= max {
            // One byte more, for the NUL the message appends.
            data.try_reserve_exact(size + 1)
                .map_err(|_| Error::sys("allocating a packet buffer", nix::errno::Errno::ENOMEM))?;
            data.resize(size, 0);
        }
        // A packet over the limit is received into no room at all: the
        // kernel drops its bytes and reports MSG_TRUNC.
        let got = recv_fd_list(self.sock(), &mut data, &mut scratch.cmsg).map_err(|e| Error::sys("recvmsg", e))?;
        data.truncate(got.bytes);
        // A packet, even an empty one, brings its timestamp; the end brings
        // no control data at all.
        if got.bytes == 0 && !got.control && !got.truncated && !got.fds_lost && self.peer_gone() {
            self.end_of_stream();
            return Ok(());
        }
        let fault = self.fault(&got.fds, got.fds_lost);
        self.on_packet(data, got.fds, fault, got.truncated);
        Ok(())
    }

    /// After an empty read on a packet socket: end of stream, or an empty
    /// packet? The end is when the socket polls hung up — the peer closed
    /// or shut down writing (seqpacket), or this side shut down reading —
    /// and nothing is queued any more (`POLLHUP`/`POLLRDHUP` and `SIOCINQ`,
    /// see `unix_dgram_poll()` and `unix_inq_len()` in `net/unix/af_unix.c`).
    /// `SIOCINQ` counts bytes, so it cannot see empty packets still queued:
    /// that a read took an empty packet is known from its timestamp (see
    /// [`enable_timestamps`]).
    fn peer_gone(&self) -> bool {
        let fd = AsRawFd::as_raw_fd(&self.sock());
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
        loop {
            // SAFETY: one valid pollfd, a zero timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n >= 0 {
                break;
            }
            if nix::errno::Errno::last() != nix::errno::Errno::EINTR {
                return true;
            }
        }
        if pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) == 0 {
            return false;
        }
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD (SIOCINQ) writes one int to a live local.
        let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
        r < 0 || queued == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::OwnedFd;

    fn pair(ty: SockType) -> (OwnedFd, OwnedFd) {
        socketpair(AddressFamily::Unix, ty, None, SockFlag::SOCK_CLOEXEC).unwrap()
    }

    #[test]
    fn each_framing_reads_only_the_socket_kind_it_can_frame() {
        let _leaks = FdLeakCheck::new();
        let (stream, _s) = pair(SockType::Stream);
        let (packet, _p) = pair(SockType::SeqPacket);
        let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
        assert!(check_socket(stream.as_fd(), Framing::Json).is_ok());
        assert!(check_socket(stream.as_fd(), Framing::Line).is_ok());
        assert!(check_socket(packet.as_fd(), Framing::Packet).is_ok());
        let errno = |r: Result<(), Error>| r.map_err(|e| e.errno());
        assert_eq!(errno(check_socket(stream.as_fd(), Framing::Packet)), Err(libc::EINVAL));
        assert_eq!(errno(check_socket(packet.as_fd(), Framing::Json)), Err(libc::EINVAL));
        assert_eq!(errno(check_socket(pipe_r.as_fd(), Framing::Json)), Err(libc::ENOTSOCK));
    }

    #[test]
    fn a_read_nested_in_a_read_gets_buffers_of_its_own() {
        let _leaks = FdLeakCheck::new();
        let outer = with_scratch(|s| {
            s.buf.resize(3, 7);
            // The thread's buffers are in use: the inner call must not see them.
            with_scratch(|inner| inner.buf.len())
        });
        assert_eq!(outer, 0);
        assert_eq!(with_scratch(|s| s.buf.len()), 3, "the thread's buffers are kept between reads");
    }
}
