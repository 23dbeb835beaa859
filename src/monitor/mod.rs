//! The monitor connection: bytes and `SCM_RIGHTS` fds in, one message per
//! command out, each with the fds sent with that command.
//!
//! What a Rust caller uses:
//!
//! * [`conn`]: a monitor connection: framing and its own reads (or the
//!   caller's, fed) on the association service.
//! * [`limits`]: bounds on what one command may bring.
//! * [`message`]: one command, its bytes, its context and its status.
//! * [`send`]: the client side, `sendmsg(2)` with fds attached once.
//!
//! Internal: `recv` (`recvmsg(2)` with every fd owned from the moment it
//! arrives), `framing` (where one command ends in a stream; a packet is
//! one command), `json` (checking a command is one JSON object without
//! building it), `assoc` (the association service: which command owns
//! which fds, limits, the hold deadline; C callers with their own parser
//! use it as `fdctx_assoc_*`) and `peer` (recognising a connection's own
//! peer socket among received fds).
//!
//! It builds on the fd layer ([`crate::fds`]); nothing there depends on it.

pub(crate) mod assoc;
pub mod conn;
pub(crate) mod framing;
pub(crate) mod json;
pub mod limits;
pub mod message;
pub(crate) mod peer;
pub(crate) mod recv;
pub mod send;
