# examples/examples.mk - the demo monitor, `make demo` and the interop test,
# also with the monitor under valgrind and built with AddressSanitizer/UBSan.
# Included by the top-level Makefile, which provides the `stage` target
# (the library, header, fdctx.pc and fdctx-send installed under $(STAGE)).

STAGE ?= $(CURDIR)/build/stage
PYTHON ?= python3
MINIVMM_CFLAGS ?= -std=gnu11 -O2 -g -Wall -Wextra -Werror
MINIVMM_ASAN_FLAGS ?= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
VALGRIND ?= valgrind
# How the scripted session runs the monitor under valgrind: the same checks
# as the C tests (definite leaks are errors, fds open at exit are reported).
MINIVMM_VALGRIND = $(VALGRIND) --track-fds=yes --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 --vgdb=no
MINIVMM_ASAN_OPTIONS ?= detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
MINIVMM_UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
INTEROP = $(PYTHON) tests/interop/test_interop.py --fdctx-send $(STAGE)/bin/fdctx-send
EXAMPLES_PKG_CONFIG = PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig pkg-config

.PHONY: demo check-interop check-minivmm-valgrind check-minivmm-asan

# Built against the staged install exactly as a VMM would build against an
# installed libfdctx: flags from pkg-config, plus an rpath to the staged lib.
build/minivmm: examples/minivmm.c stage
	@mkdir -p $(@D)
	@flags="$$($(EXAMPLES_PKG_CONFIG) --cflags --libs fdctx)" || { \
	    echo "examples.mk: pkg-config finds no fdctx under $(STAGE)/lib/pkgconfig" >&2; exit 1; }; \
	echo "$(CC) $(MINIVMM_CFLAGS) $(CFLAGS) -o $@ examples/minivmm.c $$flags -Wl,-rpath,$(STAGE)/lib $(LDFLAGS)"; \
	$(CC) $(MINIVMM_CFLAGS) $(CFLAGS) -o $@ examples/minivmm.c $$flags -Wl,-rpath,$(STAGE)/lib $(LDFLAGS)

# The same, built with AddressSanitizer and UBSan (any report is fatal).
build/asan/minivmm: examples/minivmm.c stage
	@mkdir -p $(@D)
	@flags="$$($(EXAMPLES_PKG_CONFIG) --cflags --libs fdctx)" || { \
	    echo "examples.mk: pkg-config finds no fdctx under $(STAGE)/lib/pkgconfig" >&2; exit 1; }; \
	echo "$(CC) $(MINIVMM_CFLAGS) $(MINIVMM_ASAN_FLAGS) $(CFLAGS) -o $@ examples/minivmm.c $$flags -Wl,-rpath,$(STAGE)/lib $(LDFLAGS)"; \
	$(CC) $(MINIVMM_CFLAGS) $(MINIVMM_ASAN_FLAGS) $(CFLAGS) -o $@ examples/minivmm.c $$flags -Wl,-rpath,$(STAGE)/lib $(LDFLAGS)

demo: build/minivmm stage
	MINIVMM=build/minivmm FDCTX_SEND=$(STAGE)/bin/fdctx-send bash examples/demo.sh

check-interop: build/minivmm
	$(INTEROP) --minivmm build/minivmm

# The scripted session (the whole interop test, ending with `quit`) with the
# monitor under valgrind: its exit status must be 0 and its FILE DESCRIPTORS
# report must list fds 0, 1 and 2 only. The report is printed; the monitor's
# whole stderr, valgrind's output included, is kept in build/interop/.
check-minivmm-valgrind: build/minivmm
	@echo "== minivmm session under valgrind --track-fds=yes --error-exitcode=1"
	@command -v $(VALGRIND) >/dev/null 2>&1 || { \
	    echo "$(VALGRIND) not found: 'make deps' installs it" >&2; exit 1; }
	$(INTEROP) --minivmm build/minivmm --wrap "$(MINIVMM_VALGRIND)" \
	    --keep-log build/interop/minivmm.valgrind.log

# The scripted session against build/asan/minivmm: any sanitizer report, or a
# leak found by LeakSanitizer at exit, fails it.
check-minivmm-asan: build/asan/minivmm
	@echo "== minivmm session, monitor built with -fsanitize=address,undefined"
	ASAN_OPTIONS=$(MINIVMM_ASAN_OPTIONS) UBSAN_OPTIONS=$(MINIVMM_UBSAN_OPTIONS) \
	    $(INTEROP) --minivmm build/asan/minivmm --keep-log build/interop/minivmm.asan.log

EXTRA_CHECKS += check-interop check-minivmm-valgrind check-minivmm-asan

# ---- the event-loop examples ------------------------------------------------
# epoll-monitor (fdctx reads each non-blocking socket) and glib-monitor (GLib
# reads, fdctx is fed), both running the commands of examples/qmp-common.c;
# built by `make`, driven by tests/interop/test_event_loops.py with several
# real clients at once, plainly and under valgrind --track-fds=yes.
EVENT_LOOP_MONITORS := build/epoll-monitor build/glib-monitor
EVENT_LOOP_COMMON := examples/qmp-common.c examples/qmp-common.h
EVENT_LOOPS = $(PYTHON) tests/interop/test_event_loops.py --fdctx-send $(STAGE)/bin/fdctx-send

# $(call build-example,EXTRA_PKG): the .c prerequisites, linked against the
# staged fdctx (and EXTRA_PKG, a system pkg-config module) as a VMM would.
define build-example
@mkdir -p $(@D)
@flags="$$($(EXAMPLES_PKG_CONFIG) --cflags --libs fdctx $(1))" || { \
    echo "examples.mk: pkg-config finds no fdctx under $(STAGE)/lib/pkgconfig$(if $(1), or no $(1) ('make deps' installs it))" >&2; exit 1; }; \
echo "$(CC) $(MINIVMM_CFLAGS) $(CFLAGS) -o $@ $(filter %.c,$^) $$flags -Wl,-rpath,$(STAGE)/lib $(LDFLAGS)"; \
$(CC) $(MINIVMM_CFLAGS) $(CFLAGS) -o $@ $(filter %.c,$^) $$flags -Wl,-rpath,$(STAGE)/lib $(LDFLAGS)
endef

build/epoll-monitor: examples/epoll-monitor.c $(EVENT_LOOP_COMMON) stage
	$(call build-example,)

build/glib-monitor: examples/glib-monitor.c $(EVENT_LOOP_COMMON) stage
	$(call build-example,gio-unix-2.0)

all: $(EVENT_LOOP_MONITORS)

.PHONY: check-event-loops check-event-loops-valgrind

check-event-loops: $(EVENT_LOOP_MONITORS)
	@echo "== event-loop monitors with several clients at once"
	$(EVENT_LOOPS) --monitor build/epoll-monitor
	$(EVENT_LOOPS) --monitor build/glib-monitor

check-event-loops-valgrind: $(EVENT_LOOP_MONITORS)
	@echo "== event-loop monitors under valgrind --track-fds=yes --error-exitcode=1"
	@command -v $(VALGRIND) >/dev/null 2>&1 || { \
	    echo "$(VALGRIND) not found: 'make deps' installs it" >&2; exit 1; }
	$(EVENT_LOOPS) --monitor build/epoll-monitor --wrap "$(MINIVMM_VALGRIND)" \
	    --keep-log build/interop/epoll-monitor.valgrind.log
	$(EVENT_LOOPS) --monitor build/glib-monitor --wrap "$(MINIVMM_VALGRIND)" \
	    --keep-log build/interop/glib-monitor.valgrind.log

EXTRA_CHECKS += check-event-loops check-event-loops-valgrind
