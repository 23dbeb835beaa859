//! One received command: its bytes, its fd context and its status.
//!
//! A message owns everything it holds, so it may be handed to another
//! thread and may outlive the connection it came from. A message with a
//! bad status (malformed, too large, too many fds, fds lost, a `/dev/fd/N`
//! with no such fd) holds no fds: they were closed when the status was set.

use std::cell::OnceCell;
use std::fmt;

use nix::errno::Errno;
use serde_json::Value;

use crate::error::Error;
use crate::fds::context::Context;
use crate::fds::context::FdList;

/// One framed command: its bytes, the fds sent with it (its context), and
/// a status saying whether it can be dispatched. It owns all of these, may
/// move to another thread and may outlive its connection.
#[derive(Debug)]
pub struct Message {
    /// The command's bytes and a NUL after them, so that C callers can
    /// read them as a string without a copy.
    data: Vec<u8>,
    ctx: Context,
    /// Why the command cannot be dispatched (boxed: the common case, none,
    /// then moves a smaller message).
    status: Option<Box<Refusal>>,
    /// Highest `/dev/fd/N` the command's arguments name.
    fd_refs: Option<usize>,
    json: OnceCell<Option<Box<Value>>>,
}

impl Message {
    /// A message from its bytes and what checking them found:
    /// the highest `/dev/fd/N` they name, or why they are bad. No fds yet.
    /// A NUL is appended to the bytes: a caller that leaves room for it
    /// saves a reallocation.
    pub(crate) fn new(mut data: Vec<u8>, check: Result<Option<usize>, Refusal>) -> Message {
        data.push(0);
        let mut msg = Message { data, ctx: Context::new(), status: None, fd_refs: None, json: OnceCell::new() };
        match check {
            Ok(fd_refs) => msg.fd_refs = fd_refs,
            Err(why) => msg.fail(why),
        }
        msg
    }

    /// A message refused before its bytes were checked (its fds were held
    /// too long): it is answered with `why` and holds no fds.
    pub(crate) fn refused(data: Vec<u8>, why: Refusal) -> Message {
        let mut msg = Message::new(data, Ok(None));
        msg.fail(why);
        msg
    }

    /// The command's bytes.
    pub fn data(&self) -> &[u8] {
        &self.data[..self.data.len() - 1]
    }

    /// The command's bytes followed by a NUL (which is not among them).
    pub(crate) fn data_with_nul(&self) -> &[u8] {
        &self.data
    }

    /// The fds sent with this command.
    pub fn fds(&self) -> &Context {
        &self.ctx
    }

    /// The fds sent with this command, for taking.
    pub fn fds_mut(&mut self) -> &mut Context {
        &mut self.ctx
    }

    /// `Ok` when the command can be dispatched, or why it cannot.
    pub fn status(&self) -> Result<(), &Refusal> {
        match &self.status {
            None => Ok(()),
            Some(why) => Err(why.as_ref()),
        }
    }

    /// Marks the message bad (the first reason wins) and closes its fds.
    pub(crate) fn fail(&mut self, err: Refusal) {
        if self.status.is_none() {
            self.status = Some(Box::new(err));
        }
        self.ctx.clear();
    }

    /// Gives the message the fds that came with it, or why they could not
    /// come, once all have arrived. A bad message keeps none (they close
    /// here), and neither does one whose arguments name a `/dev/fd/N`
    /// beyond them.
    pub(crate) fn attach_fds(&mut self, fds: Result<FdList, Refusal>) {
        match fds {
            Err(e) => self.fail(e),
            Ok(fds) if self.status.is_none() => {
                self.ctx.adopt_list(fds);
                let count = self.ctx.count();
                if let Some(index) = self.fd_refs.filter(|&max| max >= count) {
                    self.fail(Refusal::NoSuchIndex { index, count });
                }
            }
            Ok(_) => {}
        }
    }

    /// Ends the command: closes every fd not taken; returns how many fds
    /// were never used.
    pub fn finish(self) -> usize {
        self.ctx.finish()
    }

    fn json(&self) -> Result<&Value, Error> {
        self.json
            .get_or_init(|| serde_json::from_slice(self.data()).ok().map(Box::new))
            .as_deref()
            .ok_or_else(|| Error::MalformedJson("the message is not a JSON document".into()))
    }

    /// The value at an RFC 6901 JSON Pointer (`""` is the whole document,
    /// `/arguments/filename` a member of a member).
    ///
    /// # Errors
    /// [`Error::MalformedJson`] if the message is not JSON,
    /// [`Error::NoSuchValue`] if nothing is at `pointer`.
    pub fn pointer(&self, pointer: &str) -> Result<&Value, Error> {
        self.json()?.pointer(pointer).ok_or_else(|| Error::NoSuchValue(pointer.to_owned()))
    }

    /// The string at `pointer`, decoded.
    pub fn get_str(&self, pointer: &str) -> Result<&str, Error> {
        self.pointer(pointer)?
            .as_str()
            .ok_or_else(|| Error::WrongType { pointer: pointer.to_owned(), wanted: "a string" })
    }

    /// The boolean at `pointer`.
    pub fn get_bool(&self, pointer: &str) -> Result<bool, Error> {
        self.pointer(pointer)?
            .as_bool()
            .ok_or_else(|| Error::WrongType { pointer: pointer.to_owned(), wanted: "a boolean" })
    }

    /// The integer at `pointer`; [`Error::OutOfRange`] if it is a number
    /// that does not fit `i64` (or has a fraction).
    pub fn get_int(&self, pointer: &str) -> Result<i64, Error> {
        let v = self.pointer(pointer)?;
        match v {
            Value::Number(n) => n.as_i64().ok_or_else(|| Error::OutOfRange(pointer.to_owned())),
            _ => Err(Error::WrongType { pointer: pointer.to_owned(), wanted: "an integer" }),
        }
    }

    /// The compact JSON text of the value at `pointer`.
    pub fn get_json(&self, pointer: &str) -> Result<String, Error> {
        Ok(self.pointer(pointer)?.to_string())
    }
}

/// Why a command cannot be dispatched: the only statuses a message can
/// have besides `Ok`. A message with one holds no fds. Each maps to the
/// errno a C caller sees from `fdctx_msg_status()` ([`Refusal::errno`]),
/// and to an [`Error`] ([`From`]): the one of the same name, except
/// `PeerUnchecked`, which is the lookup's failed system call
/// ([`Error::Sys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Longer than `max_msg_bytes` (`EMSGSIZE`).
    TooLarge { limit: usize },
    /// More fds than `max_fds` (`ETOOMANYREFS`).
    TooManyFds { limit: usize },
    /// Not every fd sent arrived (`MSG_CTRUNC`, `ECOMM`).
    FdsLost,
    /// Not one JSON object, or nested deeper than `max_depth` (`EBADMSG`).
    MalformedJson(String),
    /// A line that is not UTF-8 (`EILSEQ`).
    InvalidUtf8,
    /// Its fds were held longer than `max_hold_ms` (`ETIMEDOUT`).
    HoldExpired { limit_ms: u32 },
    /// One of its fds was the connection's own peer socket (`EDEADLK`).
    PeerSocket,
    /// Its fds could not be checked for the peer socket, for want of an fd
    /// (`RLIMIT_NOFILE`): the lookup's errno, `EMFILE` or `ENFILE`.
    PeerUnchecked(Errno),
    /// A `/dev/fd/N` argument beyond the fds sent (`EBADF`).
    NoSuchIndex { index: usize, count: usize },
}

impl Refusal {
    /// The positive errno a C caller receives (negated) for this status.
    pub fn errno(&self) -> i32 {
        let e = match self {
            Refusal::TooLarge { .. } => Errno::EMSGSIZE,
            Refusal::TooManyFds { .. } => Errno::ETOOMANYREFS,
            Refusal::FdsLost => Errno::ECOMM,
            Refusal::MalformedJson(_) => Errno::EBADMSG,
            Refusal::InvalidUtf8 => Errno::EILSEQ,
            Refusal::HoldExpired { .. } => Errno::ETIMEDOUT,
            Refusal::PeerSocket => Errno::EDEADLK,
            Refusal::PeerUnchecked(errno) => *errno,
            Refusal::NoSuchIndex { .. } => Errno::EBADF,
        };
        e as i32
    }
}

impl From<Refusal> for Error {
    fn from(why: Refusal) -> Error {
        match why {
            Refusal::TooLarge { limit } => Error::TooLarge { limit },
            Refusal::TooManyFds { limit } => Error::TooManyFds { limit },
            Refusal::FdsLost => Error::FdsLost,
            Refusal::MalformedJson(why) => Error::MalformedJson(why),
            Refusal::InvalidUtf8 => Error::InvalidUtf8,
            Refusal::HoldExpired { limit_ms } => Error::HoldExpired { limit_ms },
            Refusal::PeerSocket => Error::PeerSocket,
            Refusal::PeerUnchecked(errno) => Error::sys("looking up the connection's peer socket (sock_diag)", errno),
            Refusal::NoSuchIndex { index, count } => Error::NoSuchIndex { index, count },
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Error::from(self.clone()).fmt(f)
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    #[test]
    fn accessors() {
        let _leaks = FdLeakCheck::new();
        let m = Message::new(
            br#"{"execute":"x","id":{"a":[1,2]},"arguments":{"ro":true,"n":-5,"big":1e300,"s":"a\u0000b"}}"#.to_vec(),
            Ok(None),
        );
        assert_eq!(m.get_str("/execute").unwrap(), "x");
        assert_eq!(m.get_json("/id").unwrap(), r#"{"a":[1,2]}"#);
        assert!(m.get_bool("/arguments/ro").unwrap());
        assert_eq!(m.get_int("/arguments/n").unwrap(), -5);
        assert_eq!(m.get_int("/arguments/big").unwrap_err().errno(), libc::ERANGE);
        assert_eq!(m.get_bool("/execute").unwrap_err().errno(), libc::ENOMSG);
        assert_eq!(m.get_str("/nope").unwrap_err().errno(), libc::ENOENT);
        assert_eq!(m.get_str("/arguments/s").unwrap(), "a\0b");
        let bad = Message::new(b"info block".to_vec(), Ok(None));
        assert_eq!(bad.get_str("/x").unwrap_err().errno(), libc::EBADMSG);
    }

    #[test]
    fn each_refusal_is_the_error_of_its_name_with_its_errno() {
        let _leaks = FdLeakCheck::new();
        let table = [
            (Refusal::TooLarge { limit: 8 }, libc::EMSGSIZE),
            (Refusal::TooManyFds { limit: 2 }, libc::ETOOMANYREFS),
            (Refusal::FdsLost, libc::ECOMM),
            (Refusal::MalformedJson("x".into()), libc::EBADMSG),
            (Refusal::InvalidUtf8, libc::EILSEQ),
            (Refusal::HoldExpired { limit_ms: 5 }, libc::ETIMEDOUT),
            (Refusal::PeerSocket, libc::EDEADLK),
            (Refusal::PeerUnchecked(Errno::EMFILE), libc::EMFILE),
            (Refusal::NoSuchIndex { index: 1, count: 1 }, libc::EBADF),
        ];
        for (why, errno) in table {
            let e = Error::from(why.clone());
            assert_eq!((why.errno(), e.errno()), (errno, errno), "{why:?}");
            assert_eq!(why.to_string(), e.to_string());
        }
    }

    #[test]
    fn a_refused_message_holds_no_fds_and_the_first_reason_stays() {
        let _leaks = FdLeakCheck::new();
        let (r, _w) = nix::unistd::pipe().unwrap();
        let mut m = Message::new(br#"{"execute":"x"}"#.to_vec(), Ok(None));
        m.attach_fds(Ok([Some(r)].into_iter().collect()));
        assert_eq!((m.status(), m.fds().count()), (Ok(()), 1));
        m.fail(Refusal::HoldExpired { limit_ms: 1 });
        m.fail(Refusal::FdsLost);
        assert_eq!((m.status(), m.fds().count()), (Err(&Refusal::HoldExpired { limit_ms: 1 }), 0));
    }
}
