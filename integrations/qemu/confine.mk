# integrations/qemu/confine.mk - QEMU confined by fdctx-confine.
#
#   make demo-qemu           the story in a dozen lines: a confined QEMU
#                            uses the image the client passed as an fd and
#                            refuses the same image by path
#   make qemu-check-libvirt  QEMU driven by libvirt 9.0, unconfined and
#                            confined (integrations/libvirt/); part of
#                            `make qemu-check`
#
# Included by the top-level Makefile after qemu.mk (QEMU_DIR, STAGE).

.PHONY: demo-qemu qemu-check-libvirt

demo-qemu: stage
	@test -x $(QEMU_DIR)/bin/qemu-system-x86_64 \
	    || { echo "demo-qemu: no patched QEMU in $(QEMU_DIR)/bin (make qemu-patched)" >&2; exit 1; }
	@QEMU=$(QEMU_DIR)/bin/qemu-system-x86_64 FDCTX_CONFINE=$(STAGE)/bin/fdctx-confine \
	    FDCTX_SEND=$(STAGE)/bin/fdctx-send FDCTX_LIB=$(STAGE)/lib bash integrations/qemu/demo-confined

# The patched build unconfined and confined, the upstream build unconfined
# (the anchor); skips with one line where libvirt cannot run.
qemu-check-libvirt: stage
	bash integrations/libvirt/run-libvirt-tests $(QEMU_DIR)/bin $(QEMU_DIR)/upstream/bin \
	    $(STAGE)/bin/fdctx-confine $(STAGE)/lib
