# examples/examples.mk - the demo monitor, `make demo` and the interop test.
# Included by the top-level Makefile, which provides the `stage` target
# (the library, header, fdctx.pc and fdctx-send installed under $(STAGE)).

STAGE ?= $(CURDIR)/build/stage
PYTHON ?= python3
MINIVMM_CFLAGS ?= -std=gnu11 -O2 -g -Wall -Wextra -Werror
EXAMPLES_PKG_CONFIG = PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig pkg-config

.PHONY: demo check-interop

# Built against the staged install exactly as a VMM would build against an
# installed libfdctx: flags from pkg-config, plus an rpath to the staged lib.
build/minivmm: examples/minivmm.c stage
	@mkdir -p $(@D)
	@flags="$$($(EXAMPLES_PKG_CONFIG) --cflags --libs fdctx)" || { \
	    echo "examples.mk: pkg-config finds no fdctx under $(STAGE)/lib/pkgconfig" >&2; exit 1; }; \
	echo "$(CC) $(MINIVMM_CFLAGS) $(CFLAGS) -o $@ examples/minivmm.c $$flags -Wl,-rpath,$(STAGE)/lib $(LDFLAGS)"; \
	$(CC) $(MINIVMM_CFLAGS) $(CFLAGS) -o $@ examples/minivmm.c $$flags -Wl,-rpath,$(STAGE)/lib $(LDFLAGS)

demo: build/minivmm stage
	MINIVMM=build/minivmm FDCTX_SEND=$(STAGE)/bin/fdctx-send bash examples/demo.sh

check-interop: build/minivmm
	$(PYTHON) tests/interop/test_interop.py --minivmm build/minivmm --fdctx-send $(STAGE)/bin/fdctx-send

EXTRA_CHECKS += check-interop
