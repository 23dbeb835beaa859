//! A monitor connection: reads commands and gives each exactly the fds
//! that were sent with it. (Where this sits in the pipeline, from `recvmsg`
//! to the C layer: `docs/ARCHITECTURE.md`.)
//!
//! # Which command owns which fds
//!
//! The association rule, the limits on fds, the hold deadline, the peer
//! socket refusal and lost fds are the association service's
//! ([`crate::monitor::assoc`]): a connection frames each read with its
//! [`Scanner`] and reports to it what the framing finds, in the same calls
//! a VMM makes that parses its own commands. In short: the fds of one read
//! belong to the last command that has a non-whitespace byte among that
//! read's bytes; a read of whitespace only keeps them for the next command.
//! With [`Framing::Packet`] one packet is one command and the association
//! is exact.
//!
//! # The hold deadline
//!
//! Fds held for a command that has not completed, or waiting for one, may
//! be held at most [`Limits::max_hold_ms`] (see [`crate::monitor::assoc`]). Then
//! they are closed; a command in progress is delivered as it is with
//! [`Error::HoldExpired`] and the rest of its line is discarded, as after a
//! malformed command; fds that were waiting for a command make that command
//! fail the same way. The connection goes on. A blocking
//! [`Connection::recv`] waits for the socket with `poll(2)` only until the
//! deadline; [`Connection::deadline`] tells an event loop when to call
//! `recv` again, on fed connections too. A received fd that is the
//! connection's own peer socket is refused at once ([`Error::PeerSocket`],
//! the fd closed) where the kernel can tell (see [`crate::monitor::peer`]).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::error::Error;
use crate::fds::context::FdList;
use crate::monitor::assoc::{attach_point, Assoc};
pub use crate::monitor::framing::Framing;
use crate::monitor::framing::{validate_text, FrameEnd, Scanner, Took};
use crate::monitor::json::{is_ws, validate_object};
use crate::monitor::message::Message;
use crate::monitor::recv::{peek_packet_len, recv_fd_list, CMSG_WORDS};

/// Bounds on what one command may bring. A field left 0 takes its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest command in bytes (default 1 MiB).
    pub max_msg_bytes: usize,
    /// Most fds one command may bring, or wait for it (default 32).
    pub max_fds: usize,
    /// Deepest JSON nesting (default 64).
    pub max_depth: usize,
    /// Longest time, in milliseconds, fds may be held for a command that
    /// has not completed, or wait for one (default 10000, at most
    /// 3600000). See "The hold deadline" in this module's doc.
    pub max_hold_ms: u32,
}

/// Default largest command: 1 MiB.
pub const DEFAULT_MAX_MSG_BYTES: usize = 1 << 20;
/// Default most fds per command.
pub const DEFAULT_MAX_FDS: usize = 32;
/// Default JSON nesting depth.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Default hold deadline: 10 s.
pub const DEFAULT_MAX_HOLD_MS: u32 = 10_000;

/// The highest `max_msg_bytes` accepted: 1 GiB.
pub const MAX_MSG_BYTES_LIMIT: usize = 1 << 30;
/// The highest `max_fds` accepted.
pub const MAX_FDS_LIMIT: usize = 1 << 16;
/// The highest `max_depth` accepted: serde_json stops at 128 levels.
pub const MAX_DEPTH_LIMIT: usize = 127;
/// The highest `max_hold_ms` accepted: one hour. A client may make the
/// monitor hold its fds this long, so it stays bounded.
pub const MAX_HOLD_MS_LIMIT: u32 = 3_600_000;

impl Limits {
    /// These limits checked, with every 0 replaced by its default: the one
    /// check, made when a connection is built ([`Connection::new`],
    /// [`Connection::new_fed`]). A value above its maximum is refused, never
    /// lowered.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a field is above its maximum
    /// ([`MAX_MSG_BYTES_LIMIT`], [`MAX_FDS_LIMIT`], [`MAX_DEPTH_LIMIT`],
    /// [`MAX_HOLD_MS_LIMIT`]).
    pub fn validated(self) -> Result<Limits, Error> {
        if self.max_msg_bytes > MAX_MSG_BYTES_LIMIT {
            return Err(Error::InvalidArgument("max_msg_bytes is above 1 GiB"));
        }
        if self.max_fds > MAX_FDS_LIMIT {
            return Err(Error::InvalidArgument("max_fds is above 65536"));
        }
        if self.max_depth > MAX_DEPTH_LIMIT {
            return Err(Error::InvalidArgument("max_depth is above 127"));
        }
        if self.max_hold_ms > MAX_HOLD_MS_LIMIT {
            return Err(Error::InvalidArgument("max_hold_ms is above 3600000 (one hour)"));
        }
        let pick = |v: usize, default: usize| if v == 0 { default } else { v };
        Ok(Limits {
            max_msg_bytes: pick(self.max_msg_bytes, DEFAULT_MAX_MSG_BYTES),
            max_fds: pick(self.max_fds, DEFAULT_MAX_FDS),
            max_depth: pick(self.max_depth, DEFAULT_MAX_DEPTH),
            max_hold_ms: if self.max_hold_ms == 0 { DEFAULT_MAX_HOLD_MS } else { self.max_hold_ms },
        })
    }
}

impl Default for Limits {
    /// Every limit at its default.
    fn default() -> Limits {
        Limits {
            max_msg_bytes: DEFAULT_MAX_MSG_BYTES,
            max_fds: DEFAULT_MAX_FDS,
            max_depth: DEFAULT_MAX_DEPTH,
            max_hold_ms: DEFAULT_MAX_HOLD_MS,
        }
    }
}

/// Turns on `SO_TIMESTAMP` on a packet socket: the kernel then attaches a
/// timestamp to every packet it returns, an empty one included, and none
/// to the end of the stream (`__unix_dgram_recvmsg()` in
/// `net/unix/af_unix.c` adds it only when it dequeued a packet). That is
/// how an empty packet is told from the end, even when more empty packets
/// are queued behind it. Best effort: without it, an empty packet that
/// arrives just before the peer closes may read as the end.
fn enable_timestamps(sock: BorrowedFd<'_>) {
    use nix::sys::socket::{setsockopt, sockopt};
    let _ = setsockopt(&sock, sockopt::ReceiveTimestamp, &true);
}

/// Bytes asked of the kernel per read on a stream socket.
const STREAM_READ: usize = 64 * 1024;

/// Per-thread receive buffers: a connection keeps only the frame in
/// progress, so an idle connection costs a few hundred bytes.
struct Scratch {
    buf: Vec<u8>,
    cmsg: Box<[u64; CMSG_WORDS]>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { buf: Vec::new(), cmsg: Box::new([0; CMSG_WORDS]) }
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Runs `f` with this thread's buffers, or with fresh ones while the
/// thread's locals are being torn down.
fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    let mut f = Some(f);
    let done = SCRATCH.try_with(|s| match s.try_borrow_mut() {
        Ok(mut scratch) => Some((f.take().expect("called once"))(&mut scratch)),
        Err(_) => None,
    });
    match done {
        Ok(Some(v)) => v,
        _ => (f.take().expect("called once"))(&mut Scratch::new()),
    }
}

/// What the caller's read reported besides its bytes and fds, for
/// [`Connection::feed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedFlags {
    /// The read reported `MSG_CTRUNC`: fds were sent that the kernel could
    /// not install (the command they belong to fails with
    /// [`Error::FdsLost`]).
    pub fds_lost: bool,
    /// The stream ends after these bytes (the caller's read returned 0, or
    /// the caller stops reading).
    pub end: bool,
}

/// The receiving side of one monitor socket: it frames commands and gives
/// each exactly the fds that were sent with it. It keeps only the command
/// in progress and fds waiting for one, and closes those when it ends.
/// It may move to another thread, but must not be used from two at once,
/// and it must be the socket's only reader (two readers would split
/// commands, and a packet could change between peeking and receiving).
///
/// A connection either reads its socket itself ([`Connection::new`]) or is
/// fed the caller's reads ([`Connection::new_fed`], [`Connection::feed`]).
/// Both go through the same framing and association code: a socket
/// connection is a fed one plus its own `recvmsg(2)` loop.
///
/// `S` is how the connection holds its socket: [`OwnedFd`] (the default)
/// owns it and closes it when dropped; [`BorrowedFd`] borrows it, the
/// borrow checker keeping the socket open for as long as the connection
/// lives. A fed connection holds none.
pub struct Connection<S: AsFd = OwnedFd> {
    /// The socket read, `None` for a fed connection.
    sock: Option<S>,
    framing: Framing,
    limits: Limits,
    /// Where a stream's commands end; `None` for packet framing.
    scanner: Option<Scanner>,
    /// Bytes of the frame in progress (empty between frames).
    current: Vec<u8>,
    /// Which command owns which fds: the association service.
    assoc: Assoc,
    /// Commands complete and not yet returned, oldest first.
    ready: VecDeque<Message>,
    eof: bool,
}

impl<S: AsFd> std::fmt::Debug for Connection<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("sock", &self.sock.as_ref().map(|s| s.as_fd().as_raw_fd()))
            .field("framing", &self.framing)
            .field("limits", &self.limits)
            .field("ready", &self.ready.len())
            .field("eof", &self.eof)
            .finish()
    }
}

/// Checks that `sock` is a socket that `framing` can read: packet framing
/// needs a `SOCK_SEQPACKET` or `SOCK_DGRAM` socket (on a stream it would
/// never see a message boundary), and then turns on its timestamps (see
/// [`enable_timestamps`]); JSON and line framing need a `SOCK_STREAM`
/// socket (on a packet socket a read of a fixed size would cut a larger
/// packet, and the kernel drops the rest: `MSG_TRUNC` in `recvmsg(2)`).
fn check_socket(sock: BorrowedFd<'_>, framing: Framing) -> Result<(), Error> {
    use nix::sys::socket::{getsockopt, sockopt, SockType};
    let ty = getsockopt(&sock, sockopt::SockType).map_err(|e| Error::sys("getsockopt(SO_TYPE)", e))?;
    if framing == Framing::Packet {
        if ty == SockType::Stream {
            return Err(Error::InvalidArgument("packet framing needs a SOCK_SEQPACKET or SOCK_DGRAM socket"));
        }
        enable_timestamps(sock);
    } else if ty != SockType::Stream {
        return Err(Error::InvalidArgument("JSON and line framing need a SOCK_STREAM socket (use packet framing)"));
    }
    Ok(())
}

impl Connection {
    /// A connection fed by the caller's own reads of a socket it never
    /// sees: each [`Connection::feed`] is one `recvmsg(2)` of the caller's,
    /// and [`Connection::recv`] returns the commands framed from them.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a limit is above its maximum
    /// ([`Limits::validated`]).
    pub fn new_fed(framing: Framing, limits: Limits) -> Result<Connection, Error> {
        Connection::fed(framing, limits)
    }
}

impl<S: AsFd> Connection<S> {
    /// A connection reading `sock`: an [`OwnedFd`] it closes when dropped,
    /// or a [`BorrowedFd`] it never closes. Checks, once, the socket's type
    /// against `framing` and the limits; with [`Framing::Packet`] it turns
    /// on `SO_TIMESTAMP` on the socket (an empty packet is told from the end
    /// of the stream by its timestamp).
    ///
    /// # Errors
    /// `ENOTSOCK` (as [`Error::Sys`]) if `sock` is not a socket;
    /// [`Error::InvalidArgument`] for packet framing on a stream socket,
    /// JSON or line framing on any other kind of socket, or a limit above
    /// its maximum.
    pub fn new(sock: S, framing: Framing, limits: Limits) -> Result<Connection<S>, Error> {
        check_socket(sock.as_fd(), framing)?;
        crate::monitor::recv::inline_out_of_band(sock.as_fd())?;
        let mut conn = Connection::build(Some(sock), framing, limits)?;
        let sock = conn.sock.as_ref().expect("built with its socket").as_fd();
        conn.assoc.look_up_peer(sock);
        Ok(conn)
    }

    /// A fed connection (see [`Connection::new_fed`]) of this type, for a
    /// program that keeps connections of both kinds in one type.
    ///
    /// # Errors
    /// As [`Connection::new_fed`].
    pub fn fed(framing: Framing, limits: Limits) -> Result<Connection<S>, Error> {
        Connection::build(None, framing, limits)
    }

    /// Whether this connection is fed by its caller rather than reading a
    /// socket.
    pub fn is_fed(&self) -> bool {
        self.sock.is_none()
    }

    /// Feeds one read of the caller's: its bytes `data` and the fds that
    /// came with them, which the connection owns from now on (they are
    /// closed by the connection whatever happens, failure included).
    ///
    /// One call is one `recvmsg(2)`: the association rule of this module's
    /// doc applies to it exactly as to a read of the connection's own, so
    /// the caller must not merge reads or split one. With
    /// [`Framing::Packet`] one call is one packet (an empty one included),
    /// except that a call with `flags.end`, no bytes and no fds only ends
    /// the stream. A packet larger than `max_msg_bytes` is delivered as
    /// [`Error::TooLarge`].
    ///
    /// Afterwards [`Connection::recv`] returns what is complete, then
    /// `EAGAIN`; after `flags.end`, `Ok(None)` once everything before it
    /// was returned. Held fds whose deadline passed before this call expire
    /// before its bytes are taken, as they would before a socket
    /// connection's next read.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a connection that reads its own
    /// socket; `EPIPE` (as [`Error::Sys`]) after the end was fed. Nothing
    /// is fed then, and `fds` are closed.
    pub fn feed(&mut self, data: &[u8], fds: Vec<OwnedFd>, flags: FeedFlags) -> Result<(), Error> {
        let fds: FdList = fds.into_iter().map(Some).collect();
        if !self.is_fed() {
            return Err(Error::InvalidArgument("feeding a connection that reads its own socket"));
        }
        if self.eof {
            return Err(Error::sys("feeding a connection after its end", nix::errno::Errno::EPIPE));
        }
        // As a socket connection does before each read: what was due before
        // these bytes came expires first.
        self.expire_due();
        match self.framing {
            Framing::Packet => {
                if !(flags.end && data.is_empty() && fds.is_empty() && !flags.fds_lost) {
                    let truncated = data.len() > self.limits.max_msg_bytes;
                    let data = if truncated {
                        Vec::new()
                    } else {
                        // Room for the NUL the message appends.
                        let mut copy = Vec::with_capacity(data.len() + 1);
                        copy.extend_from_slice(data);
                        copy
                    };
                    let fault = flags.fds_lost.then_some(Error::FdsLost);
                    self.on_packet(data, fds, fault, truncated);
                }
            }
            _ => {
                if !data.is_empty() || !fds.is_empty() || flags.fds_lost {
                    self.on_stream(data, fds, flags.fds_lost.then_some(Error::FdsLost));
                }
            }
        }
        if flags.end {
            self.end_of_stream();
        }
        Ok(())
    }

    fn build(sock: Option<S>, framing: Framing, limits: Limits) -> Result<Connection<S>, Error> {
        let limits = limits.validated()?;
        Ok(Connection {
            sock,
            framing,
            limits,
            scanner: Scanner::new(framing, limits.max_msg_bytes, limits.max_depth),
            current: Vec::new(),
            assoc: Assoc::new(limits.max_fds, limits.max_hold_ms),
            ready: VecDeque::new(),
            eof: false,
        })
    }

    /// The socket read; only called on a connection that has one.
    fn sock(&self) -> BorrowedFd<'_> {
        self.sock.as_ref().expect("a fed connection does not read").as_fd()
    }

    /// The limits in force (defaults filled in).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The next command, good or bad: `Ok(Some(msg))` for every
    /// message-shaped thing (check [`Message::status`]), `Ok(None)` at
    /// orderly end of stream (on a fed connection: once the end was fed
    /// and everything before it returned).
    ///
    /// # Errors
    /// `EAGAIN` (as [`Error::Sys`]) when the socket is non-blocking, or the
    /// connection is fed, and no whole command is buffered yet — everything
    /// received so far is kept; any other errno when the socket itself
    /// failed.
    pub fn recv(&mut self) -> Result<Option<Message>, Error> {
        loop {
            self.expire_due();
            if let Some(msg) = self.ready.pop_front() {
                return Ok(Some(msg));
            }
            if self.eof {
                return Ok(None);
            }
            if self.is_fed() {
                return Err(Error::sys("no whole command was fed yet", nix::errno::Errno::EAGAIN));
            }
            if let Some(left) = self.deadline() {
                // Fds are held: a blocking read must not outlast them.
                if !self.readable_within(left)? {
                    continue;
                }
            }
            self.read_once()?;
        }
    }

    /// How long until held fds expire (zero when due), `None` while no fd
    /// is held. An event loop waits at most this long before calling
    /// [`Connection::recv`], which expires what is due.
    pub fn deadline(&self) -> Option<Duration> {
        self.assoc.deadline()
    }

    /// Expires held fds whose deadline has passed: they are closed; a
    /// command in progress is delivered as it is with
    /// [`Error::HoldExpired`] and the rest of its line discarded; fds
    /// waiting for a command make that command fail the same way.
    #[inline]
    fn expire_due(&mut self) {
        if !self.assoc.due() {
            return;
        }
        let in_frame = self.scanner.as_ref().is_some_and(Scanner::in_frame);
        if let Some(why) = self.assoc.expire(in_frame) {
            if let Some(scanner) = &mut self.scanner {
                scanner.abandon();
            }
            let data = std::mem::take(&mut self.current);
            self.ready.push_back(Message::new(data, Err(why)));
        }
    }

    /// Waits up to `left` for the socket to become readable, when it is in
    /// blocking mode; `Ok(false)` when the time ran out (or a signal came).
    /// A non-blocking socket is not waited for.
    fn readable_within(&self, left: Duration) -> Result<bool, Error> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let fl = fcntl(self.sock(), FcntlArg::F_GETFL).map_err(|e| Error::sys("fcntl(F_GETFL)", e))?;
        if OFlag::from_bits_retain(fl).contains(OFlag::O_NONBLOCK) {
            return Ok(true);
        }
        // Round up, so a wake-up never comes before the deadline.
        let ms = left.as_micros().div_ceil(1000).min(libc::c_int::MAX as u128) as libc::c_int;
        let mut pfd = libc::pollfd { fd: self.sock().as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = nix::errno::Errno::last();
            return if e == nix::errno::Errno::EINTR { Ok(false) } else { Err(Error::sys("poll", e)) };
        }
        Ok(n > 0)
    }

    /// A read's fault: the peer socket among its fds, a peer check that
    /// cannot run now (a fed connection cannot tell either), or fds lost in
    /// transit.
    fn fault(&mut self, fds: &[Option<OwnedFd>], fds_lost: bool) -> Option<Error> {
        let sock = self.sock.as_ref().map(|s| s.as_fd());
        self.assoc.fault(sock, fds, fds_lost)
    }

    fn read_once(&mut self) -> Result<(), Error> {
        with_scratch(|scratch| match self.framing {
            Framing::Packet => self.read_packet(scratch),
            _ => self.read_stream(scratch),
        })
    }

    fn read_stream(&mut self, scratch: &mut Scratch) -> Result<(), Error> {
        if scratch.buf.len() < STREAM_READ {
            scratch.buf.resize(STREAM_READ, 0);
        }
        let got = recv_fd_list(self.sock(), &mut scratch.buf[..STREAM_READ], &mut scratch.cmsg)
            .map_err(|e| Error::sys("recvmsg", e))?;
        if got.bytes == 0 {
            // End of stream; a stream read returns fds only with bytes.
            drop(got.fds);
            self.end_of_stream();
        } else {
            let fault = self.fault(&got.fds, got.fds_lost);
            self.on_stream(&scratch.buf[..got.bytes], got.fds, fault);
        }
        Ok(())
    }

    /// One packet, received into a buffer of exactly its size: memory
    /// follows what arrives, not `max_msg_bytes`.
    fn read_packet(&mut self, scratch: &mut Scratch) -> Result<(), Error> {
        let size = peek_packet_len(self.sock()).map_err(|e| Error::sys("recv(MSG_PEEK)", e))?;
        let max = self.limits.max_msg_bytes;
        let mut data = Vec::new();
        if size <= max {
            // One byte more, for the NUL the message appends.
            data.try_reserve_exact(size + 1)
                .map_err(|_| Error::sys("allocating a packet buffer", nix::errno::Errno::ENOMEM))?;
            data.resize(size, 0);
        }
        // A packet over the limit is received into no room at all: the
        // kernel drops its bytes and reports MSG_TRUNC.
        let got = recv_fd_list(self.sock(), &mut data, &mut scratch.cmsg).map_err(|e| Error::sys("recvmsg", e))?;
        data.truncate(got.bytes);
        // A packet, even an empty one, brings its timestamp; the end brings
        // no control data at all.
        if got.bytes == 0 && !got.control && !got.truncated && !got.fds_lost && self.peer_gone() {
            self.end_of_stream();
            return Ok(());
        }
        let fault = self.fault(&got.fds, got.fds_lost);
        self.on_packet(data, got.fds, fault, got.truncated);
        Ok(())
    }

    /// After an empty read on a packet socket: end of stream, or an empty
    /// packet? The end is when the socket polls hung up — the peer closed
    /// or shut down writing (seqpacket), or this side shut down reading —
    /// and nothing is queued any more (`POLLHUP`/`POLLRDHUP` and `SIOCINQ`,
    /// see `unix_dgram_poll()` and `unix_inq_len()` in `net/unix/af_unix.c`).
    /// `SIOCINQ` counts bytes, so it cannot see empty packets still queued:
    /// that a read took an empty packet is known from its timestamp (see
    /// [`enable_timestamps`]).
    fn peer_gone(&self) -> bool {
        let fd = AsRawFd::as_raw_fd(&self.sock());
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN | libc::POLLRDHUP, revents: 0 };
        loop {
            // SAFETY: one valid pollfd, a zero timeout.
            let n = unsafe { libc::poll(&mut pfd, 1, 0) };
            if n >= 0 {
                break;
            }
            if nix::errno::Errno::last() != nix::errno::Errno::EINTR {
                return true;
            }
        }
        if pfd.revents & (libc::POLLHUP | libc::POLLRDHUP) == 0 {
            return false;
        }
        let mut queued: libc::c_int = 0;
        // SAFETY: FIONREAD (SIOCINQ) writes one int to a live local.
        let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) };
        r < 0 || queued == 0
    }

    /// One packet: its bytes (empty when `truncated`, i.e. larger than
    /// `max_msg_bytes`), its fds and what was wrong with them.
    fn on_packet(&mut self, data: Vec<u8>, fds: FdList, fault: Option<Error>, truncated: bool) {
        let check = if truncated {
            Err(Error::TooLarge { limit: self.limits.max_msg_bytes })
        } else if data.iter().find(|&&b| !is_ws(b)) == Some(&b'{') {
            validate_object(&data, self.limits.max_depth)
        } else {
            validate_text(&data)
        };
        let mut msg = Message::new(data, check);
        // One packet is one command: its fds are its own.
        self.assoc.read(fds, fault, true);
        self.assoc.attach();
        msg.attach_fds(self.assoc.complete());
        self.ready.push_back(msg);
    }

    /// One read of a stream: its bytes (possibly none) and its fds, given
    /// to commands by the association service ([`crate::monitor::assoc`]): the
    /// read's fds attach just before the scanner's step that takes the
    /// read's last non-whitespace byte, so the command that has it gets
    /// them, and one that completed before it does not.
    fn on_stream(&mut self, chunk: &[u8], fds: FdList, fault: Option<Error>) {
        let at = attach_point(chunk);
        self.assoc.read(fds, fault, at.is_some());
        let at = at.unwrap_or(chunk.len());
        let mut pos = 0;
        while pos < chunk.len() {
            let step = match &mut self.scanner {
                Some(scanner) => scanner.step(&chunk[pos..]),
                None => break,
            };
            if pos + step.consumed > at {
                self.assoc.attach();
            }
            match step.took {
                Took::Gap => {}
                Took::Discarded { nonws } => {
                    if nonws {
                        self.assoc.discard();
                    }
                }
                Took::Frame { bytes, nonws, end } => {
                    if nonws {
                        self.assoc.command_byte();
                    }
                    let bytes = &chunk[pos..][bytes];
                    if let FrameEnd::Open = end {
                        self.current.extend_from_slice(bytes);
                    } else {
                        let mut msg = self.complete_frame(bytes, end);
                        msg.attach_fds(self.assoc.complete());
                        self.ready.push_back(msg);
                    }
                }
            }
            pos += step.consumed;
        }
        self.assoc.attach();
    }

    /// Builds the message for a frame that just ended, as `end` says;
    /// `tail` is its last bytes from the current read.
    fn complete_frame(&mut self, tail: &[u8], end: FrameEnd) -> Message {
        // Between frames `current` has no allocation, so a frame that fits
        // in one read costs one exact allocation (with the byte for the NUL
        // the message appends).
        let mut data = std::mem::take(&mut self.current);
        data.reserve_exact(tail.len() + 1);
        data.extend_from_slice(tail);
        let check = match end {
            FrameEnd::Rejected(e) => {
                let e = *e;
                if matches!(e, Error::TooLarge { .. }) {
                    data = Vec::new();
                }
                Err(e)
            }
            FrameEnd::Valid { fd_refs } => Ok(fd_refs),
            FrameEnd::Complete if self.framing == Framing::Json => {
                let check = validate_object(&data, self.limits.max_depth);
                if check.is_err() {
                    // After a malformed command the reader cannot know where
                    // the client meant the next one to start: the rest of
                    // the line goes too (see the framing module's doc).
                    if let Some(scanner) = &mut self.scanner {
                        scanner.abandon();
                    }
                }
                check
            }
            // A line (`Open` is not passed here).
            _ => {
                if data.last() == Some(&b'\r') {
                    data.pop();
                }
                validate_text(&data)
            }
        };
        Message::new(data, check)
    }

    fn end_of_stream(&mut self) {
        self.eof = true;
        // A command cut short by the end of the stream is dropped, and so
        // are its fds and any still waiting for a command.
        self.current = Vec::new();
        self.assoc.reset();
    }
}
