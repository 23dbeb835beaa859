//! What a VMM that receives fds itself uses: a command's fds and the files
//! its arguments name.
//!
//! * [`context`]: the per-command context (take, borrow, dup, finish); a
//!   leaf, it depends on nothing else in the crate but [`crate::Error`].
//! * [`fdpath`]: the strict `/dev/fd/N` grammar and own-fd path refusal.
//! * [`open`]: the `open(2)` drop-in for client-supplied paths
//!   ([`Context::open`](context::Context::open)).
//! * `resolve`: path resolution refusing `/proc` links, where `openat2(2)`
//!   is missing (internal to [`open`]).
//! * [`confine`]: Landlock confinement: no file opens by path except
//!   beneath allowed ones.
//!
//! Nothing here knows of sockets, bytes or commands: the monitor layer
//! ([`crate::monitor`]) builds on it.

pub mod confine;
pub mod context;
pub mod fdpath;
pub mod open;
mod resolve;
