//! The per-command fd context: the ordered fds one command brought.
//!
//! A [`Context`] owns every fd in it. The handler *borrows* ([`Context::get`]),
//! *takes* ([`Context::take`]) or *duplicates* ([`Context::dup`],
//! [`Context::open`]) what it needs; [`Context::finish`] (or dropping the
//! context) closes everything still owned. Ownership lives in the types: a
//! slot holds an `Option<OwnedFd>`, and taking one leaves `None` behind.

use std::cell::Cell;
use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use smallvec::SmallVec;

use crate::error::Error;

/// How many fds an [`FdList`] holds without a heap allocation: a QMP
/// command brings one or two.
pub(crate) const INLINE_FDS: usize = 4;

/// The fds of one read or one command, in arrival order, each in its own
/// slot (`Some` as received; a command's context empties a slot when its fd
/// is taken, so a command's list becomes its context as it is). Up to
/// [`INLINE_FDS`] of them live inline, without a heap allocation.
pub(crate) type FdList = SmallVec<[Option<OwnedFd>; INLINE_FDS]>;

/// Takes ownership of fds a caller received itself and hands over as raw
/// numbers (a fed connection's input): each open, distinct entry becomes an
/// [`OwnedFd`], close-on-exec. Returns them with the first problem found, if any: `EBADF`
/// for an entry that is negative or not open, [`Error::InvalidArgument`]
/// for one listed twice (wrapped once, so it is closed once).
///
/// # Safety
/// The caller must own every open fd in `raw` and give up that ownership:
/// nothing else may use or close them afterwards.
pub(crate) unsafe fn own_raw_fds(raw: &[RawFd]) -> (Vec<OwnedFd>, Option<Error>) {
    let mut owned: Vec<OwnedFd> = Vec::with_capacity(raw.len());
    let mut seen = HashSet::with_capacity(raw.len());
    let mut error = None;
    for &fd in raw {
        // SAFETY: F_GETFD only asks whether `fd` is open, and how.
        let fd_flags = if fd < 0 { -1 } else { unsafe { libc::fcntl(fd, libc::F_GETFD) } };
        if fd_flags < 0 {
            error.get_or_insert(Error::sys("taking the fds", Errno::EBADF));
        } else if !seen.insert(fd) {
            error.get_or_insert(Error::InvalidArgument("the same fd appears twice"));
        } else {
            // SAFETY: the caller gives up ownership of each listed fd; a
            // repeated entry was skipped above, so each is wrapped once.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            if fd_flags & libc::FD_CLOEXEC == 0 {
                set_cloexec(fd.as_fd());
            }
            owned.push(fd);
        }
    }
    (owned, error)
}

/// Makes `fd` close-on-exec, as every fd the library holds or hands out
/// is: fds it received itself already are (`MSG_CMSG_CLOEXEC`), those a
/// caller hands over may not be. Best effort: `F_SETFD` fails only on an
/// fd that is not open, which an owned one is.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

/// [`set_cloexec`] on an fd the library was given, unless it already is.
pub(crate) fn ensure_cloexec(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    match fcntl(fd, FcntlArg::F_GETFD) {
        Ok(flags) if FdFlag::from_bits_retain(flags).contains(FdFlag::FD_CLOEXEC) => {}
        _ => set_cloexec(fd),
    }
}

/// One command's fd context: the fds received with it, indexed from 0 in
/// arrival order. It owns every fd in it until one is taken, and closes the
/// rest when finished.
///
/// A context may move to another thread, but must not be used from two
/// threads at once (even borrowing records which fds were used).
#[derive(Debug, Default)]
pub struct Context {
    /// A command's few fds inline, more on the heap.
    fds: FdList,
    used: UsedSet,
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// A context owning `fds`, in order, each made close-on-exec (as every
    /// fd a context hands out is). Reuses the vector's allocation for more
    /// than a few.
    pub fn from_fds(fds: Vec<OwnedFd>) -> Context {
        let fds = fds.into_iter().inspect(|fd| ensure_cloexec(fd.as_fd())).map(Some).collect();
        Context { fds: SmallVec::from_vec(fds), ..Context::default() }
    }

    /// Appends `fds`, each made close-on-exec; the context owns them from
    /// now on.
    pub fn adopt<I: IntoIterator<Item = OwnedFd>>(&mut self, fds: I) {
        self.fds.extend(fds.into_iter().inspect(|fd| ensure_cloexec(fd.as_fd())).map(Some));
    }

    /// Takes over the raw fds `fds` and appends them in order, for a caller
    /// that received them itself; returns how many were appended.
    ///
    /// Each entry is checked before it is wrapped: a negative number or one
    /// that is not an open fd (`fcntl(2)` `F_GETFD` fails) is skipped, and
    /// so is a number already in the context or earlier in `fds` (wrapping
    /// it twice would close it twice; the first owner keeps it). The other
    /// entries are appended even when one is refused, so the indices after
    /// a refused entry move down by one.
    ///
    /// # Errors
    /// The first refusal: `EBADF` (as [`Error::Sys`]) for a negative or
    /// closed fd, [`Error::InvalidArgument`] for a duplicate. The fds that
    /// were appended stay appended ([`Context::count`] tells).
    ///
    /// # Safety
    /// The caller owns every open fd in `fds` and gives that ownership to
    /// the context: nothing else may use or close them afterwards.
    pub unsafe fn adopt_raw(&mut self, fds: &[RawFd]) -> Result<usize, Error> {
        let held: HashSet<RawFd> = self.fds.iter().flatten().map(AsRawFd::as_raw_fd).collect();
        let (fresh, held_again): (Vec<RawFd>, Vec<RawFd>) = fds.iter().partition(|fd| !held.contains(fd));
        // SAFETY: the caller hands over every open fd in `fds`; the ones
        // this context already owns were set aside, so none is wrapped twice.
        let (owned, error) = unsafe { own_raw_fds(&fresh) };
        let added = owned.len();
        // Close-on-exec already: own_raw_fds made them so.
        self.fds.extend(owned.into_iter().map(Some));
        match error {
            Some(e) => Err(e),
            None if !held_again.is_empty() => Err(Error::InvalidArgument("the same fd appears twice")),
            None => Ok(added),
        }
    }

    /// Appends a received batch; into an empty context it moves as it is.
    pub(crate) fn adopt_list(&mut self, fds: FdList) {
        if self.fds.is_empty() {
            self.fds = fds;
        } else {
            self.fds.extend(fds);
        }
    }

    /// How many fds were received (taken ones included).
    pub fn count(&self) -> usize {
        self.fds.len()
    }

    /// How many fds the context still owns.
    pub fn owned(&self) -> usize {
        self.fds.iter().filter(|s| s.is_some()).count()
    }

    /// Closes every fd and forgets them: the context is empty again.
    pub(crate) fn clear(&mut self) {
        self.fds = SmallVec::new();
        self.used = UsedSet::default();
    }

    fn slot(&self, index: usize) -> Result<BorrowedFd<'_>, Error> {
        match self.fds.get(index) {
            None => Err(Error::NoSuchIndex { index, count: self.fds.len() }),
            Some(None) => Err(Error::AlreadyTaken { index }),
            Some(Some(fd)) => {
                self.used.insert(index);
                Ok(fd.as_fd())
            }
        }
    }

    /// Borrows fd `index`; it stays owned by the context and is closed by
    /// [`Context::finish`].
    ///
    /// # Errors
    /// [`Error::NoSuchIndex`] past the end, [`Error::AlreadyTaken`] after a take.
    pub fn get(&self, index: usize) -> Result<BorrowedFd<'_>, Error> {
        self.slot(index)
    }

    /// Moves fd `index` out of the context; a second take of the same index
    /// fails with [`Error::AlreadyTaken`].
    pub fn take(&mut self, index: usize) -> Result<OwnedFd, Error> {
        self.slot(index)?;
        Ok(self.fds[index].take().expect("slot checked above"))
    }

    /// A new close-on-exec fd for the same open file description; the
    /// original stays in the context.
    pub fn dup(&self, index: usize) -> Result<OwnedFd, Error> {
        let fd = self.slot(index)?;
        fd.try_clone_to_owned().map_err(|e| Error::io("fcntl(F_DUPFD_CLOEXEC)", &e))
    }

    /// Ends the command: closes every fd still owned and returns how many
    /// were never used (neither borrowed, taken, duplicated nor opened).
    pub fn finish(self) -> usize {
        self.unused()
    }

    /// How many fds were never used so far.
    pub fn unused(&self) -> usize {
        (0..self.fds.len()).filter(|&i| !self.used.contains(i)).count()
    }
}

/// Which indices were used, without allocating for the first 64.
#[derive(Debug, Default)]
struct UsedSet {
    low: Cell<u64>,
    high: std::cell::RefCell<Vec<u64>>,
}

impl UsedSet {
    fn insert(&self, i: usize) {
        if i < 64 {
            self.low.set(self.low.get() | 1 << i);
        } else {
            let (word, bit) = ((i - 64) / 64, (i - 64) % 64);
            let mut high = self.high.borrow_mut();
            if high.len() <= word {
                high.resize(word + 1, 0);
            }
            high[word] |= 1 << bit;
        }
    }

    fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.low.get() & (1 << i) != 0
        } else {
            let (word, bit) = ((i - 64) / 64, (i - 64) % 64);
            self.high.borrow().get(word).is_some_and(|w| w & (1 << bit) != 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap()
    }

    #[test]
    fn raw_fds_handed_over_are_owned_once_and_bad_entries_refused() {
        use std::os::fd::IntoRawFd;
        let _leaks = FdLeakCheck::new();
        let (r, w) = nix::unistd::pipe().unwrap();
        let (r, w) = (r.into_raw_fd(), w.into_raw_fd());
        // SAFETY: both fds were released to this call; -1 and 1 << 30 are
        // not open, and `r` listed twice must be wrapped once.
        let (owned, error) = unsafe { own_raw_fds(&[r, -1, w, r, 1 << 30]) };
        assert_eq!(owned.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(), vec![r, w]);
        assert_eq!(error.map(|e| e.errno()), Some(libc::EBADF), "the first problem found");
        drop(owned);
        // SAFETY: F_GETFD only asks whether `r` is open.
        assert_eq!(unsafe { libc::fcntl(r, libc::F_GETFD) }, -1, "closed with the OwnedFd, once");
        let (r2, _w2) = nix::unistd::pipe().unwrap();
        let r2 = r2.into_raw_fd();
        // SAFETY: `r2` was released to this call.
        let (owned, error) = unsafe { own_raw_fds(&[r2, r2]) };
        assert_eq!((owned.len(), error.map(|e| e.errno())), (1, Some(libc::EINVAL)));
    }

    #[test]
    fn take_get_dup_and_finish_count() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = pipe();
        let (r2, w2) = pipe();
        let mut ctx = Context::from_fds(vec![r, w, r2]);
        ctx.adopt([w2]);
        assert_eq!(ctx.count(), 4);
        let raw = ctx.get(0).unwrap().as_raw_fd();
        assert_eq!(ctx.get(0).unwrap().as_raw_fd(), raw, "borrow gives the same fd");
        let taken = ctx.take(1).unwrap();
        assert!(matches!(ctx.take(1), Err(Error::AlreadyTaken { index: 1 })));
        assert!(matches!(ctx.get(1), Err(Error::AlreadyTaken { index: 1 })));
        assert!(matches!(ctx.get(4), Err(Error::NoSuchIndex { index: 4, count: 4 })));
        let d = ctx.dup(2).unwrap();
        assert_ne!(d.as_raw_fd(), ctx.get(2).unwrap().as_raw_fd());
        drop((taken, d));
        assert_eq!(ctx.owned(), 3);
        assert_eq!(ctx.finish(), 1, "only index 3 was never used");
    }

    /// The raw number of an fd whose ownership moves to the test's caller.
    fn raw(fd: OwnedFd) -> RawFd {
        std::os::fd::IntoRawFd::into_raw_fd(fd)
    }

    /// An fd number that is certainly not open (far above any fd this
    /// process allocates; fds are allocated lowest first).
    const NOT_OPEN: RawFd = 1 << 30;

    #[test]
    fn adopt_raw_appends_in_order() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = pipe();
        let (r_raw, w_raw) = (raw(r), raw(w));
        let mut ctx = Context::new();
        // SAFETY: both fds were just released to this call.
        assert_eq!(unsafe { ctx.adopt_raw(&[r_raw, w_raw]) }.unwrap(), 2);
        // SAFETY: nothing to hand over.
        assert_eq!(unsafe { ctx.adopt_raw(&[]) }.unwrap(), 0);
        assert_eq!(ctx.get(0).unwrap().as_raw_fd(), r_raw);
        assert_eq!(ctx.get(1).unwrap().as_raw_fd(), w_raw);
        assert_eq!(ctx.finish(), 0);
    }

    #[test]
    fn adopt_raw_refuses_closed_and_negative_fds() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = pipe();
        let (r_raw, w_raw) = (raw(r), raw(w));
        let mut ctx = Context::new();
        // SAFETY: the two open fds were released to this call; the others
        // are not open fds at all.
        let err = unsafe { ctx.adopt_raw(&[-1, r_raw, NOT_OPEN, w_raw]) }.unwrap_err();
        assert_eq!(err.errno(), libc::EBADF, "{err}");
        assert_eq!(ctx.count(), 2, "the open fds are appended, the bad ones take no index");
        assert_eq!(ctx.get(0).unwrap().as_raw_fd(), r_raw);
        assert_eq!(ctx.get(1).unwrap().as_raw_fd(), w_raw);
    }

    #[test]
    fn adopt_raw_refuses_duplicates() {
        let _leaks = FdLeakCheck::new();
        let (r, w) = pipe();
        let (r_raw, w_raw) = (raw(r), raw(w));
        let mut ctx = Context::new();
        // SAFETY: `r_raw` is released to this call (listed twice: the
        // second is refused, not wrapped).
        let err = unsafe { ctx.adopt_raw(&[r_raw, r_raw]) }.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert_eq!(ctx.count(), 1);
        // SAFETY: `r_raw` is already the context's: refused, not wrapped;
        // `w_raw` is released to this call.
        let err = unsafe { ctx.adopt_raw(&[r_raw, w_raw]) }.unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        assert_eq!(ctx.count(), 2, "the first owner keeps the fd, the new one is appended");
        let taken = ctx.take(0).unwrap();
        let taken_raw = raw(taken);
        // SAFETY: a taken fd is no longer the context's: adopting it back
        // hands it over again.
        assert_eq!(unsafe { ctx.adopt_raw(&[taken_raw]) }.unwrap(), 1);
        assert_eq!(ctx.count(), 3);
    }

    #[test]
    fn used_set_beyond_64() {
        let _leaks = FdLeakCheck::new();
        let s = UsedSet::default();
        for i in [0, 63, 64, 200, 1000] {
            assert!(!s.contains(i));
            s.insert(i);
            assert!(s.contains(i));
        }
        assert!(!s.contains(199));
    }
}
