# bench/bench.mk - the fdctx benchmark, included by the top-level Makefile.
#
#   make bench        install the baselines' libraries if missing, build the
#                     receivers against the staged install, run every workload,
#                     print the tables, write build/bench/summary.txt
#   make bench-smoke  the same programs with small counts, one run each: checks
#                     that every receiver gets every command and fd, leaks none
#                     (part of `make check`)
#
# B2 needs jansson (Debian: libjansson-dev), B3 GLib/GIO (libglib2.0-dev).
# `make bench` installs them when they are missing (scripts/install-deps
# --bench, as CI does); where it cannot, it says in one line what to run,
# and a baseline whose library is missing is skipped with a line saying so.
# `make bench-smoke` installs nothing.

BENCH_OUT := build/bench
BENCH_CFLAGS ?= -O2 -g -Wall -Wextra -std=gnu11
BENCH_HDRS := bench/bench.h bench/rx_main.h
BENCH_HAVE_JANSSON := $(shell pkg-config --exists jansson 2>/dev/null && echo yes)
BENCH_HAVE_GLIB := $(shell pkg-config --exists gio-unix-2.0 2>/dev/null && echo yes)

BENCH_PROGS := $(BENCH_OUT)/fdbench $(BENCH_OUT)/fdbench-alloc.so \
	$(BENCH_OUT)/recv-b1 $(BENCH_OUT)/recv-b1s $(BENCH_OUT)/recv-fdctx \
	$(if $(BENCH_HAVE_JANSSON),$(BENCH_OUT)/recv-b2) \
	$(if $(BENCH_HAVE_GLIB),$(BENCH_OUT)/recv-b3)

.PHONY: bench bench-run bench-deps bench-build bench-smoke bench-skips bench-clean

# A sub-make, so that libraries installed by bench-deps are seen.
bench: bench-deps
	@+$(MAKE) --no-print-directory bench-run

bench-run: bench-build
	$(BENCH_OUT)/fdbench --summary $(BENCH_OUT)/summary.txt $(BENCH_OUT)

bench-deps:
	@if ! pkg-config --exists jansson gio-unix-2.0 2>/dev/null; then \
	    bash scripts/install-deps --bench || \
	    echo "make bench: B2 and B3 need their libraries: run 'sudo scripts/install-deps --bench', then make bench"; \
	fi

bench-smoke: bench-build
	$(BENCH_OUT)/fdbench --smoke $(BENCH_OUT)

bench-build: stage bench-skips $(BENCH_PROGS)

# Say which baselines cannot be built here, and drop stale binaries of them.
bench-skips:
	@mkdir -p $(BENCH_OUT)
	@$(if $(BENCH_HAVE_JANSSON),:,echo "skipped B2: libjansson-dev not installed (apt-get install libjansson-dev)"; rm -f $(BENCH_OUT)/recv-b2)
	@$(if $(BENCH_HAVE_GLIB),:,echo "skipped B3: libglib2.0-dev not installed (apt-get install libglib2.0-dev)"; rm -f $(BENCH_OUT)/recv-b3)

$(BENCH_OUT)/fdbench: bench/fdbench.c bench/bench.h
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lm

$(BENCH_OUT)/fdbench-alloc.so: bench/alloc_shim.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -shared -fPIC -o $@ $<

$(BENCH_OUT)/recv-b1: bench/recv_line.c $(BENCH_HDRS)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $<

$(BENCH_OUT)/recv-b1s: bench/recv_line.c $(BENCH_HDRS)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -DWITH_SO_TYPE -o $@ $<

$(BENCH_OUT)/recv-b2: bench/recv_line.c $(BENCH_HDRS)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -DWITH_JANSSON -o $@ $< $$(pkg-config --cflags --libs jansson)

$(BENCH_OUT)/recv-b3: bench/recv_b3.c $(BENCH_HDRS)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $$(pkg-config --cflags --libs gio-unix-2.0)

# Built against the staged install, like any C program using the library.
# `stage` is phony, so this one small program is relinked on every run.
$(BENCH_OUT)/recv-fdctx: bench/recv_fdctx.c $(BENCH_HDRS) stage
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) $(FDCTX_CFLAGS) -o $@ $< $(FDCTX_LIBS)

bench-clean:
	rm -rf $(BENCH_OUT)

EXTRA_CHECKS += bench-smoke
