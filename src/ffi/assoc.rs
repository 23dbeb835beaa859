//! The association service in C (`fdctx_assoc_*`): for a VMM whose own
//! parser decides where a command ends. The state machine is
//! [`crate::monitor::assoc::Assoc`], the one a [`Connection`](crate::Connection)
//! runs on; this layer converts and keeps the status text.

use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::os::fd::BorrowedFd;
use std::ptr;

use super::boundary::{c_text, count_out, fd_arg, ffi_boundary, slice_arg, write_opt, Boxed, Castable};
use super::context::fdctx;
use super::{fdctx_limits, limits_arg, FDCTX_FEED_FDS_LOST};
use crate::error::Error;
use crate::fds::context::Context;
use crate::fds::context::FdList;
use crate::monitor::assoc::ms_rounded_up;
use crate::monitor::assoc::{attach_point, Assoc};
use crate::monitor::message::Refusal;

/// The association state of one monitor connection whose commands the VMM
/// parses itself (QEMU's QMP parser): which command owns the fds of each
/// read, `max_fds` per command, the hold deadline, the refusal of the
/// connection's own peer socket, and fds lost in transit. fdctx never
/// reads the socket; the VMM reports each read and each command its parser
/// completes or rejects, and gets that command's context and status.
///
/// The rule: the fds of one read belong to the command that has the read's
/// last non-whitespace byte (complete or not); a read of whitespace only
/// keeps them for the next command; fds of several reads of one command
/// accumulate. So the VMM feeds its parser a read in two parts, split at
/// the point fdctx_assoc_read() returns:
///
/// ```c
/// // One read of the connection's socket: n bytes in buf, nfds fds.
/// size_t at;
/// fdctx_assoc_read(a, buf, n, fds, nfds, ctrunc ? FDCTX_FEED_FDS_LOST : 0, &at);
/// parser_feed(parser, buf, at);          // commands it completes: older fds
/// fdctx_assoc_attach(a);
/// parser_feed(parser, buf + at, n - at); // the next one it completes: these
/// if (parser_holds_nothing(parser))
///     fdctx_assoc_idle(a);               // fds sent with dropped bytes close
/// arm_timer(fdctx_assoc_deadline_ms(a)); // -1: none
///
/// // The parser's callback, once per complete command:
/// void on_command(Request *req) {
///     fdctx *ctx;
///     int status = fdctx_assoc_complete(a, &ctx);
///     if (status < 0)
///         reply_error(req->id, fdctx_assoc_error(a)); // and finish ctx
///     else
///         dispatch(req, ctx);            // fdctx_finish(ctx) when done
/// }
/// // ... and once per input it rejects (a lexical error):
/// void on_error(Error *err) {
///     fdctx_assoc_complete(a, NULL);     // its fds close
///     reply_error(NULL, err);
/// }
///
/// // The timer:
/// void on_timer(void) {
///     if (fdctx_assoc_expire(a) == 1) {  // a partial command held fds
///         reply_error(NULL, fdctx_assoc_error(a));
///         parser_reset(parser);
///     }
///     arm_timer(fdctx_assoc_deadline_ms(a));
/// }
/// ```
///
/// Thread rules: one association may move between threads but must not be
/// used from two at once; the contexts it hands out are independent of it
/// and of each other.
pub struct fdctx_assoc {
    assoc: Assoc,
    /// The connection's socket, borrowed (the `'static` is the C contract
    /// of fdctx_assoc_new(): open until fdctx_assoc_free()); none for -1.
    sock: Option<BorrowedFd<'static>>,
    /// The text of the last negative status, for fdctx_assoc_error().
    error: Option<CString>,
}

impl Castable for fdctx_assoc {
    const NAME: &'static str = "assoc";
}

impl Boxed for fdctx_assoc {}

impl fdctx_assoc {
    /// Keeps the text of a status, and returns it as `-errno` (0 for `Ok`).
    fn status(&mut self, status: Result<(), Refusal>) -> c_int {
        match status {
            Ok(()) => {
                self.error = None;
                0
            }
            Err(e) => {
                self.error = Some(c_text(&e.to_string()));
                -e.errno()
            }
        }
    }
}

/// Starts the association state of one monitor connection (see
/// ::fdctx_assoc): make one per client connection, and end it with
/// fdctx_assoc_free() when that connection ends.
///
/// `sockfd` is the connection's socket (the one the VMM reads), borrowed:
/// fdctx never reads, writes or closes it, and only looks up which socket
/// is its peer (here, and where that fails for now, e.g. at
/// `RLIMIT_NOFILE`, again with each read that brings fds: such a read's
/// command fails with -EMFILE rather than run unchecked), so that a client
/// that sends its own end of the connection is refused at once. It must
/// stay open until fdctx_assoc_free(). Pass -1 when the VMM cannot give
/// it: the peer is then not checked (the hold deadline still bounds such an
/// fd). The VMM should turn on `SO_OOBINLINE` on that socket: a normal read
/// never returns a byte sent with `MSG_OOB`, nor its fds, and a blocking
/// read sleeps at the out-of-band mark.
///
/// `limits` may be NULL (all defaults); it is copied. `max_fds` is counted
/// per command and `max_hold_ms` bounds every hold; `max_msg_bytes` and
/// `max_depth` are the VMM parser's business and not used.
///
/// Returns the association, or NULL with fdctx_last_error() set when
/// `sockfd` is neither -1 nor an open socket (a pipe or a closed fd would
/// leave the peer unchecked), or when a limit is above its maximum
/// (`max_fds` 65536, `max_hold_ms` 3600000, the others as for
/// fdctx_conn_new()).
///
/// Thread rules: see ::fdctx_assoc.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_new(sockfd: c_int, limits: *const fdctx_limits) -> *mut fdctx_assoc {
    ffi_boundary(|| {
        let sock = if sockfd == -1 {
            None
        } else {
            // SAFETY: the caller keeps `sockfd` open until
            // fdctx_assoc_free(), as documented above, and the association
            // ends there: the 'static borrow outlives every use.
            Some(unsafe { fd_arg(sockfd, "fdctx_assoc_new") }?)
        };
        if let Some(sock) = sock {
            // Only a socket has a peer to refuse: anything else would turn
            // the check off without a word.
            nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::SockType)
                .map_err(|e| Error::sys("fdctx_assoc_new: sockfd is not an open socket", e))?;
        }
        // SAFETY: a live fdctx_limits or NULL.
        let limits = unsafe { limits_arg(limits) }.validated()?;
        let mut assoc = Assoc::new(limits.max_fds, limits.max_hold_ms);
        if let Some(sock) = sock {
            assoc.look_up_peer(sock);
        }
        Ok(fdctx_assoc { assoc, sock, error: None }.into_ptr())
    })
}

/// Ends an association: closes every fd it still holds (a partial
/// command's, fds waiting for a command, a read's not yet attached). Never
/// closes the socket. Contexts handed out stay valid. NULL is a no-op.
///
/// Thread rules: not concurrently with other calls on the same association.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_free(assoc: *mut fdctx_assoc) {
    ffi_boundary(|| {
        if !assoc.is_null() {
            // SAFETY: `assoc` came from fdctx_assoc_new and is freed once.
            drop(unsafe { fdctx_assoc::free(assoc) }?);
        }
        Ok(())
    })
}

/// Reports one read of the connection's socket (one `recvmsg`, as the VMM
/// made it: never merge two reads or split one): its `len` bytes at `data`
/// and the `nfds` fds at `fds` that came with them. Call it for every read,
/// with fds or without (whitespace-only reads and discarded bytes change
/// which command owns waiting fds), before feeding any of its bytes to the
/// parser.
///
/// `*at` (if `at` is not NULL) gets where the fds attach: the offset of the
/// read's last non-whitespace byte (space, tab, CR and LF are whitespace),
/// or `len` when it has none. Feed the parser `data[0 .. at)` (commands it
/// completes there get older fds, never these), then call
/// fdctx_assoc_attach(), then feed `data[at .. len)`: the first command the
/// parser completes or rejects from there on owns the fds. When `at` is
/// `len` (whitespace only) the fds wait for the next command.
///
/// `flags` is 0 or `FDCTX_FEED_FDS_LOST`: the read lost fds in transit (it
/// reported `MSG_CTRUNC`: the sender sent more fds than the read could take,
/// or the kernel could not install them all). The command that owns the
/// read then fails with `-ECOMM` and its fds close, even when this read
/// brought none: it never runs with fewer fds than were sent.
///
/// When the association has the socket (fdctx_assoc_new()) and one of the
/// fds is the connection's own peer socket (the client's end, which would
/// keep the connection open for ever) or the socket itself, every fd of the
/// read closes at once and the owner fails with `-EDEADLK`. When the peer
/// cannot be looked up now (the lookup needs an fd for a moment: at
/// `RLIMIT_NOFILE` it fails), the read's fds close and the owner fails with
/// `-EMFILE` rather than run with fds nobody checked.
///
/// Ownership: the association owns every fd in `fds` from this call on,
/// EVEN WHEN THE CALL FAILS (then they are closed). They must be fds the
/// caller owns, fresh from its read. `data` is only read during the call.
///
/// Returns 0, or:
/// - `-EINVAL`: `assoc` is NULL, `data` is NULL with `len > 0`, `fds` is
///   NULL with `nfds > 0`, `flags` has another bit, or an fd appears twice;
/// - `-EBADF`: an entry of `fds` is negative or not an open fd.
///
/// Thread rules: not concurrently with other calls on the same association.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_read(
    assoc: *mut fdctx_assoc,
    data: *const c_void,
    len: usize,
    fds: *const c_int,
    nfds: usize,
    flags: c_uint,
    at: *mut usize,
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
        if flags & !FDCTX_FEED_FDS_LOST != 0 {
            return Err(Error::InvalidArgument("flags: only FDCTX_FEED_FDS_LOST"));
        }
        // SAFETY: non-null `data` points at `len` readable bytes for the
        // duration of the call.
        let bytes = unsafe { slice_arg(data.cast::<u8>(), len, "data") }?;
        // SAFETY: a live association or NULL, not in use elsewhere.
        let a = unsafe { fdctx_assoc::arg_mut(assoc) }?;
        let fds: FdList = owned.into_iter().map(Some).collect();
        let point = attach_point(bytes);
        let fault = a.assoc.fault(a.sock, &fds, flags & FDCTX_FEED_FDS_LOST != 0);
        a.assoc.read(fds, fault, point.is_some());
        // SAFETY: `at` is NULL or points at writable storage.
        unsafe { write_opt(at, point.unwrap_or(len)) };
        Ok(0)
    })
}

/// The parser has been fed every byte of the last read before the point
/// fdctx_assoc_read() returned: that read's fds now belong to the command
/// that has the byte at that point (with fds that were waiting for it
/// before them), or, for a whitespace-only read, wait for the next command.
/// Their hold deadline starts here. A no-op when there is nothing to
/// attach; fdctx_assoc_read() attaches a read left unattached first.
///
/// Returns 0, or `-EINVAL` if `assoc` is NULL.
///
/// Thread rules: not concurrently with other calls on the same association.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_attach(assoc: *mut fdctx_assoc) -> c_int {
    ffi_boundary(|| {
        // SAFETY: a live association or NULL, not in use elsewhere.
        unsafe { fdctx_assoc::arg_mut(assoc) }?.assoc.attach();
        Ok(0)
    })
}

/// The parser completed a command (`ctx` not NULL) or rejected input
/// (`ctx` NULL: a lexical error, a command too large or too deep for it):
/// report it from the parser's callback, once per command or error, in the
/// order the parser reports them.
///
/// With `ctx`, `*ctx` gets the command's own fd context (fds attached to
/// it in arrival order, then fds that were waiting for it), a new context
/// the caller ends with fdctx_finish() when the command's dispatch ends —
/// always one, empty when no fd came or the status is negative. With NULL
/// the fds are closed.
///
/// Returns the command's status: 0, or (its fds closed, the context
/// empty; fdctx_assoc_error() has the text for the reply, which should
/// carry the command's `id`):
/// - `-ETOOMANYREFS`: more fds than `max_fds` came for it;
/// - `-ECOMM`: fds sent with it were lost in transit (`FDCTX_FEED_FDS_LOST`);
/// - `-EDEADLK`: one was the connection's own peer socket;
/// - `-EMFILE` (or the lookup's other errno): the peer could not be looked
///   up when its fds came, so they were closed unchecked;
/// - `-ETIMEDOUT`: fds waiting for it were held past `max_hold_ms`;
/// - `-EINVAL` if `assoc` is NULL (`*ctx` is then NULL).
///
/// Thread rules: not concurrently with other calls on the same association.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_complete(assoc: *mut fdctx_assoc, ctx: *mut *mut fdctx) -> c_int {
    ffi_boundary(|| {
        // SAFETY: `ctx` is NULL or points at writable storage.
        unsafe { write_opt(ctx, ptr::null_mut()) };
        // SAFETY: a live association or NULL, not in use elsewhere.
        let a = unsafe { fdctx_assoc::arg_mut(assoc) }?;
        let (fds, status) = match a.assoc.complete_own() {
            Ok(fds) => (fds, Ok(())),
            Err(e) => (FdList::new(), Err(e)),
        };
        if !ctx.is_null() {
            let mut context = Context::new();
            context.adopt_list(fds);
            // SAFETY: non-null `ctx` points at writable storage.
            unsafe { ctx.write(fdctx::into_caller_ptr(context)) };
        }
        Ok(a.status(status))
    })
}

/// The parser holds no partial command now, after being fed a whole read
/// (it skips input after a lexical error, or everything it had was
/// complete): fds attached to a command byte that no command took were
/// sent with bytes the parser dropped. They are closed, never handed to a
/// later command. Fds of whitespace-only reads, waiting for the next
/// command, stay. Call it after feeding a read whenever the parser is idle.
///
/// Returns the number of fds closed, or `-EINVAL` if `assoc` is NULL.
///
/// Thread rules: not concurrently with other calls on the same association.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_idle(assoc: *mut fdctx_assoc) -> c_int {
    ffi_boundary(|| {
        // SAFETY: a live association or NULL, not in use elsewhere.
        Ok(count_out(unsafe { fdctx_assoc::arg_mut(assoc) }?.assoc.idle()))
    })
}

/// Milliseconds until the association's hold deadline: how long the fds
/// it holds for a partial command, or waiting for one, may still be held
/// before `max_hold_ms` expires them. 0 when due now; -1 while no fd is
/// held; rounded up, so waking after this long finds the deadline passed.
/// Arm a timer with it (a QEMU timer, poll's timeout) and call
/// fdctx_assoc_expire() when it fires. It changes only through the other
/// calls, so ask again after them.
///
/// Returns `-EINVAL` if `assoc` is NULL.
///
/// Thread rules: not concurrently with other calls on the same association.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_deadline_ms(assoc: *const fdctx_assoc) -> c_int {
    ffi_boundary(|| {
        // SAFETY: a live association or NULL, not being changed elsewhere.
        let a = unsafe { fdctx_assoc::arg(assoc) }?;
        Ok(a.assoc.deadline().map_or(-1, ms_rounded_up))
    })
}

/// Expires the fds held past `max_hold_ms`, if the deadline has passed:
/// they are closed, so a client that stops mid-command holding fds (its
/// own socket end among them, say) cannot keep the connection alive.
///
/// Returns:
/// - 1: a partial command held them (fds were attached to its bytes). The
///   VMM answers it with the error fdctx_assoc_error() describes (status
///   `-ETIMEDOUT`; no `id` is known yet) and resets its parser, so that the
///   rest of that command is not taken for a new one;
/// - 0: nothing to answer: nothing was due, or only fds waiting for the
///   next command were held (they are closed, and that command will get
///   status `-ETIMEDOUT` from fdctx_assoc_complete());
/// - `-EINVAL` if `assoc` is NULL.
///
/// Thread rules: not concurrently with other calls on the same association.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_expire(assoc: *mut fdctx_assoc) -> c_int {
    ffi_boundary(|| {
        // SAFETY: a live association or NULL, not in use elsewhere.
        let a = unsafe { fdctx_assoc::arg_mut(assoc) }?;
        if !a.assoc.due() {
            return Ok(0);
        }
        let in_command = a.assoc.holds_current();
        Ok(match a.assoc.expire(in_command) {
            Some(why) => {
                a.status(Err(why));
                1
            }
            None => 0,
        })
    })
}

/// The text of the last negative status fdctx_assoc_complete() returned,
/// or of the expiry fdctx_assoc_expire() reported with 1, for the error
/// reply; NULL after a status of 0. Owned by the association, valid until
/// the next call on it.
///
/// Thread rules: not concurrently with other calls on the same association.
#[no_mangle]
pub unsafe extern "C" fn fdctx_assoc_error(assoc: *const fdctx_assoc) -> *const c_char {
    ffi_boundary(|| {
        // SAFETY: a live association or NULL, not being changed elsewhere.
        let a = unsafe { fdctx_assoc::arg(assoc) }?;
        Ok(a.error.as_ref().map_or(ptr::null(), |t| t.as_ptr()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;
    use std::os::fd::AsRawFd;

    fn last_error() -> String {
        // SAFETY: fdctx_last_error() never returns NULL, and the text lives
        // until the thread's next call.
        unsafe { std::ffi::CStr::from_ptr(crate::ffi::fdctx_last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn an_association_on_a_pipe_or_a_closed_fd_is_refused_not_left_unchecked() {
        let _leaks = FdLeakCheck::new();
        let (r, _w) = nix::unistd::pipe().unwrap();
        // SAFETY: NULL limits take the defaults; `r` stays open.
        assert!(unsafe { fdctx_assoc_new(r.as_raw_fd(), ptr::null()) }.is_null());
        assert!(last_error().contains("not an open socket"), "{}", last_error());
        // SAFETY: as above; fd 1000 is not open in the test process.
        assert!(unsafe { fdctx_assoc_new(1000, ptr::null()) }.is_null());
        let (a, _b) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        for fd in [a.as_raw_fd(), -1] {
            // SAFETY: as above, on a socket; -1 is "no socket" and allowed.
            let assoc = unsafe { fdctx_assoc_new(fd, ptr::null()) };
            assert!(!assoc.is_null(), "{fd}");
            // SAFETY: made just above, freed once.
            unsafe { fdctx_assoc_free(assoc) };
        }
    }
}
