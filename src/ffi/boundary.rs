//! The machinery every exported function shares: the panic boundary, the
//! thread's last error, the C handles' ownership, and argument conversion.
//!
//! An exported function is written as
//!
//! ```text
//! pub unsafe extern "C" fn fdctx_thing(ctx: *mut fdctx, ...) -> c_int {
//!     ffi_boundary(|| {
//!         let ctx = unsafe { fdctx::arg_mut(ctx) }?;
//!         Ok(...)
//!     })
//! }
//! ```
//!
//! [`ffi_boundary`] runs the body, records an error's text for
//! `fdctx_last_error`, and turns an error or a caught panic into the
//! return type's failure value ([`Failure`]). Every exported body runs in
//! it, even those that cannot fail today (`fdctx_last_error` and the
//! thread's current context: `fdctx_enter`, `fdctx_leave`,
//! `fdctx_current`), so that none can unwind into C whatever it comes to
//! call; `fdctx_last_error` keeps its never-NULL promise through
//! [`NeverNull`].

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString, OsStr};
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use crate::error::Error;

/// The text of a panic caught at the boundary (reported as `EIO`).
const PANIC_TEXT: &str = "internal error (panic caught at the C boundary)";

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// What an exported function returns when its call fails, given the
/// failure's positive errno: `-errno` for `int`, NULL for pointers, 0 for
/// counts, nothing for `void`.
pub(crate) trait Failure {
    fn failure(errno: c_int) -> Self;
}

impl Failure for c_int {
    fn failure(errno: c_int) -> c_int {
        -errno
    }
}

impl Failure for usize {
    fn failure(_: c_int) -> usize {
        0
    }
}

impl Failure for () {
    fn failure(_: c_int) {}
}

/// The return of `fdctx_last_error`, a text pointer that is never NULL:
/// should its body fail, the thread's last error (the failure's own text,
/// just recorded) is returned in its place.
pub(crate) struct NeverNull(pub(crate) *const c_char);

impl Failure for NeverNull {
    fn failure(_: c_int) -> NeverNull {
        NeverNull(last_error())
    }
}

impl<T> Failure for *mut T {
    fn failure(_: c_int) -> *mut T {
        ptr::null_mut()
    }
}

impl<T> Failure for *const T {
    fn failure(_: c_int) -> *const T {
        ptr::null()
    }
}

/// The one panic boundary: runs `body`; on `Err` records the error's text
/// for `fdctx_last_error` and returns its failure value; a panic is caught
/// (it must never unwind into C) and reported as `EIO`.
pub(crate) fn ffi_boundary<T: Failure>(body: impl FnOnce() -> Result<T, Error>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            T::failure(e.errno())
        }
        Err(_) => {
            set_last_error(PANIC_TEXT);
            T::failure(libc::EIO)
        }
    }
}

/// Records `text` for `fdctx_last_error`. Never panics: while a thread is
/// being torn down (a pthread key destructor calling in) its thread-locals
/// may be gone, and the text is then dropped.
pub(crate) fn set_last_error(text: &str) {
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut slot) = e.try_borrow_mut() {
            *slot = c_text(text);
        }
    });
}

/// The calling thread's last error text; "" if none (or if its
/// thread-locals are gone). Valid until the next failing call on the thread.
pub(crate) fn last_error() -> *const c_char {
    const NONE: &CStr = c"";
    LAST_ERROR.try_with(|e| e.try_borrow().map_or(NONE.as_ptr(), |text| text.as_ptr())).unwrap_or(NONE.as_ptr())
}

/// `text` as a C string, any NUL in it made a space.
pub(crate) fn c_text(text: &str) -> CString {
    CString::new(text.replace('\0', " ")).unwrap_or_default()
}

/// A C handle: an opaque struct that C code holds by pointer. The casts
/// below are the only places a handle pointer is dereferenced.
///
/// How a handle ends is a second trait: [`Boxed`] for the handles the C
/// caller always owns (a connection, a message, an association); a context
/// (`fdctx`) is either the caller's or lent by another handle, and says
/// which in its own type (`context::Owner`).
pub(crate) trait Castable: Sized {
    /// The argument name used in error texts (`"ctx"`, `"msg"`...).
    const NAME: &'static str;

    /// A shared reference to the handle; `EINVAL` for NULL.
    ///
    /// # Safety
    /// Non-null `p` points at a live handle that nothing mutates for `'a`.
    unsafe fn arg<'a>(p: *const Self) -> Result<&'a Self, Error> {
        // SAFETY: `as_ref` turns NULL into None; any other `p` points at a
        // live handle nothing mutates for 'a, as this function requires.
        unsafe { p.as_ref() }.ok_or(Error::InvalidArgument(Self::NAME))
    }

    /// An exclusive reference to the handle; `EINVAL` for NULL.
    ///
    /// # Safety
    /// Non-null `p` points at a live handle that nothing else accesses for
    /// `'a`.
    unsafe fn arg_mut<'a>(p: *mut Self) -> Result<&'a mut Self, Error> {
        // SAFETY: `as_mut` turns NULL into None; any other `p` points at a
        // live handle nothing else touches for 'a, as this function
        // requires.
        unsafe { p.as_mut() }.ok_or(Error::InvalidArgument(Self::NAME))
    }
}

/// A handle that only ever lives in a `Box` the C caller owns: made by
/// [`Boxed::into_ptr`], ended by one call that takes it back with
/// [`Boxed::free`]. No handle of such a type is ever lent.
pub(crate) trait Boxed: Castable {
    /// Moves `self` to the heap; the C caller owns the pointer.
    fn into_ptr(self) -> *mut Self {
        Box::into_raw(Box::new(self))
    }

    /// Takes back a handle made by [`Boxed::into_ptr`], to end it;
    /// `EINVAL` for NULL.
    ///
    /// # Safety
    /// Non-null `p` came from [`Boxed::into_ptr`] and is not used again
    /// after this call.
    unsafe fn free(p: *mut Self) -> Result<Box<Self>, Error> {
        if p.is_null() {
            return Err(Error::InvalidArgument(Self::NAME));
        }
        // SAFETY: every handle of a `Boxed` type is made by `into_ptr`
        // (Box::into_raw), and the caller ends each once.
        Ok(unsafe { Box::from_raw(p) })
    }
}

/// A C string argument as a path (bytes, no encoding assumed).
///
/// # Safety
/// Non-null `p` must point at a NUL-terminated string alive for `'a`.
pub(crate) unsafe fn path_arg<'a>(p: *const c_char, what: &'static str) -> Result<&'a OsStr, Error> {
    if p.is_null() {
        return Err(Error::InvalidArgument(what));
    }
    // SAFETY: `p` is not NULL (checked above), and this function requires
    // it to point at a NUL-terminated string alive for 'a.
    Ok(OsStr::from_bytes(unsafe { CStr::from_ptr(p) }.to_bytes()))
}

/// A C string argument that must be UTF-8 (a JSON Pointer).
///
/// # Safety
/// As [`path_arg`].
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, what: &'static str) -> Result<&'a str, Error> {
    // SAFETY: `path_arg` requires of `p` what this function does.
    let bytes = unsafe { path_arg(p, what) }?.as_bytes();
    std::str::from_utf8(bytes).map_err(|_| Error::InvalidArgument("JSON Pointer is not UTF-8"))
}

/// A C array argument `(p, n)` as a slice; NULL is allowed when `n` is 0.
///
/// # Safety
/// Non-null `p` points at `n` readable, initialised `T`s alive for `'a`.
pub(crate) unsafe fn slice_arg<'a, T>(p: *const T, n: usize, what: &'static str) -> Result<&'a [T], Error> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Error::InvalidArgument(what));
    }
    // SAFETY: `p` is not NULL and `n` is not 0 (both checked above); this
    // function requires `n` initialised `T`s at `p`, alive for 'a.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A C fd argument, borrowed for the call; a negative one is `EBADF`,
/// reported as `call` failing.
///
/// # Safety
/// A non-negative `fd` is open, and stays open for `'a`.
pub(crate) unsafe fn fd_arg<'a>(fd: c_int, call: &'static str) -> Result<BorrowedFd<'a>, Error> {
    if fd < 0 {
        return Err(Error::sys(call, nix::errno::Errno::EBADF));
    }
    // SAFETY: `fd` is not negative (checked above), and this function
    // requires it to be open for 'a.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Writes `v` to an optional out-parameter.
///
/// # Safety
/// `p` is NULL or points at writable storage for a `T`.
pub(crate) unsafe fn write_opt<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: `p` is not NULL, and this function requires it to point
        // at writable storage for a `T`.
        unsafe { p.write(v) };
    }
}

/// An fd handed to C: the caller owns it from now on.
pub(crate) fn fd_out(fd: OwnedFd) -> c_int {
    fd.into_raw_fd()
}

/// A count handed to C as an `int` (saturating; counts are bounded far
/// below `INT_MAX` by the limits).
pub(crate) fn count_out(n: usize) -> c_int {
    c_int::try_from(n).unwrap_or(c_int::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    /// The thread's last error as Rust text.
    fn last_text() -> String {
        // SAFETY: last_error() returns a NUL-terminated string that stays
        // valid until the next failing call on this thread.
        unsafe { CStr::from_ptr(last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn panic_in_a_body_returns_eio_and_never_unwinds_into_c() {
        let _leaks = FdLeakCheck::new();
        assert_eq!(ffi_boundary::<c_int>(|| panic!("a bug in the body")), -libc::EIO);
        assert_eq!(last_text(), PANIC_TEXT);
        assert!(ffi_boundary::<*mut u8>(|| panic!("a bug")).is_null());
        assert_eq!(ffi_boundary::<usize>(|| panic!("a bug")), 0);
    }

    #[test]
    fn error_returns_its_negative_errno_and_keeps_its_text() {
        let _leaks = FdLeakCheck::new();
        assert_eq!(ffi_boundary::<c_int>(|| Err(Error::InvalidArgument("the argument"))), -libc::EINVAL);
        assert!(last_text().contains("the argument"), "{}", last_text());
        // Success leaves the text as it was.
        assert_eq!(ffi_boundary::<c_int>(|| Ok(7)), 7);
        assert!(last_text().contains("the argument"));
        assert!(ffi_boundary::<*const u8>(|| Err(Error::InvalidArgument("the pointer"))).is_null());
        assert!(last_text().contains("the pointer"));
    }

    #[test]
    fn last_error_text_is_never_null_even_when_its_body_panics() {
        let _leaks = FdLeakCheck::new();
        let text = ffi_boundary::<NeverNull>(|| panic!("a bug")).0;
        assert!(!text.is_null());
        assert_eq!(last_text(), PANIC_TEXT);
    }

    #[test]
    fn nul_bytes_in_an_error_text_do_not_cut_it_short() {
        let _leaks = FdLeakCheck::new();
        assert_eq!(c_text("a\0b").as_bytes(), b"a b");
    }

    #[test]
    fn null_arguments_are_einval_not_a_dereference() {
        let _leaks = FdLeakCheck::new();
        struct Handle;
        impl Castable for Handle {
            const NAME: &'static str = "handle";
        }
        impl Boxed for Handle {}
        // SAFETY: NULL is what is being tested; nothing is dereferenced.
        let err = unsafe { Handle::arg(ptr::null()) }.err().map(|e| e.errno());
        assert_eq!(err, Some(libc::EINVAL));
        // SAFETY: as above.
        let err = unsafe { Handle::free(ptr::null_mut()) }.err().map(|e| e.errno());
        assert_eq!(err, Some(libc::EINVAL));
        // SAFETY: as above.
        let err = unsafe { path_arg(ptr::null(), "path") }.err().map(|e| e.errno());
        assert_eq!(err, Some(libc::EINVAL));
        // SAFETY: NULL with 0 elements is the empty array; NULL with 3 is
        // refused before any read.
        unsafe {
            assert_eq!(slice_arg::<c_int>(ptr::null(), 0, "fds").map(<[c_int]>::len).ok(), Some(0));
            assert!(slice_arg::<c_int>(ptr::null(), 3, "fds").is_err());
        }
        // SAFETY: a negative fd is refused before it is borrowed.
        assert_eq!(unsafe { fd_arg(-1, "call") }.err().map(|e| e.errno()), Some(libc::EBADF));
        // SAFETY: NULL out-parameters are skipped.
        unsafe { write_opt::<usize>(ptr::null_mut(), 1) };
    }
}
