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
use std::os::fd::{AsRawFd, BorrowedFd};

/// `SOCK_DIAG_BY_FAMILY` (`include/uapi/linux/sock_diag.h`).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `UDIAG_SHOW_PEER` (`include/uapi/linux/unix_diag.h`).
const UDIAG_SHOW_PEER: u32 = 0x0000_0004;
/// `UNIX_DIAG_PEER`, the attribute holding the peer's inode (`u32`).
const UNIX_DIAG_PEER: u16 = 2;
/// `INET_DIAG_NOCOOKIE`: match the socket by inode alone.
const NO_COOKIE: u32 = !0;

/// `sizeof(struct unix_diag_msg)`: family, type, state, pad, ino, cookie.
const DIAG_MSG_LEN: usize = 16;

/// The inode of `fd` if it is a socket (`fstat(2)`'s `st_ino`), `None` if
/// it is not.
///
/// This runs for every fd a socket connection receives, so it first asks
/// a question that tells a socket without reaching any file system:
/// `getsockopt(2)` looks the fd up and nothing more
/// (`sockfd_lookup_light()` in `net/socket.c`). It fails with `ENOTSOCK`
/// on any other file, and with `EBADF` on an `O_PATH` fd, which that
/// lookup refuses (`fdget()` skips `FMODE_PATH` files): neither is the
/// peer (an `O_PATH` fd, even of the peer's inode, does not keep the
/// socket open). Only a socket is then `fstat`ed, and sockfs answers that
/// itself. An `fstat` of any other file would ask its file system, which a
/// client can serve itself (FUSE) and never answer. Only where
/// `getsockopt` fails otherwise (a seccomp filter, say) is the fd
/// `fstat`ed untold, so that the check never lets a socket through.
pub fn socket_inode(fd: BorrowedFd<'_>) -> Option<u64> {
    use nix::errno::Errno;
    use nix::sys::socket::{getsockopt, sockopt};
    if let Err(Errno::ENOTSOCK | Errno::EBADF) = getsockopt(&fd, sockopt::SockType) {
        return None;
    }
    let st = nix::sys::stat::fstat(fd).ok()?;
    (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

/// The inode of the peer of the Unix socket `sock`, when the kernel can
/// tell (`sock_diag` for Unix sockets is available and `sock` is
/// connected); `None` otherwise.
pub fn peer_inode(sock: BorrowedFd<'_>) -> Option<u64> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let ino = u32::try_from(socket_inode(sock)?).ok()?;
    let nl = socket(AddressFamily::Netlink, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)
        .ok()?;
    let request = request(ino);
    sendto(nl.as_raw_fd(), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty()).ok()?;
    // The kernel answers an exact request while sendto runs: the reply is
    // queued already, so never wait for it.
    let mut reply = [0u8; 1024];
    let n = recv(nl.as_raw_fd(), &mut reply, MsgFlags::MSG_DONTWAIT).ok()?;
    parse_reply(&reply[..n], ino)
}

/// A `SOCK_DIAG_BY_FAMILY` request for the Unix socket `ino` and its peer:
/// `struct nlmsghdr` then `struct unix_diag_req`, in native byte order.
fn request(ino: u32) -> Vec<u8> {
    const LEN: usize = mem::size_of::<libc::nlmsghdr>() + 24;
    let mut b = Vec::with_capacity(LEN);
    b.extend_from_slice(&(LEN as u32).to_ne_bytes()); // nlmsg_len
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    b.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes()); // nlmsg_flags
    b.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    b.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    b.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]); // sdiag_family, sdiag_protocol, pad
    b.extend_from_slice(&(!0u32).to_ne_bytes()); // udiag_states: any state
    b.extend_from_slice(&ino.to_ne_bytes()); // udiag_ino
    b.extend_from_slice(&UDIAG_SHOW_PEER.to_ne_bytes()); // udiag_show
    b.extend_from_slice(&NO_COOKIE.to_ne_bytes()); // udiag_cookie[0]
    b.extend_from_slice(&NO_COOKIE.to_ne_bytes()); // udiag_cookie[1]
    debug_assert_eq!(b.len(), LEN);
    b
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
        let (a, b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
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

    #[test]
    fn an_o_path_fd_is_no_socket_even_of_a_socket() {
        use nix::fcntl::{open, OFlag};
        use nix::sys::stat::Mode;
        let _leaks = FdLeakCheck::new();
        let (a, _b) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        assert!(socket_inode(a.as_fd()).is_some());
        // The socket's own inode, reopened through procfs as O_PATH.
        let path = format!("/proc/self/fd/{}", a.as_raw_fd());
        let opath = open(path.as_str(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        assert_eq!(socket_inode(opath.as_fd()), None);
        let file = open("/", OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        assert_eq!(socket_inode(file.as_fd()), None);
    }
}
