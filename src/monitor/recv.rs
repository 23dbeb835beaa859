//! `recvmsg(2)` with every received fd owned from the moment the call
//! returns.
//!
//! This is the one place that parses control data. It does not use nix's
//! `RecvMsg::cmsgs()`, because that refuses to parse anything when the
//! kernel sets `MSG_CTRUNC` — and `MSG_CTRUNC` is exactly the case where
//! some fds *were* installed (the kernel stops at the first one it cannot
//! install, e.g. at `RLIMIT_NOFILE`, see `scm_detach_fds()` in
//! `net/core/scm.c`) and must be closed. Here every `SCM_RIGHTS` fd present
//! in the buffer becomes an [`OwnedFd`] before anything else happens, and
//! truncation is reported as a flag next to them, so no caller can forget
//! to close what arrived.

use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::fds::context::FdList;

use nix::errno::Errno;

/// The most fds one `recvmsg(2)` can return (`SCM_MAX_FD`,
/// `include/net/scm.h`).
pub const SCM_MAX_FD: usize = 253;

/// `SCM_PIDFD` (Linux 6.5, `include/linux/socket.h`): the sender's pidfd,
/// installed in the receiver when the socket has `SO_PASSPIDFD`.
const SCM_PIDFD: libc::c_int = 0x04;

/// Room for a security label (`SCM_SECURITY`, with `SO_PASSSEC`).
const SECURITY_LABEL_BYTES: usize = 256;

/// Room for a receive timestamp (`SCM_TIMESTAMP`, `SCM_TIMESTAMPNS`: a
/// `timeval`/`timespec` or their 64-bit forms, at most 16 bytes), which a
/// packet connection turns on to tell an empty packet from the end.
const TIMESTAMP_BYTES: usize = 16;

/// Bytes of control buffer, in `u64` words so the buffer has `cmsghdr`
/// alignment: `SCM_MAX_FD` fds, plus what other control messages a VMM may
/// have enabled on its socket (`SO_PASSCRED`, `SO_PASSPIDFD`,
/// `SO_PASSSEC`, `SO_TIMESTAMP`) take, so they never crowd out fds (a truncation there would
/// read as fds lost).
pub const CMSG_WORDS: usize = (cmsg_space(SCM_MAX_FD * mem::size_of::<RawFd>())
    + cmsg_space(mem::size_of::<libc::ucred>())
    + cmsg_space(mem::size_of::<RawFd>())
    + cmsg_space(SECURITY_LABEL_BYTES)
    + cmsg_space(TIMESTAMP_BYTES))
    / 8;

/// `CMSG_SPACE(len)` on Linux: the header plus the data rounded up to 8.
const fn cmsg_space(len: usize) -> usize {
    mem::size_of::<libc::cmsghdr>() + len.div_ceil(8) * 8
}

/// What one `recvmsg(2)` returned: its fds as a `Vec` (`recv_with_fds`),
/// or as the connection keeps them, an [`FdList`] ([`recv_fd_list`]).
#[derive(Debug, Default)]
pub struct Received<Fds = Vec<OwnedFd>> {
    /// Bytes written into the buffer.
    pub bytes: usize,
    /// Every fd the kernel installed, in order.
    pub fds: Fds,
    /// `MSG_CTRUNC`: fds were sent that the kernel could not install.
    pub fds_lost: bool,
    /// `MSG_TRUNC`: a datagram or packet was larger than the buffer.
    pub truncated: bool,
    /// The kernel wrote control data (any kind). On a packet socket with
    /// `SO_TIMESTAMP` every packet received brings some, so an empty read
    /// without any is the end of the stream, not an empty packet.
    pub control: bool,
}

/// Receives into `buf`, with room for 253 fds in `cmsg`, always with
/// `MSG_CMSG_CLOEXEC`. `EINTR` is retried; any other failure is returned
/// as its errno (`EAGAIN` on an empty non-blocking socket).
#[cfg(any(test, feature = "testing"))]
pub fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8], cmsg: &mut [u64; CMSG_WORDS]) -> Result<Received, Errno> {
    let got = recv_fd_list(sock, buf, cmsg)?;
    Ok(Received {
        bytes: got.bytes,
        fds: got.fds.into_iter().flatten().collect(),
        fds_lost: got.fds_lost,
        truncated: got.truncated,
        control: got.control,
    })
}

/// `recv_with_fds` with the fds in an [`FdList`] (every slot `Some`):
/// no heap allocation for a few fds.
pub fn recv_fd_list(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    cmsg: &mut [u64; CMSG_WORDS],
) -> Result<Received<FdList>, Errno> {
    loop {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: an all-zero msghdr is a valid "no address, no iov, no
        // control" header; the fields we need are set just below.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(cmsg) as _;
        // SAFETY: `msg` points at `iov` (which covers exactly `buf`) and at
        // `cmsg`, both alive and exclusively borrowed for this call; the
        // kernel writes no more than the lengths given.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        // Take ownership of whatever arrived before looking at anything
        // else: even a failed call may not leave fds behind unowned.
        let fds = if n >= 0 {
            // SAFETY: the kernel filled `msg.msg_control` for this
            // successful call; `msg_controllen` says how much of it.
            unsafe { take_scm_rights(&msg) }
        } else {
            FdList::new()
        };
        if n < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        return Ok(Received {
            bytes: n as usize,
            fds,
            fds_lost: msg.msg_flags & libc::MSG_CTRUNC != 0,
            truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
            control: msg.msg_controllen > 0,
        });
    }
}

/// Turns on `SO_OOBINLINE` on a socket the connection reads, so that a
/// byte a client sends out of band (`send(2)` with `MSG_OOB`) arrives in
/// line, with the fds sent with it, like any other byte.
///
/// Without it a normal read of a Unix stream socket (Linux 5.15 and later,
/// `CONFIG_AF_UNIX_OOB`) never returns the out-of-band byte: it stops
/// short of the mark, and a read that starts there drops the byte and its
/// fds or keeps them queued for a `MSG_OOB` read nobody makes (older
/// kernels keep them while the out-of-band pointer refers to them). A
/// blocking `recvmsg` that started at the mark sleeps with nothing left to
/// return, and the fds it dropped are released only when the call returns
/// (`manage_oob()` and `unix_stream_read_generic()` in
/// `net/unix/af_unix.c`; `fput()` defers the close until the thread goes
/// back to user space). A client that sends its own socket end out of
/// band and exits then keeps the connection open, and the hold deadline
/// never sees the fds. In line, the byte is a byte of the stream: its fds
/// follow the association rule, the peer-socket refusal and the deadline.
/// On a socket with no out-of-band data the option changes nothing.
pub fn inline_out_of_band(sock: BorrowedFd<'_>) -> Result<(), crate::error::Error> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(&sock, sockopt::OobInline, &true).map_err(|e| crate::error::Error::sys("setsockopt(SO_OOBINLINE)", e))
}

/// The size of the next packet on a `SOCK_SEQPACKET`/`SOCK_DGRAM` socket,
/// without taking it (`MSG_PEEK | MSG_TRUNC`, see unix(7) and
/// `unix_dgram_recvmsg()`); 0 at end of stream or for an empty packet.
/// The peek has no control buffer, so no fd is installed by it.
pub fn peek_packet_len(sock: BorrowedFd<'_>) -> Result<usize, Errno> {
    loop {
        // SAFETY: a zero-length receive writes nothing; the null buffer is
        // never touched.
        let n = unsafe { libc::recv(sock.as_raw_fd(), std::ptr::null_mut(), 0, libc::MSG_PEEK | libc::MSG_TRUNC) };
        if n >= 0 {
            return Ok(n as usize);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Walks the control messages of a received `msghdr` and wraps every
/// `SCM_RIGHTS` fd in an [`OwnedFd`]. A pidfd (`SCM_PIDFD`) is closed at
/// once: the kernel installs it, and nobody else would.
///
/// # Safety
/// `msg` must come from a successful `recvmsg(2)` whose control buffer is
/// still alive, so that `msg_control`/`msg_controllen` describe control
/// messages the kernel wrote, and every fd in them is newly installed and
/// owned by nobody else.
unsafe fn take_scm_rights(msg: &libc::msghdr) -> FdList {
    let mut fds = FdList::new();
    // SAFETY: per this function's contract the header describes a valid
    // control buffer; CMSG_FIRSTHDR/CMSG_NXTHDR stay within msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: `c` is non-null and points at a cmsghdr inside the buffer.
        let hdr = unsafe { &*c };
        let fd_bearing = hdr.cmsg_type == libc::SCM_RIGHTS || hdr.cmsg_type == SCM_PIDFD;
        if hdr.cmsg_level == libc::SOL_SOCKET && fd_bearing {
            // SAFETY: CMSG_LEN(0) is a pure computation.
            let header_len = unsafe { libc::CMSG_LEN(0) } as usize;
            let n = (hdr.cmsg_len as usize).saturating_sub(header_len) / mem::size_of::<RawFd>();
            // SAFETY: CMSG_DATA points just past the header, within the
            // cmsg_len bytes the kernel wrote.
            let data = unsafe { libc::CMSG_DATA(c) }.cast::<RawFd>();
            fds.reserve_exact(n);
            for i in 0..n {
                // SAFETY: `i < n` keeps the read inside cmsg_len; the data
                // may be unaligned for i32, hence read_unaligned.
                let raw = unsafe { data.add(i).read_unaligned() };
                if raw >= 0 {
                    // SAFETY: the kernel just installed `raw` in our table
                    // for this message; nothing else refers to it yet.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    if hdr.cmsg_type == libc::SCM_RIGHTS {
                        fds.push(Some(fd));
                    }
                }
            }
        }
        // SAFETY: `c` is a valid header within the buffer described by `msg`.
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    fds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::{AsFd, BorrowedFd};

    #[test]
    fn fds_arrive_owned_and_cloexec() {
        let _leaks = FdLeakCheck::new();
        let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        crate::monitor::send::send_with_fds(a.as_fd(), b"{}", &[r.as_fd(), w.as_fd()]).unwrap();
        drop((r, w));
        let mut buf = [0u8; 16];
        let mut cmsg = [0u64; CMSG_WORDS];
        let got = recv_with_fds(b.as_fd(), &mut buf, &mut cmsg).unwrap();
        assert_eq!((got.bytes, got.fds.len(), got.fds_lost), (2, 2, false));
        for fd in &got.fds {
            let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert!(nix::fcntl::FdFlag::from_bits_retain(fl).contains(nix::fcntl::FdFlag::FD_CLOEXEC));
        }
    }

    #[test]
    fn control_buffer_fits_scm_max_fd_and_credentials() {
        let _leaks = FdLeakCheck::new();
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = |n: usize| unsafe { libc::CMSG_SPACE(n as u32) } as usize;
        let want = space(SCM_MAX_FD * 4) + space(mem::size_of::<libc::ucred>()) + space(4);
        assert!(CMSG_WORDS * 8 >= want);
    }

    fn enable(sock: &OwnedFd, opt: libc::c_int) -> bool {
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from a live local.
        let r = unsafe {
            libc::setsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, opt, (&one as *const libc::c_int).cast(), 4)
        };
        r == 0
    }

    #[test]
    fn credentials_and_pidfds_crowd_out_no_fd_and_leak_nothing() {
        let _leaks = FdLeakCheck::new();
        let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        assert!(enable(&b, libc::SO_PASSCRED));
        const SO_PASSPIDFD: libc::c_int = 76;
        let pidfds = enable(&b, SO_PASSPIDFD); // Linux 6.5 and later
        let pipes: Vec<OwnedFd> = (0..SCM_MAX_FD).map(|_| nix::unistd::pipe().unwrap().0).collect();
        let borrowed: Vec<BorrowedFd<'_>> = pipes.iter().map(|f| f.as_fd()).collect();
        let mut buf = [0u8; 16];
        let mut cmsg = [0u64; CMSG_WORDS];
        for _ in 0..3 {
            crate::monitor::send::send_with_fds(a.as_fd(), b"{}", &borrowed).unwrap();
            let got = recv_with_fds(b.as_fd(), &mut buf, &mut cmsg).unwrap();
            assert_eq!((got.fds.len(), got.fds_lost), (SCM_MAX_FD, false), "pidfds enabled: {pidfds}");
        }
    }
}
