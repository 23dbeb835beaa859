# integrations/qemu/qemu.mk - QEMU 10.0.2 on fdctx: `make qemu` builds the
# release twice, unpatched and with integrations/qemu/patches against the
# staged fdctx; `make qemu-check` runs QEMU's own fd-passing tests on both
# and the side-by-side test integrations/qemu/test_qemu.py.
# Included by the top-level Makefile (STAGE, BUILD, the `stage` target).
#
#   QEMU_TARBALL  the release (Debian's +ds source; sha256 checked)
#   QEMU_SRC      or an unpacked 10.0.2 tree to copy instead of the tarball
#
# Outputs: build/qemu/bin/{qemu-system-x86_64,qemu-storage-daemon,qemu-img,
# qemu-io,qemu-nbd} (patched) and build/qemu/upstream/bin/... (unpatched).

QEMU_TARBALL ?= ../shared/vendor/qemu_10.0.2+ds.orig.tar.xz
QEMU_SHA256 := 0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1
QEMU_SRC ?=
QEMU_DIR := $(CURDIR)/build/qemu
QEMU_NICE ?= nice -n 10
QEMU_PATCHES := $(sort $(wildcard integrations/qemu/patches/*.patch))
PYTHON ?= python3
# The two trees' test runs; `make qemu-check QEMU_TREES=patched` runs one.
QEMU_TREES ?= upstream patched

QEMU_BUILD_ENV = QEMU_TARBALL="$(QEMU_TARBALL)" QEMU_SHA256=$(QEMU_SHA256) \
	QEMU_SRC="$(QEMU_SRC)" QEMU_DIR=$(QEMU_DIR) QEMU_PATCHES="$(QEMU_PATCHES)" \
	STAGE=$(STAGE) QEMU_NICE="$(QEMU_NICE)"

.PHONY: qemu qemu-upstream qemu-patched qemu-check qemu-check-own qemu-check-fdctx

qemu: qemu-upstream qemu-patched

qemu-upstream:
	@$(QEMU_BUILD_ENV) bash integrations/qemu/build-qemu upstream

qemu-patched: stage
	@$(QEMU_BUILD_ENV) bash integrations/qemu/build-qemu patched

# (a) QEMU's own fd-passing tests, on each tree; (b) and (c) the
# side-by-side test, which also times a QMP command carrying one fd; (d)
# QEMU under libvirt, unconfined and confined (confine.mk).
qemu-check: qemu
	@+$(MAKE) --no-print-directory qemu-check-own
	@+$(MAKE) --no-print-directory qemu-check-fdctx
	@+$(MAKE) --no-print-directory qemu-check-libvirt

qemu-check-own:
	@set -e; for tree in $(QEMU_TREES); do \
	    QEMU_DIR=$(QEMU_DIR) bash integrations/qemu/run-qemu-tests $$tree; \
	done

qemu-check-fdctx:
	$(PYTHON) integrations/qemu/test_qemu.py \
	    --upstream $(QEMU_DIR)/upstream/bin --patched $(QEMU_DIR)/bin \
	    --qemu-python $(QEMU_DIR)/patched/src/python
