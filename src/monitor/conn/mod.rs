//! A monitor connection: reads commands and gives each exactly the fds
//! that were sent with it. (Where this sits in the pipeline, from `recvmsg`
//! to the C layer: `docs/ARCHITECTURE.md`.)
//!
//! # Which command owns which fds
//!
//! The association rule, the limits on fds, the hold deadline, the peer
//! socket refusal and lost fds are the association service's
//! (`assoc`): a connection frames each read with its
//! scanner and reports to it what the framing finds, in the same calls
//! a VMM makes that parses its own commands. In short: the fds of one read
//! belong to the last command that has a non-whitespace byte among that
//! read's bytes; a read of whitespace only keeps them for the next command.
//! With [`Framing::Packet`] one packet is one command and the association
//! is exact.
//!
//! # The hold deadline
//!
//! Fds held for a command that has not completed, or waiting for one, may
//! be held at most [`Limits::max_hold_ms`] (see `assoc`). Then
//! they are closed; a command in progress is delivered as it is with
//! [`Refusal::HoldExpired`] and the rest of its line is discarded, as after a
//! malformed command; fds that were waiting for a command make that command
//! fail the same way. The connection goes on. A blocking
//! [`Connection::recv`] waits for the socket with `poll(2)` only until the
//! deadline; [`Connection::deadline`] tells an event loop when to call
//! `recv` again, on fed connections too. A received fd that is the
//! connection's own peer socket is refused at once ([`Refusal::PeerSocket`],
//! the fd closed) where the kernel can tell (see `peer`).

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::error::Error;
use crate::fds::context::{ensure_cloexec, FdList};
use crate::monitor::assoc::{attach_point, Assoc};
pub use crate::monitor::framing::Framing;
use crate::monitor::framing::{validate_text, FrameEnd, Scanner, Took};
use crate::monitor::json::{is_ws, validate_object};
pub use crate::monitor::limits::Limits;
use crate::monitor::message::{Message, Refusal};

/// What the caller's read reported besides its bytes and fds, for
/// [`Connection::feed`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedFlags {
    /// The read reported `MSG_CTRUNC`: fds were sent that the kernel could
    /// not install (the command they belong to fails with
    /// [`Refusal::FdsLost`]).
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
        socket::check_socket(sock.as_fd(), framing)?;
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
    /// [`Refusal::TooLarge`].
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
        // Fds the caller read itself may be inheritable; every fd a message
        // hands out is close-on-exec.
        let fds: FdList = fds.into_iter().inspect(|fd| ensure_cloexec(fd.as_fd())).map(Some).collect();
        self.feed_list(data, fds, flags)
    }

    /// [`Connection::feed`] with fds already close-on-exec (the C layer's
    /// `own_raw_fds` made them so).
    pub(crate) fn feed_list(&mut self, data: &[u8], fds: FdList, flags: FeedFlags) -> Result<(), Error> {
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
                    let fault = flags.fds_lost.then_some(Refusal::FdsLost);
                    self.on_packet(data, fds, fault, truncated);
                }
            }
            _ => {
                if !data.is_empty() || !fds.is_empty() || flags.fds_lost {
                    self.on_stream(data, fds, flags.fds_lost.then_some(Refusal::FdsLost));
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
    /// [`Refusal::HoldExpired`] and the rest of its line discarded; fds
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
            self.ready.push_back(Message::refused(data, why));
        }
    }

    /// A read's fault: the peer socket among its fds, a peer check that
    /// cannot run now (a fed connection cannot tell either), or fds lost in
    /// transit.
    fn fault(&mut self, fds: &[Option<OwnedFd>], fds_lost: bool) -> Option<Refusal> {
        let sock = self.sock.as_ref().map(|s| s.as_fd());
        self.assoc.fault(sock, fds, fds_lost)
    }

    /// One packet: its bytes (empty when `truncated`, i.e. larger than
    /// `max_msg_bytes`), its fds and what was wrong with them.
    fn on_packet(&mut self, data: Vec<u8>, fds: FdList, fault: Option<Refusal>, truncated: bool) {
        let check = if truncated {
            Err(Refusal::TooLarge { limit: self.limits.max_msg_bytes })
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
    fn on_stream(&mut self, chunk: &[u8], fds: FdList, fault: Option<Refusal>) {
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
                if matches!(e, Refusal::TooLarge { .. }) {
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

mod socket;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    #[test]
    fn a_fed_connection_holds_no_socket_and_drops_what_it_holds() {
        let _leaks = FdLeakCheck::new();
        let mut conn = Connection::new_fed(Framing::Json, Limits::default()).unwrap();
        assert!(conn.is_fed());
        let (r, w) = nix::unistd::pipe().unwrap();
        conn.feed(b"{\"execute\":", vec![r, w], FeedFlags::default()).unwrap();
        assert_eq!(conn.recv().map_err(|e| e.errno()).unwrap_err(), libc::EAGAIN);
        drop(conn);
    }
}
