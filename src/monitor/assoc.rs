//! The association service: which command owns the fds of each read, for
//! one connection, whoever parses the commands.
//!
//! This is the one state machine behind the association rule, the limits
//! on fds, the hold deadline, the refusal of the connection's own peer
//! socket and the reporting of lost fds. A [`Connection`](crate::Connection)
//! drives it with its own framing; a VMM whose own parser decides where a
//! command ends (QEMU's QMP parser) drives it through the C ABI
//! (`fdctx_assoc_*`). Both make the same calls in the same order:
//!
//! 1. [`Assoc::read`]: one `recvmsg(2)`'s fds, whether fds were lost, and
//!    whether its bytes hold a non-whitespace byte. [`attach_point`] says
//!    where the fds attach: the read's last non-whitespace byte.
//! 2. The parser is fed the read's bytes before that byte; every command it
//!    completes or rejects there is reported ([`Assoc::complete`]) and gets
//!    only older fds.
//! 3. [`Assoc::attach`]: the read's fds go to the command that has that
//!    byte, or, when the read has none, wait for the next command.
//! 4. The parser is fed the rest; the first command it completes or
//!    rejects is the owner and gets them.
//! 5. Bytes the parser dropped ([`Assoc::discard`]), or a parser that holds
//!    no partial command after all of that ([`Assoc::idle`]): fds attached
//!    to dropped bytes are closed, never handed to a later command.
//!
//! Fds of a whitespace-only read wait for the command that has the next
//! non-whitespace byte. A framing that sees the bytes says when a command
//! gets one ([`Assoc::command_byte`]); a parser that completes a command
//! only on a byte of the command's own (QEMU's) reports it with the
//! completion ([`Assoc::complete_own`]).
//!
//! # The rule (stream sockets)
//!
//! On a stream socket the kernel attaches the fds of one `sendmsg(2)` to
//! the first segment of that write, and hands them to the `recvmsg(2)`
//! that returns the segment's first byte; that read stops at the end of
//! the segment (`unix_stream_read_generic()` in `net/unix/af_unix.c`), but
//! may begin with the tail of earlier writes. Hence:
//!
//! * the fds of one read belong to the **last command that has a
//!   non-whitespace byte among that read's bytes**, complete or not;
//! * fds of a read that holds whitespace only (`qemu.qmp` sends one space
//!   with its fd, then the command) wait, and go to the next command;
//! * fds of several reads of one command accumulate in arrival order;
//! * fds of a read whose last non-whitespace byte was discarded (the rest
//!   of a rejected command) are closed, as are fds still waiting at end of
//!   stream or when the connection ends.
//!
//! # Limits and faults
//!
//! A command that brings more than `max_fds` fds (counted over all its
//! reads, fds waiting for it included) fails with [`Refusal::TooManyFds`]. A
//! read that lost fds (`MSG_CTRUNC`, or more fds than the reader's buffer
//! could take) fails its owner with [`Refusal::FdsLost`]: a command never runs
//! with fewer fds than were sent with it. A read that brought the
//! connection's own peer socket fails its owner with [`Refusal::PeerSocket`]
//! (see `peer`). A failed command keeps no fd: they close as the
//! fault is found.
//!
//! # The hold deadline
//!
//! Fds held for a command that has not completed, or waiting for one, are
//! a resource the client controls. A client can send its own end of the
//! monitor socket with an unfinished command and exit: the monitor's copy
//! keeps the socket open and end of stream never comes (dbus-daemon met the
//! same attack, CVE-2014-3637, with its `pending_fd_timeout`). So fds may
//! be held at most `max_hold_ms` (monotonic clock, from the read that made
//! the connection hold fds; a hold ends when its command completes). Then
//! they close ([`Assoc::expire`]): a partial command that held them is
//! handed back to be answered with [`Refusal::HoldExpired`]; fds that were
//! waiting make the next command fail the same way.
//!
//! The rule cannot tell a whitespace byte that ended the previous command
//! (`\r\n`) from one sent ahead of the next command with fds, when one read
//! returns both. So a client that sends fds ahead of its commands must wait
//! for each reply before sending the next command, as `qemu.qmp` does;
//! otherwise its fds go to the command before the one they were meant for.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::fds::context::FdList;
use crate::monitor::json::is_ws;
use crate::monitor::message::Refusal;
use crate::monitor::peer;

/// Where the fds of a read of `data` attach: the offset of its last
/// non-whitespace byte (JSON's whitespace: space, tab, CR, LF), `None`
/// when it has none.
pub fn attach_point(data: &[u8]) -> Option<usize> {
    data.iter().rposition(|&b| !is_ws(b))
}

/// `d` in whole milliseconds, rounded up (a wait of that long never ends
/// before `d`), at most `i32::MAX`.
pub(crate) fn ms_rounded_up(d: Duration) -> i32 {
    i32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
}

/// Fds gathered for one command, or waiting for the next one, and what was
/// wrong with them.
#[derive(Debug, Default)]
pub(crate) struct FdBatch {
    fds: FdList,
    error: Option<Refusal>,
}

impl FdBatch {
    /// The fds, or why the command cannot have them.
    pub fn into_result(self) -> Result<FdList, Refusal> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.fds),
        }
    }

    /// No fd and no fault.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty() && self.error.is_none()
    }

    /// Whether it holds fds (a fault holds none).
    pub fn holds_fds(&self) -> bool {
        !self.fds.is_empty()
    }

    /// Adds one read's fds, and what was wrong with them if anything
    /// (the first fault wins). Once the batch is bad it holds nothing.
    fn add(&mut self, fds: FdList, fault: Option<Refusal>, max_fds: usize) {
        if let Some(e) = fault {
            self.error.get_or_insert(e);
        }
        if self.error.is_none() && self.fds.len() + fds.len() > max_fds {
            self.error = Some(Refusal::TooManyFds { limit: max_fds });
        }
        if self.error.is_some() {
            self.fds.clear();
        } else if self.fds.is_empty() {
            self.fds = fds;
        } else {
            self.fds.extend(fds);
        }
    }

    fn merge(&mut self, other: FdBatch, max_fds: usize) {
        if !other.is_empty() {
            self.add(other.fds, other.error, max_fds);
        }
    }

    /// Closes the fds; the command they were for fails with `why`.
    fn expire(&mut self, why: Refusal) {
        self.add(FdList::new(), Some(why), 0);
    }
}

/// The fds of the last read, between [`Assoc::read`] and [`Assoc::attach`].
#[derive(Debug)]
struct Pending {
    batch: FdBatch,
    /// The read has a non-whitespace byte: its fds go to that byte's command.
    at_command: bool,
}

/// The association state of one connection: fds of the command in
/// progress, fds waiting for the next command, the hold deadline and the
/// peer check. See the module doc for the calls and their order.
#[derive(Debug)]
pub(crate) struct Assoc {
    max_fds: usize,
    max_hold_ms: u32,
    pending: Option<Pending>,
    /// Fds of the command in progress (attached at one of its bytes).
    current: FdBatch,
    /// Fds of whitespace-only reads, for the next command.
    waiting: FdBatch,
    /// Since when fds have been held (monotonic clock), `None` while none
    /// are.
    held_since: Option<Instant>,
    /// The connection's socket and its peer, for refusing them among
    /// received fds.
    peer: peer::PeerCheck,
}

impl Assoc {
    /// The state of a new connection; `max_fds` and `max_hold_ms` as
    /// validated ([`crate::Limits::validated`]).
    pub fn new(max_fds: usize, max_hold_ms: u32) -> Assoc {
        Assoc {
            max_fds,
            max_hold_ms,
            pending: None,
            current: FdBatch::default(),
            waiting: FdBatch::default(),
            held_since: None,
            peer: peer::PeerCheck::default(),
        }
    }

    /// Looks up the peer of the connection's socket now, while the
    /// connection is made and the process usually has an fd to spare; where
    /// that fails for now, the next read that brings fds tries again.
    pub fn look_up_peer(&mut self, sock: BorrowedFd<'_>) {
        self.peer = peer::PeerCheck::new(sock);
    }

    /// What is wrong with one read's fds: the connection's own peer socket
    /// among them, a peer check that cannot run now (both checked only
    /// when `sock`, the connection's socket, is known), or fds lost in
    /// transit.
    pub fn fault(&mut self, sock: Option<BorrowedFd<'_>>, fds: &[Option<OwnedFd>], fds_lost: bool) -> Option<Refusal> {
        let checked = sock.and_then(|sock| self.peer.fault(sock, fds));
        // Fds lost say more than a lookup that failed for the same want of fds.
        match checked {
            Some(Refusal::PeerSocket) => checked,
            _ if fds_lost => Some(Refusal::FdsLost),
            _ => checked,
        }
    }

    /// Step 1: one read's fds (owned from here on) and what was wrong with
    /// them; `at_command` says the read has a non-whitespace byte
    /// ([`attach_point`]). They wait for [`Assoc::attach`]; a read not yet
    /// attached is attached first.
    pub fn read(&mut self, fds: FdList, fault: Option<Refusal>, at_command: bool) {
        self.attach();
        if fds.is_empty() && fault.is_none() && (!at_command || self.waiting.is_empty()) {
            return;
        }
        let mut batch = FdBatch::default();
        batch.add(fds, fault, usize::MAX);
        self.pending = Some(Pending { batch, at_command });
        self.note_hold();
    }

    /// Step 3: the parser has taken every byte of the read before its
    /// attach point. Its fds go to the command in progress (the one that
    /// has the attach point), with fds that were waiting for it first; or,
    /// when the read has no non-whitespace byte, wait for the next command.
    pub fn attach(&mut self) {
        let Some(p) = self.pending.take() else { return };
        if p.at_command {
            self.command_byte();
            self.current.merge(p.batch, self.max_fds);
        } else {
            self.waiting.merge(p.batch, self.max_fds);
        }
        self.note_hold();
    }

    /// The command in progress received a non-whitespace byte: fds that
    /// were waiting for the next command are its. A framing that sees the
    /// bytes reports this for every step with such a byte, so that a
    /// command that only ends on whitespace (a line's `\n`) after fds came
    /// on whitespace does not take them; a VMM's parser, which completes a
    /// command only on a byte of its own, need not ([`Assoc::complete_own`]).
    pub fn command_byte(&mut self) {
        if !self.waiting.is_empty() {
            let waiting = std::mem::take(&mut self.waiting);
            self.current.merge(waiting, self.max_fds);
        }
    }

    /// Step 2 or 4: the parser completed (or rejected) a command. Returns
    /// its fds, or why it cannot have them; fds waiting for the next
    /// command stay (see [`Assoc::command_byte`]).
    pub fn complete(&mut self) -> Result<FdList, Refusal> {
        let batch = std::mem::take(&mut self.current);
        self.note_hold();
        batch.into_result()
    }

    /// [`Assoc::complete`] for a parser that reports a command as it takes
    /// the command's own last byte, which is not whitespace (QEMU's: a
    /// JSON value ends at its closing bracket, a lexical error at the bad
    /// byte): fds that were waiting go to it too, after its own.
    pub fn complete_own(&mut self) -> Result<FdList, Refusal> {
        self.command_byte();
        self.complete()
    }

    /// Step 5: the parser dropped non-whitespace bytes that belong to no
    /// command (it is skipping the rest of a rejected one): fds attached
    /// to them, and fds waiting for a command, are closed. Returns how many.
    pub fn discard(&mut self) -> usize {
        let n = self.current.fds.len() + self.waiting.fds.len();
        self.current = FdBatch::default();
        self.waiting = FdBatch::default();
        self.note_hold();
        n
    }

    /// Step 5, for a parser that cannot report what it drops: it holds no
    /// partial command now, after being fed a whole read. Fds attached to a
    /// command byte that no command took were dropped with that byte: they
    /// are closed (fds waiting for the next command stay). Returns how many.
    pub fn idle(&mut self) -> usize {
        self.attach();
        let n = self.current.fds.len();
        self.current = FdBatch::default();
        self.note_hold();
        n
    }

    /// Whether fds are held for the command in progress (or a fault is
    /// recorded for it).
    pub fn holds_current(&self) -> bool {
        !self.current.is_empty()
    }

    /// How long until held fds expire (zero when due), `None` while no fd
    /// is held.
    pub fn deadline(&self) -> Option<Duration> {
        let since = self.held_since?;
        let hold = Duration::from_millis(u64::from(self.max_hold_ms));
        Some(hold.saturating_sub(since.elapsed()))
    }

    /// Whether the hold deadline has passed.
    pub fn due(&self) -> bool {
        self.deadline() == Some(Duration::ZERO)
    }

    /// The hold deadline passed (call when [`Assoc::due`]): held fds close.
    /// When `in_command` (the parser holds a partial command), that
    /// command's fds, and fds waiting for it, are returned as
    /// [`Refusal::HoldExpired`] for it to be answered with; otherwise fds
    /// waiting for a command make the next command fail that way.
    pub fn expire(&mut self, in_command: bool) -> Option<Refusal> {
        // A read the VMM did not attach goes where attach() would put it.
        self.attach();
        let why = Refusal::HoldExpired { limit_ms: self.max_hold_ms };
        self.waiting.expire(why.clone());
        self.current.fds.clear();
        let answer = in_command.then(|| {
            self.current = FdBatch::default();
            self.waiting = FdBatch::default();
            why
        });
        self.note_hold();
        answer
    }

    /// End of stream, or the connection ends: every fd held is closed.
    pub fn reset(&mut self) {
        self.pending = None;
        self.current = FdBatch::default();
        self.waiting = FdBatch::default();
        self.note_hold();
    }

    /// Whether fds are held now, and since when: a hold starts with the
    /// first fd held, at the read that brings it (attached yet or not), and
    /// ends when none is.
    fn note_hold(&mut self) {
        let pending = self.pending.as_ref().is_some_and(|p| p.batch.holds_fds());
        if pending || self.current.holds_fds() || self.waiting.holds_fds() {
            self.held_since.get_or_insert_with(Instant::now);
        } else {
            self.held_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::os::fd::{AsFd, AsRawFd};

    fn pipes(n: usize) -> (FdList, Vec<OwnedFd>) {
        let mut reads = FdList::new();
        let mut writes = Vec::new();
        for _ in 0..n {
            let (r, w) = nix::unistd::pipe().unwrap();
            reads.push(Some(r));
            writes.push(w);
        }
        (reads, writes)
    }

    /// Whether the read end of the pipe whose write end is `w` is closed.
    fn closed(w: &OwnedFd) -> bool {
        nix::unistd::write(w, b"x") == Err(nix::errno::Errno::EPIPE)
    }

    fn ignore_sigpipe() {
        // SAFETY: ignoring SIGPIPE changes no memory; EPIPE then reports.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    }

    fn count(r: Result<FdList, Refusal>) -> Result<usize, i32> {
        r.map(|l| l.len()).map_err(|e| e.errno())
    }

    #[test]
    fn fds_attached_at_the_last_command_byte_go_to_that_command_not_an_earlier_one() {
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(32, 10_000);
        let data = b"{\"a\":1} {\"b\":2}\n";
        let at = attach_point(data).unwrap();
        assert_eq!(data[at], b'}');
        let (fds, _w) = pipes(2);
        a.read(fds, None, true);
        // The parser completes {"a":1} before the attach point.
        assert_eq!(count(a.complete()), Ok(0));
        a.attach();
        assert_eq!(count(a.complete()), Ok(2));
        assert_eq!(a.idle(), 0);
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn fds_on_a_lone_space_wait_for_the_next_command() {
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(32, 10_000);
        let (fds, _w) = pipes(1);
        assert_eq!(attach_point(b" "), None);
        a.read(fds, None, false);
        a.attach();
        assert_eq!(a.idle(), 0, "waiting fds are no partial command's");
        assert!(a.deadline().is_some(), "waiting fds are held");
        let (more, _w2) = pipes(1);
        a.read(more, None, true);
        a.attach();
        assert_eq!(count(a.complete()), Ok(2));
        assert_eq!(a.deadline(), None);
        // A command that ends on whitespace after fds came on whitespace
        // (a line's `\n`) does not take them: they wait for the next one.
        let (fds, _w3) = pipes(1);
        a.read(fds, None, false);
        a.attach();
        assert_eq!(count(a.complete()), Ok(0));
        assert_eq!(count(a.complete_own()), Ok(1), "a VMM's command ends on a byte of its own");
    }

    #[test]
    fn fds_of_several_reads_of_one_command_accumulate_up_to_max_fds() {
        ignore_sigpipe();
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(3, 10_000);
        let (fds, _w) = pipes(2);
        a.read(fds, None, true);
        a.attach();
        let (fds, w) = pipes(2);
        a.read(fds, None, true);
        a.attach();
        assert!(w.iter().all(closed), "a command over max_fds keeps none");
        assert_eq!(count(a.complete()), Err(libc::ETOOMANYREFS));
        let (fds, _w) = pipes(3);
        a.read(fds, None, true);
        a.attach();
        assert_eq!(count(a.complete()), Ok(3), "the next command starts anew");
    }

    #[test]
    fn fds_lost_in_transit_fail_their_command_and_close_the_rest() {
        ignore_sigpipe();
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(32, 10_000);
        let (fds, w) = pipes(2);
        let fault = a.fault(None, &fds, true);
        a.read(fds, fault, true);
        a.attach();
        assert!(w.iter().all(closed));
        assert_eq!(count(a.complete()), Err(libc::ECOMM));
        // A read that lost every fd still fails its command.
        let fault = a.fault(None, &[], true);
        a.read(FdList::new(), fault, true);
        a.attach();
        assert_eq!(count(a.complete()), Err(libc::ECOMM));
        assert_eq!(count(a.complete()), Ok(0));
    }

    #[test]
    fn the_connections_own_peer_socket_is_refused_at_once() {
        let _leaks = FdLeakCheck::new();
        let (client, server) = socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::SOCK_CLOEXEC).unwrap();
        if peer::peer_inode(server.as_fd()).is_none() {
            eprintln!("skip: this kernel has no Unix sock_diag (CONFIG_UNIX_DIAG)");
            return;
        }
        let mut a = Assoc::new(32, 10_000);
        let dup = client.as_fd().try_clone_to_owned().unwrap();
        let dup_raw = dup.as_raw_fd();
        let fds: FdList = [Some(dup)].into_iter().collect();
        let fault = a.fault(Some(server.as_fd()), &fds, false);
        assert_eq!(fault, Some(Refusal::PeerSocket));
        a.read(fds, fault, false);
        // SAFETY: F_GETFD only asks whether the number is open.
        assert_eq!(unsafe { libc::fcntl(dup_raw, libc::F_GETFD) }, -1, "closed as it arrived");
        a.attach();
        assert_eq!(count(a.complete_own()), Err(libc::EDEADLK));
        let (fds, _w) = pipes(1);
        assert_eq!(a.fault(Some(server.as_fd()), &fds, false), None);
    }

    #[test]
    fn fds_attached_to_bytes_the_parser_dropped_are_closed_not_given_to_the_next_command() {
        ignore_sigpipe();
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(32, 10_000);
        // `zzz` with an fd, while the parser skips input after an error.
        let (fds, w) = pipes(1);
        a.read(fds, None, true);
        a.attach();
        assert_eq!(a.idle(), 1);
        assert!(closed(&w[0]));
        assert_eq!(a.deadline(), None);
        assert_eq!(count(a.complete()), Ok(0), "the next command gets nothing");
        // A framing that reports what it drops: waiting fds close too.
        let (fds, w) = pipes(1);
        a.read(fds, None, false);
        a.attach();
        assert_eq!(a.discard(), 1);
        assert!(closed(&w[0]));
    }

    #[test]
    fn a_partial_command_holding_fds_past_the_deadline_is_handed_back() {
        ignore_sigpipe();
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(32, 30);
        let (fds, w) = pipes(1);
        a.read(fds, None, true);
        a.attach();
        assert!(!a.due());
        std::thread::sleep(Duration::from_millis(40));
        assert!(a.due());
        assert!(a.holds_current());
        assert_eq!(a.expire(true).map(|e| e.errno()), Some(libc::ETIMEDOUT));
        assert!(closed(&w[0]));
        assert_eq!(a.deadline(), None);
        assert_eq!(count(a.complete()), Ok(0));
        // Waiting fds past the deadline make the next command fail.
        let (fds, w) = pipes(1);
        a.read(fds, None, false);
        a.attach();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(a.expire(false), None);
        assert!(closed(&w[0]));
        assert_eq!(count(a.complete_own()), Err(libc::ETIMEDOUT));
    }

    #[test]
    fn fds_of_a_read_never_attached_are_held_to_the_deadline_too() {
        ignore_sigpipe();
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(32, 30);
        let (fds, w) = pipes(1);
        // A VMM that reads and never attaches (a bug of its own) still
        // cannot keep a client's fds past max_hold_ms.
        a.read(fds, None, true);
        assert!(a.deadline().is_some(), "the hold starts at the read");
        std::thread::sleep(Duration::from_millis(40));
        assert!(a.due());
        assert_eq!(a.expire(true).map(|e| e.errno()), Some(libc::ETIMEDOUT));
        assert!(closed(&w[0]));
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn a_hold_restarts_with_each_command() {
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(32, 50);
        let (fds, _w) = pipes(1);
        a.read(fds, None, true);
        a.attach();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(count(a.complete()), Ok(1));
        let (fds, _w) = pipes(1);
        a.read(fds, None, true);
        a.attach();
        assert!(a.deadline().unwrap() > Duration::from_millis(30), "counted from this command's fds");
        a.reset();
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn a_read_before_the_last_was_attached_attaches_that_one_first() {
        let _leaks = FdLeakCheck::new();
        let mut a = Assoc::new(32, 10_000);
        let (fds, _w) = pipes(1);
        a.read(fds, None, true);
        assert!(a.deadline().is_some(), "held from the read on");
        let (fds, _w2) = pipes(1);
        a.read(fds, None, true);
        a.attach();
        assert_eq!(count(a.complete()), Ok(2));
    }
}
