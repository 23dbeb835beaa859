//! The placeholders of `--allow` paths, and the values PROGRAM's (QEMU's)
//! own arguments give them: `{name}` (the guest name as QEMU takes it from
//! `-name`), `{n}` (a number matched against what exists) and
//! `{pidfile-dir}` (the directory of `-pidfile`). One allow list then serves
//! every guest, and each VMM reaches only its own guest's files.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Values PROGRAM's arguments give the placeholders.
#[derive(Default)]
pub(crate) struct ArgValues {
    /// The guest name as QEMU takes it, whatever its spelling (checked
    /// only when an entry uses it: see [`usable_name`]).
    pub(crate) name: Option<Vec<u8>>,
    pidfile_dir: Option<OsString>,
}

/// QEMU's guest name (`-name`) and the directory of `-pidfile PATH`, taken
/// as QEMU takes them: `-name` options merge, and the last `guest=` of the
/// last `-name` that has one wins (`-name NAME,...` names it too); the
/// last `-pidfile` wins. `--name`, `--pidfile` and the `=VALUE` forms are
/// read the same way.
pub(crate) fn arg_values(args: &[OsString]) -> ArgValues {
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
pub(crate) fn usable_name(name: &[u8]) -> Result<&[u8], String> {
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
pub(crate) fn expand(path: &OsStr, values: &ArgValues) -> Result<Vec<PathBuf>, String> {
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

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tests::leak_check;

    fn values(args: &[&str]) -> ArgValues {
        arg_values(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn guest_name_from_qemu_arguments() {
        let _leaks = leak_check();
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
        let _leaks = leak_check();
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
        let _leaks = leak_check();
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
}
