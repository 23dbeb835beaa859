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
build/asan/minivmm: SANITIZE = $(ASAN_FLAGS)
build/minivmm build/asan/minivmm: examples/minivmm.c stage
	@mkdir -p $(@D)
	$(CC) $(MINIVMM_CFLAGS) $(SANITIZE) $(CFLAGS) $(FDCTX_CFLAGS) -o $@ $< $(FDCTX_LIBS) $(LDFLAGS)

demo: build/minivmm stage
	MINIVMM=build/minivmm FDCTX_SEND=$(STAGE)/bin/fdctx-send bash examples/demo.sh

check-interop: build/minivmm
	$(INTEROP) --minivmm build/minivmm

# The same session against `minivmm --confine` (Landlock: no file opens by
# path); skipped, with a line saying so, where the kernel has no Landlock.
check-interop-confined: build/minivmm
	@echo "== interop session, monitor confined (minivmm --confine)"
	$(INTEROP) --minivmm build/minivmm --confine

# The scripted session (the whole interop test, ending with `quit`) with the
# monitor under valgrind: its exit status must be 0 and its FILE DESCRIPTORS
# report must list fds 0, 1 and 2 only. The report is printed; the monitor's
# whole stderr, valgrind's output included, is kept in build/interop/.
check-minivmm-valgrind: build/minivmm
	@echo "== minivmm session under valgrind --track-fds=yes --error-exitcode=1"
	@command -v $(VALGRIND) >/dev/null 2>&1 || { \
	    echo "$(VALGRIND) not found: 'make deps' installs it" >&2; exit 1; }
	$(INTEROP) --minivmm build/minivmm --wrap "$(VALGRIND) $(VALGRIND_FLAGS)" \
	    --keep-log build/interop/minivmm.valgrind.log

# The scripted session against build/asan/minivmm: any sanitizer report, or a
# leak found by LeakSanitizer at exit, fails it.
check-minivmm-asan: build/asan/minivmm
	@echo "== minivmm session, monitor built with -fsanitize=address,undefined"
	$(SANITIZER_ENV) $(INTEROP) --minivmm build/asan/minivmm --keep-log build/interop/minivmm.asan.log

EXTRA_CHECKS += check-interop check-interop-confined check-minivmm-valgrind check-minivmm-asan
