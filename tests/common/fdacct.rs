//! Fd accounting for the robustness tests (props, faults, security).
//!
//! * [`Marked`]: a pipe whose read end is handed to the library and whose
//!   write end the test keeps. Writing one byte to the write end tells
//!   whether any copy of the read end is still open anywhere in the
//!   process (`EPIPE` once the last one is closed), so a test can prove,
//!   fd by fd, that the library closed what it did not deliver.
//! * [`Tally`]: per-test counters — scenarios, fds sent, delivered, closed
//!   by the library, leaked — checked to add up and, when the environment
//!   variable `FDCTX_SUMMARY` names a file, appended to it as one line:
//!
//!   `test=<binary>::<test> scenarios=N sent=N delivered=N closed=N leaked=N`

#![allow(dead_code)]

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// A pipe: `read` goes to the library, `write` stays with the test.
#[derive(Debug)]
pub struct Marked {
    /// The end handed to the library (None once given away or dropped).
    pub read: Option<OwnedFd>,
    /// The end kept by the test, non-blocking.
    pub write: OwnedFd,
    /// Inode of the pipe: identifies a received copy of `read` (fstat).
    pub ino: u64,
}

impl Marked {
    pub fn new() -> Marked {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe2");
        let fl = OFlag::from_bits_retain(fcntl(&w, FcntlArg::F_GETFL).unwrap());
        fcntl(&w, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK)).unwrap();
        let ino = ino_of(r.as_fd());
        Marked { read: Some(r), write: w, ino }
    }

    /// True while some copy of the read end is open in this process
    /// (or in flight in a socket queue).
    pub fn reader_open(&self) -> bool {
        reader_open(&self.write)
    }
}

/// `n` marked pipes.
pub fn marked(n: usize) -> Vec<Marked> {
    (0..n).map(|_| Marked::new()).collect()
}

/// Writes one byte to a pipe's (non-blocking) write end: true if a reader
/// exists, false on `EPIPE`. The test harness ignores `SIGPIPE`.
pub fn reader_open(write: &OwnedFd) -> bool {
    match nix::unistd::write(write, b"x") {
        Ok(_) => true,
        Err(Errno::EPIPE) => false,
        // A full pipe still has a reader.
        Err(Errno::EAGAIN) => true,
        Err(e) => panic!("write to marker pipe: {e}"),
    }
}

/// The inode number of the file `fd` refers to.
pub fn ino_of(fd: BorrowedFd<'_>) -> u64 {
    nix::sys::stat::fstat(fd).expect("fstat").st_ino
}

/// Counters of one test, reported as one summary line.
#[derive(Debug)]
pub struct Tally {
    pub test: String,
    pub scenarios: u64,
    pub sent: u64,
    pub delivered: u64,
    pub closed: u64,
    pub leaked: u64,
}

impl Tally {
    /// `test` is `<binary>::<test name>`.
    pub fn new(test: &str) -> Tally {
        Tally { test: test.to_owned(), scenarios: 0, sent: 0, delivered: 0, closed: 0, leaked: 0 }
    }

    /// Accounts for marked fds after everything that held them ended:
    /// each one that is still open counts as leaked.
    pub fn settle(&mut self, fds: &[Marked]) -> u64 {
        let leaked = fds.iter().filter(|m| m.reader_open()).count() as u64;
        self.leaked += leaked;
        leaked
    }

    /// The summary line.
    pub fn line(&self) -> String {
        format!(
            "test={} scenarios={} sent={} delivered={} closed={} leaked={}",
            self.test, self.scenarios, self.sent, self.delivered, self.closed, self.leaked
        )
    }

    /// Checks that the counters add up and nothing leaked, and appends the
    /// line to `$FDCTX_SUMMARY` (if set). Call at the very end of a test.
    pub fn report(self) {
        if let Some(path) = std::env::var_os("FDCTX_SUMMARY") {
            let path = std::path::PathBuf::from(path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).expect("open FDCTX_SUMMARY");
            // One write of a short line: O_APPEND keeps lines whole.
            f.write_all(format!("{}\n", self.line()).as_bytes()).expect("write FDCTX_SUMMARY");
        }
        assert_eq!(
            self.sent,
            self.delivered + self.closed + self.leaked,
            "fd accounting does not add up: {}",
            self.line()
        );
        assert_eq!(self.leaked, 0, "fds leaked: {}", self.line());
    }
}
