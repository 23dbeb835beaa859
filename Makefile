# fdctx - top-level build.
#
#   make / make all   build the library (cargo build --release), say whether
#                     include/fdctx.h is current, stage-install into build/stage
#   make stage        install into build/stage (what C programs here link to)
#   make install      PREFIX=/usr/local [DESTDIR=] [libdir=]: lib/libfdctx.so.X.Y.Z with
#                     its .so.X and .so links, lib/libfdctx.a, include/fdctx.h (the
#                     checked-in one), lib/pkgconfig/fdctx.pc, bin/fdctx-send,
#                     bin/fdctx-confine; needs no cargo-c (`cargo cinstall`
#                     installs the same library files)
#   make header       copy the freshly generated header to include/fdctx.h
#   make check        every test: style (rustfmt, clippy), Rust tests, header freshness, SONAME, exported
#                     symbols, pkg-config (dynamic and static), make install against
#                     cargo cinstall (check-install), the C tests under
#                     plain, valgrind and AddressSanitizer runs, then $(EXTRA_CHECKS)
#   make deps         install the system tools the checks need (Debian, as root)
#   make demo         the demo monitor driven by real clients (examples/demo.sh)
#   make qemu         QEMU 10.0.2 built twice: with integrations/qemu/patches
#                     against the staged fdctx (build/qemu/bin) and without
#                     (build/qemu/upstream/bin)
#   make qemu-check   QEMU's own fd-passing tests on both builds, then
#                     integrations/qemu/test_qemu.py side by side, then QEMU
#                     under libvirt, unconfined and confined
#   make demo-qemu    a confined QEMU takes an image as an fd, refuses it by path
#   make clean        remove build/ and cargo's target/
#
# Fragments (examples/examples.mk, bench/bench.mk, integrations/qemu/qemu.mk) may use STAGE,
# PKG_CONFIG_PATH (the staged fdctx.pc first), FDCTX_CFLAGS and FDCTX_LIBS
# (pkg-config's flags for the staged library, plus an rpath to it), and add
# their checks with `EXTRA_CHECKS += target`.

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
ABI_MAJOR := $(firstword $(subst ., ,$(VERSION)))
SONAME := libfdctx.so.$(ABI_MAJOR)

TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
RELEASE_DIR := $(TARGET_DIR)/release

BUILD := $(CURDIR)/build
# build.rs writes the header into its own OUT_DIR; `make build` records
# which one (cargo's build-script-executed message names it), and every rule
# reads the generated header through this shell expression.
GENERATED_HEADER_AT := $(BUILD)/generated-header
GENERATED_HEADER = "$$(cat $(GENERATED_HEADER_AT))"
STAGE := $(BUILD)/stage
STAGED_LIB := $(STAGE)/lib/libfdctx.so.$(VERSION)
STAGED_HEADER := $(STAGE)/include/fdctx.h

PKG_CONFIG_PATH := $(STAGE)/lib/pkgconfig
export PKG_CONFIG_PATH
FDCTX_CFLAGS = $(shell PKG_CONFIG_PATH=$(PKG_CONFIG_PATH) $(PKG_CONFIG) --cflags fdctx)
FDCTX_LIBS = $(shell PKG_CONFIG_PATH=$(PKG_CONFIG_PATH) $(PKG_CONFIG) --libs fdctx) -Wl,-rpath,$(STAGE)/lib

# The checks added by the included fragments.
EXTRA_CHECKS :=

.PHONY: all build stage install header header-status check check-style check-rust \
	check-header check-soname check-symbols check-pkgconfig check-install check-cxx \
	c-tests check-c check-c-valgrind check-c-asan check-extra check-steps deps clean

all: build header-status stage

# ---- missing system dependencies -------------------------------------------

# Each says in one line what is missing and what installs it, instead of
# letting a compiler or the shell fail on it; `make deps` installs them all.
# $(call need_tool,TARGET,COMMAND,DEBIAN-PACKAGE)
need_tool = command -v $(firstword $(2)) >/dev/null 2>&1 || { \
	echo "$(1): '$(firstword $(2))' is not installed: run 'make deps' (Debian package $(3))" >&2; exit 1; }
# $(call need_c_toolchain,TARGET): a C compiler and pkg-config.
need_c_toolchain = $(call need_tool,$(1),$(CC),gcc) && $(call need_tool,$(1),$(PKG_CONFIG),pkg-config)
# $(call need_pkg,TARGET,PKG-CONFIG-MODULE): a library's development files.
PKG_DEBIAN.gio-unix-2.0 := libglib2.0-dev
need_pkg = $(call need_tool,$(1),$(PKG_CONFIG),pkg-config) && $(PKG_CONFIG) --exists $(2) || { \
	echo "$(1): $(2) (development files) not found by pkg-config: run 'make deps' (Debian package $(or $(PKG_DEBIAN.$(2)),providing $(2).pc))" >&2; exit 1; }
# $(call need_sanitizers,TARGET): the AddressSanitizer and UBSan runtimes.
need_sanitizers = echo 'int main(void){return 0;}' | $(CC) -x c $(ASAN_FLAGS) -o /dev/null - >/dev/null 2>&1 || { \
	echo "$(1): $(CC) cannot link -fsanitize=address,undefined: run 'make deps' (Debian packages libasan8 libubsan1)" >&2; exit 1; }

# ---- building ------------------------------------------------------------

# cargo decides what is stale; the build script regenerates the header.
build:
	@mkdir -p $(BUILD)
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	    echo "build: '$(CARGO)' is not installed: install a Rust toolchain (rustup), then run 'make deps'" >&2; exit 1; }
	set -o pipefail; $(CARGO) build --release --message-format=json-render-diagnostics \
	    | sed -n 's|.*"out_dir":"\([^"]*/build/fdctx-[0-9a-f]*/out\)".*|\1/fdctx.h|p' > $(GENERATED_HEADER_AT).new
	@test -s $(GENERATED_HEADER_AT).new \
	    || { echo "build: cargo named no OUT_DIR for fdctx's build script" >&2; exit 1; }
	@mv $(GENERATED_HEADER_AT).new $(GENERATED_HEADER_AT)

# The one comparison of the generated header with include/fdctx.h; what a
# stale copy means depends on the target (HEADER_STALE.<target>).
compare_header = gen=$(GENERATED_HEADER); \
	if cmp -s "$$gen" include/fdctx.h; then echo "include/fdctx.h is current"; else $(HEADER_STALE.$@); fi
HEADER_STALE.header-status = echo "note: include/fdctx.h differs from the header generated from the C layer (src/ffi.rs, src/ffi/assoc.rs);"; \
	echo "      run 'make header' and commit it (make check fails until then)"
HEADER_STALE.header = mkdir -p include && cp "$$gen" include/fdctx.h && echo "include/fdctx.h updated"
HEADER_STALE.check-header = diff -u include/fdctx.h "$$gen" || true; \
	echo "FAIL: include/fdctx.h is stale: run 'make header' and commit it" >&2; exit 1

header-status header: build
	@$(compare_header)

# ---- installing ----------------------------------------------------------

# The native libraries a static link of libfdctx.a needs, as rustc reports
# them for a static library built by this toolchain (the crate's own
# dependencies, libc and nix, link nothing beyond the standard library's).
native_static_libs = $$(echo | $(RUSTC) --crate-type=staticlib --crate-name=fdctx_probe \
	--print=native-static-libs -o "$$probe_dir/probe.a" - 2>&1 \
	| sed -n 's/^note: native-static-libs: //p')

# libdir may be set for multiarch layouts, e.g. libdir=/usr/lib/x86_64-linux-gnu.
libdir ?= $(PREFIX)/lib
LIBDIR = $(DESTDIR)$(libdir)

# The header installed is the checked-in include/fdctx.h (what `make check`
# proves current), as `cargo cinstall` installs it. `install -C` and the
# compare-then-move of fdctx.pc leave unchanged files untouched, so a program
# linked against the stage is not relinked when nothing changed.
install: build
	@test -n "$(PREFIX)" || { echo "install: PREFIX is empty" >&2; exit 1; }
	$(INSTALL) -d $(LIBDIR)/pkgconfig $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/bin
	$(INSTALL) -C -m 0755 $(RELEASE_DIR)/libfdctx.so $(LIBDIR)/libfdctx.so.$(VERSION)
	ln -sfn libfdctx.so.$(VERSION) $(LIBDIR)/$(SONAME)
	ln -sfn libfdctx.so.$(VERSION) $(LIBDIR)/libfdctx.so
	$(INSTALL) -C -m 0644 $(RELEASE_DIR)/libfdctx.a $(LIBDIR)/libfdctx.a
	$(INSTALL) -C -m 0644 include/fdctx.h $(DESTDIR)$(PREFIX)/include/fdctx.h
	$(INSTALL) -C -m 0755 $(RELEASE_DIR)/fdctx-send $(DESTDIR)$(PREFIX)/bin/fdctx-send
	$(INSTALL) -C -m 0755 $(RELEASE_DIR)/fdctx-confine $(DESTDIR)$(PREFIX)/bin/fdctx-confine
	@probe_dir=$$(mktemp -d) && trap 'rm -rf "$$probe_dir"' EXIT && \
	libs="$(native_static_libs)" && test -n "$$libs" && \
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(libdir)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e "s|@LIBS_PRIVATE@|$$libs|g" fdctx.pc.in > "$$probe_dir/fdctx.pc" && \
	{ cmp -s "$$probe_dir/fdctx.pc" $(LIBDIR)/pkgconfig/fdctx.pc \
	    || $(INSTALL) -m 0644 "$$probe_dir/fdctx.pc" $(LIBDIR)/pkgconfig/fdctx.pc; } && \
	echo "wrote $(LIBDIR)/pkgconfig/fdctx.pc (Libs.private: $$libs)"
	@# Only a real install as root into a system prefix (/usr or /usr/local,
	@# no DESTDIR) refreshes the loader cache: a private prefix or a DESTDIR
	@# tree is not in the cache's search path, and a package build must not
	@# touch the host's cache. LDCONFIG=true skips it in every case.
	@if [ -z "$(DESTDIR)" ] && { [ "$(PREFIX)" = /usr ] || [ "$(PREFIX)" = /usr/local ]; } \
	    && [ "$$(id -u)" = 0 ] && command -v $(LDCONFIG) >/dev/null 2>&1; then $(LDCONFIG) || true; fi

stage:
	@+$(MAKE) --no-print-directory install PREFIX=$(STAGE) DESTDIR= libdir=$(STAGE)/lib

# C programs depend on these files; make them if there is no stage yet.
$(STAGED_LIB) $(STAGED_HEADER):
	@+$(MAKE) --no-print-directory stage

# ---- checks --------------------------------------------------------------

# Every step, its output kept in build/check.log, then the closing summary:
# the fd accounting of the robustness tests and the total of all test counts.
FD_SUMMARY := $(CURDIR)/build/fd-summary.txt
CHECK_LOG := $(CURDIR)/build/check.log
check:
	@mkdir -p build && rm -f $(FD_SUMMARY)
	@set -o pipefail; FDCTX_SUMMARY=$(FD_SUMMARY) $(MAKE) --no-print-directory check-steps 2>&1 | tee $(CHECK_LOG)
	@bash scripts/check-summary $(CHECK_LOG) $(FD_SUMMARY)

# Each step in order, each in its own make; a failing step stops the run.
CHECK_STEPS := check-style check-rust check-header stage check-soname check-symbols check-pkgconfig \
	check-install check-cxx check-c check-c-valgrind check-c-asan check-extra
check-steps:
	@+set -e; for step in $(CHECK_STEPS); do $(MAKE) --no-print-directory $$step; done
	@echo "== make check: all checks passed"

# Release profile: the library is built that way anyway, so dependencies are
# compiled once, and the property tests run faster.
CARGO_TEST_FLAGS ?=

# rustfmt (rustfmt.toml) over the crate and the fuzz targets, clippy over
# every target with its warnings as errors, and the fuzz targets compiled
# (running them needs a nightly toolchain, see fuzz/README.md; compiling
# them keeps them in step with the library's API).
check-style:
	@echo "== style: cargo fmt --check, cargo clippy -D warnings, fuzz targets compile"
	$(CARGO) fmt --check
	cd fuzz && $(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --features testing -- -D warnings
	cd fuzz && $(CARGO) check --quiet --bins

check-rust:
	@echo "== cargo test"
	timeout 1200 $(CARGO) test --release --features testing $(CARGO_TEST_FLAGS)

check-header: build
	@echo "== header: include/fdctx.h against the one generated from the C layer"
	@$(compare_header)
	@if grep -E '^#define ' include/fdctx.h | grep -vE '^#define FDCTX_'; then \
	    echo "FAIL: include/fdctx.h defines macros outside the FDCTX_ namespace (above)" >&2; exit 1; \
	fi
	@echo "every macro in include/fdctx.h is FDCTX_*"

check-soname: $(STAGED_LIB)
	@$(call need_tool,$@,readelf,binutils)
	@echo "== SONAME and library links"
	@so=$$(readelf -d $(STAGED_LIB) | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'); \
	echo "SONAME: $$so"; \
	test "$$so" = "$(SONAME)" || { echo "FAIL: SONAME is '$$so', want $(SONAME)" >&2; exit 1; }
	@test "$$(readlink $(STAGE)/lib/$(SONAME))" = libfdctx.so.$(VERSION) \
	    || { echo "FAIL: $(SONAME) does not point at libfdctx.so.$(VERSION)" >&2; exit 1; }
	@test "$$(readlink $(STAGE)/lib/libfdctx.so)" = libfdctx.so.$(VERSION) \
	    || { echo "FAIL: libfdctx.so does not point at libfdctx.so.$(VERSION)" >&2; exit 1; }
	@echo "lib/libfdctx.so and lib/$(SONAME) -> libfdctx.so.$(VERSION)"

# Only fdctx_* is exported, and exactly the functions the header declares.
check-symbols: $(STAGED_LIB) $(STAGED_HEADER)
	@$(call need_tool,$@,nm,binutils)
	@echo "== exported symbols (nm -D --defined-only)"
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	nm -D --defined-only $(STAGED_LIB) | awk '{print $$NF}' | sed 's/@.*//' | sort -u > $$tmp/exported; \
	grep -oE '\bfdctx_[a-z0-9_]+\(' $(STAGED_HEADER) | tr -d '(' | sort -u > $$tmp/declared; \
	echo "$$(wc -l < $$tmp/exported) symbols exported, $$(wc -l < $$tmp/declared) functions declared"; \
	if grep -v '^fdctx_' $$tmp/exported > $$tmp/foreign; then \
	    echo "FAIL: exported outside the fdctx_ namespace:" >&2; cat $$tmp/foreign >&2; exit 1; fi; \
	if ! diff $$tmp/declared $$tmp/exported > $$tmp/diff; then \
	    echo "FAIL: header and library disagree (< only declared, > only exported):" >&2; \
	    cat $$tmp/diff >&2; exit 1; fi; \
	echo "only fdctx_* exported, all declared functions present"

# `make install` and cargo-c's `cargo cinstall` (Cargo.toml's
# [package.metadata.capi]) into two temporary trees, compared: the files with
# their modes and link targets, the SONAME, the exported symbols, the header
# (the checked-in one in both) and what pkg-config reads from each fdctx.pc.
# The programs (bin/) are left out: cargo cinstall installs libraries only (they
# are target/release/fdctx-send and fdctx-confine of `cargo build`). Skipped, with a line saying so,
# only where cargo-c is not installed (`make deps` installs it).
CHECK_INSTALL := $(BUILD)/check-install
check-install:
	@echo "== install: make install and cargo cinstall, compared"
	@set -e; v=$$($(CARGO) cinstall --version 2>/dev/null | sed -n 's/^cargo-c \([0-9][0-9.]*\).*/\1/p'); \
	if [ -z "$$v" ] || [ "$$(printf '%s\n' 0.10.0 "$$v" | sort -V | head -n 1)" != 0.10.0 ]; then \
	    echo "SKIP check-install: cargo-c 0.10 or later is not installed ('make deps' installs it)"; \
	    echo "install: 0 passed, 0 failed, 1 skipped"; exit 0; fi; \
	rm -rf $(CHECK_INSTALL) && mkdir -p $(CHECK_INSTALL); \
	$(MAKE) --no-print-directory install PREFIX=/usr/local libdir=/usr/local/lib \
	    DESTDIR=$(CHECK_INSTALL)/make > $(CHECK_INSTALL)/make.log 2>&1 \
	    || { cat $(CHECK_INSTALL)/make.log >&2; echo "FAIL: make install" >&2; exit 1; }; \
	rm -rf $(CHECK_INSTALL)/make/usr/local/bin; \
	echo "cargo-c $$v: $(CARGO) cinstall --release --prefix=/usr/local --libdir=/usr/local/lib --destdir=..."; \
	$(CARGO) cinstall --release --prefix=/usr/local --libdir=/usr/local/lib \
	    --destdir=$(CHECK_INSTALL)/cargo-c > $(CHECK_INSTALL)/cargo-c.log 2>&1 \
	    || { cat $(CHECK_INSTALL)/cargo-c.log >&2; echo "FAIL: cargo cinstall" >&2; exit 1; }; \
	bash scripts/compare-installs $(CHECK_INSTALL)/make $(CHECK_INSTALL)/cargo-c /usr/local \
	    $(SONAME) libfdctx.so.$(VERSION)

SMOKE := c-tests/smoke.c
CHECK_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1

# A C program built with pkg-config's flags alone, linked dynamically and,
# through `pkg-config --static`, statically against libfdctx.a.
check-pkgconfig: $(STAGED_LIB) $(STAGED_HEADER)
	@$(call need_c_toolchain,$@)
	@echo "== pkg-config"
	@set -e; out=$(BUILD)/pkgconfig; mkdir -p $$out; \
	v=$$($(PKG_CONFIG) --modversion fdctx); echo "fdctx.pc version $$v"; \
	test "$$v" = "$(VERSION)" || { echo "FAIL: version $$v, want $(VERSION)" >&2; exit 1; }; \
	p=$$($(PKG_CONFIG) --variable=prefix fdctx); echo "prefix $$p"; \
	test "$$p" = "$(STAGE)" || { echo "FAIL: prefix $$p, want $(STAGE)" >&2; exit 1; }; \
	echo "dynamic: $(CC) smoke.c $$($(PKG_CONFIG) --cflags --libs fdctx)"; \
	$(CC) $(CHECK_CFLAGS) -o $$out/smoke-dynamic $(SMOKE) \
	    $$($(PKG_CONFIG) --cflags --libs fdctx) -Wl,-rpath,$(STAGE)/lib; \
	readelf -d $$out/smoke-dynamic | grep -q 'NEEDED.*\[$(SONAME)\]' \
	    || { echo "FAIL: smoke-dynamic does not need $(SONAME)" >&2; exit 1; }; \
	$$out/smoke-dynamic; \
	static_libs=$$($(PKG_CONFIG) --static --libs fdctx); \
	echo "static: $(CC) smoke.c $$($(PKG_CONFIG) --cflags fdctx) $$static_libs (-lfdctx as -l:libfdctx.a)"; \
	$(CC) $(CHECK_CFLAGS) -o $$out/smoke-static $(SMOKE) \
	    $$($(PKG_CONFIG) --cflags fdctx) $${static_libs/-lfdctx/-l:libfdctx.a}; \
	if readelf -d $$out/smoke-static | grep -q 'NEEDED.*libfdctx'; then \
	    echo "FAIL: smoke-static still needs libfdctx.so" >&2; exit 1; fi; \
	nm $$out/smoke-static | grep -q ' T fdctx_conn_recv$$' \
	    || { echo "FAIL: smoke-static does not contain the library" >&2; exit 1; }; \
	$$out/smoke-static

# The header compiles as C++ and links without name mangling.
check-cxx: $(STAGED_LIB) $(STAGED_HEADER)
	@$(call need_tool,$@,$(CXX),g++)
	@echo "== C++ use of the header"
	@set -e; out=$(BUILD)/pkgconfig; mkdir -p $$out; \
	$(CXX) -std=c++11 -Wall -Wextra -Werror -pedantic -o $$out/cxx-header c-tests/cxx_header.cc \
	    $(FDCTX_CFLAGS) $(FDCTX_LIBS); \
	$$out/cxx-header; \
	echo '#include <fdctx.h>' | $(CC) -std=c99 -pedantic -Wall -Wextra -Werror \
	    $(FDCTX_CFLAGS) -x c -fsyntax-only - && echo "header is clean C99"

# ---- C tests ---------------------------------------------------------------

C_TESTS := $(sort $(basename $(notdir $(wildcard c-tests/test_*.c))))
C_TEST_DIR := $(BUILD)/c-tests
C_TEST_BINS := $(addprefix $(C_TEST_DIR)/,$(C_TESTS))
C_TEST_ASAN_BINS := $(addprefix $(C_TEST_DIR)/asan/,$(C_TESTS))
C_TEST_CFLAGS := $(CHECK_CFLAGS) -pthread
# The sanitizer and valgrind settings of every C program checked here (the
# C tests, and the demo monitor in examples/examples.mk).
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# LeakSanitizer also sees the library's allocations (the Rust library
# allocates through malloc); nothing needs to be suppressed.
ASAN_OPTIONS ?= detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
SANITIZER_ENV = ASAN_OPTIONS=$(ASAN_OPTIONS) UBSAN_OPTIONS=$(UBSAN_OPTIONS)
# Definite leaks are errors; fds open at exit are reported (--track-fds).
VALGRIND_FLAGS := --track-fds=yes --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 --vgdb=no

# Compiled against the staged install, through pkg-config, never the source
# tree; the asan copies with the sanitizers.
$(C_TEST_ASAN_BINS): SANITIZE = $(ASAN_FLAGS)
.SECONDEXPANSION:
$(C_TEST_BINS) $(C_TEST_ASAN_BINS): c-tests/$$(notdir $$@).c c-tests/harness.h $(STAGED_LIB) $(STAGED_HEADER)
	@mkdir -p $(@D)
	@$(call need_c_toolchain,$@)
	@$(if $(SANITIZE),$(call need_sanitizers,$@))
	$(CC) $(C_TEST_CFLAGS) $(SANITIZE) $(CFLAGS) $(FDCTX_CFLAGS) -o $@ $< $(FDCTX_LIBS) $(LDFLAGS)

c-tests: $(C_TEST_BINS) $(C_TEST_ASAN_BINS)

check-c: $(C_TEST_BINS)
	@echo "== C tests"
	@scripts/run-c-tests plain $(C_TEST_BINS)

# The FILE DESCRIPTORS report must list no fd beyond 0, 1 and 2.
check-c-valgrind: $(C_TEST_BINS)
	@echo "== C tests under valgrind --track-fds=yes --error-exitcode=1"
	@VALGRIND="$(VALGRIND)" VALGRIND_FLAGS="$(VALGRIND_FLAGS)" scripts/run-c-tests valgrind $(C_TEST_BINS)

check-c-asan: $(C_TEST_ASAN_BINS)
	@echo "== C tests built with -fsanitize=address,undefined"
	@$(SANITIZER_ENV) scripts/run-c-tests asan $(C_TEST_ASAN_BINS)

check-extra:
	@$(if $(strip $(EXTRA_CHECKS)),echo "== extra checks: $(strip $(EXTRA_CHECKS))",:)
	@+$(if $(strip $(EXTRA_CHECKS)),$(MAKE) --no-print-directory $(EXTRA_CHECKS),:)

# ---- housekeeping ----------------------------------------------------------

deps:
	scripts/install-deps

clean:
	rm -rf $(BUILD)
	$(CARGO) clean

include examples/examples.mk
-include bench/bench.mk
include integrations/qemu/qemu.mk
include integrations/qemu/confine.mk
