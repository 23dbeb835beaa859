//! `fdctx-confine`: confine this process with `fdctx_confine()`, then exec
//! a program (a VMM) so that every thread it ever starts is confined.
//!
//! ```text
//! fdctx-confine [--allow PATH[:r|w|rw]]... [--require] [--verbose] -- PROGRAM [ARGS...]
//! ```
//!
//! The ruleset grants what the `--allow` entries say, plus read and
//! execute on PROGRAM and on its ELF interpreter (`PT_INTERP`): no other
//! file on a filesystem can be exec'd. That does not limit what code runs:
//! the interpreter runs any ELF file the allow list lets PROGRAM read, and
//! a memfd can be executed unless the host sets `vm.memfd_noexec=2` (see
//! USAGE). Allow paths may name values taken from
//! PROGRAM's own arguments (see USAGE), so that one allow list serves every
//! guest and each VMM reaches only its own guest's files.
//!
//! Exit status: PROGRAM's (it replaces this process); 126 with a message
//! on stderr when confinement fails with `--require`, an allow entry is
//! bad, or the exec fails; 2 on a usage error.

#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fdctx::fds::confine::{confine, Allow, Outcome, ALLOW_EXEC};

mod template;
use template::{arg_values, expand, find, usable_name};

const USAGE: &str = "\
usage: fdctx-confine [--allow PATH[:r|w|rw]]... [--require] [--verbose] -- PROGRAM [ARGS...]

Confine this process with Landlock so that it can open no file by path
except beneath the --allow entries, then exec PROGRAM: PROGRAM and every
thread and process it starts stay confined, and files reach it only as
fds passed to it (with monitor commands, or inherited).

  --allow PATH[:MODE]  allow opening files beneath PATH (a directory) or
                       PATH itself (a file); MODE is r (read, the
                       default), w (write, create, remove) or rw. A path
                       that does not exist is an error; a relative PATH
                       is taken from the working directory. May be
                       repeated. PATH may name values from PROGRAM's
                       arguments, read as QEMU reads them:
                         {name}        the guest name given with -name
                                       (guest=NAME,... or NAME,...; the
                                       last one wins); it must be
                                       shorter than 20 bytes, else
                                       fdctx-confine exits 126: libvirt
                                       cuts names to 20 characters in
                                       its domain-N-NAME directories, so
                                       a longer one could name another
                                       guest's
                         {pidfile-dir} the directory of -pidfile's path
                         {n}           a decimal number: every existing
                                       entry of that directory that
                                       matches is allowed
                       an entry naming a value the arguments lack is
                       left out (--verbose says so), as is one whose
                       {n} matches nothing. A path whose own name holds
                       {name}, {pidfile-dir} or {n} literally cannot be
                       allowed. Whoever writes PROGRAM's arguments
                       chooses these values: trust it as you trust the
                       allow list.
  --require            fail (exit 126) rather than run PROGRAM unconfined
                       when the kernel has no usable Landlock
  --verbose            print the rules and what was enforced on stderr
  -h, --help           show this help

PROGRAM must be an ELF executable; it (found on PATH when it has no '/')
and its ELF interpreter are the only files PROGRAM can exec(2). That is
not a limit on what code runs: Landlock counts mapping a file executable
as reading it, so PROGRAM can run any ELF file the allow list lets it
read (through its ELF interpreter: ld-linux.so FILE), and it can execute
a memfd it writes (Landlock does not check internal mounts) unless the
host sets `sysctl vm.memfd_noexec=2` (Linux 6.3 on). A seccomp filter in
PROGRAM that refuses execve (QEMU's -sandbox spawn=deny, where QEMU is
built with seccomp) stops both kinds of exec. Capabilities stay as they
are: run PROGRAM as an unprivileged user, as libvirt runs QEMU.

A file the confined PROGRAM opens by path outside the allow list fails
with EACCES (\"Permission denied\"): pass it as an fd instead. Landlock
hides nothing: a missing path still fails with ENOENT, and O_PATH opens,
stat(2) and the like work on any path. The environment variable
FDCTX_CONFINED=1 tells fdctx in PROGRAM that it is confined, so its
errors say so; fdctx-confine removes it when PROGRAM runs unconfined.

Exit status: PROGRAM's; 126 when confinement fails with --require, an
allow entry cannot be used, or PROGRAM cannot be executed; 2 on a usage
error.";

/// A failure that ends the program: exit status and message.
struct Fail(u8, String);

fn usage<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(2, format!("{}\n(fdctx-confine --help for usage)", msg.into())))
}

fn cannot<T>(msg: impl Into<String>) -> Result<T, Fail> {
    Err(Fail(126, msg.into()))
}

/// One `--allow` entry as given.
struct Entry {
    path: OsString,
    access: i32,
}

struct Opts {
    allow: Vec<Entry>,
    require: bool,
    verbose: bool,
    program: OsString,
    args: Vec<OsString>,
}

/// `PATH[:r|w|rw]`: a path whose own name ends in one of the suffixes is
/// given with its mode (`a:w:r`).
fn parse_allow(spec: &OsStr) -> Result<Entry, Fail> {
    let b = spec.as_bytes();
    for (suffix, access) in [(&b":rw"[..], libc::O_RDWR), (b":r", libc::O_RDONLY), (b":w", libc::O_WRONLY)] {
        if let Some(path) = b.strip_suffix(suffix) {
            if path.is_empty() {
                return usage(format!("--allow {}: empty path", spec.to_string_lossy()));
            }
            return Ok(Entry { path: OsStr::from_bytes(path).to_owned(), access });
        }
    }
    if b.is_empty() {
        return usage("--allow: empty path");
    }
    Ok(Entry { path: spec.to_owned(), access: libc::O_RDONLY })
}

fn parse(args: Vec<OsString>) -> Result<Option<Opts>, Fail> {
    let mut allow = Vec::new();
    let (mut require, mut verbose) = (false, false);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-h") | Some("--help") => return Ok(None),
            Some("--require") => require = true,
            Some("--verbose") => verbose = true,
            Some("--allow") => match it.next() {
                Some(spec) => allow.push(parse_allow(&spec)?),
                None => return usage("--allow needs PATH[:r|w|rw]"),
            },
            Some("--") => {
                let Some(program) = it.next() else { return usage("no PROGRAM after --") };
                return Ok(Some(Opts { allow, require, verbose, program, args: it.collect() }));
            }
            _ => {
                if let Some(spec) = a.as_bytes().strip_prefix(b"--allow=") {
                    allow.push(parse_allow(OsStr::from_bytes(spec))?);
                } else {
                    return usage(format!("unknown argument '{}' (PROGRAM follows --)", a.to_string_lossy()));
                }
            }
        }
    }
    usage("no -- PROGRAM given")
}

/// PROGRAM as a path: as given when it has a '/', else the first
/// executable regular file of that name on PATH.
fn resolve_program(program: &OsStr) -> Result<PathBuf, Fail> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if let Ok(c) = CString::new(candidate.as_os_str().as_bytes()) {
            // SAFETY: a NUL-terminated path; access(2) reads it only.
            if candidate.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 {
                return Ok(candidate);
            }
        }
    }
    cannot(format!("fdctx-confine: {}: not found on PATH", program.to_string_lossy()))
}

/// The ELF interpreter (`PT_INTERP`) `program` names, if any (a static
/// executable has none).
fn elf_interpreter(program: &Path) -> Result<Option<PathBuf>, String> {
    let mut data = Vec::new();
    File::open(program)
        .and_then(|f| f.take(1 << 20).read_to_end(&mut data))
        .map_err(|e| format!("cannot read it: {e}"))?;
    interp_of(&data)
}

/// `PT_INTERP` of the ELF image whose first bytes are `data` (the program
/// headers must lie within them).
fn interp_of(data: &[u8]) -> Result<Option<PathBuf>, String> {
    const PT_INTERP: u32 = 3;
    if data.len() < 0x34 || &data[..4] != b"\x7fELF" {
        return Err("not an ELF executable (a script's interpreter could not be executed either)".into());
    }
    let wide = match data[4] {
        1 => false,
        2 => true,
        c => return Err(format!("unknown ELF class {c}")),
    };
    let little = match data[5] {
        1 => true,
        2 => false,
        d => return Err(format!("unknown ELF data encoding {d}")),
    };
    let uint = |off: usize, len: usize| -> Result<u64, String> {
        let b = data.get(off..off + len).ok_or("truncated ELF headers")?;
        let mut v = 0u64;
        for i in 0..len {
            let byte = if little { b[len - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    };
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| "ELF offset out of range".to_string());
    let (phoff, phentsize, phnum) = if wide {
        (uint(0x20, 8)?, uint(0x36, 2)?, uint(0x38, 2)?)
    } else {
        (uint(0x1c, 4)?, uint(0x2a, 2)?, uint(0x2c, 2)?)
    };
    for i in 0..to_usize(phnum)? {
        let ph = to_usize(phoff)? + i * to_usize(phentsize)?;
        if uint(ph, 4)? as u32 != PT_INTERP {
            continue;
        }
        // p_offset and p_filesz: after p_type (and p_flags on 64-bit).
        let (off, size) =
            if wide { (uint(ph + 8, 8)?, uint(ph + 32, 8)?) } else { (uint(ph + 4, 4)?, uint(ph + 16, 4)?) };
        let (off, size) = (to_usize(off)?, to_usize(size)?);
        let raw = data.get(off..off.saturating_add(size)).ok_or("PT_INTERP lies beyond the headers read")?;
        let name = raw.split(|&b| b == 0).next().unwrap_or_default();
        if name.is_empty() {
            return Err("empty PT_INTERP".into());
        }
        return Ok(Some(PathBuf::from(OsStr::from_bytes(name))));
    }
    Ok(None)
}

fn mode_name(access: i32) -> &'static str {
    match access & !ALLOW_EXEC {
        libc::O_RDONLY if access & ALLOW_EXEC != 0 => "rx",
        libc::O_RDONLY => "r",
        libc::O_WRONLY => "w",
        _ => "rw",
    }
}

/// What Landlock leaves executable, said once confined (`--verbose`);
/// `scope` is vm.memfd_noexec, read before confining.
fn memfd_note(scope: std::io::Result<String>) {
    let scope = scope.map(|s| s.trim().to_owned());
    if scope.as_deref().ok() != Some("2") {
        eprintln!(
            "fdctx-confine: note: vm.memfd_noexec is {}: PROGRAM can still execute a memfd it writes \
             (Landlock does not check files on internal mounts); `sysctl vm.memfd_noexec=2` stops that",
            scope.unwrap_or_else(|_| "missing (kernel before 6.3)".into())
        );
    }
    eprintln!(
        "fdctx-confine: note: PROGRAM can run any ELF file the allow list lets it read, through its ELF \
         interpreter or by mapping it executable: the allow list limits what it reads, not what code it runs"
    );
}

fn run(opts: Opts) -> Result<std::convert::Infallible, Fail> {
    let program = resolve_program(&opts.program)?;
    let interp = elf_interpreter(&program).or_else(|e| cannot(format!("fdctx-confine: {}: {e}", program.display())))?;
    let values = arg_values(&opts.args);
    if let Some(name) = &values.name {
        if opts.allow.iter().any(|e| find(e.path.as_bytes(), b"{name}").is_some()) {
            usable_name(name).or_else(|why| cannot(format!("fdctx-confine: refusing {{name}}: {why}")))?;
        }
    }
    let mut paths: Vec<(PathBuf, i32)> = Vec::new();
    for e in &opts.allow {
        match expand(&e.path, &values) {
            Ok(list) => paths.extend(list.into_iter().map(|p| (p, e.access))),
            Err(why) if opts.verbose => eprintln!("fdctx-confine: left out {}: {why}", e.path.to_string_lossy()),
            Err(_) => {}
        }
    }
    paths.push((program.clone(), libc::O_RDONLY | ALLOW_EXEC));
    if let Some(i) = &interp {
        paths.push((i.clone(), libc::O_RDONLY | ALLOW_EXEC));
    }
    if opts.verbose {
        for (p, a) in &paths {
            eprintln!("fdctx-confine: allow {}:{}", p.display(), mode_name(*a));
        }
    }
    let allow: Vec<Allow<'_>> = paths.iter().map(|(p, a)| Allow { path: p.as_os_str(), access: *a }).collect();
    let memfd_scope = std::fs::read_to_string("/proc/sys/vm/memfd_noexec");
    match confine(&allow, opts.require) {
        Ok(o @ Outcome::Enforced { .. }) => {
            if opts.verbose {
                eprintln!("fdctx-confine: {}", o.describe());
                memfd_note(memfd_scope);
            }
            // The hint fdctx in PROGRAM reads, so that its errors say why.
            std::env::set_var("FDCTX_CONFINED", "1");
        }
        Ok(o) => {
            eprintln!("fdctx-confine: warning: running {} unconfined: {}", program.display(), o.describe());
            // An inherited hint must not make an unconfined PROGRAM claim
            // it is confined.
            std::env::remove_var("FDCTX_CONFINED");
        }
        Err(e) => return cannot(format!("fdctx-confine: {e}")),
    }
    let c_program = CString::new(program.as_os_str().as_bytes())
        .or_else(|_| cannot("fdctx-confine: PROGRAM contains a NUL byte"))?;
    let mut argv = vec![CString::new(opts.program.as_bytes()).unwrap_or_else(|_| c_program.clone())];
    for a in &opts.args {
        argv.push(CString::new(a.as_bytes()).or_else(|_| cannot("fdctx-confine: an argument contains a NUL byte"))?);
    }
    let e = nix::unistd::execv(&c_program, &argv).unwrap_err();
    cannot(format!("fdctx-confine: cannot execute {}: {}", program.display(), std::io::Error::from(e)))
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = match parse(args) {
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Some(opts)) => run(opts).map(|never| match never {}),
        Err(f) => Err(f),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, msg)) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fd accounting every test holds: with the `testing` feature, as
    /// `make check` builds these tests; a plain `cargo test` has none.
    #[cfg(feature = "testing")]
    pub(crate) fn leak_check() -> fdctx::testing::fdcount::FdLeakCheck {
        fdctx::testing::fdcount::FdLeakCheck::new()
    }
    #[cfg(not(feature = "testing"))]
    pub(crate) fn leak_check() -> impl Sized {}

    #[test]
    fn allow_modes_and_usage_errors() {
        let _leaks = leak_check();
        let e = parse_allow(OsStr::new("/a:w:r")).ok().unwrap();
        assert_eq!((e.path.as_os_str(), e.access), (OsStr::new("/a:w"), libc::O_RDONLY));
        assert_eq!(parse_allow(OsStr::new("/b:rw")).ok().unwrap().access, libc::O_RDWR);
        assert!(parse_allow(OsStr::new(":rw")).is_err());
        assert!(matches!(parse(vec!["--allow".into()]), Err(Fail(2, _))));
        assert!(matches!(parse(vec!["--".into()]), Err(Fail(2, _))));
    }

    #[test]
    fn interpreter_of_this_test_binary() {
        let _leaks = leak_check();
        let exe = std::env::current_exe().unwrap();
        let interp = elf_interpreter(&exe).unwrap().expect("a dynamic executable");
        assert!(interp.is_absolute() && interp.exists(), "{}", interp.display());
        assert!(interp_of(
            b"#!/bin/sh\nexec true\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
        )
        .is_err());
    }
}
