//! `fdctx_conn`, a monitor connection as C holds it, and its functions:
//! making one (reading its socket, or fed the caller's reads), feeding it,
//! receiving commands, its hold deadline, and freeing it. The framing
//! values are here too: only a connection takes them.

use std::ffi::{c_int, c_uint, c_void};
use std::os::fd::BorrowedFd;
use std::ptr;

use super::boundary::{fd_arg, ffi_boundary, slice_arg, Boxed, Castable};
use super::message::fdctx_msg;
use super::{fdctx_limits, limits_arg, FDCTX_FEED_END, FDCTX_FEED_FDS_LOST};
use crate::error::Error;
use crate::monitor::assoc::ms_rounded_up;
use crate::monitor::conn::{Connection, FeedFlags, Framing};

/// A handle to one monitor connection, made by fdctx_conn_new() (fdctx
/// reads the socket) or fdctx_conn_new_fed() (the caller reads it and hands
/// each read to fdctx_conn_feed()), and ended by fdctx_conn_free().
/// fdctx_conn_recv() returns each command with exactly the fds sent with
/// it; in between, the connection holds only the command in progress and
/// fds waiting for one, which fdctx_conn_free() closes. Both kinds frame
/// and associate fds with one code path, so the same reads give the same
/// messages.
///
/// Thread rules: a connection may move between threads, but no two calls
/// on it may run at once; and it must be its socket's only reader (a
/// second reader would split commands, and a packet could change between
/// peeking and receiving).
pub struct fdctx_conn {
    /// The caller's socket, borrowed for the connection's whole life (the
    /// `'static` is the C contract of fdctx_conn_new(): open until
    /// fdctx_conn_free()); none for a fed connection.
    conn: Connection<BorrowedFd<'static>>,
}

impl Castable for fdctx_conn {
    const NAME: &'static str = "conn";
}

impl Boxed for fdctx_conn {}

/// How a connection splits its input into commands: one of the
/// `FDCTX_FRAMING_*` values. (An integer type rather than a C enum, so that
/// any value a caller passes is defined behaviour: unknown ones are refused.)
pub type fdctx_framing = c_int;

/// QMP: a stream of JSON objects, optional whitespace between them. Each is
/// validated; a malformed one is rejected at the byte where it can no
/// longer be JSON, and input is discarded up to the next line break. A
/// command cut short (a line break inside a string, or a `{` starting a
/// line where the command has no place for a value) ends at that line
/// break, so the next line's command is not lost with it.
pub const FDCTX_FRAMING_JSON: fdctx_framing = 0;
/// Newline-terminated commands (human monitors); a trailing `\r` is
/// dropped, blank lines are skipped.
pub const FDCTX_FRAMING_LINE: fdctx_framing = 1;
/// `SOCK_SEQPACKET` / `SOCK_DGRAM`: one packet is one command. A packet
/// whose first non-whitespace byte is `{` is validated as JSON.
///
/// A `SOCK_DGRAM` socket has no end of stream: when the client closes its
/// end nothing tells the reader, so fdctx_conn_recv() never returns 0 and a
/// blocking call then waits for ever. A monitor serving a client on a
/// datagram socket needs its own way to end the connection (a
/// non-blocking socket and a timeout of its own, say); `SOCK_SEQPACKET`
/// does report the end.
pub const FDCTX_FRAMING_PACKET: fdctx_framing = 2;

/// Starts receiving commands on `sockfd`, a connected Unix socket
/// (`SOCK_STREAM` for JSON and LINE framing, `SOCK_SEQPACKET` or
/// `SOCK_DGRAM` for PACKET). Blocking or non-blocking, as the socket is.
///
/// Ownership: the connection borrows `sockfd` and never closes it; the
/// caller keeps it open until fdctx_conn_free() and closes it after.
/// `limits` may be NULL (all defaults); it is copied.
///
/// Returns the connection, or NULL with fdctx_last_error() set when
/// `sockfd` is negative or not a socket, `framing` is not one of
/// `FDCTX_FRAMING_*`, PACKET framing is asked of a stream socket, JSON or
/// LINE framing of any other kind of socket, a limit is above its maximum (`max_msg_bytes` 1 GiB, `max_fds` 65536,
/// `max_depth` 127, `max_hold_ms` 3600000), or `SO_OOBINLINE` cannot be
/// set.
///
/// The connection must be the socket's only reader. With PACKET framing it
/// turns on `SO_TIMESTAMP` on the socket: every packet then brings a
/// timestamp, which is how an empty packet is told from the end of the
/// stream; leave it on.
///
/// It turns on `SO_OOBINLINE` on the socket, so that a byte a client sends
/// out of band (`send(2)` with `MSG_OOB`, which Unix stream sockets accept
/// since Linux 5.15) arrives in line, with the fds sent with it, under the
/// same rules as any other byte; leave it on. Without it a normal read
/// never returns that byte or its fds, and a blocking read that reaches it
/// sleeps with nothing to return: a client could send its own socket end
/// out of band and keep the connection open for ever, out of reach of the
/// peer refusal and of `max_hold_ms`.
///
/// It also looks up the socket's peer, for the refusal described at
/// fdctx_conn_recv() (Unix `sock_diag`: one netlink socket, open for the
/// moment of the lookup). Where that fails for now (the process at
/// `RLIMIT_NOFILE`) it is tried again when fds arrive.
///
/// Thread rules: a connection may move between threads but must not be used
/// from two threads at once.
#[no_mangle]
pub unsafe extern "C" fn fdctx_conn_new(
    sockfd: c_int,
    framing: fdctx_framing,
    limits: *const fdctx_limits,
) -> *mut fdctx_conn {
    ffi_boundary(|| {
        // SAFETY: the caller keeps `sockfd` open until fdctx_conn_free(), as
        // documented above, and the connection ends there: the 'static
        // borrow outlives every use. The one borrowed socket of the C ABI.
        let sock: BorrowedFd<'static> = unsafe { fd_arg(sockfd, "fdctx_conn_new") }?;
        // SAFETY: a live fdctx_limits or NULL.
        let limits = unsafe { limits_arg(limits) };
        let framing = framing_arg(framing)?;
        Ok(fdctx_conn { conn: Connection::new(sock, framing, limits)? }.into_ptr())
    })
}

fn framing_arg(framing: fdctx_framing) -> Result<Framing, Error> {
    match framing {
        FDCTX_FRAMING_JSON => Ok(Framing::Json),
        FDCTX_FRAMING_LINE => Ok(Framing::Line),
        FDCTX_FRAMING_PACKET => Ok(Framing::Packet),
        _ => Err(Error::InvalidArgument("framing: not one of FDCTX_FRAMING_*")),
    }
}

/// Starts a connection that fdctx does not read: the caller reads its
/// monitor socket itself (its own `recvmsg`, GLib's `GSocket`, QEMU's
/// chardev layer) and hands each read to fdctx_conn_feed(). The same
/// framing, limits and fd association as fdctx_conn_new() apply, and
/// commands come out of fdctx_conn_recv() the same way: given the same
/// reads, both connections deliver the same messages with the same fds.
///
/// `limits` may be NULL (all defaults); it is copied.
///
/// Returns the connection, to be ended with fdctx_conn_free(), or NULL with
/// fdctx_last_error() set when `framing` is not one of `FDCTX_FRAMING_*` or
/// a limit is above its maximum (`max_msg_bytes` 1 GiB, `max_fds` 65536,
/// `max_depth` 127, `max_hold_ms` 3600000).
///
/// The caller's reads must see every byte a client sends: turn on
/// `SO_OOBINLINE` on the monitor socket (see fdctx_conn_new()), or a byte
/// sent out of band, with its fds, never reaches a read of yours and a
/// blocking read can sleep at it for ever.
///
/// Thread rules: a connection may move between threads but must not be used
/// from two threads at once.
#[no_mangle]
pub unsafe extern "C" fn fdctx_conn_new_fed(framing: fdctx_framing, limits: *const fdctx_limits) -> *mut fdctx_conn {
    ffi_boundary(|| {
        // SAFETY: a live fdctx_limits or NULL.
        let limits = unsafe { limits_arg(limits) };
        let framing = framing_arg(framing)?;
        Ok(fdctx_conn { conn: Connection::fed(framing, limits)? }.into_ptr())
    })
}

/// Feeds one read of the caller's to a connection made by
/// fdctx_conn_new_fed(): the `len` bytes at `data` and the `nfds` fds at
/// `fds` that the same `recvmsg` returned.
///
/// One call must be exactly one `recvmsg` (one read of GLib's or QEMU's):
/// on a stream the kernel hands a write's fds to the read that returns the
/// write's first byte, and fdctx gives the fds of one call to the last command that has
/// a non-whitespace byte among the call's bytes (to the next command when
/// the call holds whitespace only, as `qemu.qmp` sends its fds on a lone
/// space). Merging two reads into one call, or splitting one into two, can
/// give fds to the wrong command. With `FDCTX_FRAMING_PACKET` one call is
/// one packet, an empty one included; a packet larger than `max_msg_bytes`
/// (the caller's read reported `MSG_TRUNC`, or the bytes are too many) is
/// delivered with status `-EMSGSIZE`. `len` may be 0 (a read that brought
/// only fds, or a call with just `FDCTX_FEED_END`).
///
/// `flags` is 0 or a bitwise OR of:
/// - `FDCTX_FEED_FDS_LOST`: the read reported `MSG_CTRUNC`;
/// - `FDCTX_FEED_END`: the stream ends after these bytes (the read returned
///   0). An unfinished command, and fds still waiting for one, are closed.
///   With PACKET framing a call with `FDCTX_FEED_END`, no bytes and no fds
///   is no packet, only the end.
///
/// Ownership: the bytes are copied as needed; `data` may be reused after
/// the call. The connection owns every fd in `fds` from this call on, EVEN
/// WHEN THE CALL FAILS (a NULL `conn` included): the caller must not use or
/// close them again; on failure they have been closed. They must be fds the
/// caller owns, fresh from its read, not ones already fed.
///
/// Held fds whose `max_hold_ms` deadline passed before this call expire
/// before its bytes are taken (as a socket connection expires them before
/// its next read): feed late bytes of a timed-out command and they are
/// discarded to the next line break.
///
/// Returns 0, then call fdctx_conn_recv() until it returns `-EAGAIN` (or 0)
/// for the commands that are now complete. On failure nothing is fed, the
/// fds are closed, and the call returns:
/// - `-EINVAL`: `conn` is NULL, `data` is NULL with `len > 0`, `fds` is
///   NULL with `nfds > 0`, `flags` has a bit other than the two above, an
///   fd appears twice in `fds`, or `conn` reads its own socket (it was made
///   by fdctx_conn_new());
/// - `-EBADF`: an entry of `fds` is negative or not an open fd;
/// - `-EPIPE`: `FDCTX_FEED_END` was fed before.
///
/// Thread rules: not concurrently with other calls on the same connection.
#[no_mangle]
pub unsafe extern "C" fn fdctx_conn_feed(
    conn: *mut fdctx_conn,
    data: *const c_void,
    len: usize,
    fds: *const c_int,
    nfds: usize,
    flags: c_uint,
) -> c_int {
    ffi_boundary(|| {
        let (owned, fd_error) = if fds.is_null() {
            (Vec::new(), (nfds > 0).then_some(Error::InvalidArgument("fds")))
        } else {
            // SAFETY: the caller passes an array of `nfds` fds it owns and
            // hands over with this call.
            unsafe { crate::fds::context::own_raw_fds(std::slice::from_raw_parts(fds, nfds)) }
        };
        if let Some(e) = fd_error {
            return Err(e);
        }
        if flags & !(FDCTX_FEED_FDS_LOST | FDCTX_FEED_END) != 0 {
            return Err(Error::InvalidArgument("flags: unknown FDCTX_FEED_* bit"));
        }
        // SAFETY: non-null `data` points at `len` readable bytes for the
        // duration of the call.
        let bytes = unsafe { slice_arg(data.cast::<u8>(), len, "data") }?;
        // SAFETY: live connection or NULL, not in use elsewhere.
        let conn = unsafe { fdctx_conn::arg_mut(conn) }?;
        let flags = FeedFlags { fds_lost: flags & FDCTX_FEED_FDS_LOST != 0, end: flags & FDCTX_FEED_END != 0 };
        conn.conn.feed_list(bytes, owned.into_iter().map(Some).collect(), flags)?;
        Ok(0)
    })
}

/// Receives the next command with exactly the fds sent with it.
///
/// A monitor loop:
///
/// ```c
/// while ((r = fdctx_conn_recv(conn, &msg)) == 1) {
///     if (fdctx_msg_status(msg) < 0)
///         reply_error(msg, fdctx_msg_error(msg));
///     else
///         dispatch(msg);
///     fdctx_msg_finish(msg);
/// }
/// ```
///
/// Returns:
/// - 1, with `*out` set to a message the caller must end with
///   fdctx_msg_finish(), for every message-shaped thing, good or bad —
///   check fdctx_msg_status(): a bad one (malformed, too large, too many
///   fds, fds lost in transit, the client's own socket end among its fds,
///   fds that could not be checked for it, a `/dev/fd/N` argument with no
///   such fd) holds no fds and can be answered;
/// - 0 at orderly end of stream (fds of an unfinished command, or waiting
///   for one, are closed); later calls return 0 again. On a fed connection:
///   once `FDCTX_FEED_END` was fed and every command before it returned;
/// - `-EAGAIN` on a non-blocking socket with no whole command buffered yet
///   (everything received so far is kept: call again when readable), and
///   on a fed connection with no whole command fed yet (feed the next read);
/// - `-EINVAL` if `conn` or `out` is NULL;
/// - another negative errno if the socket failed (e.g. `-ECONNRESET`).
///
/// Fds held for an unfinished command, or waiting for one, are bounded by
/// `max_hold_ms` (see fdctx_limits): a blocking call waits for the socket
/// with poll() only until that deadline, then closes them and returns the
/// command in progress with status `-ETIMEDOUT` (its line's remaining bytes
/// are discarded), so a client that stops mid-command while holding fds
/// cannot stall the monitor for longer. A received fd that is the
/// connection's own peer socket (the client's end, which would keep the
/// connection open for ever) is refused at once where the kernel can tell
/// (Unix `sock_diag`): it is closed and its command gets status
/// `-EDEADLK`; the connection's own end sent back is refused the same way.
/// Looking the peer up needs one fd for a moment: where that fails for
/// now (`RLIMIT_NOFILE`) the fds of that read are closed and their command
/// gets that errno (`-EMFILE`; `-ECOMM` when some of them were lost in
/// transit too) rather than run unchecked, and the next
/// fds are checked again; a failure never turns the check off. Fed
/// connections cannot check this; the deadline bounds it.
///
/// What the refusal does not cover: an fd of another socket whose queue
/// holds the client's own end (the other end of a socket pair the client
/// made and filled, say) is not the peer socket and is delivered. The
/// client's end then stays open for as long as that fd does: while fdctx
/// holds it for an unfinished command `max_hold_ms` bounds that, but once
/// delivered it is the handler's to close. A handler that keeps a received
/// socket should expect that.
///
/// A byte sent out of band (`MSG_OOB`) arrives in line, with its fds, like
/// any other byte (fdctx_conn_new() turns on `SO_OOBINLINE`).
///
/// `EINTR` is retried. `*out` is set to NULL unless 1 is returned.
///
/// One read may bring several commands, which the connection then holds:
/// on a non-blocking socket, after the socket polls readable, call this
/// until it returns `-EAGAIN` (or 0) before waiting on the socket again —
/// a command already buffered does not make the socket readable.
///
/// Every received fd is close-on-exec (`MSG_CMSG_CLOEXEC`), and so is every
/// fd fdctx_take(), fdctx_dup() and fdctx_open() return.
///
/// Thread rules: not concurrently on the same connection.
#[no_mangle]
pub unsafe extern "C" fn fdctx_conn_recv(conn: *mut fdctx_conn, out: *mut *mut fdctx_msg) -> c_int {
    ffi_boundary(|| {
        if out.is_null() {
            return Err(Error::InvalidArgument("out"));
        }
        // SAFETY: non-null `out` points at writable storage.
        unsafe { out.write(ptr::null_mut()) };
        // SAFETY: live connection or NULL, not in use elsewhere.
        let conn = unsafe { fdctx_conn::arg_mut(conn) }?;
        match conn.conn.recv()? {
            Some(msg) => {
                // SAFETY: `out` is not NULL (checked above) and, by the
                // header's contract, points at writable storage.
                unsafe { out.write(fdctx_msg::new(msg).into_ptr()) };
                Ok(1)
            }
            None => Ok(0),
        }
    })
}

/// Milliseconds until the connection's next hold deadline: how long fds it
/// holds for an unfinished command (or waiting for one) may still be held
/// before `max_hold_ms` expires them. 0 when one is due now; -1 while no fd
/// is held (no deadline); rounded up, so waking after this long finds the
/// deadline passed. An event loop uses it as its timeout (poll, epoll_wait,
/// g_timeout_add) and then calls fdctx_conn_recv(), which expires what is
/// due and delivers the command in progress with status `-ETIMEDOUT`. The
/// value changes only through fdctx_conn_recv() and fdctx_conn_feed(), so
/// ask again after calling them. A blocking fdctx_conn_recv() honours the
/// deadline by itself. Works the same on fed and socket connections.
///
/// Returns `-EINVAL` (negative, which poll() also takes as "no timeout")
/// if `conn` is NULL.
///
/// Thread rules: not concurrently with other calls on the same connection.
#[no_mangle]
pub unsafe extern "C" fn fdctx_conn_deadline_ms(conn: *const fdctx_conn) -> c_int {
    ffi_boundary(|| {
        // SAFETY: live connection or NULL, not being changed elsewhere.
        let conn = unsafe { fdctx_conn::arg(conn) }?;
        Ok(conn.conn.deadline().map_or(-1, ms_rounded_up))
    })
}

/// Ends a connection: closes every fd it still holds (an unfinished
/// command's, fds waiting for a command, commands not yet returned). Never
/// closes the socket. Messages already returned stay valid. NULL is a
/// no-op.
///
/// Thread rules: not concurrently with other calls on the same connection.
#[no_mangle]
pub unsafe extern "C" fn fdctx_conn_free(conn: *mut fdctx_conn) {
    ffi_boundary(|| {
        if !conn.is_null() {
            // SAFETY: `conn` came from fdctx_conn_new and is freed once.
            drop(unsafe { fdctx_conn::free(conn) }?);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::IntoRawFd;

    use super::*;
    use crate::ffi::{fdctx_count, fdctx_msg_fds, fdctx_msg_finish};
    use crate::testing::fdcount::FdLeakCheck;

    #[test]
    fn a_fed_command_comes_out_with_the_fds_fed_with_it() {
        let _leaks = FdLeakCheck::new();
        // SAFETY: NULL limits are the defaults.
        let conn = unsafe { fdctx_conn_new_fed(FDCTX_FRAMING_JSON, ptr::null()) };
        assert!(!conn.is_null());
        let (r, w) = nix::unistd::pipe().unwrap();
        let fds = [r.into_raw_fd(), w.into_raw_fd()];
        let cmd = br#"{"execute":"x"}"#;
        let mut msg = ptr::null_mut();
        // SAFETY: `conn` is live until its free; the fds are handed over
        // with the feed; `msg` is finished once.
        unsafe {
            assert_eq!(fdctx_conn_feed(conn, cmd.as_ptr().cast(), cmd.len(), fds.as_ptr(), 2, 0), 0);
            assert_eq!(fdctx_conn_recv(conn, &mut msg), 1);
            assert_eq!(fdctx_count(fdctx_msg_fds(msg)), 2);
            assert_eq!(fdctx_msg_finish(msg), 2);
            assert_eq!(fdctx_conn_recv(conn, &mut msg), -libc::EAGAIN);
            assert!(msg.is_null());
            fdctx_conn_free(conn);
        }
    }

    #[test]
    fn fds_fed_to_a_null_connection_are_closed_not_leaked() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = nix::unistd::pipe().unwrap();
        let fds = [r.into_raw_fd(), w.into_raw_fd()];
        // SAFETY: the fds are handed over with the call.
        assert_eq!(unsafe { fdctx_conn_feed(ptr::null_mut(), ptr::null(), 0, fds.as_ptr(), 2, 0) }, -libc::EINVAL);
    }

    #[test]
    fn bad_arguments_make_no_connection() {
        let _leaks = FdLeakCheck::new();
        let mut msg = ptr::null_mut();
        let too_many = fdctx_limits { max_fds: 1 << 20, ..fdctx_limits::default() };
        // SAFETY: NULL handles are refused before any use; the limits are
        // a live local.
        unsafe {
            assert!(fdctx_conn_new(-1, FDCTX_FRAMING_JSON, ptr::null()).is_null());
            assert!(fdctx_conn_new_fed(99, ptr::null()).is_null());
            assert!(fdctx_conn_new_fed(FDCTX_FRAMING_LINE, &too_many).is_null());
            assert_eq!(fdctx_conn_recv(ptr::null_mut(), &mut msg), -libc::EINVAL);
            assert_eq!(fdctx_conn_recv(ptr::null_mut(), ptr::null_mut()), -libc::EINVAL);
            assert_eq!(fdctx_conn_deadline_ms(ptr::null()), -libc::EINVAL);
            fdctx_conn_free(ptr::null_mut());
        }
        assert!(msg.is_null());
    }
}
