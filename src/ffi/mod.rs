//! The C ABI: `fdctx.h` is generated from these files by cbindgen.
//!
//! Each exported function converts its arguments, calls the core, and maps
//! the result: `int` calls return a non-negative value or `-errno`, pointer
//! calls return NULL on failure; either way the failure's text is kept for
//! [`fdctx_last_error`]. Every body runs inside [`boundary::ffi_boundary`],
//! so a panic never crosses into C (it is reported as `-EIO`).
//!
//! One file per opaque C type, declared below in the order its functions
//! take in the header, each type beside its own functions: [`context`] (`fdctx`, over a
//! [`Context`](crate::Context)), [`conn`] (`fdctx_conn`, over a
//! [`Connection`](crate::Connection)), [`message`] (`fdctx_msg`, over a
//! [`Message`](crate::Message)), [`send`], [`confine`] and [`assoc`]
//! (`fdctx_assoc`). What they share is here: the thread's last error, the
//! limits and the feed flags. How handles are owned and cast, and the panic
//! boundary, are [`boundary`]'s.
//!
//! build.rs hands cbindgen this file alone; cbindgen reads its items, then
//! follows the `mod` declarations below in their order, and the header's
//! functions keep that order (cbindgen puts the constants first and the
//! handle typedefs in name order, whatever the source order).

// The safety rules of each function are its pointer and ownership rules,
// written for C readers in its doc comment (they become the header's docs).
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

// The shared machinery: no C items.
mod boundary;
// In the order of their functions in the header (a comment between two
// declarations also keeps rustfmt from sorting them): fdctx, the context
// handle.
mod context;
// fdctx_conn, a monitor connection, and the FDCTX_FRAMING_* values.
mod conn;
// fdctx_msg, a received command, and its JSON accessors.
mod message;
// fdctx_send(), the client side.
mod send;
// fdctx_confine() and fdctx_allow.
mod confine;
// fdctx_assoc, for a VMM that parses its commands itself.
mod assoc;

// The exported functions need no path to be called from C; these are for
// Rust code that calls them as C would (`fdctx::testing::ffi`): a new
// module of the C layer is added here too.
#[cfg(any(test, feature = "testing"))]
pub use {assoc::*, confine::*, conn::*, context::*, message::*, send::*};

use std::ffi::{c_char, c_uint};

use crate::monitor::conn::Limits;
use boundary::ffi_boundary;

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

/// `limits` converted (NULL: all defaults); the connection checks them.
///
/// # Safety
/// `limits` is NULL or points at a live `fdctx_limits`.
unsafe fn limits_arg(limits: *const fdctx_limits) -> Limits {
    // SAFETY: `as_ref` turns NULL into None; otherwise this function
    // requires `limits` to point at a live `fdctx_limits`.
    let l = unsafe { limits.as_ref() }.copied().unwrap_or_default();
    Limits { max_msg_bytes: l.max_msg_bytes, max_fds: l.max_fds, max_depth: l.max_depth, max_hold_ms: l.max_hold_ms }
}

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
    ffi_boundary(|| Ok(boundary::NeverNull(boundary::last_error()))).0
}
