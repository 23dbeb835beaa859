//! `fdctx`, one command's fd context as C holds it, and its functions:
//! making and filling one, borrowing, taking, duplicating and opening its
//! fds, finishing it, and the calling thread's current context
//! (fdctx_enter(), fdctx_leave(), fdctx_current()).
//!
//! Whether a handle is the C caller's or lent by another handle is its
//! [`Owner`], fixed when it is made: fdctx_finish() frees only a handle
//! made as the caller's, in a `Box`.

use std::cell::Cell;
use std::ffi::{c_char, c_int};
use std::os::fd::AsRawFd;
use std::ptr;

use super::boundary::{count_out, fd_out, ffi_boundary, path_arg, slice_arg, write_opt, Castable};
use crate::error::Error;
use crate::fds::context::Context;
use crate::fds::fdpath::PathKind;

/// A handle to one command's fd context: the fds that came with the
/// command, index 0 the first to arrive. Each fd is the context's until
/// fdctx_take() gives it to the caller; ending the context closes the rest.
///
/// Made by fdctx_new() and fdctx_assoc_complete(): the caller's, ended with
/// fdctx_finish(). Lent by fdctx_msg_fds(): the message's, ended with
/// fdctx_msg_finish().
///
/// Thread rules: a context may move between threads, but no two calls on
/// it may run at once, read-only ones included (borrowing records which
/// fds were used).
pub struct fdctx {
    ctx: Context,
    owner: Owner,
}

/// Who ends a context handle. fdctx_finish() frees only [`Owner::Caller`]
/// handles; a lent one is refused with a text saying who ends it.
enum Owner {
    /// The C caller, with fdctx_finish(). The [`boxed::InBox`] it carries
    /// is made only where the handle is put in a `Box` and the pointer
    /// handed to C: it is what makes freeing that `Box` sound.
    Caller(boxed::InBox),
    /// Another owner, which ends it.
    Lent(Lender),
}

/// Who lends a context handle to C, and ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lender {
    /// A message (fdctx_msg_fds()): fdctx_msg_finish() ends it.
    Message,
    /// Rust code that calls the C functions (the tests, through
    /// `fdctx::testing`): it drops the handle, or takes its context back.
    #[cfg(any(test, feature = "testing"))]
    Rust,
}

impl Lender {
    /// Why fdctx_finish() refuses a handle so lent.
    fn refusal(self) -> &'static str {
        match self {
            Lender::Message => "this context belongs to a message: use fdctx_msg_finish",
            #[cfg(any(test, feature = "testing"))]
            Lender::Rust => "this context was lent by Rust code, which ends it",
        }
    }
}

/// The one place a caller's handle is made: [`InBox`](boxed::InBox) has a
/// private field, so no other code can claim a handle is boxed.
mod boxed {
    use super::{fdctx, Context, Owner};

    /// Proof that the handle holding it lives in a `Box` whose pointer C
    /// owns. Such a handle never leaves its `Box`: `fdctx::free` takes the
    /// `Box` back and the handle ends in it.
    pub(super) struct InBox(());

    /// A new handle around `ctx` that the C caller owns and ends with
    /// fdctx_finish().
    pub(super) fn into_ptr(ctx: Context) -> *mut fdctx {
        Box::into_raw(Box::new(fdctx { ctx, owner: Owner::Caller(InBox(())) }))
    }
}

impl Castable for fdctx {
    const NAME: &'static str = "ctx";
}

impl fdctx {
    /// A new handle around `ctx` for the C caller, who ends it with
    /// fdctx_finish().
    pub(crate) fn into_caller_ptr(ctx: Context) -> *mut fdctx {
        boxed::into_ptr(ctx)
    }

    /// A handle around `ctx` lent to C by `lender`, which ends it.
    pub(crate) fn lent(ctx: Context, lender: Lender) -> fdctx {
        fdctx { ctx, owner: Owner::Lent(lender) }
    }

    /// Takes back a caller's handle to end it; `EINVAL` for NULL or a lent
    /// handle (saying who ends that one).
    ///
    /// # Safety
    /// Non-null `p` points at a live handle, not used again after a
    /// successful return.
    unsafe fn free(p: *mut fdctx) -> Result<Box<fdctx>, Error> {
        // SAFETY: this function requires `p` to be NULL or a live handle.
        match unsafe { fdctx::arg(p) }?.owner {
            // SAFETY: an `InBox` is made only by `boxed::into_ptr`, which
            // put this handle in a `Box` (Box::into_raw); the caller frees
            // it once.
            Owner::Caller(_) => Ok(unsafe { Box::from_raw(p) }),
            Owner::Lent(lender) => Err(Error::InvalidArgument(lender.refusal())),
        }
    }

    /// Ends the context: closes the fds it still owns and returns how many
    /// were never used.
    pub(crate) fn finish(self) -> usize {
        self.ctx.finish()
    }
}

/// For Rust code that also calls the C functions (tests): a handle around
/// a context, and the context inside a handle. Such a handle is lent:
/// fdctx_finish() refuses it, and its Rust owner drops it.
#[cfg(any(test, feature = "testing"))]
impl fdctx {
    pub fn lend(ctx: Context) -> fdctx {
        fdctx::lent(ctx, Lender::Rust)
    }

    pub fn context(&self) -> &Context {
        &self.ctx
    }

    pub fn into_context(self) -> Context {
        self.ctx
    }
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
pub(crate) fn forget_current(ctx: *mut fdctx) {
    if current() == ctx {
        replace_current(ptr::null_mut());
    }
}

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
    ffi_boundary(|| Ok(fdctx::into_caller_ptr(Context::new())))
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

/// Ends a context made by fdctx_new() or fdctx_assoc_complete(): closes
/// every fd it still owns and frees it. If it is the calling thread's
/// current context, the current context becomes NULL.
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
        let owned = unsafe { fdctx::free(ctx) }?;
        forget_current(ctx);
        Ok(count_out(owned.finish()))
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
    ffi_boundary(|| Ok(replace_current(ctx)))
}

/// Restores `prev` (the value fdctx_enter() returned) as the calling
/// thread's current context.
///
/// Thread rules: thread-local; affects only the calling thread.
#[no_mangle]
pub extern "C" fn fdctx_leave(prev: *mut fdctx) {
    ffi_boundary(|| {
        replace_current(prev);
        Ok(())
    });
}

/// The calling thread's current context, or NULL.
///
/// Thread rules: thread-local.
#[no_mangle]
pub extern "C" fn fdctx_current() -> *mut fdctx {
    ffi_boundary(|| Ok(current()))
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;
    use std::os::fd::IntoRawFd;

    use super::*;
    use crate::ffi::fdctx_last_error;
    use crate::testing::fdcount::FdLeakCheck;

    fn last_text() -> String {
        // SAFETY: fdctx_last_error() never returns NULL, and its text stays
        // valid until the next failing call on this thread.
        unsafe { CStr::from_ptr(fdctx_last_error()) }.to_string_lossy().into_owned()
    }

    /// A context holding both ends of a new pipe.
    fn pipe_context() -> Context {
        let (r, w) = nix::unistd::pipe().unwrap();
        Context::from_fds(vec![r, w])
    }

    #[test]
    fn finish_refuses_a_context_lent_by_a_message_and_leaves_it_usable() {
        let _leaks = FdLeakCheck::new();
        let mut lent = fdctx::lent(pipe_context(), Lender::Message);
        // SAFETY: a live handle, used by no one else.
        assert_eq!(unsafe { fdctx_finish(&mut lent) }, -libc::EINVAL);
        assert!(last_text().contains("fdctx_msg_finish"), "{}", last_text());
        // SAFETY: as above; the refused finish freed nothing.
        assert_eq!(unsafe { fdctx_count(&lent) }, 2);
        // Its lender ends it, closing the fds.
        assert_eq!(lent.finish(), 2);
    }

    #[test]
    fn finish_refuses_a_handle_lent_by_rust_code() {
        let _leaks = FdLeakCheck::new();
        let mut lent = fdctx::lend(pipe_context());
        // SAFETY: a live handle, used by no one else.
        assert_eq!(unsafe { fdctx_finish(&mut lent) }, -libc::EINVAL);
        assert_eq!(lent.into_context().finish(), 2);
    }

    #[test]
    fn a_callers_context_is_freed_by_finish_which_counts_unused_fds() {
        let _leaks = FdLeakCheck::new();
        let ctx = fdctx_new();
        let (r, w) = nix::unistd::pipe().unwrap();
        let fds = [r.into_raw_fd(), w.into_raw_fd()];
        // SAFETY: `ctx` is live; both fds are handed over.
        unsafe {
            assert_eq!(fdctx_adopt(ctx, fds.as_ptr(), 2), 2);
            assert_eq!(fdctx_get(ctx, 1), fds[1]);
            assert_eq!(fdctx_finish(ctx), 1, "fd 1 was borrowed, fd 0 never used");
        }
    }

    #[test]
    fn null_context_is_einval_and_adopted_fds_are_closed_anyway() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = nix::unistd::pipe().unwrap();
        let fds = [r.into_raw_fd(), w.into_raw_fd()];
        // SAFETY: NULL contexts are refused before any use; the fds are
        // handed over (and closed by the refusal).
        unsafe {
            assert_eq!(fdctx_adopt(ptr::null_mut(), fds.as_ptr(), 2), -libc::EINVAL);
            assert_eq!(fdctx_count(ptr::null()), 0);
            assert_eq!(fdctx_get(ptr::null(), 0), -libc::EINVAL);
            assert_eq!(fdctx_take(ptr::null_mut(), 0), -libc::EINVAL);
            assert_eq!(fdctx_dup(ptr::null(), 0), -libc::EINVAL);
            assert_eq!(fdctx_finish(ptr::null_mut()), -libc::EINVAL);
            assert_eq!(fdctx_index(ptr::null(), ptr::null_mut()), -libc::EINVAL);
            assert_eq!(fdctx_open(ptr::null_mut(), ptr::null(), libc::O_RDONLY, 0), -libc::EINVAL);
            // No current context: /dev/fd/N names no fd.
            assert_eq!(fdctx_open(ptr::null_mut(), c"/dev/fd/0".as_ptr(), libc::O_RDONLY, 0), -libc::EBADF);
        }
    }

    #[test]
    fn enter_and_leave_nest_and_finish_forgets_the_current_context() {
        let _leaks = FdLeakCheck::new();
        let (a, b) = (fdctx_new(), fdctx_new());
        assert!(fdctx_enter(a).is_null());
        assert_eq!(fdctx_enter(b), a);
        assert_eq!(fdctx_current(), b);
        fdctx_leave(a);
        assert_eq!(fdctx_current(), a);
        // SAFETY: both are live caller's contexts, finished once each.
        unsafe {
            assert_eq!(fdctx_finish(a), 0);
            assert!(fdctx_current().is_null(), "a finished context is no longer current");
            assert_eq!(fdctx_finish(b), 0);
        }
    }
}
