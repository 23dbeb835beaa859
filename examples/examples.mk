# examples/examples.mk - the demo monitor, `make demo` and the interop test,
# also with the monitor under valgrind and built with AddressSanitizer/UBSan.
# Included by the top-level Makefile, which provides the `stage` target
# (the library, header, fdctx.pc and fdctx-send installed under $(STAGE)),
# FDCTX_CFLAGS/FDCTX_LIBS, and the sanitizer and valgrind settings.

PYTHON ?= python3
MINIVMM_CFLAGS ?= -std=gnu11 -O2 -g -Wall -Wextra -Werror
INTEROP = $(PYTHON) tests/interop/test_interop.py --fdctx-send $(STAGE)/bin/fdctx-send

.PHONY: demo check-interop check-interop-confined check-minivmm-valgrind check-minivmm-asan

# Built against the staged install exactly as a VMM would build against an
# installed libfdctx: flags from pkg-config (FDCTX_CFLAGS, FDCTX_LIBS), and
# a second time with AddressSanitizer and UBSan (any report is fatal).
# They depend on the staged files, not on the phony `stage`: whoever needs a
# current stage runs `stage` first (make all, make check and make demo do),
# and `make install` leaves unchanged files untouched, so nothing is relinked
# when the library did not change.
build/asan/minivmm: SANITIZE = $(ASAN_FLAGS)
build/minivmm build/asan/minivmm: examples/minivmm.c $(STAGED_LIB) $(STAGED_HEADER)
	@mkdir -p $(@D)
	@$(call need_c_toolchain,$@)
	@$(if $(SANITIZE),$(call need_sanitizers,$@))
	$(CC) $(MINIVMM_CFLAGS) $(SANITIZE) $(CFLAGS) $(FDCTX_CFLAGS) -o $@ $< $(FDCTX_LIBS) $(LDFLAGS)

# The build's output goes to build/demo-build.log (shown only when it
# fails), so the demo's transcript starts at once.
DEMO_BUILD_LOG := $(BUILD)/demo-build.log
demo:
	@mkdir -p $(BUILD)
	@echo "demo: building the library and build/minivmm, about a minute the first time (log: build/demo-build.log)"
	@$(MAKE) --no-print-directory stage build/minivmm > $(DEMO_BUILD_LOG) 2>&1 || { \
	    tail -n 30 $(DEMO_BUILD_LOG) >&2; echo "demo: the build failed (above; whole log: build/demo-build.log)" >&2; exit 1; }
	@MINIVMM=build/minivmm FDCTX_SEND=$(STAGE)/bin/fdctx-send bash examples/demo.sh

check-interop: build/minivmm
	@$(call need_tool,$@,$(PYTHON),python3)
	$(INTEROP) --minivmm build/minivmm

# The same session against `minivmm --confine` (Landlock: no file opens by
# path); skipped, with a line saying so, where the kernel has no Landlock.
check-interop-confined: build/minivmm
	@$(call need_tool,$@,$(PYTHON),python3)
	@echo "== interop session, monitor confined (minivmm --confine)"
	$(INTEROP) --minivmm build/minivmm --confine

# The scripted session (the whole interop test, ending with `quit`) with the
# monitor under valgrind: its exit status must be 0 and its FILE DESCRIPTORS
# report must list fds 0, 1 and 2 only. The report is printed; the monitor's
# whole stderr, valgrind's output included, is kept in build/interop/.
check-minivmm-valgrind: build/minivmm
	@$(call need_tool,$@,$(PYTHON),python3)
	@echo "== minivmm session under valgrind --track-fds=yes --error-exitcode=1"
	@$(call need_tool,$@,$(VALGRIND),valgrind)
	$(INTEROP) --minivmm build/minivmm --wrap "$(VALGRIND) $(VALGRIND_FLAGS)" \
	    --keep-log build/interop/minivmm.valgrind.log

# The scripted session against build/asan/minivmm: any sanitizer report, or a
# leak found by LeakSanitizer at exit, fails it.
check-minivmm-asan: build/asan/minivmm
	@$(call need_tool,$@,$(PYTHON),python3)
	@echo "== minivmm session, monitor built with -fsanitize=address,undefined"
	$(SANITIZER_ENV) $(INTEROP) --minivmm build/asan/minivmm --keep-log build/interop/minivmm.asan.log

EXTRA_CHECKS += check-interop check-interop-confined check-minivmm-valgrind check-minivmm-asan

# ---- the event-loop examples ------------------------------------------------
# epoll-monitor (fdctx reads each non-blocking socket) and glib-monitor (GLib
# reads, fdctx is fed), both running the commands of examples/qmp-common.c;
# built by `make`, driven by tests/interop/test_event_loops.py with several
# real clients at once, plainly and under valgrind --track-fds=yes.
EVENT_LOOP_MONITORS := build/epoll-monitor build/glib-monitor
EVENT_LOOPS = $(PYTHON) tests/interop/test_event_loops.py --fdctx-send $(STAGE)/bin/fdctx-send

build/glib-monitor: EXAMPLE_CFLAGS = $(shell $(PKG_CONFIG) --cflags gio-unix-2.0 2>/dev/null)
build/glib-monitor: EXAMPLE_LIBS = $(shell $(PKG_CONFIG) --libs gio-unix-2.0 2>/dev/null)
build/glib-monitor: NEED_PKG = gio-unix-2.0
$(EVENT_LOOP_MONITORS): build/%: examples/%.c examples/qmp-common.c examples/qmp-common.h $(STAGED_LIB) $(STAGED_HEADER)
	@mkdir -p $(@D)
	@$(call need_c_toolchain,$@)
	@$(if $(NEED_PKG),$(call need_pkg,$@,$(NEED_PKG)))
	$(CC) $(MINIVMM_CFLAGS) $(CFLAGS) $(FDCTX_CFLAGS) $(EXAMPLE_CFLAGS) -o $@ $(filter %.c,$^) \
	    $(FDCTX_LIBS) $(EXAMPLE_LIBS) $(LDFLAGS)

all: $(EVENT_LOOP_MONITORS)

.PHONY: check-event-loops check-event-loops-valgrind

check-event-loops: $(EVENT_LOOP_MONITORS)
	@$(call need_tool,$@,$(PYTHON),python3)
	@echo "== event-loop monitors with several clients at once"
	$(EVENT_LOOPS) --monitor build/epoll-monitor
	$(EVENT_LOOPS) --monitor build/glib-monitor

check-event-loops-valgrind: $(EVENT_LOOP_MONITORS)
	@$(call need_tool,$@,$(PYTHON),python3)
	@echo "== event-loop monitors under valgrind --track-fds=yes --error-exitcode=1"
	@$(call need_tool,$@,$(VALGRIND),valgrind)
	$(EVENT_LOOPS) --monitor build/epoll-monitor --wrap "$(VALGRIND) $(VALGRIND_FLAGS)" \
	    --keep-log build/interop/epoll-monitor.valgrind.log
	$(EVENT_LOOPS) --monitor build/glib-monitor --wrap "$(VALGRIND) $(VALGRIND_FLAGS)" \
	    --keep-log build/interop/glib-monitor.valgrind.log

EXTRA_CHECKS += check-event-loops check-event-loops-valgrind
