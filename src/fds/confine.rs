//! Confinement: a process that can open no file by path except beneath the
//! paths it allows, so that files reach it only as fds passed with
//! commands.
//!
//! This is Linux's Landlock (Documentation/userspace-api/landlock.rst,
//! landlock(7); `security/landlock/` in the kernel), used through its three
//! system calls with `libc`: `landlock_create_ruleset(2)`,
//! `landlock_add_rule(2)` and `landlock_restrict_self(2)`.
//!
//! # What [`confine`] enforces
//!
//! A ruleset that *handles* every filesystem access right the running
//! kernel's Landlock ABI knows — a handled right is denied unless a rule
//! grants it — with one rule per allow entry, granting beneath that path:
//!
//! | entry `access` | on a directory (and everything beneath it) | on a file |
//! |---|---|---|
//! | `O_RDONLY` | read files, list directories | read |
//! | `O_WRONLY` | write and truncate files; create regular files, directories and sockets; remove files and directories; move them within the allowed tree (`REFER`) | write, truncate |
//! | `O_RDWR`   | both | both |
//!
//! Every entry also allows `ioctl(2)` on device files opened beneath it
//! (`IOCTL_DEV`, ABI 5), since a device allow-listed by path (`/dev/kvm`,
//! `/dev/net/tun`) is used through ioctls. Executing files (`EXECUTE`) is
//! granted only by an entry whose access has [`ALLOW_EXEC`] added: a
//! launcher such as `fdctx-confine` confines itself and then execs the VMM,
//! so it grants execute on that one program and its ELF interpreter and
//! nothing else. `EXECUTE` covers `execve(2)` only, not what code runs:
//! mmap with `PROT_EXEC` counts as reading (the loader maps libraries it
//! may read), so any readable ELF file can be loaded, or run as a program
//! through the ELF interpreter (`ld-linux.so FILE`). Never granted: making
//! character or block devices, FIFOs or symlinks.
//!
//! By ABI version, as the Landlock documentation prescribes for best-effort
//! use: ABI 1 has the thirteen basic rights (renaming or linking a file
//! into another directory is then always refused); ABI 2 adds `REFER`,
//! ABI 3 `TRUNCATE` (before it, `truncate(2)` and `O_TRUNC` by path are not
//! restricted), ABI 5 `IOCTL_DEV` (before it, ioctls are not restricted);
//! ABIs 4, 6 and 7 add network rights, scopes and audit flags, which are
//! not filesystem rights and are left alone here: TCP `bind`/`connect`,
//! signals and abstract Unix sockets stay as they were. ABI 8 adds
//! `LANDLOCK_RESTRICT_SELF_TSYNC`, which [`confine`] uses to restrict every
//! thread of the process at once. Filesystem rights of ABIs newer than 8
//! (ABI 9's control of `connect(2)` to a Unix socket by path) are not
//! known to this code and stay allowed.
//!
//! # What Landlock does not cover
//!
//! * Operations on fds that already exist — held or received later, from
//!   an unconfined sender: read, write, `ftruncate`, `ioctl`, `mmap`,
//!   `fchmod`... This is the point: the passed fd is the authority. (A
//!   directory fd is no authority over what is beneath it: `openat(2)`
//!   through it is checked like any path.)
//! * `O_PATH` opens, `stat(2)`, `readlink(2)`, `chdir(2)`, path walks.
//! * Metadata changes by path: `chmod(2)`, `chown(2)`, `utimes(2)`,
//!   `setxattr(2)`; and `connect(2)` to a Unix socket by path.
//! * Hard links made before confining: a link beneath an allowed path to a
//!   file elsewhere reaches that file.
//! * Executing files on internal mounts: a memfd the process writes can be
//!   executed (`fexecve`), whatever the rules say. Only the host stops it
//!   (`vm.memfd_noexec=2`, or a seccomp filter refusing `execve`).
//! * `chroot(2)`, `unshare(2)` of user and mount namespaces (`mount(2)`
//!   itself stays refused), inotify and fanotify marks, capabilities.
//! * Below ABI 8, threads that already exist: `landlock_restrict_self`
//!   confines the calling thread and what it creates afterwards (threads,
//!   `fork`, `exec`), never its siblings. Call [`confine`] before creating
//!   threads. From ABI 8 on, [`confine`] passes
//!   `LANDLOCK_RESTRICT_SELF_TSYNC` and every thread is confined.
//!
//! # The confined flag
//!
//! After a successful [`confine`] the process-wide flag [`is_confined`] is
//! set (also in a program exec'd by a launcher that confined it and set
//! [`CONFINED_ENV`]); [`crate::fds::open`] then reports a path refused with `EACCES` as
//! [`Error::Confined`], whose text says why. It is a hint for messages, not
//! a security boundary (Landlock is).

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{fstat, Mode, SFlag};

use crate::error::Error;

// The Landlock filesystem access rights (`include/uapi/linux/landlock.h`).
const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
/// ABI 2.
const REFER: u64 = 1 << 13;
/// ABI 3.
const TRUNCATE: u64 = 1 << 14;
/// ABI 5.
const IOCTL_DEV: u64 = 1 << 15;
/// The rights that apply to a file itself (the rest need a directory).
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

/// Added to an [`Allow`] entry's access (`O_RDONLY | ALLOW_EXEC`): the
/// entry also allows executing files beneath it (`execve(2)`; for a file,
/// that file). Chosen outside every `open(2)` flag, so it cannot be
/// mistaken for one.
pub const ALLOW_EXEC: i32 = 1 << 30;

const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1 << 0;
/// `landlock_restrict_self(2)` flag of ABI 8: restrict every thread of the
/// process, not only the calling one.
const LANDLOCK_RESTRICT_SELF_TSYNC: libc::c_uint = 1 << 3;
/// The first ABI with [`LANDLOCK_RESTRICT_SELF_TSYNC`].
const TSYNC_ABI: u32 = 8;
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;

/// `struct landlock_ruleset_attr`, its first field only: the kernel takes
/// the size given (`copy_struct_from_user`), so this works on every ABI.
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

/// `struct landlock_path_beneath_attr` (packed in the UAPI header).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

static CONFINED: AtomicBool = AtomicBool::new(false);

/// The environment variable a launcher that confined the process before
/// exec'ing it sets to `1` (`fdctx-confine` does): the exec'd program's
/// fdctx then knows it is confined, for its messages.
pub const CONFINED_ENV: &str = "FDCTX_CONFINED";

/// True once [`confine`] has enforced a ruleset in this process, or when
/// the process was started confined ([`CONFINED_ENV`] is `1`).
pub fn is_confined() -> bool {
    static STARTED_CONFINED: OnceLock<bool> = OnceLock::new();
    CONFINED.load(Ordering::Relaxed)
        || *STARTED_CONFINED.get_or_init(|| std::env::var_os(CONFINED_ENV).is_some_and(|v| v == "1"))
}

/// One path the confined process may still open, with at most `access`
/// (`O_RDONLY`, `O_WRONLY` or `O_RDWR`).
#[derive(Debug, Clone, Copy)]
pub struct Allow<'a> {
    pub path: &'a OsStr,
    pub access: i32,
}

/// What [`confine`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The ruleset is enforced, with Landlock ABI version `abi` (> 0), on
    /// every thread of the process (`all_threads`, ABI 8 and later) or on
    /// the calling thread and what it creates from now on.
    Enforced { abi: u32, all_threads: bool },
    /// The kernel has no usable Landlock and confinement was not required:
    /// nothing is enforced; the error says why (`EOPNOTSUPP`).
    Unsupported(Error),
}

/// Filesystem rights handled at ABI version `abi` (see the module doc).
fn handled_at(abi: u32) -> u64 {
    let mut handled = EXECUTE
        | WRITE_FILE
        | READ_FILE
        | READ_DIR
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_CHAR
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SOCK
        | MAKE_FIFO
        | MAKE_BLOCK
        | MAKE_SYM;
    if abi >= 2 {
        handled |= REFER;
    }
    if abi >= 3 {
        handled |= TRUNCATE;
    }
    if abi >= 5 {
        handled |= IOCTL_DEV;
    }
    handled
}

impl Outcome {
    /// What was enforced, in a sentence (what `fdctx-confine --verbose`
    /// prints and `fdctx_last_error()` holds after a success).
    pub fn describe(&self) -> String {
        match self {
            Outcome::Enforced { abi, all_threads: true } => {
                format!("confined (Landlock ABI {abi}): every thread of the process")
            }
            Outcome::Enforced { abi, all_threads: false } => format!(
                "confined (Landlock ABI {abi}): the calling thread and the threads and processes it creates \
                 from now on (ABI {TSYNC_ABI} is needed to restrict threads that already exist)"
            ),
            Outcome::Unsupported(why) => why.to_string(),
        }
    }
}

/// `landlock_restrict_self(2)` flags at ABI version `abi`: every thread
/// where the kernel can (ABI 8), none before.
fn restrict_flags_at(abi: u32) -> libc::c_uint {
    if abi >= TSYNC_ABI {
        LANDLOCK_RESTRICT_SELF_TSYNC
    } else {
        0
    }
}

/// Rights one allow entry grants (before masking by what is handled).
fn granted(access: OFlag, exec: bool, is_dir: bool) -> u64 {
    let read = access != OFlag::O_WRONLY;
    let write = access != OFlag::O_RDONLY;
    let mut rights = IOCTL_DEV;
    if exec {
        rights |= EXECUTE;
    }
    if read {
        rights |= READ_FILE | READ_DIR;
    }
    if write {
        rights |= WRITE_FILE | TRUNCATE | MAKE_REG | MAKE_DIR | MAKE_SOCK | REMOVE_FILE | REMOVE_DIR | REFER;
    }
    if is_dir {
        rights
    } else {
        rights & FILE_RIGHTS
    }
}

/// The running kernel's Landlock ABI version, or why there is none.
fn abi_version() -> Result<u32, Error> {
    // SAFETY: the version query takes no attribute (NULL, size 0).
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    match r {
        v if v > 0 => Ok(u32::try_from(v).unwrap_or(u32::MAX)),
        0 => Err(Error::Unconfinable("the kernel reports Landlock ABI version 0".into())),
        _ => Err(unsupported_or_sys("landlock_create_ruleset", Errno::last())),
    }
}

/// `ENOSYS` (not built in, or a seccomp filter), `EOPNOTSUPP` (built in
/// but not enabled at boot) and `EPERM` (which these calls never return
/// here on their own: no privilege is needed, and no_new_privs is set
/// before `landlock_restrict_self`; container runtimes' filters answer it)
/// mean no Landlock; anything else is a failure.
fn unsupported_or_sys(call: &'static str, e: Errno) -> Error {
    match e {
        Errno::ENOSYS => Error::Unconfinable(format!(
            "{call}: ENOSYS: the kernel has no Landlock (not built in, or the call is blocked by a seccomp filter)"
        )),
        Errno::EPERM => Error::Unconfinable(format!(
            "{call}: EPERM: Landlock is blocked (by a seccomp filter or a container's policy)"
        )),
        Errno::EOPNOTSUPP => Error::Unconfinable(format!(
            "{call}: EOPNOTSUPP: Landlock is built in but not enabled (add landlock to the lsm= boot parameter)"
        )),
        e => Error::sys(call, e),
    }
}

/// Checks one allow entry and opens its path `O_PATH` (the handle a
/// Landlock rule is made from).
fn open_entry(i: usize, entry: &Allow<'_>) -> Result<(OwnedFd, u64), Error> {
    let exec = entry.access & ALLOW_EXEC != 0;
    let access = match entry.access & !ALLOW_EXEC {
        libc::O_RDONLY => OFlag::O_RDONLY,
        libc::O_WRONLY => OFlag::O_WRONLY,
        libc::O_RDWR => OFlag::O_RDWR,
        _ => {
            return Err(Error::AllowEntry {
                index: i,
                path: entry.path.to_string_lossy().into_owned(),
                errno: Errno::EINVAL,
                why: "access is not O_RDONLY, O_WRONLY or O_RDWR (with or without the execute bit)",
            })
        }
    };
    let fail = |errno, why| Error::AllowEntry { index: i, path: entry.path.to_string_lossy().into_owned(), errno, why };
    if entry.path.is_empty() {
        return Err(fail(Errno::ENOENT, "empty path"));
    }
    let c = CString::new(entry.path.as_bytes()).map_err(|_| fail(Errno::EINVAL, "path contains a NUL byte"))?;
    let fd = nix::fcntl::open(c.as_c_str(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| fail(e, "cannot be opened"))?;
    let st = fstat(&fd).map_err(|e| fail(e, "cannot be examined"))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    Ok((fd, granted(access, exec, is_dir)))
}

/// Confines the calling thread, and every thread and process it creates
/// from now on, to opening files by path only beneath `allow` (see the
/// module doc for the rights each entry grants).
///
/// The allow entries are checked and opened first, so a bad one is an
/// error on every kernel. Then, with Landlock: the ruleset is made,
/// `prctl(PR_SET_NO_NEW_PRIVS)` is set (it cannot be undone, and stays set
/// even if the last step fails) and `landlock_restrict_self(2)` enforces
/// it — on every thread of the process where the kernel's ABI is 8 or
/// later (`LANDLOCK_RESTRICT_SELF_TSYNC`), else on the calling thread and
/// what it creates from now on. A second call adds a layer: it can only
/// narrow what is allowed.
///
/// # Errors
/// [`Error::AllowEntry`] for an entry whose path cannot be opened (its
/// errno, `ENOENT` for a missing path) or whose access is not one of the
/// three; [`Error::Unconfinable`] (`EOPNOTSUPP`) when the kernel has no
/// usable Landlock and `require` is set; otherwise the failing call's errno
/// (`E2BIG`: more than 16 layers stacked).
pub fn confine(allow: &[Allow<'_>], require: bool) -> Result<Outcome, Error> {
    let entries = allow.iter().enumerate().map(|(i, a)| open_entry(i, a)).collect::<Result<Vec<_>, _>>()?;
    let abi = match abi_version() {
        Ok(abi) => abi,
        Err(e @ Error::Unconfinable(_)) if !require => return Ok(Outcome::Unsupported(e)),
        Err(e) => return Err(e),
    };
    let handled = handled_at(abi);
    let attr = RulesetAttr { handled_access_fs: handled };
    // SAFETY: a valid attribute of the size given; the result is a new fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &attr as *const RulesetAttr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if r < 0 {
        return not_enforced(unsupported_or_sys("landlock_create_ruleset", Errno::last()), require);
    }
    // SAFETY: landlock_create_ruleset returned a new (close-on-exec) fd that
    // nothing else owns.
    let ruleset = unsafe {
        OwnedFd::from_raw_fd(i32::try_from(r).map_err(|_| Error::sys("landlock_create_ruleset", Errno::EBADF))?)
    };
    for (fd, rights) in &entries {
        let rule = PathBeneathAttr { allowed_access: rights & handled, parent_fd: fd.as_raw_fd() };
        // SAFETY: live fds and a valid rule attribute for the rule type.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                LANDLOCK_RULE_PATH_BENEATH,
                &rule as *const PathBeneathAttr,
                0u32,
            )
        };
        if r < 0 {
            return not_enforced(unsupported_or_sys("landlock_add_rule", Errno::last()), require);
        }
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::sys("prctl(PR_SET_NO_NEW_PRIVS)", Errno::last()));
    }
    let restrict_flags = restrict_flags_at(abi);
    let all_threads = restrict_flags & LANDLOCK_RESTRICT_SELF_TSYNC != 0;
    // SAFETY: a live ruleset fd and a flag the kernel's ABI knows.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), restrict_flags) } != 0 {
        return not_enforced(unsupported_or_sys("landlock_restrict_self", Errno::last()), require);
    }
    CONFINED.store(true, Ordering::Relaxed);
    Ok(Outcome::Enforced { abi, all_threads })
}

/// A step after the version query failed: still "no Landlock" when the
/// kernel says so (a seccomp filter may block only some of the calls).
fn not_enforced(e: Error, require: bool) -> Result<Outcome, Error> {
    match e {
        e @ Error::Unconfinable(_) if !require => Ok(Outcome::Unsupported(e)),
        e => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fdcount::FdLeakCheck;

    #[test]
    fn rights_by_abi_and_entry() {
        let _leaks = FdLeakCheck::new();
        assert_eq!(handled_at(1), (1 << 13) - 1, "ABI 1: the thirteen basic rights");
        assert_eq!(handled_at(2) & !handled_at(1), REFER);
        assert_eq!(handled_at(3) & !handled_at(2), TRUNCATE);
        assert_eq!(handled_at(4), handled_at(3), "ABI 4 adds network rights only");
        assert_eq!(handled_at(5) & !handled_at(4), IOCTL_DEV);
        assert_eq!(handled_at(7), handled_at(5));
        assert_eq!(handled_at(8), handled_at(7), "ABI 8 adds the all-threads flag only");
        let ro_dir = granted(OFlag::O_RDONLY, false, true);
        assert_eq!(ro_dir, READ_FILE | READ_DIR | IOCTL_DEV);
        assert_eq!(granted(OFlag::O_RDONLY, false, false), READ_FILE | IOCTL_DEV);
        assert_eq!(granted(OFlag::O_WRONLY, false, false), WRITE_FILE | TRUNCATE | IOCTL_DEV);
        let rw_dir = granted(OFlag::O_RDWR, false, true);
        assert_eq!(rw_dir & EXECUTE, 0, "execute only with ALLOW_EXEC");
        assert_eq!(rw_dir & (MAKE_CHAR | MAKE_BLOCK | MAKE_FIFO | MAKE_SYM), 0, "never granted");
        assert_eq!(granted(OFlag::O_RDWR, false, false) & !FILE_RIGHTS, 0, "file rules carry file rights only");
        assert_eq!(granted(OFlag::O_RDONLY, true, false), READ_FILE | EXECUTE | IOCTL_DEV);
    }

    #[test]
    fn every_thread_from_abi_8_and_it_says_so() {
        let _leaks = FdLeakCheck::new();
        assert_eq!(restrict_flags_at(7), 0, "ABI 7 knows no TSYNC: EINVAL if passed");
        assert_eq!(restrict_flags_at(8), 1 << 3);
        assert_eq!(restrict_flags_at(9), 1 << 3);
        let all = Outcome::Enforced { abi: 8, all_threads: true }.describe();
        assert!(all.contains("every thread"), "{all}");
        let one = Outcome::Enforced { abi: 7, all_threads: false }.describe();
        assert!(one.contains("calling thread") && one.contains("ABI 8"), "{one}");
    }

    #[test]
    fn bad_entries_are_named() {
        let _leaks = FdLeakCheck::new();
        let missing = Allow { path: OsStr::new("/nonexistent/fdctx-allow"), access: libc::O_RDONLY };
        let e = confine(&[missing], false).unwrap_err();
        assert_eq!(e.errno(), libc::ENOENT);
        assert!(e.to_string().contains("/nonexistent/fdctx-allow"), "{e}");
        let bad = Allow { path: OsStr::new("/"), access: libc::O_RDWR | libc::O_CREAT };
        assert_eq!(confine(&[bad], false).unwrap_err().errno(), libc::EINVAL);
        assert!(!is_confined());
    }
}
