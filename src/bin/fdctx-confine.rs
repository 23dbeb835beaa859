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
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use fdctx::fds::confine::{confine, Allow, Outcome, ALLOW_EXEC};

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

/// Values PROGRAM's arguments give the placeholders.
#[derive(Default)]
struct ArgValues {
    /// The guest name as QEMU takes it, whatever its spelling (checked
    /// only when an entry uses it: see [`usable_name`]).
    name: Option<Vec<u8>>,
    pidfile_dir: Option<OsString>,
}

/// QEMU's guest name (`-name`) and the directory of `-pidfile PATH`, taken
/// as QEMU takes them: `-name` options merge, and the last `guest=` of the
/// last `-name` that has one wins (`-name NAME,...` names it too); the
/// last `-pidfile` wins. `--name`, `--pidfile` and the `=VALUE` forms are
/// read the same way.
fn arg_values(args: &[OsString]) -> ArgValues {
    let mut v = ArgValues::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_bytes();
        let opt = a.strip_prefix(b"--").or_else(|| a.strip_prefix(b"-")).unwrap_or(b"");
        let (key, inline) = match opt.iter().position(|&b| b == b'=') {
            Some(p) => (&opt[..p], Some(&opt[p + 1..])),
            None => (opt, None),
        };
        if key == b"name" || key == b"pidfile" {
            let value = match inline {
                Some(val) => Some(val.to_vec()),
                None => {
                    i += 1;
                    args.get(i).map(|s| s.as_bytes().to_vec())
                }
            };
            if let Some(val) = value {
                if key == b"name" {
                    if let Some(name) = guest_name(&val) {
                        v.name = Some(name);
                    }
                } else {
                    let dir = Path::new(OsStr::from_bytes(&val)).parent().map(|p| p.as_os_str().to_owned());
                    v.pidfile_dir = dir.filter(|d| !d.is_empty());
                }
            }
        }
        i += 1;
    }
    v
}

/// The guest name one `-name` value sets, parsed as QEMU's option parser
/// does (implied key `guest`): elements are split at a single `,` (`,,`
/// is a comma in a value); the first element names the guest when no `=`
/// comes before its first `,`; `KEY=VALUE` elements set KEY, the last
/// one winning; a later element without `=` is a flag. `None` when this
/// value sets no guest name (an earlier `-name`'s stands then).
fn guest_name(val: &[u8]) -> Option<Vec<u8>> {
    let mut name = None;
    let mut p = 0;
    let mut first = true;
    while p < val.len() {
        let rest = &val[p..];
        let len = rest.iter().position(|&b| b == b'=' || b == b',').unwrap_or(rest.len());
        let implied = first && rest.get(len) != Some(&b'=');
        let (key, value_at) = if implied {
            (&b"guest"[..], p)
        } else if rest.get(len) == Some(&b'=') {
            (&rest[..len], p + len + 1)
        } else {
            // A flag (`debug-threads` alone): no value.
            p += len + 1;
            first = false;
            continue;
        };
        // The value: up to a single ',' ("a,,b" is "a,b").
        let mut value = Vec::new();
        let mut q = value_at;
        while q < val.len() {
            if val[q] == b',' {
                if val.get(q + 1) == Some(&b',') {
                    value.push(b',');
                    q += 2;
                    continue;
                }
                break;
            }
            value.push(val[q]);
            q += 1;
        }
        if key == b"guest" {
            name = Some(value);
        }
        p = q + 1;
        first = false;
    }
    name
}

/// libvirt cuts the guest name to 20 characters in a domain's directory
/// name (`domain-N-NAME`); a name that long could match another guest's.
const NAME_CUT: usize = 20;

/// `name` if it may be put in a path: not empty, no `/`, not `.` or
/// `..`, no `{` or `}` (it would read as a placeholder), and shorter
/// than 20 bytes, so that libvirt never cuts it (its cut counts
/// characters, at most one per byte): a guest named like the first 20
/// characters of another's longer name would otherwise get that guest's
/// `domain-N-...` directory.
fn usable_name(name: &[u8]) -> Result<&[u8], String> {
    let shown = String::from_utf8_lossy(name);
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|b| b"/{}".contains(b)) {
        return Err(format!(
            "the guest name '{shown}' cannot be part of a path (empty, '.', '..', or has '/', '{{' or '}}')"
        ));
    }
    if name.len() >= NAME_CUT {
        return Err(format!(
            "the guest name '{shown}' is {} bytes long: {{name}} needs a name shorter than {NAME_CUT} bytes, \
             since libvirt cuts names to {NAME_CUT} characters in its domain-N-NAME directories and a longer \
             guest's directory could then match; give the guest a shorter name",
            name.len()
        ));
    }
    Ok(name)
}

/// The paths an allow entry stands for, or why it is left out.
fn expand(path: &OsStr, values: &ArgValues) -> Result<Vec<PathBuf>, String> {
    let mut text = path.as_bytes().to_vec();
    let pidfile_dir = values.pidfile_dir.as_ref().map(|d| d.as_bytes());
    for (key, value) in [(&b"{name}"[..], values.name.as_deref()), (b"{pidfile-dir}", pidfile_dir)] {
        if find(&text, key).is_none() {
            continue;
        }
        let Some(value) = value else {
            return Err(format!("PROGRAM's arguments give no {}", String::from_utf8_lossy(key)));
        };
        // One pass: a value is never read again as a placeholder.
        let mut out = Vec::with_capacity(text.len());
        let mut rest = &text[..];
        while let Some(p) = find(rest, key) {
            out.extend_from_slice(&rest[..p]);
            out.extend_from_slice(value);
            rest = &rest[p + key.len()..];
        }
        out.extend_from_slice(rest);
        text = out;
    }
    let Some(p) = find(&text, b"{n}") else { return Ok(vec![PathBuf::from(OsString::from_vec(text))]) };
    // {n}: one path component, matched against its directory's entries.
    let start = text[..p].iter().rposition(|&b| b == b'/').map_or(0, |s| s + 1);
    let end = text[p..].iter().position(|&b| b == b'/').map_or(text.len(), |e| p + e);
    let (prefix, suffix) = (&text[start..p], &text[p + 3..end]);
    if find(suffix, b"{n}").is_some() {
        return Err("more than one {n} in a path component".into());
    }
    let dir = PathBuf::from(OsStr::from_bytes(if start == 0 { b"." } else { &text[..start] }));
    let rest = &text[end..];
    let mut found = Vec::new();
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?.flatten() {
        let name = e.file_name();
        let n = name.as_bytes();
        let digits = n.strip_prefix(prefix).and_then(|r| r.strip_suffix(suffix));
        if digits.is_some_and(|d| !d.is_empty() && d.iter().all(u8::is_ascii_digit)) {
            let mut full = text[..start].to_vec();
            full.extend_from_slice(n);
            full.extend_from_slice(rest);
            found.push(PathBuf::from(OsString::from_vec(full)));
        }
    }
    if found.is_empty() {
        return Err("{n} matches no entry".into());
    }
    found.sort();
    Ok(found)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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

    fn values(args: &[&str]) -> ArgValues {
        arg_values(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn guest_name_from_qemu_arguments() {
        let v = values(&["-name", "guest=web1,debug-threads=on", "-pidfile", "/run/q/qmp-Ab12/qmp.pid"]);
        assert_eq!(v.name.as_deref(), Some(&b"web1"[..]));
        assert_eq!(v.pidfile_dir.as_deref(), Some(OsStr::new("/run/q/qmp-Ab12")));
        assert_eq!(values(&["-name", "a,,b,process=x"]).name.as_deref(), Some(&b"a,b"[..]));
        assert_eq!(values(&["--name=plain"]).name.as_deref(), Some(&b"plain"[..]));
        assert!(values(&["-S", "-machine", "none"]).name.is_none());
        assert!(usable_name(b"../etc").is_err(), "a name with '/' is refused");
        assert!(usable_name(b"..").is_err());
        assert!(usable_name(b"{n}").is_err());
        assert!(usable_name(b"0123456789abcdefghi").is_ok());
        assert!(usable_name(b"0123456789abcdefghij").is_err(), "20 bytes: libvirt's cut");
    }

    #[test]
    fn guest_name_is_the_one_qemu_takes() {
        let name = |args: &[&str]| values(args).name.map(|n| String::from_utf8(n).unwrap());
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(name(&["-name", "guest=x,guest=b"]), some("b"), "the last guest= wins");
        assert_eq!(name(&["-name", "x,guest=b"]), some("b"));
        assert_eq!(name(&["-name", "a", "-name", "b"]), some("b"), "the last -name wins");
        assert_eq!(name(&["-name", "a", "-name", "process=p"]), some("a"), "-name options merge");
        assert_eq!(name(&["-name", "a", "-name", "debug-threads=on,guest"]), some("a"), "'guest' later is a flag");
        assert_eq!(name(&["-name", "x,,y=z"]), some("x,y=z"), "',,' before '=': the implied value");
        assert_eq!(name(&["-name", "guest=a,,b,debug-threads=on"]), some("a,b"));
        assert_eq!(name(&["-name", "process=p"]), None);
        assert_eq!(name(&["-name", "guest="]), some(""));
    }

    #[test]
    fn allow_entries_reach_only_this_guest() {
        let dir = std::env::temp_dir().join(format!("fdctx-confine-test-{}", std::process::id()));
        for d in ["domain-1-web", "domain-2-web2", "domain-3-x-web", "domain-12-web", "domain--web"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let v = values(&["-name", "guest=web"]);
        let pattern = dir.join("domain-{n}-{name}");
        let got = expand(pattern.as_os_str(), &v).unwrap();
        assert_eq!(got, vec![dir.join("domain-1-web"), dir.join("domain-12-web")]);
        let none = expand(pattern.as_os_str(), &values(&["-machine", "none"]));
        assert!(none.unwrap_err().contains("{name}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn allow_modes_and_usage_errors() {
        let e = parse_allow(OsStr::new("/a:w:r")).ok().unwrap();
        assert_eq!((e.path.as_os_str(), e.access), (OsStr::new("/a:w"), libc::O_RDONLY));
        assert_eq!(parse_allow(OsStr::new("/b:rw")).ok().unwrap().access, libc::O_RDWR);
        assert!(parse_allow(OsStr::new(":rw")).is_err());
        assert!(matches!(parse(vec!["--allow".into()]), Err(Fail(2, _))));
        assert!(matches!(parse(vec!["--".into()]), Err(Fail(2, _))));
    }

    #[test]
    fn interpreter_of_this_test_binary() {
        let exe = std::env::current_exe().unwrap();
        let interp = elf_interpreter(&exe).unwrap().expect("a dynamic executable");
        assert!(interp.is_absolute() && interp.exists(), "{}", interp.display());
        assert!(interp_of(
            b"#!/bin/sh\nexec true\n\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"
        )
        .is_err());
    }
}
