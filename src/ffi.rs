//! The C ABI: `fdctx.h` is generated from this file by cbindgen.
//!
//! Each exported function converts its arguments, calls the core, and maps
//! the result: `int` calls return a non-negative value or `-errno`, pointer
//! calls return NULL on failure; either way the failure's text is kept for
//! [`fdctx_last_error`]. Every body runs inside [`ffi_boundary`], so a
//! panic never crosses into C (it is reported as `-EIO`).
//!
//! The opaque C types are the handles defined here: [`fdctx`] wraps a
//! [`Context`], [`fdctx_conn`] a [`Connection`], [`fdctx_msg`] a
//! [`Message`] together with what only C needs (the NUL-terminated copies
//! of the bytes and strings it hands out, the status text). Their ownership
//! and casts are [`boundary::Castable`]'s.

// The safety rules of each function are its pointer and ownership rules,
// written for C readers in its doc comment (they become the header's docs).
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

mod assoc;
mod boundary;

#[cfg(any(test, feature = "testing"))]
pub use assoc::fdctx_assoc;

use std::cell::{Cell, OnceCell, RefCell};
use std::ffi::{c_char, c_int, c_uint, c_void, CString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use crate::error::Error;
use crate::fds::context::Context;
use crate::fds::fdpath::PathKind;
use crate::monitor::conn::{Connection, FeedFlags, Framing, Limits};
use crate::monitor::message::Message;
use boundary::{c_text, count_out, fd_arg, fd_out, ffi_boundary, path_arg, slice_arg, str_arg, write_opt, Castable};

/// The receiving side of one monitor socket: it frames commands and gives
/// each exactly the fds that were sent with it. It keeps only the command
/// in progress and fds waiting for one, and closes those when it ends.
/// It may move to another thread, but must not be used from two at once,
/// and it must be the socket's only reader (two readers would split
/// commands, and a packet could change between peeking and receiving).
///
/// A connection either reads its socket itself (fdctx_conn_new()) or is
/// fed the caller's reads (fdctx_conn_new_fed(), fdctx_conn_feed()). Both
/// go through the same framing and association code: a socket connection
/// is a fed one plus its own `recvmsg(2)` loop.
pub struct fdctx_conn {
    /// The caller's socket, borrowed for the connection's whole life (the
    /// `'static` is the C contract of fdctx_conn_new(): open until
    /// fdctx_conn_free()); none for a fed connection.
    conn: Connection<BorrowedFd<'static>>,
}

impl Castable for fdctx_conn {
    const NAME: &'static str = "conn";
}

/// One command's fd context: the fds received with it, indexed from 0 in
/// arrival order. It owns every fd in it until one is taken, and closes the
/// rest when finished.
///
/// A context may move to another thread, but must not be used from two
/// threads at once (even borrowing records which fds were used).
pub struct fdctx {
    ctx: Context,
    /// Lent by a message (fdctx_msg_fds), which ends it.
    in_message: bool,
}

impl Castable for fdctx {
    const NAME: &'static str = "ctx";

    fn boxed(&self) -> bool {
        !self.in_message
    }
}

/// For Rust code that also calls the C functions (tests): a handle around
/// a context, and the context inside a handle. Such a handle is the
/// caller's; fdctx_finish() must not be called on it.
#[cfg(any(test, feature = "testing"))]
impl fdctx {
    pub fn lend(ctx: Context) -> fdctx {
        fdctx { ctx, in_message: true }
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub fn into_context(self) -> Context {
        self.ctx
    }
}

/// One framed command: its bytes, the fds sent with it (its context), and
/// a status saying whether it can be dispatched. It owns all of these, may
/// move to another thread and may outlive its connection.
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

impl fdctx_msg {
    /// The C handle of `msg`: its context moves into a handle of its own,
    /// which fdctx_msg_fds lends out.
    fn new(mut msg: Message) -> fdctx_msg {
        let ctx = std::mem::take(msg.fds_mut());
        fdctx_msg {
            msg,
            fds: fdctx { ctx, in_message: true },
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
        // SAFETY: per this function's contract.
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

/// fdctx_conn_feed() and fdctx_assoc_read() flag: the caller's read
/// reported `MSG_CTRUNC` (fds were sent that the read could not take: more
/// than its control buffer holds, or more than the kernel could install);
/// the command those fds belong to gets status `-ECOMM`.
pub const FDCTX_FEED_FDS_LOST: c_uint = 1;
/// fdctx_conn_feed() flag: the stream ends after these bytes (the caller's
/// read returned 0, or the caller stops reading this client).
pub const FDCTX_FEED_END: c_uint = 2;

/// Bounds on one command. A field left 0 takes its default.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct fdctx_limits {
    /// Largest command in bytes; default 1 MiB (1048576), at most 1 GiB.
    pub max_msg_bytes: usize,
    /// Most fds one command may bring (over any number of writes), and most
    /// fds that may wait for the next command; default 32, at most 65536.
    pub max_fds: usize,
    /// Deepest JSON nesting of objects and arrays; default 64, at most 127.
    pub max_depth: usize,
    /// Longest time in milliseconds that fds may be held for a command that
    /// has not completed, or wait for one (the qemu.qmp style); default
    /// 10000, at most 3600000 (one hour). When it passes, the fds are
    /// closed and the command in progress is delivered as it is with status
    /// `-ETIMEDOUT`, the rest of its line discarded (fds that were waiting
    /// make the next command fail with `-ETIMEDOUT`); the connection goes
    /// on. Measured on the monotonic clock. See fdctx_conn_deadline_ms().
    pub max_hold_ms: u32,
}

thread_local! {
    static CURRENT: Cell<*mut fdctx> = const { Cell::new(ptr::null_mut()) };
}

/// The calling thread's current context (NULL once its thread-locals are
/// gone).
fn current() -> *mut fdctx {
    CURRENT.try_with(Cell::get).unwrap_or(ptr::null_mut())
}

/// Makes `ctx` current on the calling thread; returns the previous one.
fn replace_current(ctx: *mut fdctx) -> *mut fdctx {
    CURRENT.try_with(|c| c.replace(ctx)).unwrap_or(ptr::null_mut())
}

/// Forgets `ctx` as the calling thread's current context, if it is.
fn forget_current(ctx: *mut fdctx) {
    if current() == ctx {
        replace_current(ptr::null_mut());
    }
}

// ---------------------------------------------------------------------------
// Errors

/// Text describing the last failure of an fdctx call on the calling thread.
///
/// Returns a NUL-terminated string owned by the library, valid until the
/// next failing fdctx call on this thread; an empty string if no call has
/// failed yet. Never NULL. Successful calls do not clear it; the one that
/// sets it on success is fdctx_confine(), to say what it enforced.
///
/// Thread rules: thread-local; safe from any thread.
#[no_mangle]
pub extern "C" fn fdctx_last_error() -> *const c_char {
    boundary::last_error()
}

// ---------------------------------------------------------------------------
// Contexts

/// Creates an empty fd context, for a VMM that receives fds itself and
/// hands them over with fdctx_adopt().
///
/// Returns a context the caller ends with fdctx_finish(), or NULL if out of
/// memory (fdctx_last_error() says why).
///
/// Thread rules: a context may move between threads but must not be used
/// from two threads at once.
#[no_mangle]
pub extern "C" fn fdctx_new() -> *mut fdctx {
    ffi_boundary(|| Ok(fdctx { ctx: Context::new(), in_message: false }.into_ptr()))
}

/// Appends `n` fds from the array `fds` to the context, in order; the first
/// one appended gets index fdctx_count() (as it was before the call).
///
/// Ownership: the context owns every fd in the array from this call on,
/// EVEN WHEN THE CALL FAILS: the caller must not close or use them again
/// (on failure the ones that were not appended have been closed). An fd
/// may belong to one context only: adopting it into a second context means
/// two owners, and it would be closed twice (only duplicates within one
/// context are detected).
///
/// Returns the number of fds appended, or:
/// - `-EINVAL`: `ctx` is NULL (the fds are closed), `fds` is NULL with
///   `n > 0`, or an fd appears twice (in the array or already in the
///   context; that occurrence is not appended, the fd stays with its
///   first owner);
/// - `-EBADF`: an entry is negative or not an open fd.
///
/// A refused entry takes no index: the entries after it move down by one.
/// After a failure, fdctx_count() tells how many fds the context holds.
///
/// Thread rules: not concurrently with any other call on the same context,
/// read-only ones included (borrowing records which fds were used).
#[no_mangle]
pub unsafe extern "C" fn fdctx_adopt(ctx: *mut fdctx, fds: *const c_int, n: usize) -> c_int {
    ffi_boundary(|| {
        // SAFETY: the caller passes an array of `n` ints (or NULL and 0).
        let raw = unsafe { slice_arg(fds, n, "fds") }?;
        // SAFETY: `ctx` is a live context or NULL, not in use elsewhere.
        let Ok(ctx) = (unsafe { fdctx::arg_mut(ctx) }) else {
            // The fds are the library's even so: a context of its own
            // takes them, and closes them as it goes.
            // SAFETY: the caller hands over every fd of the array.
            let _ = unsafe { Context::new().adopt_raw(raw) };
            return Err(Error::InvalidArgument(fdctx::NAME));
        };
        // SAFETY: the caller hands ownership of every fd of the array over
        // to the library, as documented above.
        Ok(count_out(unsafe { ctx.ctx.adopt_raw(raw) }?))
    })
}

/// Number of fds the context received (taken ones included): valid indices
/// are 0 .. fdctx_count() - 1. Returns 0 for NULL.
///
/// Thread rules: not concurrently with any other call on the same context,
/// read-only ones included (borrowing records which fds were used).
#[no_mangle]
pub unsafe extern "C" fn fdctx_count(ctx: *const fdctx) -> usize {
    // SAFETY: `ctx` is a live context or NULL.
    ffi_boundary(|| Ok(unsafe { fdctx::arg(ctx) }.map_or(0, |c| c.ctx.count())))
}

/// Parses `path` as an fd path (strict grammar: `/dev/fd/` then a decimal
/// number without sign, leading zero — except `0` — space or trailing
/// characters).
///
/// Returns 1 and writes N to `*index` (if `index` is not NULL) for
/// `/dev/fd/N`; 0 for a path that has nothing to do with fds; or:
/// - `-EINVAL`: `path` is NULL, or looks like `/dev/fd/...` but is
///   malformed (`/dev/fd/01`, `/dev/fd/1x`, `/dev/fd/`, too large...);
/// - `-EPERM`: another spelling that reaches the process's own fds
///   (`/dev//fd/1`, `/dev/./fd/1`, `/proc/self/fd/1`, `/proc/<pid>/fd/1`,
///   `/proc/thread-self/fd/1`, `/dev/stdin`, ...).
///
/// Thread rules: none (pure function).
#[no_mangle]
pub unsafe extern "C" fn fdctx_index(path: *const c_char, index: *mut usize) -> c_int {
    ffi_boundary(|| {
        // SAFETY: NUL-terminated string or NULL.
        let path = unsafe { path_arg(path, "path") }?;
        match crate::fds::fdpath::classify(&path.to_string_lossy())? {
            PathKind::FdIndex(n) => {
                // SAFETY: `index` is NULL or points at writable storage.
                unsafe { write_opt(index, n) };
                Ok(1)
            }
            PathKind::Ordinary => Ok(0),
        }
    })
}

/// Borrows fd `index`: the fd stays owned by the context, which closes it
/// at finish; the caller must not close it, and must not use it after the
/// context is finished.
///
/// Returns the fd, or `-EINVAL` (`ctx` NULL), `-EBADF` (index not passed
/// with this command), `-EBADFD` (already taken).
///
/// Thread rules: not concurrently with any other call on the same context,
/// read-only ones included (borrowing records which fds were used).
#[no_mangle]
pub unsafe extern "C" fn fdctx_get(ctx: *const fdctx, index: usize) -> c_int {
    // SAFETY: live context or NULL.
    ffi_boundary(|| Ok(unsafe { fdctx::arg(ctx) }?.ctx.get(index)?.as_raw_fd()))
}

/// Takes fd `index`: the caller owns the returned fd (and must close it);
/// the context forgets it, so a second take of the same index fails.
///
/// Returns the fd, or `-EINVAL` (`ctx` NULL), `-EBADF` (index not passed
/// with this command), `-EBADFD` (already taken).
///
/// Thread rules: not concurrently with any other call on the same context,
/// read-only ones included (borrowing records which fds were used).
#[no_mangle]
pub unsafe extern "C" fn fdctx_take(ctx: *mut fdctx, index: usize) -> c_int {
    // SAFETY: live context or NULL, not in use elsewhere.
    ffi_boundary(|| Ok(fd_out(unsafe { fdctx::arg_mut(ctx) }?.ctx.take(index)?)))
}

/// Duplicates fd `index`: returns a new close-on-exec fd (sharing the open
/// file description) that the caller owns; the original stays in the
/// context.
///
/// Returns the new fd, or `-EINVAL` (`ctx` NULL), `-EBADF` (index not
/// passed), `-EBADFD` (already taken), `-EMFILE` (fd table full).
///
/// Thread rules: not concurrently with any other call on the same context,
/// read-only ones included (borrowing records which fds were used).
#[no_mangle]
pub unsafe extern "C" fn fdctx_dup(ctx: *const fdctx, index: usize) -> c_int {
    // SAFETY: live context or NULL.
    ffi_boundary(|| Ok(fd_out(unsafe { fdctx::arg(ctx) }?.ctx.dup(index)?)))
}

/// Drop-in for open(2) on a client-supplied path.
///
/// `ctx` NULL means the calling thread's current context (fdctx_enter());
/// with no current context, `/dev/fd/N` fails with `-EBADF`.
///
/// - `/dev/fd/N` resolves to fd N of the context and is DUPLICATED: the
///   returned fd is the caller's (close-on-exec), the context keeps the
///   original and closes it at finish, so the same `/dev/fd/N` may be
///   opened again (as a block layer reopening an image does). As open(2)
///   would: the fd's access mode must allow the requested one (`-EACCES`),
///   an `O_PATH` fd serves only `O_PATH` requests (`-EACCES`),
///   `O_DIRECTORY` on a non-directory is `-ENOTDIR`, `O_CREAT|O_EXCL` is
///   `-EEXIST`, `O_TMPFILE` is `-EINVAL` (it makes a new file, and a passed
///   directory's fd is no place to make one), `O_TRUNC` truncates a regular file opened for writing and
///   is ignored on a pipe, a tty, a device or a socket (as open(2) does),
///   and `O_NONBLOCK` is set or cleared to match `flags` (on the open file
///   description, which the sender shares). Other status flags are the
///   sender's: in particular an fd opened `O_APPEND` by the client stays
///   so, and on Linux pwrite(2) to it appends whatever offset is given.
/// - A path that would reach the process's own fds is refused: `-EINVAL`
///   for a malformed `/dev/fd/...`, `-EPERM` for `/proc/self/fd/...`,
///   `/proc/<pid>/fd/...`, `/proc/thread-self/fd/...`, `/dev/stdin` and the
///   like, `/dev//fd/1`-style spellings, and symlinks that lead into
///   `/proc/<pid>/fd` (openat2(2) with `RESOLVE_NO_MAGICLINKS`; where
///   openat2 is missing — kernels before 5.6, or a seccomp filter answering
///   `ENOSYS` — the path is walked one component at a time and every symlink
///   on procfs is refused, so it fails closed).
/// - Nothing on procfs opens (`-EPERM`, `O_PATH` included): the file
///   actually opened is checked with fstatfs(2), so no name, bind mount of
///   `/proc/<pid>`, other procfs mount or symlink gets past it. `/dev/fd/N`
///   is not affected: it never opens a path.
/// - Any other path is opened with `flags | O_CLOEXEC` and `mode` (used only
///   with `O_CREAT`/`O_TMPFILE`); its errors are open(2)'s. Such a path has
///   the process's full filesystem authority, as with open(2) — unless the
///   process is confined (fdctx_confine()): then opening a path outside the
///   allowed ones fails with `-EACCES` and a fdctx_last_error() text saying
///   the process is confined. Landlock does not hide what exists: a path
///   that does not exist still gives `-ENOENT` (so a confined process can
///   tell which paths exist), and an `O_PATH` open of any existing path
///   succeeds (such an fd reads and writes nothing). `/dev/fd/N` works the
///   same confined or not.
/// - `O_PATH` asked of an fd that is not `O_PATH` gives a path-only fd, as
///   open(2) would, not a readable or writable duplicate (made with
///   open_tree(2) on the fd; only where that call is missing, by reopening
///   it `O_PATH` through procfs, which must then be mounted).
///
/// Returns the new fd, owned by the caller; `-EINVAL` if `path` is NULL;
/// `-EBADF` / `-EBADFD` for an index not passed / already taken.
///
/// Thread rules: not concurrently with any other call on the same context,
/// read-only ones included (borrowing records which fds were used).
#[no_mangle]
pub unsafe extern "C" fn fdctx_open(ctx: *mut fdctx, path: *const c_char, flags: c_int, mode: libc::mode_t) -> c_int {
    ffi_boundary(|| {
        // SAFETY: NUL-terminated string or NULL.
        let path = unsafe { path_arg(path, "path") }?;
        let ctx = if ctx.is_null() { current() } else { ctx };
        // SAFETY: `ctx` is a live context (given, or made current by
        // fdctx_enter and not finished since) or NULL.
        let ctx = unsafe { fdctx::arg(ctx) }.ok().map(|c| &c.ctx);
        Ok(fd_out(crate::fds::open::open(ctx, path, flags, mode)?))
    })
}

/// Ends a context made by fdctx_new(): closes every fd it still owns and
/// frees it. If it is the calling thread's current context, the current
/// context becomes NULL.
///
/// Returns how many fds were never used (neither borrowed, taken,
/// duplicated nor opened) — a VMM may log them; or `-EINVAL` if `ctx` is
/// NULL or belongs to a message (end those with fdctx_msg_finish()).
/// Using `ctx` after this call, or finishing it twice, is undefined.
///
/// Thread rules: not concurrently with any other call on the same context,
/// read-only ones included (borrowing records which fds were used).
#[no_mangle]
pub unsafe extern "C" fn fdctx_finish(ctx: *mut fdctx) -> c_int {
    ffi_boundary(|| {
        // SAFETY: `ctx` is a live context or NULL; one from fdctx_new is
        // ended only once, per this function's contract.
        let owned = unsafe { fdctx::free(ctx, "this context belongs to a message: use fdctx_msg_finish") }?;
        forget_current(ctx);
        Ok(count_out(owned.ctx.finish()))
    })
}

/// Makes `ctx` (may be NULL) the calling thread's current context, used by
/// fdctx_open(NULL, ...), and returns the previous one, to pass to
/// fdctx_leave(). Nesting works: enter A, enter B, leave(B's return value)
/// makes A current again.
///
/// The library does not own or check the context; it must stay alive while
/// current, and while it is the `prev` of an fdctx_enter() not yet left.
/// Finishing it makes the calling thread's current context NULL if it was
/// current there; a context current on another thread, or saved as `prev`,
/// must not be finished (the pointer would dangle).
///
/// Thread rules: thread-local; affects only the calling thread.
#[no_mangle]
pub extern "C" fn fdctx_enter(ctx: *mut fdctx) -> *mut fdctx {
    replace_current(ctx)
}

/// Restores `prev` (the value fdctx_enter() returned) as the calling
/// thread's current context.
///
/// Thread rules: thread-local; affects only the calling thread.
#[no_mangle]
pub extern "C" fn fdctx_leave(prev: *mut fdctx) {
    replace_current(prev);
}

/// The calling thread's current context, or NULL.
///
/// Thread rules: thread-local.
#[no_mangle]
pub extern "C" fn fdctx_current() -> *mut fdctx {
    current()
}

// ---------------------------------------------------------------------------
// Connections and messages

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

/// `limits` converted (NULL: all defaults); the connection checks them.
///
/// # Safety
/// `limits` is NULL or points at a live `fdctx_limits`.
unsafe fn limits_arg(limits: *const fdctx_limits) -> Limits {
    // SAFETY: the caller's contract.
    let l = unsafe { limits.as_ref() }.copied().unwrap_or_default();
    Limits { max_msg_bytes: l.max_msg_bytes, max_fds: l.max_fds, max_depth: l.max_depth, max_hold_ms: l.max_hold_ms }
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
        conn.conn.feed(bytes, owned, flags)?;
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
                // SAFETY: as above.
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
        Ok(match conn.conn.deadline() {
            None => -1,
            Some(left) => c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(c_int::MAX),
        })
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
            drop(unsafe { fdctx_conn::free(conn, "conn") }?);
        }
        Ok(())
    })
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
/// fdctx_open(), which refuses them); `-ETIMEDOUT` its fds were held
/// longer than `max_hold_ms` for a command that did not complete (they were
/// closed; the rest of its line is discarded); `-EDEADLK` a received fd was
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
        let mut m = unsafe { fdctx_msg::free(msg, "msg") }?;
        forget_current(&mut m.fds);
        Ok(count_out(m.fds.ctx.finish()))
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
    // SAFETY: forwarded (the same pointer rules).
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
    // SAFETY: forwarded (the same pointer rules).
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
        // SAFETY: the caller's contract.
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

// ---------------------------------------------------------------------------
// Sending

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

// ---------------------------------------------------------------------------
// Confinement

/// One path a confined process may still open by path (fdctx_confine()).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct fdctx_allow {
    /// A NUL-terminated path: a directory allows what is beneath it, a file
    /// allows that file. It must exist when fdctx_confine() is called; a
    /// symlink is followed (what it points to is allowed). The rule is on
    /// that file or directory itself, so it still holds after a rename.
    pub path: *const c_char,
    /// `O_RDONLY`, `O_WRONLY` or `O_RDWR`: the most this entry allows;
    /// with `FDCTX_ALLOW_EXEC` added, also executing.
    pub access: c_int,
}

/// Added to an fdctx_allow entry's `access` (`O_RDONLY | FDCTX_ALLOW_EXEC`):
/// the entry also allows executing (execve(2)) the file it names, or the
/// files beneath the directory it names. Without it nothing can be
/// executed (execve(2)) once confined. Meant for a launcher that confines
/// itself and then execs the program it confines (`fdctx-confine` grants
/// it on that program and on its ELF interpreter only); execve(2) also
/// needs read, so combine it with `O_RDONLY` or `O_RDWR`. It limits
/// execve(2), not what code runs: mapping a file with `PROT_EXEC` counts
/// as reading it (the loader needs that for the libraries), so the
/// process can run any ELF file it may read, in itself or through an ELF
/// interpreter it may execute (`ld-linux.so FILE`); and a memfd (on an
/// internal mount, which Landlock does not check) can be executed
/// whatever the entries say (see "What stays as it was" at
/// fdctx_confine()). Its value is outside every open(2) flag.
pub const FDCTX_ALLOW_EXEC: c_int = 1 << 30;
const _: () = assert!(FDCTX_ALLOW_EXEC == crate::fds::confine::ALLOW_EXEC);

/// fdctx_confine() flag: fail with `-EOPNOTSUPP` rather than run
/// unconfined when the kernel has no usable Landlock.
pub const FDCTX_CONFINE_REQUIRE: c_uint = 1;

/// Confines the process with Landlock so that it can open no file by path
/// except beneath the `n` entries of `allow`, each with at most its
/// access: files then reach it only as fds passed with commands
/// (`/dev/fd/N`). No privilege is needed, and it works on any filesystem
/// (NFS included, where SELinux labels cannot be stored).
///
/// What each entry allows beneath its path:
/// - `O_RDONLY`: reading files and listing directories;
/// - `O_WRONLY`: writing and truncating files, and under a directory also
///   creating regular files, directories and Unix sockets, removing files
///   and directories, and moving them within the allowed tree;
/// - `O_RDWR`: both.
///
/// Every entry also allows ioctl(2) on device files opened beneath it
/// (`/dev/kvm`, `/dev/net/tun` are used that way). Executing a file by
/// path (execve(2)) is allowed only by entries with `FDCTX_ALLOW_EXEC`
/// (which does not limit what code runs: see below). Never allowed:
/// making device nodes, FIFOs or symlinks.
///
/// What stays as it was (Landlock does not restrict it), by the kernel's
/// Landlock ABI (the return value):
/// - on every ABI: every operation on an fd the process holds or receives
///   later (read, write, ftruncate, ioctl, mmap, ...), which is the point —
///   but a directory fd gives no access by path beneath it: openat(2)
///   through it is checked like any other path;
/// - on every ABI: `O_PATH` opens, stat(2), access(2), readlink(2),
///   chdir(2) and path walks;
/// - on every ABI: changes to a file's metadata, by path or by fd:
///   chmod(2), chown(2), utimes(2)/utimensat(2), setxattr(2) and
///   removexattr(2) (Landlock has no right for them), so a confined process
///   can still change the mode, owner and times of files it can name;
/// - on every ABI: hard links made before the call: a link beneath an
///   allowed path to a file elsewhere reaches that file;
/// - on every ABI: connect(2) and sendmsg(2) to a Unix socket by path
///   (Landlock checks them from ABI 9 on, with
///   `LANDLOCK_ACCESS_FS_RESOLVE_UNIX`, a right this library does not
///   handle; only binding a new socket by path is restricted: it needs
///   `O_WRONLY` on the directory), abstract Unix sockets, TCP bind and
///   connect (ABI 4's rights are not used), signals (ABI 6's scoping is not
///   used);
/// - on every ABI: executing a memfd (memfd_create(2), then fexecve(2) or
///   execveat(2)): Landlock does not check files on internal mounts, so a
///   process that can write a memfd can run any program it writes there,
///   whatever the entries say. The library cannot stop it; the host can:
///   `sysctl vm.memfd_noexec=2` (Linux 6.3 on; per pid namespace, inherited
///   and never lowered by a child namespace) makes every memfd
///   non-executable, and a seccomp filter in the program that refuses
///   execve(2) and execveat(2) (QEMU's `-sandbox on,spawn=deny`, in a QEMU
///   built with seccomp) stops every later exec;
/// - on every ABI: running code from any file the process may read:
///   mmap(2) with `PROT_EXEC` counts as reading, so a read entry lets the
///   process load any ELF file beneath it, and an ELF interpreter it may
///   execute runs any readable ELF file as a program (`ld-linux.so FILE`):
///   what the entries let it read is what it can run;
/// - on every ABI: chroot(2), unshare(2) of user and mount namespaces
///   (mount(2) and pivot_root(2) stay refused), and inotify(7)/fanotify(7)
///   marks on any path it can name (it learns when files change, not what
///   they hold);
/// - on every ABI: capabilities and user ids: a process running as root
///   keeps every capability it has (loading a kernel module from an fd,
///   raw I/O, the network, setuid(2)); run it as its own unprivileged user,
///   as libvirt runs QEMU, or drop them;
/// - ABI 1: a file can never be renamed or linked into another directory
///   (refused, not unrestricted); truncate(2) and `O_TRUNC` by path are not
///   restricted, nor is ioctl(2);
/// - ABI 2: truncate(2), `O_TRUNC` and ioctl(2) are not restricted;
/// - ABIs 3 and 4: ioctl(2) is not restricted;
/// - ABIs 1 to 7: threads that already exist (see the thread rules).
///
/// Thread rules: from Landlock ABI 8 on, every thread of the process is
/// confined at once (`LANDLOCK_RESTRICT_SELF_TSYNC`), and after a success
/// fdctx_last_error() says "every thread of the process". Below ABI 8,
/// Landlock confines the calling thread and every thread and process it
/// creates afterwards (pthread_create, fork, exec), never threads that
/// already exist, and fdctx_last_error() says so: call it before creating
/// threads (in main, before the event loop and worker threads start), or
/// confine a launcher that then execs the program (`fdctx-confine`). The
/// confinement cannot be undone, and is inherited across fork and exec.
///
/// With seccomp: confine first, then install the seccomp filter (which
/// then need not allow the three Landlock system calls); a filter that
/// already blocks them makes this call report no Landlock. The two
/// combine: seccomp decides which system calls run, Landlock which files
/// the open-like ones reach.
///
/// The entries are checked and their paths opened first, so a bad entry
/// is an error on every kernel. Then the ruleset is made,
/// `prctl(PR_SET_NO_NEW_PRIVS)` is set (for good: it stays set even if the
/// last step fails) and landlock_restrict_self(2) enforces the ruleset. A
/// second call adds a layer and can only narrow what is allowed.
///
/// After it, fdctx_open() of `/dev/fd/N` works exactly as before (every
/// flag and check, `O_PATH` included: it opens no path), and opening an
/// ordinary path outside the allowed ones fails with `-EACCES` and a
/// fdctx_last_error() text saying the process is confined (a path that
/// does not exist gives `-ENOENT`, and `O_PATH` opens succeed, as above).
///
/// A program exec'd by a launcher that confined it (`fdctx-confine`) is
/// told by the environment variable `FDCTX_CONFINED=1` (which
/// `fdctx-confine` removes when it runs the program unconfined): its
/// fdctx_open()
/// then words `EACCES` the same way (a hint for messages only: Landlock is
/// the boundary).
///
/// `allow` may be NULL when `n` is 0: nothing is allowed by path.
///
/// Returns the Landlock ABI version enforced (> 0), fdctx_last_error()
/// then saying which threads are confined; 0 when the kernel has
/// no usable Landlock (not built in, not enabled at boot, or blocked by a
/// seccomp filter) and `FDCTX_CONFINE_REQUIRE` was not given: nothing is
/// enforced and fdctx_last_error() says why. Errors, with nothing enforced:
/// - `-EINVAL`: `allow` is NULL with `n > 0`, an entry's `path` is NULL or
///   its `access` is not one of the three (with or without
///   `FDCTX_ALLOW_EXEC`), or `flags` has an unknown bit;
/// - the errno of opening an entry's path (`-ENOENT` when it does not
///   exist, `-EACCES`, ...), with a text naming the entry and its path;
/// - `-EOPNOTSUPP` with `FDCTX_CONFINE_REQUIRE` and no usable Landlock;
/// - another negative errno when a Landlock call fails (`-E2BIG`: more
///   than 16 layers).
#[no_mangle]
pub unsafe extern "C" fn fdctx_confine(allow: *const fdctx_allow, n: usize, flags: c_uint) -> c_int {
    ffi_boundary(|| {
        if flags & !FDCTX_CONFINE_REQUIRE != 0 {
            return Err(Error::InvalidArgument("flags: unknown bits (only FDCTX_CONFINE_REQUIRE is defined)"));
        }
        // SAFETY: NULL, or `n` entries.
        let entries = unsafe { slice_arg(allow, n, "allow (NULL with n > 0)") }?;
        let mut list = Vec::with_capacity(entries.len());
        for e in entries {
            // SAFETY: each entry's path is NUL-terminated or NULL.
            let path = unsafe { path_arg(e.path, "allow entry path") }?;
            list.push(crate::fds::confine::Allow { path, access: e.access });
        }
        let outcome = crate::fds::confine::confine(&list, flags & FDCTX_CONFINE_REQUIRE != 0)?;
        // Success, enforced or not: the text says what holds.
        boundary::set_last_error(&outcome.describe());
        match outcome {
            crate::fds::confine::Outcome::Enforced { abi, .. } => Ok(c_int::try_from(abi).unwrap_or(c_int::MAX)),
            crate::fds::confine::Outcome::Unsupported(_) => Ok(0),
        }
    })
}
