//! fdctx_send(): the client side, sending one command with its fds so that
//! a monitor following fdctx's association rule gives it exactly those.

use std::ffi::{c_int, c_void};
use std::os::fd::BorrowedFd;

use super::boundary::{fd_arg, ffi_boundary, slice_arg};

/// Sends one command: all `len` bytes of `buf` on the connected Unix socket
/// `sockfd`, with the `nfds` fds of the array `fds` attached so that the
/// monitor gives them to exactly this command.
///
/// The association guarantee: a monitor that follows fdctx's rule (the fds
/// of one read belong to the last command with a non-whitespace byte in that
/// read) gives a command exactly its fds when, and only when, every write
/// that carries them starts at a non-whitespace byte of the command. The
/// kernel hands a write's fds to the read that returns the write's first
/// byte; that read may also hold the unread end of the previous command, so
/// a write starting on whitespace (a space, the `\r\n` of the previous line)
/// can give its fds to the command before. fdctx_send therefore, on a stream
/// socket:
///  - sends leading whitespace first, without fds;
///  - attaches the fds to the write that starts at the first non-whitespace
///    byte (JSON whitespace: space, tab, `\n`, `\r`);
///  - splits more than 253 fds (`SCM_MAX_FD`) into batches, batch i riding
///    on the i-th non-whitespace byte, the last batch on the rest;
///  - never attaches a batch twice when the kernel accepts only part of a
///    write: the rest goes without fds.
///
/// So a command sent with fdctx_send gets exactly its fds, pipelined behind
/// other commands or not. Clients that send fds *ahead* of a command on a
/// whitespace byte of their own (`qemu.qmp`'s `send_fd_scm`) get the same
/// guarantee only if they wait for each reply before sending the next
/// command. On a packet socket (`SOCK_SEQPACKET`, `SOCK_DGRAM`) one write is
/// one message: the whole command goes in one write with all its fds.
///
/// Ownership: the caller keeps `fds` (the receiver gets duplicates).
///
/// Returns 0, or `-EINVAL` with nothing sent (`buf` NULL with `len > 0`,
/// `fds` NULL with `nfds > 0`, fds with `len == 0`, or, on a stream socket,
/// fewer non-whitespace bytes in `buf` than batches of 253 fds — a command
/// of whitespace only with one fd included), `-EBADF` (`sockfd` or an fd
/// negative), `-ETOOMANYREFS` (more than 253 fds on a packet socket), or
/// the errno of getsockopt(2) or sendmsg(2) (`-EPIPE` when the peer is
/// gone; part of the command may have gone out). `EINTR` is retried;
/// `EAGAIN` is waited out with poll(2). `SIGPIPE` is not raised.
///
/// Thread rules: any thread; concurrent sends on one socket may interleave.
#[no_mangle]
pub unsafe extern "C" fn fdctx_send(
    sockfd: c_int,
    buf: *const c_void,
    len: usize,
    fds: *const c_int,
    nfds: usize,
) -> c_int {
    ffi_boundary(|| {
        // SAFETY: the caller keeps the socket open for the call.
        let sock = unsafe { fd_arg(sockfd, "fdctx_send") }?;
        // SAFETY: non-null `buf` points at `len` readable bytes, non-null
        // `fds` at `nfds` ints.
        let (bytes, raw) =
            unsafe { (slice_arg(buf.cast::<u8>(), len, "buf or fds")?, slice_arg(fds, nfds, "buf or fds")?) };
        // SAFETY: the caller keeps these fds open for the call; they are
        // only borrowed.
        let borrowed: Vec<BorrowedFd<'_>> =
            raw.iter().map(|&fd| unsafe { fd_arg(fd, "fdctx_send: negative fd") }).collect::<Result<_, _>>()?;
        crate::monitor::send::send_with_fds(sock, bytes, &borrowed)?;
        Ok(0)
    })
}
