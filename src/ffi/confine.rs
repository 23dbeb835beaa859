//! fdctx_confine() and its entry type: Landlock confinement of the
//! process, so that files reach it only as fds passed with commands.

use std::ffi::{c_char, c_int, c_uint};

use super::boundary::{self, ffi_boundary, path_arg, slice_arg};
use crate::error::Error;

/// One path a confined process may still open by path (fdctx_confine()).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct fdctx_allow {
    /// A NUL-terminated path: a directory allows what is beneath it, a file
    /// allows that file. It must exist when fdctx_confine() is called; a
    /// symlink is followed (what it points to is allowed). The rule is on
    /// that file or directory itself, so it still holds after a rename.
    pub path: *const c_char,
    /// `O_RDONLY`, `O_WRONLY` or `O_RDWR`: the most this entry allows;
    /// with `FDCTX_ALLOW_EXEC` added, also executing.
    pub access: c_int,
}

/// Added to an fdctx_allow entry's `access` (`O_RDONLY | FDCTX_ALLOW_EXEC`):
/// the entry also allows executing (execve(2)) the file it names, or the
/// files beneath the directory it names. Without it nothing can be
/// executed (execve(2)) once confined. Meant for a launcher that confines
/// itself and then execs the program it confines (`fdctx-confine` grants
/// it on that program and on its ELF interpreter only); execve(2) also
/// needs read, so combine it with `O_RDONLY` or `O_RDWR`. It limits
/// execve(2), not what code runs: mapping a file with `PROT_EXEC` counts
/// as reading it (the loader needs that for the libraries), so the
/// process can run any ELF file it may read, in itself or through an ELF
/// interpreter it may execute (`ld-linux.so FILE`); and a memfd (on an
/// internal mount, which Landlock does not check) can be executed
/// whatever the entries say (see "What stays as it was" at
/// fdctx_confine()). Its value is outside every open(2) flag.
// Only C reads it; the assertion below ties it to the core's value, which
// Rust 1.85's dead-code lint does not count as a use.
#[allow(dead_code)]
pub const FDCTX_ALLOW_EXEC: c_int = 1 << 30;
const _: () = assert!(FDCTX_ALLOW_EXEC == crate::fds::confine::ALLOW_EXEC);

/// fdctx_confine() flag: fail with `-EOPNOTSUPP` rather than run
/// unconfined when the kernel has no usable Landlock.
pub const FDCTX_CONFINE_REQUIRE: c_uint = 1;

/// Confines the process with Landlock so that it can open no file by path
/// except beneath the `n` entries of `allow`, each with at most its
/// access: files then reach it only as fds passed with commands
/// (`/dev/fd/N`). No privilege is needed, and it works on any filesystem
/// (NFS included, where SELinux labels cannot be stored).
///
/// What each entry allows beneath its path:
/// - `O_RDONLY`: reading files and listing directories;
/// - `O_WRONLY`: writing and truncating files, and under a directory also
///   creating regular files, directories and Unix sockets, removing files
///   and directories, and moving them within the allowed tree;
/// - `O_RDWR`: both.
///
/// Every entry also allows ioctl(2) on device files opened beneath it
/// (`/dev/kvm`, `/dev/net/tun` are used that way). Executing a file by
/// path (execve(2)) is allowed only by entries with `FDCTX_ALLOW_EXEC`
/// (which does not limit what code runs: see below). Never allowed:
/// making device nodes, FIFOs or symlinks.
///
/// What stays as it was (Landlock does not restrict it), by the kernel's
/// Landlock ABI (the return value):
/// - on every ABI: every operation on an fd the process holds or receives
///   later (read, write, ftruncate, ioctl, mmap, ...), which is the point —
///   but a directory fd gives no access by path beneath it: openat(2)
///   through it is checked like any other path;
/// - on every ABI: `O_PATH` opens, stat(2), access(2), readlink(2),
///   chdir(2) and path walks;
/// - on every ABI: changes to a file's metadata, by path or by fd:
///   chmod(2), chown(2), utimes(2)/utimensat(2), setxattr(2) and
///   removexattr(2) (Landlock has no right for them), so a confined process
///   can still change the mode, owner and times of files it can name;
/// - on every ABI: hard links made before the call: a link beneath an
///   allowed path to a file elsewhere reaches that file;
/// - on every ABI: connect(2) and sendmsg(2) to a Unix socket by path
///   (Landlock checks them from ABI 9 on, with
///   `LANDLOCK_ACCESS_FS_RESOLVE_UNIX`, a right this library does not
///   handle; only binding a new socket by path is restricted: it needs
///   `O_WRONLY` on the directory), abstract Unix sockets, TCP bind and
///   connect (ABI 4's rights are not used), signals (ABI 6's scoping is not
///   used);
/// - on every ABI: executing a memfd (memfd_create(2), then fexecve(2) or
///   execveat(2)): Landlock does not check files on internal mounts, so a
///   process that can write a memfd can run any program it writes there,
///   whatever the entries say. The library cannot stop it; the host can:
///   `sysctl vm.memfd_noexec=2` (Linux 6.3 on; per pid namespace, inherited
///   and never lowered by a child namespace) makes every memfd
///   non-executable, and a seccomp filter in the program that refuses
///   execve(2) and execveat(2) (QEMU's `-sandbox on,spawn=deny`, in a QEMU
///   built with seccomp) stops every later exec;
/// - on every ABI: running code from any file the process may read:
///   mmap(2) with `PROT_EXEC` counts as reading, so a read entry lets the
///   process load any ELF file beneath it, and an ELF interpreter it may
///   execute runs any readable ELF file as a program (`ld-linux.so FILE`):
///   what the entries let it read is what it can run;
/// - on every ABI: chroot(2), unshare(2) of user and mount namespaces
///   (mount(2) and pivot_root(2) stay refused), and inotify(7)/fanotify(7)
///   marks on any path it can name (it learns when files change, not what
///   they hold);
/// - on every ABI: capabilities and user ids: a process running as root
///   keeps every capability it has (loading a kernel module from an fd,
///   raw I/O, the network, setuid(2)); run it as its own unprivileged user,
///   as libvirt runs QEMU, or drop them;
/// - ABI 1: a file can never be renamed or linked into another directory
///   (refused, not unrestricted); truncate(2) and `O_TRUNC` by path are not
///   restricted, nor is ioctl(2);
/// - ABI 2: truncate(2), `O_TRUNC` and ioctl(2) are not restricted;
/// - ABIs 3 and 4: ioctl(2) is not restricted;
/// - ABIs 1 to 7: threads that already exist (see the thread rules).
///
/// Thread rules: from Landlock ABI 8 on, every thread of the process is
/// confined at once (`LANDLOCK_RESTRICT_SELF_TSYNC`), and after a success
/// fdctx_last_error() says "every thread of the process". Below ABI 8,
/// Landlock confines the calling thread and every thread and process it
/// creates afterwards (pthread_create, fork, exec), never threads that
/// already exist, and fdctx_last_error() says so: call it before creating
/// threads (in main, before the event loop and worker threads start), or
/// confine a launcher that then execs the program (`fdctx-confine`). The
/// confinement cannot be undone, and is inherited across fork and exec.
///
/// With seccomp: confine first, then install the seccomp filter (which
/// then need not allow the three Landlock system calls); a filter that
/// already blocks them makes this call report no Landlock. The two
/// combine: seccomp decides which system calls run, Landlock which files
/// the open-like ones reach.
///
/// The entries are checked and their paths opened first, so a bad entry
/// is an error on every kernel. Then the ruleset is made,
/// `prctl(PR_SET_NO_NEW_PRIVS)` is set (for good: it stays set even if the
/// last step fails) and landlock_restrict_self(2) enforces the ruleset. A
/// second call adds a layer and can only narrow what is allowed.
///
/// After it, fdctx_open() of `/dev/fd/N` works exactly as before (every
/// flag and check, `O_PATH` included: it opens no path), and opening an
/// ordinary path outside the allowed ones fails with `-EACCES` and a
/// fdctx_last_error() text saying the process is confined (a path that
/// does not exist gives `-ENOENT`, and `O_PATH` opens succeed, as above).
///
/// A program exec'd by a launcher that confined it (`fdctx-confine`) is
/// told by the environment variable `FDCTX_CONFINED=1` (which
/// `fdctx-confine` removes when it runs the program unconfined): its
/// fdctx_open()
/// then words `EACCES` the same way (a hint for messages only: Landlock is
/// the boundary).
///
/// `allow` may be NULL when `n` is 0: nothing is allowed by path.
///
/// Returns the Landlock ABI version enforced (> 0), fdctx_last_error()
/// then saying which threads are confined; 0 when the kernel has
/// no usable Landlock (not built in, not enabled at boot, or blocked by a
/// seccomp filter) and `FDCTX_CONFINE_REQUIRE` was not given: nothing is
/// enforced and fdctx_last_error() says why. Errors, with nothing enforced:
/// - `-EINVAL`: `allow` is NULL with `n > 0`, an entry's `path` is NULL or
///   its `access` is not one of the three (with or without
///   `FDCTX_ALLOW_EXEC`), or `flags` has an unknown bit;
/// - the errno of opening an entry's path (`-ENOENT` when it does not
///   exist, `-EACCES`, ...), with a text naming the entry and its path;
/// - `-EOPNOTSUPP` with `FDCTX_CONFINE_REQUIRE` and no usable Landlock;
/// - another negative errno when a Landlock call fails (`-E2BIG`: more
///   than 16 layers).
#[no_mangle]
pub unsafe extern "C" fn fdctx_confine(allow: *const fdctx_allow, n: usize, flags: c_uint) -> c_int {
    ffi_boundary(|| {
        if flags & !FDCTX_CONFINE_REQUIRE != 0 {
            return Err(Error::InvalidArgument("flags: unknown bits (only FDCTX_CONFINE_REQUIRE is defined)"));
        }
        // SAFETY: NULL, or `n` entries.
        let entries = unsafe { slice_arg(allow, n, "allow (NULL with n > 0)") }?;
        let mut list = Vec::with_capacity(entries.len());
        for e in entries {
            // SAFETY: each entry's path is NUL-terminated or NULL.
            let path = unsafe { path_arg(e.path, "allow entry path") }?;
            list.push(crate::fds::confine::Allow { path, access: e.access });
        }
        let outcome = crate::fds::confine::confine(&list, flags & FDCTX_CONFINE_REQUIRE != 0)?;
        // Success, enforced or not: the text says what holds.
        boundary::set_last_error(&outcome.describe());
        match outcome {
            crate::fds::confine::Outcome::Enforced { abi, .. } => Ok(c_int::try_from(abi).unwrap_or(c_int::MAX)),
            crate::fds::confine::Outcome::Unsupported(_) => Ok(0),
        }
    })
}
