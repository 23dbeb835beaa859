//! Recognising a connection's own peer socket among the fds it receives.
//!
//! A client that sends its own end of the monitor socket (and exits) keeps
//! the connection alive through the monitor's copy: end of stream never
//! comes. Such an fd can never be legitimate, so a socket connection
//! refuses it as it arrives. The kernel tells which socket is the peer of
//! a Unix socket through `sock_diag(7)`: a `NETLINK_SOCK_DIAG` request
//! for the connection's own socket inode with `UDIAG_SHOW_PEER` answers
//! with a `UNIX_DIAG_PEER` attribute, the peer's inode
//! (`net/unix/diag.c`, `include/uapi/linux/unix_diag.h`). A received fd is
//! the peer when it is a socket with that inode (socket inodes live on the
//! one sockfs, so the inode number alone names the socket).
//!
//! Where the kernel has no Unix `sock_diag` (`CONFIG_UNIX_DIAG` off) the
//! peer is unknown and nothing is refused here; the hold deadline still
//! bounds how long such an fd is kept.

use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `SOCK_DIAG_BY_FAMILY` (`include/uapi/linux/sock_diag.h`).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `UDIAG_SHOW_PEER` (`include/uapi/linux/unix_diag.h`).
const UDIAG_SHOW_PEER: u32 = 0x0000_0004;
/// `UNIX_DIAG_PEER`, the attribute holding the peer's inode (`u32`).
const UNIX_DIAG_PEER: u16 = 2;
/// `INET_DIAG_NOCOOKIE`: match the socket by inode alone.
const NO_COOKIE: u32 = !0;

/// `struct unix_diag_req`.
#[repr(C)]
struct UnixDiagReq {
    sdiag_family: u8,
    sdiag_protocol: u8,
    pad: u16,
    udiag_states: u32,
    udiag_ino: u32,
    udiag_show: u32,
    udiag_cookie: [u32; 2],
}

#[repr(C)]
struct Request {
    hdr: libc::nlmsghdr,
    req: UnixDiagReq,
}

/// `sizeof(struct unix_diag_msg)`: family, type, state, pad, ino, cookie.
const DIAG_MSG_LEN: usize = 16;

/// The inode of a socket (or any fd): `fstat(2)`'s `st_ino`, and whether
/// it is a socket at all.
pub fn socket_inode(fd: BorrowedFd<'_>) -> Option<u64> {
    let st = nix::sys::stat::fstat(fd).ok()?;
    (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

/// The inode of the peer of the Unix socket `sock`, when the kernel can
/// tell (`sock_diag` for Unix sockets is available and `sock` is
/// connected); `None` otherwise.
pub fn peer_inode(sock: BorrowedFd<'_>) -> Option<u64> {
    let ino = u32::try_from(socket_inode(sock)?).ok()?;
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if raw < 0 {
        return None;
    }
    // SAFETY: `raw` was just returned by socket(2) and nothing else owns it.
    let nl = unsafe { OwnedFd::from_raw_fd(raw) };
    let request = Request {
        hdr: libc::nlmsghdr {
            nlmsg_len: mem::size_of::<Request>() as u32,
            nlmsg_type: SOCK_DIAG_BY_FAMILY,
            nlmsg_flags: libc::NLM_F_REQUEST as u16,
            nlmsg_seq: 1,
            nlmsg_pid: 0,
        },
        req: UnixDiagReq {
            sdiag_family: libc::AF_UNIX as u8,
            sdiag_protocol: 0,
            pad: 0,
            udiag_states: !0,
            udiag_ino: ino,
            udiag_show: UDIAG_SHOW_PEER,
            udiag_cookie: [NO_COOKIE, NO_COOKIE],
        },
    };
    // SAFETY: an all-zero sockaddr_nl is the kernel's address (pid 0).
    let mut kernel: libc::sockaddr_nl = unsafe { mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: `request` and `kernel` are live locals of the sizes given.
    let sent = unsafe {
        libc::sendto(
            nl.as_raw_fd(),
            (&request as *const Request).cast(),
            mem::size_of::<Request>(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return None;
    }
    // The kernel answers an exact request while sendto runs: the reply is
    // queued already, so never wait for it.
    let mut buf = [0u64; 128];
    // SAFETY: receives at most size_of_val(buf) bytes into a live local.
    let n = unsafe {
        libc::recv(
            nl.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            mem::size_of_val(&buf),
            libc::MSG_DONTWAIT,
        )
    };
    if n <= 0 {
        return None;
    }
    // SAFETY: `buf` is plain memory; viewing its first `n` bytes as bytes
    // is always valid.
    let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
    parse_reply(bytes, ino)
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The `UNIX_DIAG_PEER` of the reply about socket `ino`, if it has one.
fn parse_reply(b: &[u8], ino: u32) -> Option<u64> {
    const NLMSG_HDR: usize = mem::size_of::<libc::nlmsghdr>();
    let len = u32_at(b, 0)? as usize;
    let ty = u16_at(b, 4)?;
    if ty != SOCK_DIAG_BY_FAMILY || len > b.len() || len < NLMSG_HDR + DIAG_MSG_LEN {
        return None; // NLMSG_ERROR: no Unix sock_diag, or no such socket
    }
    let msg = &b[NLMSG_HDR..len];
    if u32_at(msg, 4)? != ino {
        return None;
    }
    let mut at = DIAG_MSG_LEN;
    while at + 4 <= msg.len() {
        let alen = u16_at(msg, at)? as usize;
        let aty = u16_at(msg, at + 2)?;
        if alen < 4 {
            return None;
        }
        if aty == UNIX_DIAG_PEER && alen >= 8 {
            return u32_at(msg, at + 4).filter(|&p| p != 0).map(u64::from);
        }
        at += alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FdLeakCheck;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsFd;

    #[test]
    fn the_peer_of_a_socket_pair_end_is_the_other_end() {
        let _leaks = FdLeakCheck::new();
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let Some(peer) = peer_inode(b.as_fd()) else {
            eprintln!("skip: this kernel has no Unix sock_diag (CONFIG_UNIX_DIAG)");
            return;
        };
        assert_eq!(Some(peer), socket_inode(a.as_fd()));
        assert_eq!(peer_inode(a.as_fd()), socket_inode(b.as_fd()));
        let (r, _w) = nix::unistd::pipe().unwrap();
        assert_eq!(socket_inode(r.as_fd()), None);
        assert_eq!(peer_inode(r.as_fd()), None);
    }
}
