//! fdctx: per-command file-descriptor contexts for VMM monitor sockets.
//!
//! A hypervisor's monitor receives commands over a Unix socket, and with
//! them, through `SCM_RIGHTS`, the fds those commands use. fdctx makes that
//! transactional: every fd that arrives with a command lives in that
//! command's own [`Context`]; the command's arguments name them
//! `/dev/fd/N`; the handler takes what it keeps; finishing the command
//! closes everything else.
//!
//! * [`context`]: the per-command context (take, borrow, dup, finish).
//! * [`fdpath`]: the strict `/dev/fd/N` grammar and own-fd path refusal.
//! * [`open`]: the `open(2)` drop-in for client-supplied paths.
//! * [`resolve`]: path resolution refusing `/proc` links, where `openat2` is missing.
//! * [`confine`]: Landlock confinement: no file opens by path except beneath allowed ones.
//! * [`recv`]: `recvmsg(2)` with every fd owned from the moment it arrives.
//! * [`framing`]: where one command ends (JSON, line, packet).
//! * [`json`]: checking a command is one JSON object, without building it.
//! * [`assoc`]: the association service: which command owns which fds, limits, the hold deadline.
//! * [`conn`]: a monitor connection: framing and its own reads on the association service.
//! * [`peer`]: recognising a connection's own peer socket among received fds.
//! * [`message`]: one command, its bytes, its context and its status.
//! * [`send`]: the client side, `sendmsg(2)` with fds attached once.
//! * [`ffi`]: the C ABI (`fdctx.h`).

pub mod assoc;
pub mod confine;
pub mod conn;
pub mod context;
pub mod error;
pub mod fdpath;
pub mod ffi;
pub mod framing;
pub mod json;
pub mod message;
pub mod open;
pub mod peer;
pub mod recv;
pub mod resolve;
pub mod send;

pub use conn::{Connection, FeedFlags, Framing, Limits};
pub use context::Context;
pub use error::Error;
pub use message::Message;

#[cfg(test)]
#[path = "../tests/common/fdcount.rs"]
mod testutil;
