//! Errors: one enum, each variant tied to the errno a C caller sees.
//!
//! The C layer returns `-errno()` from every `int` call, so the mapping here
//! is part of the ABI and must stay stable.

use std::fmt;

use nix::errno::Errno;

/// Every way an fdctx operation can fail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// `/dev/fd/N` names an index that was not sent with this command
    /// (`EBADF`).
    NoSuchIndex { index: usize, count: usize },
    /// The fd at this index was already taken (`EBADFD`).
    AlreadyTaken { index: usize },
    /// The fd's access mode does not allow the requested one (`EACCES`).
    AccessMode { wanted: &'static str, have: &'static str },
    /// An `O_PATH` fd was asked for reading or writing (`EACCES`).
    PathOnlyFd,
    /// A path that looks like `/dev/fd/N` but breaks the strict grammar
    /// (`EINVAL`).
    MalformedFdPath(String),
    /// A path that would reach the process's own descriptor table, such as
    /// `/proc/self/fd/3` or `/dev/stdin` (`EPERM`).
    OwnFdPath(String),
    /// A client path whose file is on procfs, however it was named or
    /// reached (`EPERM`): see [`crate::fds::open`].
    ProcfsPath(String),
    /// A path the kernel refused (`EACCES`) while the process is confined
    /// by [`crate::fds::confine::confine`].
    Confined(String),
    /// Confinement cannot be enforced: the kernel has no usable Landlock
    /// (`EOPNOTSUPP`).
    Unconfinable(String),
    /// An allow entry of [`crate::fds::confine::confine`] that cannot be used:
    /// its path cannot be opened (that errno, `ENOENT` when missing) or its
    /// access is not `O_RDONLY`, `O_WRONLY` or `O_RDWR` (`EINVAL`).
    AllowEntry { index: usize, path: String, errno: Errno, why: &'static str },
    /// A command longer than `max_msg_bytes` (`EMSGSIZE`).
    TooLarge { limit: usize },
    /// A command that brought more fds than `max_fds` (`ETOOMANYREFS`).
    TooManyFds { limit: usize },
    /// Not every fd sent arrived (`MSG_CTRUNC`): more than the reader's
    /// buffer could take, or the kernel could not install them all, for
    /// example at `RLIMIT_NOFILE` (`ECOMM`).
    FdsLost,
    /// Not valid JSON, not an object, or nested deeper than `max_depth`
    /// (`EBADMSG`).
    MalformedJson(String),
    /// A command that is not valid UTF-8 (`EILSEQ`).
    InvalidUtf8,
    /// A JSON Pointer that names no value in the message (`ENOENT`).
    NoSuchValue(String),
    /// A JSON value of another type than the one asked for (`ENOMSG`).
    WrongType { pointer: String, wanted: &'static str },
    /// An integer that does not fit the requested type (`ERANGE`).
    OutOfRange(String),
    /// Fds were held for an unfinished command, or waited for one, longer
    /// than `max_hold_ms` (`ETIMEDOUT`).
    HoldExpired { limit_ms: u32 },
    /// A received fd was the connection's own peer socket, which would keep
    /// the connection alive for ever (`EDEADLK`).
    PeerSocket,
    /// A NULL pointer or otherwise unusable argument (`EINVAL`).
    InvalidArgument(&'static str),
    /// A system call failed.
    Sys { call: &'static str, errno: Errno },
}

impl Error {
    /// The positive errno a C caller receives (negated) for this error.
    pub fn errno(&self) -> i32 {
        let e = match self {
            Error::NoSuchIndex { .. } => Errno::EBADF,
            Error::AlreadyTaken { .. } => Errno::EBADFD,
            Error::AccessMode { .. } | Error::PathOnlyFd => Errno::EACCES,
            Error::MalformedFdPath(_) | Error::InvalidArgument(_) => Errno::EINVAL,
            Error::OwnFdPath(_) | Error::ProcfsPath(_) => Errno::EPERM,
            Error::Confined(_) => Errno::EACCES,
            Error::Unconfinable(_) => Errno::EOPNOTSUPP,
            Error::AllowEntry { errno, .. } => *errno,
            Error::TooLarge { .. } => Errno::EMSGSIZE,
            Error::TooManyFds { .. } => Errno::ETOOMANYREFS,
            Error::FdsLost => Errno::ECOMM,
            Error::MalformedJson(_) => Errno::EBADMSG,
            Error::InvalidUtf8 => Errno::EILSEQ,
            Error::NoSuchValue(_) => Errno::ENOENT,
            Error::WrongType { .. } => Errno::ENOMSG,
            Error::OutOfRange(_) => Errno::ERANGE,
            Error::HoldExpired { .. } => Errno::ETIMEDOUT,
            Error::PeerSocket => Errno::EDEADLK,
            Error::Sys { errno, .. } => *errno,
        };
        e as i32
    }

    pub(crate) fn sys(call: &'static str, errno: Errno) -> Error {
        Error::Sys { call, errno }
    }

    /// A failed call reported through `std::io::Error`.
    pub(crate) fn io(call: &'static str, e: &std::io::Error) -> Error {
        Error::sys(call, Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoSuchIndex { index, count } => no_such_index(f, *index, *count),
            Error::AlreadyTaken { index } => {
                write!(f, "/dev/fd/{index} was already taken by an earlier call")
            }
            Error::AccessMode { wanted, have } => {
                write!(f, "access mode refused: {wanted} asked of an {have} fd")
            }
            Error::PathOnlyFd => write!(f, "an O_PATH fd cannot be used for reading or writing"),
            Error::MalformedFdPath(p) => write!(f, "malformed fd path '{p}'"),
            Error::OwnFdPath(p) => write!(
                f,
                "path '{p}' would reach the process's own file descriptors; name fds as /dev/fd/N"
            ),
            Error::ProcfsPath(p) => write!(
                f,
                "path '{p}' is on procfs, which a client path may never open; name fds as /dev/fd/N"
            ),
            Error::Confined(p) => write!(
                f,
                "the process is confined (fdctx_confine) and '{p}' is not beneath a path allowed that access; \
                 pass the file as an fd and name it /dev/fd/N"
            ),
            Error::Unconfinable(why) => write!(f, "not confined: {why}"),
            Error::AllowEntry { index, path, errno, why } => {
                let text = std::io::Error::from_raw_os_error(*errno as i32).to_string();
                let text = text.split(" (os error").next().unwrap_or(&text).to_owned();
                write!(f, "allow entry {index} '{path}': {why}: {text}")
            }
            Error::TooLarge { limit } => write!(f, "command larger than {limit} bytes"),
            Error::TooManyFds { limit } => {
                write!(f, "command brought more than {limit} file descriptors")
            }
            Error::FdsLost => write!(
                f,
                "file descriptors lost in transit (MSG_CTRUNC: more were sent than the receiver could take)"
            ),
            Error::MalformedJson(why) => write!(f, "malformed JSON: {why}"),
            Error::InvalidUtf8 => write!(f, "command is not valid UTF-8"),
            Error::NoSuchValue(p) => write!(f, "no value at JSON pointer '{p}'"),
            Error::WrongType { pointer, wanted } => {
                write!(f, "value at JSON pointer '{pointer}' is not {wanted}")
            }
            Error::OutOfRange(p) => write!(f, "value at JSON pointer '{p}' is out of range"),
            Error::HoldExpired { limit_ms } => write!(
                f,
                "file descriptors held longer than {limit_ms} ms (max_hold_ms) before a complete command took them: closed"
            ),
            Error::PeerSocket => write!(
                f,
                "a file descriptor sent was the monitor connection's own peer socket: refused and closed"
            ),
            Error::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Error::Sys { call, errno } => write!(f, "{call}: {}", strerror(*errno)),
        }
    }
}

/// Which fds a command did bring, for the text of [`Error::NoSuchIndex`].
fn no_such_index(f: &mut fmt::Formatter<'_>, index: usize, count: usize) -> fmt::Result {
    write!(f, "/dev/fd/{index} was not passed with this command ")?;
    match count {
        0 => write!(f, "(no fd was)"),
        1 => write!(f, "(only /dev/fd/0 was)"),
        n => write!(f, "(only /dev/fd/0 to /dev/fd/{} were)", n - 1),
    }
}

/// The C library's wording of `errno` (strerror), as C callers know it.
fn strerror(errno: Errno) -> String {
    let text = std::io::Error::from_raw_os_error(errno as i32).to_string();
    text.split(" (os error").next().unwrap_or(&text).to_owned()
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::new(std::io::Error::from_raw_os_error(e.errno()).kind(), e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    /// The errno of each error is part of the C ABI: `-errno()` is what
    /// every `int` call returns.
    #[test]
    fn each_error_keeps_its_errno() {
        let _leaks = FdLeakCheck::new();
        let table = [
            (Error::NoSuchIndex { index: 1, count: 0 }, libc::EBADF),
            (Error::AlreadyTaken { index: 0 }, libc::EBADFD),
            (Error::AccessMode { wanted: "O_RDWR", have: "O_RDONLY" }, libc::EACCES),
            (Error::PathOnlyFd, libc::EACCES),
            (Error::MalformedFdPath("/dev/fd/01".into()), libc::EINVAL),
            (Error::OwnFdPath("/dev/stdin".into()), libc::EPERM),
            (Error::ProcfsPath("/proc/1/fd/3".into()), libc::EPERM),
            (Error::Confined("/etc/passwd".into()), libc::EACCES),
            (Error::Unconfinable("no Landlock".into()), libc::EOPNOTSUPP),
            (Error::AllowEntry { index: 0, path: "/x".into(), errno: Errno::ENOENT, why: "missing" }, libc::ENOENT),
            (Error::TooLarge { limit: 1 }, libc::EMSGSIZE),
            (Error::TooManyFds { limit: 1 }, libc::ETOOMANYREFS),
            (Error::FdsLost, libc::ECOMM),
            (Error::MalformedJson("x".into()), libc::EBADMSG),
            (Error::InvalidUtf8, libc::EILSEQ),
            (Error::NoSuchValue("/x".into()), libc::ENOENT),
            (Error::WrongType { pointer: "/x".into(), wanted: "a string" }, libc::ENOMSG),
            (Error::OutOfRange("/x".into()), libc::ERANGE),
            (Error::HoldExpired { limit_ms: 1 }, libc::ETIMEDOUT),
            (Error::PeerSocket, libc::EDEADLK),
            (Error::InvalidArgument("fds"), libc::EINVAL),
            (Error::sys("recvmsg", Errno::ECONNRESET), libc::ECONNRESET),
        ];
        for (e, errno) in table {
            assert_eq!(e.errno(), errno, "{e:?}");
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn no_such_index_says_which_fds_were_sent() {
        let _leaks = FdLeakCheck::new();
        let text = |index, count| Error::NoSuchIndex { index, count }.to_string();
        assert!(text(0, 0).ends_with("(no fd was)"));
        assert!(text(1, 1).ends_with("(only /dev/fd/0 was)"));
        assert!(text(5, 3).ends_with("(only /dev/fd/0 to /dev/fd/2 were)"));
    }

    #[test]
    fn a_system_error_reads_as_strerror_and_keeps_its_errno_through_io() {
        let _leaks = FdLeakCheck::new();
        let e = Error::sys("recvmsg", Errno::EMFILE);
        assert_eq!(e.to_string(), "recvmsg: Too many open files");
        let io: std::io::Error = e.into();
        assert_eq!(io.raw_os_error(), None, "carries the fdctx error, not a raw errno");
        assert_eq!(io.kind(), std::io::Error::from_raw_os_error(libc::EMFILE).kind());
    }
}
