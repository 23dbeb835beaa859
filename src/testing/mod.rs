//! What the tests need and a user of the crate does not: the fd accounting
//! every test holds, and the internals the tests in `tests/` and the fuzz
//! targets drive directly. Built for the crate's own unit tests, and for
//! others with the `testing` feature: each test in `tests/` requires it
//! (`required-features` in Cargo.toml), `make check` runs `cargo test
//! --features testing`, and the fuzz crate turns it on.

pub mod fdcount;

/// The C ABI's functions, called from Rust as a C caller would.
pub mod ffi {
    pub use crate::ffi::*;
}

pub use crate::monitor::framing::{FrameEnd, Framing, Scanner, Step, Took};
pub use crate::monitor::json::{check_object, validate_object, Checked};
pub use crate::monitor::peer::peer_inode;
pub use crate::monitor::recv::{recv_with_fds, CMSG_WORDS};
