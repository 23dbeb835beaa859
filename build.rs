//! Build script for fdctx.
//!
//! 1. Generates the C header with cbindgen from the crate's C layer
//!    (`src/ffi/mod.rs` and the modules it declares), configured by `cbindgen.toml`.
//!    The header is written to `$OUT_DIR/fdctx.h` and nowhere else: the
//!    Makefile learns that directory from cargo (`make build`), `make
//!    header` copies the header to the checked-in `include/fdctx.h`, and
//!    `make check-header` fails when the two differ.
//! 2. Gives the shared library its SONAME, `libfdctx.so.<ABI major>`.
//! 3. Hands the linker a version script that keeps the `fdctx_` namespace
//!    global and everything else local (see `version_script` below).

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
        link_args(&out_dir);
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

    bindings.write_to_file(out_dir.join("fdctx.h"));
}

fn link_args(out_dir: &Path) {
    let soname = format!("libfdctx.so.{}", abi_major());
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");

    // rustc already passes the linker a version script of its own that lists
    // the crate's exported C symbols as global and makes everything else
    // (the Rust standard library, dependencies) local. GNU ld merges every
    // anonymous version script it is given, so this one states the rule of
    // the C API, "only fdctx_* is public", but cannot hide a name that rustc
    // lists: an exported function outside the namespace is caught by
    // `make check-symbols` (nm -D --defined-only), not here.
    let version_script = out_dir.join("fdctx.map");
    fs::write(&version_script, "{\n  global:\n    fdctx_*;\n  local:\n    *;\n};\n")
        .unwrap_or_else(|e| panic!("{}: {e}", version_script.display()));
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", version_script.display());
}
