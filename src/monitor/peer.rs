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
//!
//! The lookup needs an fd of its own (the netlink socket), so it can fail
//! for a while: at `RLIMIT_NOFILE`, which a client can bring about by
//! holding fds on another connection. A [`PeerCheck`] looks the peer up
//! when the connection is made, and where that fails, again with each read
//! that brings fds; a read whose fds cannot be checked fails its command
//! with the lookup's error (`EMFILE`, say) rather than deliver them
//! unchecked. A transient failure never switches the check off.
//!
//! An fd of another socket whose queue holds the client's own end (a
//! socket pair's other end, say) is not the peer and is delivered: its
//! handler owns it from then on. Only while the library holds it for an
//! unfinished command does the hold deadline bound it.

use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use crate::monitor::message::Refusal;

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
    use nix::sys::socket::{getsockopt, sockopt};
    if let Err(Errno::ENOTSOCK | Errno::EBADF) = getsockopt(&fd, sockopt::SockType) {
        return None;
    }
    let st = nix::sys::stat::fstat(fd).ok()?;
    (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
}

/// The inode of the peer of the Unix socket `sock`, when the kernel can
/// tell (`sock_diag` for Unix sockets is available and `sock` is
/// connected); `None` otherwise, a lookup that failed for now included.
#[cfg(any(test, feature = "testing"))]
pub fn peer_inode(sock: BorrowedFd<'_>) -> Option<u64> {
    lookup_peer(sock).ok().flatten()
}

/// Whether a failure to look the peer up may pass (no fd to spare, no
/// memory) rather than mean the kernel cannot tell.
fn transient(e: Errno) -> bool {
    matches!(e, Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM | Errno::EAGAIN | Errno::EINTR)
}

/// The inode of the peer of the Unix socket `sock`: `Ok(None)` when the
/// kernel cannot tell (no Unix `sock_diag`, netlink refused by a security
/// policy, no peer); `Err` when the lookup failed for now and may work
/// later ([`transient`]).
fn lookup_peer(sock: BorrowedFd<'_>) -> Result<Option<u64>, Errno> {
    use nix::sys::socket::{
        recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
    };
    let settle = |e: Errno| if transient(e) { Err(e) } else { Ok(None) };
    let Some(ino) = socket_inode(sock).and_then(|i| u32::try_from(i).ok()) else { return Ok(None) };
    let nl =
        match socket(AddressFamily::Netlink, SockType::Datagram, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkSockDiag)
        {
            Ok(nl) => nl,
            Err(e) => return settle(e),
        };
    let request = request(ino);
    if let Err(e) = sendto(nl.as_raw_fd(), &request, &NetlinkAddr::new(0, 0), MsgFlags::empty()) {
        return settle(e);
    }
    // The kernel answers an exact request while sendto runs: the reply is
    // queued already, so never wait for it.
    let mut reply = [0u8; 1024];
    let n = match recv(nl.as_raw_fd(), &mut reply, MsgFlags::MSG_DONTWAIT) {
        Ok(n) => n,
        Err(e) => return settle(e),
    };
    match parse_reply(&reply[..n], ino) {
        Reply::Peer(p) => Ok(p),
        Reply::Failed(e) => settle(e),
    }
}

/// What a connection knows of its own socket and of its peer, for
/// refusing either among the fds it receives.
#[derive(Debug, Default, Clone, Copy)]
pub struct PeerCheck {
    /// The inodes of the socket itself and of its peer, once looked up.
    known: Option<(Option<u64>, Option<u64>)>,
}

impl PeerCheck {
    /// Looks the peer of `sock` up now, while the connection is made; where
    /// that fails for now, the next read that brings fds tries again.
    pub fn new(sock: BorrowedFd<'_>) -> PeerCheck {
        let mut check = PeerCheck::default();
        let _ = check.lookup(sock);
        check
    }

    fn lookup(&mut self, sock: BorrowedFd<'_>) -> Result<(Option<u64>, Option<u64>), Errno> {
        if let Some(known) = self.known {
            return Ok(known);
        }
        let known = (socket_inode(sock), lookup_peer(sock)?);
        self.known = Some(known);
        Ok(known)
    }

    /// What is wrong with the fds one read of `sock` brought, as far as
    /// the peer goes: [`Refusal::PeerSocket`] when the connection's own
    /// socket or its peer is among them; the lookup's error when the peer
    /// cannot be looked up now (the command fails rather than run
    /// unchecked; the next read tries again); `None` otherwise.
    pub fn fault(&mut self, sock: BorrowedFd<'_>, fds: &[Option<OwnedFd>]) -> Option<Refusal> {
        if fds.is_empty() {
            return None;
        }
        let (own, peer) = match self.lookup(sock) {
            Ok(known) => known,
            Err(e) => return Some(Refusal::PeerUnchecked(e)),
        };
        let refers = fds.iter().flatten().any(|fd| {
            let ino = socket_inode(fd.as_fd());
            ino.is_some() && (ino == peer || ino == own)
        });
        refers.then_some(Refusal::PeerSocket)
    }
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

/// What the kernel answered about a socket.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// Its peer's inode, `None` when it has none or the answer says nothing
    /// usable.
    Peer(Option<u64>),
    /// `NLMSG_ERROR` with this errno (`ENOENT`: no Unix `sock_diag`, or
    /// no such socket).
    Failed(Errno),
}

/// The `UNIX_DIAG_PEER` of the reply about socket `ino`, if it has one.
fn parse_reply(b: &[u8], ino: u32) -> Reply {
    const NLMSG_HDR: usize = mem::size_of::<libc::nlmsghdr>();
    let (Some(len), Some(ty)) = (u32_at(b, 0), u16_at(b, 4)) else { return Reply::Peer(None) };
    let len = len as usize;
    if ty == libc::NLMSG_ERROR as u16 {
        // struct nlmsgerr: a negative errno, then the request's header.
        let errno = u32_at(b, NLMSG_HDR).map_or(0, |e| (e as i32).wrapping_neg());
        return Reply::Failed(Errno::from_raw(errno));
    }
    if ty != SOCK_DIAG_BY_FAMILY || len > b.len() || len < NLMSG_HDR + DIAG_MSG_LEN {
        return Reply::Peer(None);
    }
    Reply::Peer(peer_attribute(&b[NLMSG_HDR..len], ino))
}

/// The `UNIX_DIAG_PEER` attribute of a `unix_diag_msg` about `ino`.
fn peer_attribute(msg: &[u8], ino: u32) -> Option<u64> {
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
    use crate::testing::fdcount::FdLeakCheck;
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
    fn a_netlink_error_is_told_from_a_peer_and_from_no_answer() {
        // struct nlmsghdr (NLMSG_ERROR) then struct nlmsgerr's error field.
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&(-libc::ENOBUFS).to_ne_bytes());
        b.resize(36, 0);
        assert_eq!(parse_reply(&b, 7), Reply::Failed(Errno::ENOBUFS));
        assert!(transient(Errno::ENOBUFS) && transient(Errno::EMFILE));
        assert!(!transient(Errno::ENOENT) && !transient(Errno::EPROTONOSUPPORT) && !transient(Errno::EACCES));
        assert_eq!(parse_reply(&b[..3], 7), Reply::Peer(None));
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
