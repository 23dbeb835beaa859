# c-tests/c-tests.mk - how C programs are checked here, and the C tests: each
# c-tests/test_*.c built against the staged install and run plainly, under
# valgrind and with AddressSanitizer and UBSan (scripts/run-c-tests judges
# them). Included by the top-level Makefile (STAGE, FDCTX_CFLAGS/FDCTX_LIBS,
# the need_* functions); check-c, check-c-valgrind and check-c-asan are steps
# of `make check`.

.PHONY: c-tests check-c check-c-valgrind check-c-asan

# The compiler, sanitizer and valgrind settings of every C program checked
# here (the C tests, scripts/check-abi's, and the monitors of examples/examples.mk).
CHECK_CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# LeakSanitizer also sees the library's allocations (the Rust library
# allocates through malloc); nothing needs to be suppressed.
ASAN_OPTIONS ?= detect_leaks=1:halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1
UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
SANITIZER_ENV = ASAN_OPTIONS=$(ASAN_OPTIONS) UBSAN_OPTIONS=$(UBSAN_OPTIONS)
# Definite leaks are errors; fds open at exit are reported (--track-fds).
VALGRIND_FLAGS := --track-fds=yes --error-exitcode=1 --leak-check=full \
	--errors-for-leak-kinds=definite --show-leak-kinds=definite --num-callers=30 --vgdb=no

C_TESTS := $(sort $(basename $(notdir $(wildcard c-tests/test_*.c))))
C_TEST_DIR := $(BUILD)/c-tests
C_TEST_BINS := $(addprefix $(C_TEST_DIR)/,$(C_TESTS))
C_TEST_ASAN_BINS := $(addprefix $(C_TEST_DIR)/asan/,$(C_TESTS))
C_TEST_CFLAGS := $(CHECK_CFLAGS) -pthread

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

