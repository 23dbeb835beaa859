# fdctx - top-level build.
#
#   make / make all   the library (cargo build --release), whether include/fdctx.h
#                     is current, and a stage install into build/stage
#   make stage        install into build/stage (what C programs here link to)
#   make install      PREFIX=/usr/local [DESTDIR=] [libdir=]: libfdctx.so.X.Y.Z and
#                     its .so.X and .so links, libfdctx.a, pkgconfig/fdctx.pc, the
#                     checked-in include/fdctx.h, bin/fdctx-send and fdctx-confine
#                     (scripts/install-fdctx; `cargo cinstall` installs the same
#                     library files, but make install needs no cargo-c)
#   make header       copy the generated header (target/release/include/fdctx.h,
#                     see build.rs) to include/fdctx.h
#   make check        every step of CHECK_STEPS, each also a target: style, source
#                     layout, docs, the MSRV build, Rust tests, the ABI (header,
#                     SONAME, symbols, pkg-config, C++, install: scripts/check-abi),
#                     the C tests plain, under valgrind and ASan, $(EXTRA_CHECKS)
#   make deps         install what the checks need (scripts/install-deps, as root)
#   make demo         the demo monitor driven by real clients (examples/demo.sh)
#   make qemu         QEMU 10.0.2 with integrations/qemu/patches against the stage
#                     (build/qemu/bin) and without (build/qemu/upstream/bin)
#   make qemu-check   QEMU's own fd-passing tests on both builds, test_qemu.py side
#                     by side, then QEMU under libvirt, unconfined and confined
#   make demo-qemu    a confined QEMU takes an image as an fd, refuses it by path
#   make clean        remove build/ and cargo's target/
#
# Fragments (c-tests/, examples/, bench/, integrations/qemu/*.mk) may use STAGE,
# PKG_CONFIG_PATH (the staged fdctx.pc first), FDCTX_CFLAGS and FDCTX_LIBS
# (pkg-config's flags for the stage, with an rpath to it), the need_* and
# sanitizer settings, and add checks with `EXTRA_CHECKS += target`.

SHELL := /bin/bash
.DEFAULT_GOAL := all

CARGO ?= cargo
RUSTC ?= rustc
PKG_CONFIG ?= pkg-config
INSTALL ?= install
VALGRIND ?= valgrind
CXX ?= c++
LDCONFIG ?= ldconfig
PREFIX ?= /usr/local
DESTDIR ?=

VERSION := $(shell sed -n 's/^version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
SONAME := libfdctx.so.$(firstword $(subst ., ,$(VERSION)))
MSRV := $(shell sed -n 's/^rust-version[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' Cargo.toml)

TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
RELEASE_DIR := $(TARGET_DIR)/release
# build.rs copies the header it generates to its profile's include directory.
GENERATED_HEADER := $(RELEASE_DIR)/include/fdctx.h

BUILD := $(CURDIR)/build
STAGE := $(BUILD)/stage
STAGED_LIB := $(STAGE)/lib/libfdctx.so.$(VERSION)
STAGED_HEADER := $(STAGE)/include/fdctx.h

PKG_CONFIG_PATH := $(STAGE)/lib/pkgconfig
export PKG_CONFIG_PATH
FDCTX_CFLAGS = $(shell PKG_CONFIG_PATH=$(PKG_CONFIG_PATH) $(PKG_CONFIG) --cflags fdctx)
FDCTX_LIBS = $(shell PKG_CONFIG_PATH=$(PKG_CONFIG_PATH) $(PKG_CONFIG) --libs fdctx) -Wl,-rpath,$(STAGE)/lib

# The checks added by the included fragments.
EXTRA_CHECKS :=

.PHONY: all build stage install header header-status check check-steps check-style check-layout \
	check-doc check-msrv check-rust check-header check-soname check-symbols check-pkgconfig \
	check-install check-cxx check-extra deps clean

all: build header-status stage

# ---- missing system dependencies -------------------------------------------

# One line naming what is missing and what installs it (scripts/need), e.g.
# $(call need_tool,TARGET,COMMAND,DEBIAN-PACKAGE); `make deps` installs them all.
need_tool = scripts/need tool $(1) "$(firstword $(2))" "$(3)"
need_c_toolchain = $(call need_tool,$(1),$(CC),gcc) && $(call need_tool,$(1),$(PKG_CONFIG),pkg-config)
need_pkg = PKG_CONFIG="$(PKG_CONFIG)" scripts/need pkg $(1) $(2)
need_sanitizers = scripts/need sanitizers $(1) "$(CC)" $(ASAN_FLAGS)

# ---- building ------------------------------------------------------------

# cargo decides what is stale; the build script regenerates the header.
build:
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	    echo "build: '$(CARGO)' is not installed: install a Rust toolchain (rustup), then run 'make deps'" >&2; exit 1; }
	$(CARGO) build --release
	@test -f $(GENERATED_HEADER) || { echo "build: no $(GENERATED_HEADER) (build.rs writes it): 'touch build.rs' and make again" >&2; exit 1; }

# include/fdctx.h against the generated header: a note, or a copy.
header-status: build
	@cmp -s $(GENERATED_HEADER) include/fdctx.h && echo "include/fdctx.h is current" || { \
	    echo "note: include/fdctx.h differs from the header generated from the C layer (build.rs);"; \
	    echo "      run 'make header' and commit it (make check fails until then)"; }
header: build
	@cmp -s $(GENERATED_HEADER) include/fdctx.h && echo "include/fdctx.h is current" || { \
	    mkdir -p include && cp $(GENERATED_HEADER) include/fdctx.h && echo "include/fdctx.h updated"; }

# ---- installing ----------------------------------------------------------

# libdir may be set for multiarch layouts, e.g. libdir=/usr/lib/x86_64-linux-gnu.
libdir ?= $(PREFIX)/lib

install: build
	@PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" libdir="$(libdir)" VERSION=$(VERSION) SONAME=$(SONAME) \
	    RELEASE_DIR="$(RELEASE_DIR)" INSTALL="$(INSTALL)" RUSTC="$(RUSTC)" LDCONFIG="$(LDCONFIG)" \
	    scripts/install-fdctx

stage:
	@+$(MAKE) --no-print-directory install PREFIX=$(STAGE) DESTDIR= libdir=$(STAGE)/lib

# C programs depend on these files; make them if there is no stage yet.
$(STAGED_LIB) $(STAGED_HEADER):
	@+$(MAKE) --no-print-directory stage

# ---- checks --------------------------------------------------------------

# Every step, its output kept in build/check.log, then the closing summary:
# the fd accounting of the robustness tests and the total of all counts.
FD_SUMMARY := $(CURDIR)/build/fd-summary.txt
CHECK_LOG := $(CURDIR)/build/check.log
check:
	@mkdir -p build && rm -f $(FD_SUMMARY)
	@set -o pipefail; FDCTX_SUMMARY=$(FD_SUMMARY) $(MAKE) --no-print-directory check-steps 2>&1 | tee $(CHECK_LOG)
	@bash scripts/check-summary $(CHECK_LOG) $(FD_SUMMARY)

# Each step in order, each in its own make; a failing step stops the run.
CHECK_STEPS := check-style check-layout check-doc check-msrv check-rust check-header stage \
	check-soname check-symbols check-pkgconfig check-install check-cxx check-c check-c-valgrind \
	check-c-asan check-extra
check-steps:
	@+set -e; for step in $(CHECK_STEPS); do $(MAKE) --no-print-directory $$step; done
	@echo "== make check: all checks passed"

# Release profile: the library is built that way anyway, so dependencies are
# compiled once, and the property tests run faster.
CARGO_TEST_FLAGS ?=

# rustfmt (rustfmt.toml), clippy (clippy.toml) with warnings as errors, and the
# fuzz targets compiled (running them needs nightly: fuzz/README.md).
check-style:
	@echo "== style: cargo fmt --check, cargo clippy -D warnings, fuzz targets compile"
	$(CARGO) fmt --check
	cd fuzz && $(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --features testing -- -D warnings
	cd fuzz && $(CARGO) check --quiet --bins

# No file under src/ over 600 lines (functions: clippy.toml's threshold).
check-layout:
	@scripts/check-layout 600

# rustdoc's warnings as errors: the internals' docs (private items), then
# the public docs alone (which must not link to what they do not show).
check-doc:
	@echo "== docs: cargo doc -D warnings, with private items, then public ones only"
	RUSTDOCFLAGS="$(RUSTDOCFLAGS) -D warnings" $(CARGO) doc --release --no-deps --lib --document-private-items
	RUSTDOCFLAGS="$(RUSTDOCFLAGS) -D warnings" $(CARGO) doc --release --no-deps --lib
	@echo "doc: 2 passed, 0 failed"

# The library (not the tests) built by Cargo.toml's rust-version, in its own target dir.
check-msrv:
	@echo "== MSRV: the library built with Rust $(MSRV) (Cargo.toml's rust-version)"
	@rustup run $(MSRV) rustc --version >/dev/null 2>&1 || { \
	    echo "SKIP check-msrv: Rust $(MSRV) is not installed ('make deps': rustup toolchain install $(MSRV))"; \
	    echo "msrv: 0 passed, 0 failed, 1 skipped"; exit 0; } && \
	$(CARGO) +$(MSRV) build --lib --locked --target-dir $(TARGET_DIR)/msrv && echo "msrv: 1 passed, 0 failed"

check-rust:
	@echo "== cargo test"
	timeout 1200 $(CARGO) test --release --features testing $(CARGO_TEST_FLAGS)

# The header, SONAME, symbols, pkg-config, C++ use and install comparison
# (scripts/check-abi says what each proves), and what they read.
CHECK_ABI = VERSION=$(VERSION) SONAME=$(SONAME) STAGE="$(STAGE)" BUILD="$(BUILD)" CC="$(CC)" \
	CXX="$(CXX)" PKG_CONFIG="$(PKG_CONFIG)" CARGO="$(CARGO)" MAKE="$(MAKE)" \
	CHECK_CFLAGS="$(CHECK_CFLAGS)" scripts/check-abi

check-header: build
	@$(CHECK_ABI) header $(GENERATED_HEADER)

check-soname check-symbols check-pkgconfig check-cxx: check-%: $(STAGED_LIB) $(STAGED_HEADER)
	@$(CHECK_ABI) $*

check-install:
	@+$(CHECK_ABI) install

check-extra:
	@$(if $(strip $(EXTRA_CHECKS)),echo "== extra checks: $(strip $(EXTRA_CHECKS))",:)
	@+$(if $(strip $(EXTRA_CHECKS)),$(MAKE) --no-print-directory $(EXTRA_CHECKS),:)

# ---- housekeeping ----------------------------------------------------------

deps:
	scripts/install-deps

clean:
	rm -rf $(BUILD)
	$(CARGO) clean

include c-tests/c-tests.mk
include examples/examples.mk
-include bench/bench.mk
include integrations/qemu/qemu.mk
include integrations/qemu/confine.mk
