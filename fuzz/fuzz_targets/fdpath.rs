//! Fuzz target: the `/dev/fd/N` grammar and own-fd path refusal.
//! See fuzz/README.md for the invariants.

#![no_main]

use std::ffi::CString;

use fdctx::fds::fdpath::{classify, PathKind};
use libfuzzer_sys::fuzz_target;

/// Lexical components of an absolute path (`.`, empty dropped, `..` applied).
fn components(p: &str) -> Vec<&str> {
    let mut v = Vec::new();
    if !p.starts_with('/') {
        return v;
    }
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                v.pop();
            }
            c => v.push(c),
        }
    }
    v
}

fn reaches_own_fds(p: &str) -> bool {
    matches!(
        components(p).as_slice(),
        ["dev", "fd", ..]
            | ["dev", "stdin" | "stdout" | "stderr", ..]
            | ["proc", _, "fd" | "fdinfo", ..]
            | ["proc", _, "task", _, "fd" | "fdinfo", ..]
    )
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = std::str::from_utf8(data) {
        let r = classify(p);
        match &r {
            Ok(PathKind::FdIndex(n)) => assert_eq!(p, format!("/dev/fd/{n}"), "only the canonical spelling"),
            Ok(PathKind::Ordinary) => {
                assert!(!p.starts_with("/dev/fd/"), "an fd-looking path is never ordinary");
                assert!(!reaches_own_fds(p), "ordinary path {p:?} reaches own fds");
            }
            Err(e) => {
                let errno = e.errno();
                assert!(errno == libc::EINVAL || errno == libc::EPERM, "errno {errno}");
                if p.starts_with("/dev/fd/") {
                    assert_eq!(errno, libc::EINVAL);
                }
            }
        }
        // open() never succeeds on what classify refuses, and never opens
        // an fd path without a context.
        if !p.contains('\0') {
            let o = fdctx::fds::open::open(None, p, libc::O_PATH, 0);
            match r {
                Ok(PathKind::FdIndex(_)) => assert_eq!(o.map(drop).map_err(|e| e.errno()), Err(libc::EBADF)),
                Err(e) => assert_eq!(o.map(drop).map_err(|e| e.errno()), Err(e.errno())),
                Ok(PathKind::Ordinary) => drop(o),
            }
        }
    }
    // The C entry point takes any bytes.
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let c = CString::new(&data[..end]).unwrap();
    let mut idx = usize::MAX;
    // SAFETY: a valid C string and a valid out pointer.
    let r = unsafe { fdctx::testing::ffi::fdctx_index(c.as_ptr(), &mut idx) };
    assert!(r == 0 || r == 1 || r == -libc::EINVAL || r == -libc::EPERM, "fdctx_index = {r}");
    if let Ok(p) = std::str::from_utf8(&data[..end]) {
        let want = match classify(p) {
            Ok(PathKind::FdIndex(n)) => {
                assert_eq!(r, 1);
                assert_eq!(idx, n);
                return;
            }
            Ok(PathKind::Ordinary) => 0,
            Err(e) => -e.errno(),
        };
        assert_eq!(r, want, "C and Rust agree on {p:?}");
    }
});
