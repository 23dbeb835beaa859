//! Build script for fdctx.
//!
//! 1. Generates the C header with cbindgen from the crate's C layer
//!    (`src/ffi/mod.rs` and the modules it declares), configured by
//!    `cbindgen.toml`.
//!    The header is written to `$OUT_DIR/fdctx.h` and copied to the
//!    profile's include directory, `<target-dir>/<profile>/include/fdctx.h`
//!    (`target/release/include/fdctx.h` after `cargo build --release`),
//!    beside the libraries of the same build, where cargo-c keeps the
//!    headers it installs (`cargo cinstall` copies the checked-in one over
//!    it). `OUT_DIR` itself carries a hash that changes with the build's
//!    settings; this path does not, so the Makefile names it without asking
//!    cargo: `make header` copies it to the checked-in `include/fdctx.h`
//!    (what `make install` installs), and `make check-header` fails when the
//!    two differ. The copy is made whenever the header is generated, that is
//!    when `src/`, `cbindgen.toml`, `Cargo.toml` or this file changed;
//!    `touch build.rs` brings back one that was deleted.
//! 2. Gives the shared library its SONAME, `libfdctx.so.<ABI major>`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// ABI major version: the number in the SONAME. It follows the crate's
/// major version; bump the crate's major version for any ABI break.
fn abi_major() -> String {
    env::var("CARGO_PKG_VERSION_MAJOR").expect("CARGO_PKG_VERSION_MAJOR")
}

fn main() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));

    // A directory given to rerun-if-changed is scanned recursively.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=Cargo.toml");
    println!("cargo:rerun-if-changed=src");

    generate_header(&crate_dir, &out_dir);

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        link_args();
    }
}

fn generate_header(crate_dir: &Path, out_dir: &Path) {
    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap_or_else(|e| panic!("cbindgen.toml: {e}"));

    let major = env::var("CARGO_PKG_VERSION_MAJOR").expect("CARGO_PKG_VERSION_MAJOR");
    let minor = env::var("CARGO_PKG_VERSION_MINOR").expect("CARGO_PKG_VERSION_MINOR");
    let patch = env::var("CARGO_PKG_VERSION_PATCH").expect("CARGO_PKG_VERSION_PATCH");
    let version = env::var("CARGO_PKG_VERSION").expect("CARGO_PKG_VERSION");
    let mut after = format!(
        "\n/** Version of the fdctx API this header declares. */\n\
         #define FDCTX_VERSION_MAJOR {major}\n\
         #define FDCTX_VERSION_MINOR {minor}\n\
         #define FDCTX_VERSION_PATCH {patch}\n\
         #define FDCTX_VERSION \"{version}\"\n\
         /** The `N` of the library's SONAME, `libfdctx.so.N`. */\n\
         #define FDCTX_ABI_VERSION {abi}",
        abi = abi_major()
    );
    if let Some(extra) = config.after_includes.take() {
        if !extra.trim().is_empty() {
            after.push('\n');
            after.push_str(extra.trim_end());
        }
    }
    config.after_includes = Some(after);

    // Only the C layer: its own types are all the header may name. Given
    // one file, cbindgen also reads the files its `mod` declarations name
    // (so naming them here too would declare everything twice): the
    // header follows src/ffi/mod.rs, then its modules in declaration order.
    let bindings =
        match cbindgen::Builder::new().with_src(crate_dir.join("src/ffi/mod.rs")).with_config(config).generate() {
            Ok(b) => b,
            Err(e) => panic!("cbindgen could not generate fdctx.h: {e}"),
        };

    let header = out_dir.join("fdctx.h");
    bindings.write_to_file(&header);
    copy_to_profile_include(out_dir, &header);
}

/// Copies the generated header to `<target-dir>/<profile>/include/fdctx.h`.
///
/// cargo lays a build script's output out as
/// `<target-dir>/[<triple>/]<profile>/build/<package>-<hash>/out`; the
/// profile directory is three levels up (with cargo's `build-dir` set, it
/// is under that directory instead). Under any other layout the header
/// stays in `OUT_DIR` only and cargo prints a warning saying so, and `make`
/// says it cannot find the header. The copy replaces the file by a
/// rename, so concurrent builds of the same profile (`cargo build` and
/// `cargo clippy`, say) never leave a half-written header.
fn copy_to_profile_include(out_dir: &Path, header: &Path) {
    let profile_dir = out_dir
        .parent()
        .and_then(Path::parent)
        .filter(|build| build.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent);
    let Some(profile_dir) = profile_dir else {
        println!(
            "cargo:warning=fdctx.h is only in {}: OUT_DIR is not <profile>/build/<package>-<hash>/out",
            out_dir.display()
        );
        return;
    };
    let include = profile_dir.join("include");
    let staging = include.join(format!(".fdctx.h.{}", std::process::id()));
    let result = fs::create_dir_all(&include)
        .and_then(|()| fs::copy(header, &staging))
        .and_then(|_| fs::rename(&staging, include.join("fdctx.h")));
    if let Err(e) = result {
        let _ = fs::remove_file(&staging);
        panic!("{}: {e}", include.join("fdctx.h").display());
    }
}

fn link_args() {
    let soname = format!("libfdctx.so.{}", abi_major());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // No version script of our own: rustc already hands the linker one
    // that exports the crate's `#[no_mangle]` C functions and hides the
    // rest (the standard library, the dependencies), and GNU ld refuses a
    // second anonymous one. That only `fdctx_*` is exported, and exactly
    // what the header declares, is `make check-symbols`' job.
}
