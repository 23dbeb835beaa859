//! `fdctx_msg`, one received command as C holds it, and its functions:
//! its bytes, its (lent) fd context, its status, finishing it, and the
//! JSON accessors.

use std::cell::{OnceCell, RefCell};
use std::ffi::{c_char, c_int, CString};
use std::ptr;

use super::boundary::{c_text, count_out, ffi_boundary, str_arg, write_opt, Boxed, Castable};
use super::context::{fdctx, forget_current, Lender};
use crate::error::Error;
use crate::monitor::message::Message;

/// A handle to one received command, from fdctx_conn_recv(): its bytes
/// (fdctx_msg_data()), its fd context (fdctx_msg_fds(), lent) and its
/// status (fdctx_msg_status(): 0 when it can be dispatched). The caller
/// owns the message and ends it with fdctx_msg_finish(), which closes the
/// fds no one took. A message holds all of this itself: it may be finished
/// on another thread, and after its connection is freed.
///
/// Thread rules: no two calls on one message may run at once, read-only
/// ones included (the accessors cache what they parse).
pub struct fdctx_msg {
    /// The command's bytes, status and parsed JSON (its fds are in `fds`).
    msg: Message,
    fds: fdctx,
    /// The status as C text, made on the first fdctx_msg_error.
    error: OnceCell<Option<CString>>,
    /// Strings handed out by the accessors, kept until the message ends.
    strings: RefCell<Vec<Box<[u8]>>>,
}

impl Castable for fdctx_msg {
    const NAME: &'static str = "msg";
}

impl Boxed for fdctx_msg {}

impl fdctx_msg {
    /// The C handle of `msg`: its context moves into a handle of its own,
    /// which fdctx_msg_fds lends out.
    pub(crate) fn new(mut msg: Message) -> fdctx_msg {
        let ctx = std::mem::take(msg.fds_mut());
        fdctx_msg {
            msg,
            fds: fdctx::lent(ctx, Lender::Message),
            error: OnceCell::new(),
            strings: RefCell::new(Vec::new()),
        }
    }

    /// Keeps a NUL-terminated copy of `text` until the message ends, stores
    /// its length in `*len` (if not NULL) and returns it for C.
    ///
    /// # Safety
    /// `len` is NULL or points at writable storage.
    unsafe fn hand_out(&self, text: &[u8], len: *mut usize) -> *const c_char {
        // SAFETY: this function requires `len` to be NULL or writable,
        // which is what `write_opt` requires.
        unsafe { write_opt(len, text.len()) };
        let kept = nul_terminated(text);
        let ptr = kept.as_ptr().cast::<c_char>();
        self.strings.borrow_mut().push(kept);
        ptr
    }
}

/// `bytes` followed by one NUL, for C.
fn nul_terminated(bytes: &[u8]) -> Box<[u8]> {
    let mut owned = Vec::with_capacity(bytes.len() + 1);
    owned.extend_from_slice(bytes);
    owned.push(0);
    owned.into_boxed_slice()
}

/// The command's bytes: a pointer to them, NUL-terminated (the NUL is not
/// counted), owned by the message and valid until fdctx_msg_finish();
/// `*len` (if `len` is not NULL) gets the length. For a message too large
/// to keep, the bytes are empty. NULL if `msg` is NULL, with `*len` left
/// untouched and fdctx_last_error() set.
///
/// Thread rules: not concurrently with any other call on the same message,
/// read-only ones included (the accessors cache what they parse).
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_data(msg: *const fdctx_msg, len: *mut usize) -> *const c_char {
    ffi_boundary(|| {
        // SAFETY: live message or NULL.
        let m = unsafe { fdctx_msg::arg(msg) }?;
        let bytes = m.msg.data();
        // SAFETY: `len` is NULL or points at writable storage.
        unsafe { write_opt(len, bytes.len()) };
        Ok(m.msg.data_with_nul().as_ptr().cast::<c_char>())
    })
}

/// The message's fd context: every fd sent with this command, index 0 the
/// first. Owned by the message: use fdctx_get/take/dup/open on it, pass it
/// to fdctx_enter(), but never fdctx_finish() it — fdctx_msg_finish() ends
/// it. NULL if `msg` is NULL.
///
/// Thread rules: not concurrently with any other call on the same message,
/// read-only ones included (the accessors cache what they parse).
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_fds(msg: *mut fdctx_msg) -> *mut fdctx {
    // SAFETY: live message or NULL, not in use elsewhere.
    ffi_boundary(|| Ok(&mut unsafe { fdctx_msg::arg_mut(msg) }?.fds as *mut fdctx))
}

/// 0 if the message can be dispatched, else the negative errno saying why
/// not: `-EBADMSG` malformed JSON, not an object, or nested too deep;
/// `-EILSEQ` not UTF-8; `-EMSGSIZE` larger than `max_msg_bytes`;
/// `-ETOOMANYREFS` more fds than `max_fds`; `-ECOMM` fds lost in transit
/// (`MSG_CTRUNC`, e.g. the receiver at `RLIMIT_NOFILE`); `-EBADF` a string
/// value anywhere in a JSON command (object keys aside) is exactly
/// `/dev/fd/N` but fewer fds were sent (other fd-like spellings are left to
/// fdctx_open(), which refuses them); `-ETIMEDOUT` its fds, or fds sent
/// ahead for it, were held longer than `max_hold_ms` before it was complete
/// (they were closed; the rest of a partial command's line is discarded); `-EDEADLK` a received fd was
/// the connection's own peer socket (refused and closed); `-EMFILE` the
/// peer-socket check could not run for the fds of that read (looking the
/// peer up needs one fd for a moment, and there was none at
/// `RLIMIT_NOFILE`): they were closed and the command fails rather than run
/// unchecked; the next fds are checked again. A bad message holds no fds.
/// `-EINVAL` if `msg` is NULL.
///
/// Thread rules: not concurrently with any other call on the same message,
/// read-only ones included (the accessors cache what they parse).
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_status(msg: *const fdctx_msg) -> c_int {
    ffi_boundary(|| {
        // SAFETY: live message or NULL.
        let m = unsafe { fdctx_msg::arg(msg) }?;
        Ok(m.msg.status().map_or_else(|e| -e.errno(), |()| 0))
    })
}

/// Human text for a bad status (owned by the message, valid until
/// fdctx_msg_finish()), or NULL when the status is 0 or `msg` is NULL.
///
/// Thread rules: not concurrently with any other call on the same message,
/// read-only ones included (the accessors cache what they parse).
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_error(msg: *const fdctx_msg) -> *const c_char {
    ffi_boundary(|| {
        // SAFETY: live message or NULL.
        let Ok(m) = (unsafe { fdctx_msg::arg(msg) }) else { return Ok(ptr::null()) };
        let text = m.error.get_or_init(|| m.msg.status().err().map(|e| c_text(&e.to_string())));
        Ok(text.as_deref().map_or(ptr::null(), |t| t.as_ptr()))
    })
}

/// Ends the command: closes every fd of its context that the handler did
/// not take (fds obtained with fdctx_take/dup/open stay the caller's),
/// and frees the message, its bytes and every string returned for it. If
/// its context is the calling thread's current one, the current context
/// becomes NULL.
///
/// Returns how many of its fds were never used (a VMM may log them), or
/// `-EINVAL` if `msg` is NULL. Using the message afterwards, or finishing
/// it twice, is undefined.
///
/// Thread rules: any thread, once, not concurrently with other calls on the
/// message.
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_finish(msg: *mut fdctx_msg) -> c_int {
    ffi_boundary(|| {
        // SAFETY: `msg` came from fdctx_conn_recv and is finished once, per
        // this function's contract (or is NULL).
        let mut m = unsafe { fdctx_msg::free(msg) }?;
        forget_current(&mut m.fds);
        Ok(count_out(m.fds.finish()))
    })
}

// ---------------------------------------------------------------------------
// JSON accessors

/// The decoded string at RFC 6901 JSON Pointer `pointer` (`""` is the whole
/// document; `"/arguments/filename"` a member of a member; `~1` is `/`,
/// `~0` is `~`).
///
/// Each call makes a new copy, kept until the message ends: look a value up
/// once, not in a loop.
///
/// Returns a NUL-terminated copy owned by the message, valid until
/// fdctx_msg_finish(); `*len` (if `len` is not NULL) gets its length (the
/// string may contain NUL bytes). NULL, with fdctx_last_error() set and
/// `*len` untouched, if `msg` or `pointer` is NULL, the message is not JSON,
/// nothing is at `pointer` (a non-empty pointer not starting with `/` points
/// at nothing), or the value is not a string.
///
/// Thread rules: not concurrently with any other call on the same message,
/// read-only ones included (the accessors cache what they parse).
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_get_str(
    msg: *const fdctx_msg,
    pointer: *const c_char,
    len: *mut usize,
) -> *const c_char {
    ffi_boundary(|| {
        // SAFETY: live message or NULL; NUL-terminated string or NULL.
        let (m, pointer) = unsafe { (fdctx_msg::arg(msg)?, str_arg(pointer, "pointer")?) };
        // SAFETY: `len` is NULL or writable.
        Ok(unsafe { m.hand_out(m.msg.get_str(pointer)?.as_bytes(), len) })
    })
}

/// The compact JSON text of any value at `pointer` (for example the
/// command's `/id`, to echo it in a reply).
///
/// Each call makes a new copy, kept until the message ends: look a value up
/// once, not in a loop.
///
/// Returns a NUL-terminated string owned by the message, valid until
/// fdctx_msg_finish(); `*len` gets its length if `len` is not NULL. NULL,
/// with fdctx_last_error() set and `*len` untouched, if `msg` or `pointer`
/// is NULL, the message is not JSON, or nothing is at `pointer` (a
/// non-empty pointer not starting with `/` points at nothing).
///
/// Thread rules: not concurrently with any other call on the same message,
/// read-only ones included (the accessors cache what they parse).
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_get_json(
    msg: *const fdctx_msg,
    pointer: *const c_char,
    len: *mut usize,
) -> *const c_char {
    ffi_boundary(|| {
        // SAFETY: live message or NULL; NUL-terminated string or NULL.
        let (m, pointer) = unsafe { (fdctx_msg::arg(msg)?, str_arg(pointer, "pointer")?) };
        // SAFETY: `len` is NULL or writable.
        Ok(unsafe { m.hand_out(m.msg.get_json(pointer)?.as_bytes(), len) })
    })
}

/// The boolean at `pointer`, written to `*out`.
///
/// Returns 0, or `-EINVAL` (an argument is NULL), `-EBADMSG` (the message is
/// not JSON), `-ENOENT` (nothing at `pointer`; a non-empty pointer not
/// starting with `/`, such as `"arguments/ro"`, points at nothing), `-ENOMSG`
/// (not a boolean). On failure `*out` is left untouched and
/// fdctx_last_error() says why.
///
/// Thread rules: not concurrently with any other call on the same message,
/// read-only ones included (the accessors cache what they parse).
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_get_bool(msg: *const fdctx_msg, pointer: *const c_char, out: *mut bool) -> c_int {
    // SAFETY: the header's rules for this function (live message or NULL,
    // NUL-terminated pointer or NULL, `out` NULL or writable) are the ones
    // `get_scalar` requires.
    unsafe { get_scalar(msg, pointer, out, Message::get_bool) }
}

/// The integer at `pointer`, written to `*out`.
///
/// Returns 0, or `-EINVAL` (an argument is NULL), `-EBADMSG` (the message is
/// not JSON), `-ENOENT` (nothing at `pointer`; a non-empty pointer not
/// starting with `/`, such as `"arguments/size"`, points at nothing),
/// `-ENOMSG` (not a number), `-ERANGE` (a number that is not written as an
/// integer within int64_t: a fraction, an exponent such as `1e2`, `-0`, or
/// out of range — as QEMU's QMP parser, which takes those for
/// floating-point numbers). On failure `*out` is left untouched and
/// fdctx_last_error() says why.
///
/// Thread rules: not concurrently with any other call on the same message,
/// read-only ones included (the accessors cache what they parse).
#[no_mangle]
pub unsafe extern "C" fn fdctx_msg_get_int(msg: *const fdctx_msg, pointer: *const c_char, out: *mut i64) -> c_int {
    // SAFETY: as in fdctx_msg_get_bool: the header's rules are the ones
    // `get_scalar` requires.
    unsafe { get_scalar(msg, pointer, out, Message::get_int) }
}

/// The body of the scalar accessors: the value `get` finds at `pointer`,
/// written to `*out`.
///
/// # Safety
/// `msg` is a live message or NULL, `pointer` a NUL-terminated string or
/// NULL, `out` NULL or writable.
unsafe fn get_scalar<T>(
    msg: *const fdctx_msg,
    pointer: *const c_char,
    out: *mut T,
    get: fn(&Message, &str) -> Result<T, Error>,
) -> c_int {
    ffi_boundary(|| {
        // SAFETY: this function requires `msg` to be a live message or
        // NULL and `pointer` a NUL-terminated string or NULL.
        let (m, pointer) = unsafe { (fdctx_msg::arg(msg)?, str_arg(pointer, "pointer")?) };
        if out.is_null() {
            return Err(Error::InvalidArgument("out"));
        }
        let v = get(&m.msg, pointer)?;
        // SAFETY: non-null `out` points at writable storage.
        unsafe { out.write(v) };
        Ok(0)
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use crate::fds::context::Context;
    use crate::ffi::{fdctx_count, fdctx_current, fdctx_enter, fdctx_finish, fdctx_get};
    use crate::testing::fdcount::FdLeakCheck;

    /// A caller's message for `json`, holding both ends of a new pipe.
    fn message(json: &[u8]) -> *mut fdctx_msg {
        let mut msg = Message::new(json.to_vec(), Ok(None));
        let (r, w) = nix::unistd::pipe().unwrap();
        *msg.fds_mut() = Context::from_fds(vec![r, w]);
        fdctx_msg::new(msg).into_ptr()
    }

    #[test]
    fn a_messages_context_is_lent_and_ends_with_the_message_only() {
        let _leaks = FdLeakCheck::new();
        let m = message(br#"{"execute":"x"}"#);
        // SAFETY: `m` is a live message, finished once at the end; its
        // context lives as long as it does.
        unsafe {
            let ctx = fdctx_msg_fds(m);
            assert_eq!(fdctx_finish(ctx), -libc::EINVAL, "the message owns its context");
            assert_eq!(fdctx_count(ctx), 2);
            assert!(fdctx_get(ctx, 0) >= 0);
            fdctx_enter(ctx);
            assert_eq!(fdctx_msg_finish(m), 1, "fd 0 was borrowed, fd 1 never used");
        }
        assert!(fdctx_current().is_null(), "a finished message's context is no longer current");
    }

    #[test]
    fn accessors_hand_out_nul_terminated_copies_kept_by_the_message() {
        let _leaks = FdLeakCheck::new();
        let m = message(br#"{"execute":"x","arguments":{"n":-3,"ro":true}}"#);
        let (mut len, mut n, mut ro) = (0usize, 0i64, false);
        // SAFETY: `m` is live until its finish; every out-parameter is a
        // live local.
        unsafe {
            let s = fdctx_msg_get_str(m, c"/execute".as_ptr(), &mut len);
            assert_eq!((CStr::from_ptr(s).to_bytes(), len), (&b"x"[..], 1));
            assert_eq!(fdctx_msg_get_int(m, c"/arguments/n".as_ptr(), &mut n), 0);
            assert_eq!(fdctx_msg_get_bool(m, c"/arguments/ro".as_ptr(), &mut ro), 0);
            assert_eq!((n, ro), (-3, true));
            assert_eq!(fdctx_msg_get_int(m, c"/nothing".as_ptr(), &mut n), -libc::ENOENT);
            assert_eq!(fdctx_msg_status(m), 0);
            assert!(fdctx_msg_error(m).is_null());
            assert_eq!(fdctx_msg_finish(m), 2);
        }
    }

    #[test]
    fn null_message_or_argument_is_einval_and_touches_no_out_parameter() {
        let m = message(b"{}");
        let mut len = 99usize;
        let mut n = 5i64;
        // SAFETY: NULL arguments are refused before any use; `m` is live
        // until its finish.
        unsafe {
            assert!(fdctx_msg_data(ptr::null(), &mut len).is_null());
            assert!(fdctx_msg_fds(ptr::null_mut()).is_null());
            assert_eq!(fdctx_msg_status(ptr::null()), -libc::EINVAL);
            assert!(fdctx_msg_error(ptr::null()).is_null());
            assert!(fdctx_msg_get_str(ptr::null(), c"".as_ptr(), &mut len).is_null());
            assert!(fdctx_msg_get_json(m, ptr::null(), &mut len).is_null());
            assert_eq!(fdctx_msg_get_int(m, c"".as_ptr(), ptr::null_mut()), -libc::EINVAL);
            assert_eq!(fdctx_msg_get_int(ptr::null(), c"".as_ptr(), &mut n), -libc::EINVAL);
            assert_eq!(fdctx_msg_finish(ptr::null_mut()), -libc::EINVAL);
            assert_eq!(fdctx_msg_finish(m), 2);
        }
        assert_eq!((len, n), (99, 5));
    }
}
