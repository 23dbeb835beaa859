//! `fdctx-confine`: the program it starts opens nothing by path outside
//! the allow list, executes nothing but itself, and is told it is
//! confined; a bad allow entry or an exec that cannot happen is exit 126
//! with a message, a usage error exit 2.
//!
//! Every test counts this process's open fds before and after (the
//! program runs in a child). Where the kernel has no Landlock the tests
//! that need it say so and return.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output};

use common::fdcount::FdLeakCheck;

const CONFINE: &str = env!("CARGO_BIN_EXE_fdctx-confine");
/// What a dynamically linked program needs to load (Debian's layout, where
/// `/lib` links to `/usr/lib`).
const LOADER: [&str; 4] = ["--allow", "/etc/ld.so.cache", "--allow", "/usr/lib"];

fn landlock() -> bool {
    // SAFETY: the version query takes no attribute (NULL, size 0).
    let abi = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, std::ptr::null::<u8>(), 0usize, 1u32) };
    if abi <= 0 {
        eprintln!("skipped: no usable Landlock here");
    }
    abi > 0
}

fn confine(args: &[&str]) -> Output {
    Command::new(CONFINE).args(args).output().expect("fdctx-confine runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn secret_file(tag: &str) -> (PathBuf, String) {
    let dir = std::env::temp_dir().join(format!("fdctx-confine-cli-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("other-guest.img");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(b"another guest's disk").unwrap();
    (path, dir.to_string_lossy().into_owned())
}

#[test]
fn confined_vmm_cannot_open_another_guests_image_by_path() {
    let _fds = FdLeakCheck::new();
    if !landlock() {
        return;
    }
    let (img, dir) = secret_file("open");
    let img = img.to_str().unwrap();
    let mut refused = LOADER.to_vec();
    refused.extend(["--", "/bin/cat", img]);
    let o = confine(&refused);
    assert_eq!(o.status.code(), Some(1), "cat must fail: {}", stderr(&o));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "nothing of the image may be read");
    // Allowed, the same file reads: the refusal was the confinement.
    let mut allowed = LOADER.to_vec();
    allowed.extend(["--allow", &dir, "--", "/bin/cat", img]);
    let o = confine(&allowed);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, b"another guest's disk");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn confined_vmm_cannot_exec_a_payload() {
    let _fds = FdLeakCheck::new();
    if !landlock() {
        return;
    }
    // The shell itself runs (execute on it and its interpreter), but what
    // it tries to run next does not, even from a readable directory.
    let mut args = LOADER.to_vec();
    args.extend(["--allow", "/bin", "--", "/bin/sh", "-c", "/bin/true"]);
    let o = confine(&args);
    assert_eq!(o.status.code(), Some(126), "sh: cannot execute: {}", stderr(&o));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
}

#[test]
fn confined_program_is_told_it_is_confined() {
    let _fds = FdLeakCheck::new();
    if !landlock() {
        return;
    }
    let mut args = LOADER.to_vec();
    args.extend(["--verbose", "--", "env"]);
    let o = confine(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let env = String::from_utf8_lossy(&o.stdout);
    assert!(env.lines().any(|l| l == "FDCTX_CONFINED=1"), "{env}");
    let err = stderr(&o);
    assert!(err.contains("confined (Landlock ABI"), "{err}");
    assert!(err.contains(":rx"), "the program and its interpreter are listed as executable: {err}");
}

#[test]
fn unusable_allow_entry_or_program_is_exit_126() {
    let _fds = FdLeakCheck::new();
    let o = confine(&["--allow", "/nonexistent/fdctx-allow", "--", "/bin/true"]);
    assert_eq!(o.status.code(), Some(126));
    assert!(stderr(&o).contains("/nonexistent/fdctx-allow"), "{}", stderr(&o));
    let o = confine(&["--", "/nonexistent/vmm"]);
    assert_eq!(o.status.code(), Some(126));
    assert!(stderr(&o).contains("/nonexistent/vmm"), "{}", stderr(&o));
    let (script, dir) = secret_file("script");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let o = confine(&["--", script.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(126), "a script's interpreter is not granted execute");
    assert!(stderr(&o).contains("not an ELF executable"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
    for bad in [&["--allow"][..], &["/bin/true"], &["--bogus", "--", "/bin/true"], &["--"]] {
        assert_eq!(confine(bad).status.code(), Some(2), "{bad:?}");
    }
}

/// A seccomp filter that answers `landlock_create_ruleset` with ENOSYS, as
/// on a kernel without Landlock. Installed in the child before it execs
/// fdctx-confine (async-signal-safe: two prctl calls, no allocation).
fn without_landlock(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    static FILTER: [libc::sock_filter; 4] = [
        libc::sock_filter { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: BPF_JMP_JEQ_K, jt: 0, jf: 1, k: libc::SYS_landlock_create_ruleset as u32 },
        libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: RET_ERRNO | libc::ENOSYS as u32 },
        libc::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: RET_ALLOW },
    ];
    // SAFETY: the closure runs in the forked child before exec and only
    // makes two prctl calls on static data.
    unsafe {
        cmd.pre_exec(|| {
            let prog = libc::sock_fprog { len: FILTER.len() as u16, filter: FILTER.as_ptr() as *mut _ };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2 /* SECCOMP_MODE_FILTER */, &prog as *const _) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn require_refuses_to_run_the_vmm_unconfined() {
    let _fds = FdLeakCheck::new();
    let mut cmd = Command::new(CONFINE);
    cmd.args(["--require", "--", "/bin/true"]);
    without_landlock(&mut cmd);
    let o = cmd.output().expect("fdctx-confine runs");
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    assert!(stderr(&o).contains("no Landlock"), "{}", stderr(&o));
    // Without --require it warns, and runs the program.
    let mut cmd = Command::new(CONFINE);
    cmd.args(["--", "/bin/true"]);
    without_landlock(&mut cmd);
    let o = cmd.output().expect("fdctx-confine runs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unconfined"), "{}", stderr(&o));
}

/// A directory tree like libvirt's `/var/lib/libvirt/qemu`.
fn domain_dirs(tag: &str, dirs: &[&str]) -> PathBuf {
    let base = std::env::temp_dir().join(format!("fdctx-confine-cli-{}-{tag}", std::process::id()));
    for d in dirs {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    base
}

#[test]
fn guest_named_like_another_guests_cut_name_gets_no_directory() {
    let _fds = FdLeakCheck::new();
    // libvirt cuts names to 20 characters in domain-N-NAME: the guest named
    // "production-database-" would match "production-database-eu"'s directory.
    let base = domain_dirs("cut", &["domain-7-production-database-"]);
    let allow = format!("{}/domain-{{n}}-{{name}}:rw", base.display());
    let mut args = LOADER.to_vec();
    args.extend(["--allow", &allow, "--verbose", "--", "/bin/true", "-name", "guest=production-database-"]);
    let o = confine(&args);
    assert_eq!(o.status.code(), Some(126), "refused, not granted: {}", stderr(&o));
    assert!(stderr(&o).contains("shorter than 20 bytes"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("domain-7-"), "nothing of it allowed: {}", stderr(&o));
    // 19 bytes: never cut, so granted exactly.
    std::fs::create_dir_all(base.join("domain-3-production-database")).unwrap();
    let mut args = LOADER.to_vec();
    args.extend(["--allow", &allow, "--verbose", "--", "/bin/true", "-name", "guest=production-database"]);
    let o = confine(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("domain-3-production-database:rw"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("domain-7-"), "{}", stderr(&o));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn repeated_guest_key_names_the_guest_qemu_takes() {
    let _fds = FdLeakCheck::new();
    let base = domain_dirs("qemuopts", &["domain-1-x", "domain-2-b", "domain-3-a"]);
    let allow = format!("{}/domain-{{n}}-{{name}}:rw", base.display());
    // QEMU's option parser: the last guest= of one -name, the last -name of
    // several, and -name options merge (a later one without guest= keeps it).
    for (args, granted, not) in [
        (&["-name", "guest=x,guest=b"][..], "domain-2-b", "domain-1-x"),
        (&["-name", "x", "-name", "b,debug-threads=on"], "domain-2-b", "domain-1-x"),
        (&["-name", "a", "-name", "process=x"], "domain-3-a", "domain-1-x"),
    ] {
        let mut cmd = LOADER.to_vec();
        cmd.extend(["--allow", &allow, "--verbose", "--", "/bin/true"]);
        cmd.extend(args);
        let o = confine(&cmd);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("{granted}:rw")), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains(not), "{args:?}: {}", stderr(&o));
    }
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn unconfined_program_is_not_told_it_is_confined() {
    let _fds = FdLeakCheck::new();
    let mut cmd = Command::new(CONFINE);
    cmd.args(["--", "env"]).env("FDCTX_CONFINED", "1");
    without_landlock(&mut cmd);
    let o = cmd.output().expect("fdctx-confine runs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("unconfined"), "{}", stderr(&o));
    let env = String::from_utf8_lossy(&o.stdout);
    assert!(!env.contains("FDCTX_CONFINED"), "an inherited FDCTX_CONFINED must go: {env}");
}

/// The payload: write `/usr/bin/id` into a memfd and execute that.
const MEMFD_EXEC: &str = "import os,sys; fd=os.memfd_create('x'); \
    os.write(fd, open('/usr/bin/id','rb').read()); os.execve(fd, ['id'], {})";

#[test]
fn memfd_payload_is_stopped_by_memfd_noexec() {
    let _fds = FdLeakCheck::new();
    if !landlock() {
        return;
    }
    let python = std::path::Path::new("/usr/bin/python3");
    let unshare = std::path::Path::new("/usr/bin/unshare");
    // SAFETY: geteuid has no preconditions.
    if !python.exists() || !unshare.exists() || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs /usr/bin/python3, /usr/bin/unshare and root");
        return;
    }
    let mut args = LOADER.to_vec();
    args.extend(["--allow", "/usr/bin/id", "--require", "--", "/usr/bin/python3", "-c", MEMFD_EXEC]);
    // Landlock does not check files on internal mounts: with memfds
    // executable (vm.memfd_noexec below 2) the payload runs, as the header
    // and README say.
    let scope = std::fs::read_to_string("/proc/sys/vm/memfd_noexec").unwrap_or_default();
    if matches!(scope.trim(), "0" | "1") {
        let o = confine(&args);
        assert!(String::from_utf8_lossy(&o.stdout).contains("uid="), "the documented limit: {}", stderr(&o));
    }
    // The documented mitigation, set in a pid namespace of its own so the
    // host's setting stays as it was: no memfd can be executed.
    let script = "echo 2 > /proc/sys/vm/memfd_noexec && exec \"$0\" \"$@\"";
    let o = Command::new(unshare)
        .args(["--pid", "--fork", "/bin/sh", "-c", script, CONFINE])
        .args(&args)
        .output()
        .expect("unshare runs");
    if stderr(&o).contains("unshare failed") {
        eprintln!("skipped: no pid namespace here: {}", stderr(&o));
        return;
    }
    assert!(!String::from_utf8_lossy(&o.stdout).contains("uid="), "the memfd ran: {}", stderr(&o));
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));
}
