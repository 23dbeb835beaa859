//! The fd accounting every test uses, the crate's own and those in `tests/`.
//!
//! [`FdLeakCheck::new`] lists `/proc/self/fd`; dropping it lists it again
//! and panics, naming each leaked fd and its target, if any fd appeared.
//! Tests in one binary run on parallel threads, so the check also holds a
//! process-wide lock for its lifetime: fd-counting tests run one at a time.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    /// Set while this thread holds a check: a second one would deadlock.
    static HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The process's open fds and what they point at.
pub fn open_fds() -> BTreeMap<i32, String> {
    let mut out = BTreeMap::new();
    let dir = std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd");
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let target = std::fs::read_link(entry.path()).map(|p| p.display().to_string()).unwrap_or_else(|_| "?".into());
        out.insert(fd, target);
    }
    // The directory handle itself was open while listing; it is closed now.
    out.retain(|fd, _| std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok());
    out
}

/// Counts open fds before and after a test; a difference fails the test.
pub struct FdLeakCheck {
    before: BTreeMap<i32, String>,
    _serial: MutexGuard<'static, ()>,
}

impl FdLeakCheck {
    // No Default: a check takes a process-wide lock and is made on purpose.
    #[allow(clippy::new_without_default)]
    pub fn new() -> FdLeakCheck {
        assert!(!HELD.with(|h| h.replace(true)), "FdLeakCheck::new called twice in one test");
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        FdLeakCheck { before: open_fds(), _serial: serial }
    }

    /// Fds opened since the check began, with their targets.
    pub fn leaked(&self) -> Vec<(i32, String)> {
        open_fds().into_iter().filter(|(fd, _)| !self.before.contains_key(fd)).collect()
    }

    /// Number of fds open now beyond the starting set (negative if fewer).
    pub fn delta(&self) -> isize {
        open_fds().len() as isize - self.before.len() as isize
    }
}

impl Drop for FdLeakCheck {
    fn drop(&mut self) {
        HELD.with(|h| h.set(false));
        if std::thread::panicking() {
            return;
        }
        let leaked = self.leaked();
        let delta = self.delta();
        if !leaked.is_empty() || delta != 0 {
            panic!("fd leak: {delta:+} fds; opened and not closed: {leaked:?}");
        }
    }
}
