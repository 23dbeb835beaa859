#!/usr/bin/env python3
"""QEMU driven by libvirt 9.0, unconfined and confined by fdctx-confine.

A TCG domain whose only disk is an fdgroup disk on a FUSE mount that
cannot store security labels (so sVirt could not label it), with a pty
serial console and a virtio rng on /dev/urandom, is started,
saved, restored, dumped, given a tap NIC by hotplug and refused one whose
device_add fails (libvirt rolls the netdev back); QEMU's open fds
(/proc/PID/fd) are counted after every step. Then the path attacks: an
image of another domain and a host file named by path (virsh attach-disk,
blockdev-add through qemu-monitor-command) are refused by a confined QEMU,
while the same images passed as fds work.

Runs as root against running libvirtd/virtlogd (integrations/libvirt/
run-libvirt-tests starts them). One line per step; a closing count.

  test_libvirt.py --workdir DIR --confine BIN --allow-args FILE
                  [--variant NAME:QEMU:confined|unconfined]...
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

URI = "qemu:///system"
OTHER_DIR = "/var/lib/libvirt/images"

passed = 0
failed = 0
fd_table = []  # (variant, step, count)


def ok(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"PASS  {what}")
    else:
        failed += 1
        print(f"FAIL  {what}" + (f"\n      {detail}" if detail else ""))
    return cond


def virsh(*args, pass_fds=(), timeout=180):
    """Runs one virsh (a ';'-joined string runs its commands in one virsh process); (rc, text)."""
    p = subprocess.run(["virsh", "-q", "-c", URI, *args], pass_fds=pass_fds,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout.strip()


def qmp(dom, cmd, pass_fds=()):
    """qemu-monitor-command: it exits 0 on an error reply, so the reply's
    text is what tells. Returns the parsed reply (or the error text)."""
    args = ["qemu-monitor-command", dom]
    if pass_fds:
        args += ["--pass-fds", ",".join(str(f) for f in pass_fds)]
    rc, out = virsh(*args, json.dumps(cmd), pass_fds=pass_fds)
    try:
        return json.loads(out)
    except ValueError:
        return {"error": {"desc": out or f"virsh exit {rc}"}}


def qemu_pid(dom):
    with open(f"/run/libvirt/qemu/{dom}.pid") as f:
        return int(f.read().strip())


def fd_map(dom):
    """QEMU's fd table: fd number -> what it is (readlink)."""
    d = f"/proc/{qemu_pid(dom)}/fd"
    out = {}
    for n in os.listdir(d):
        try:
            out[int(n)] = os.readlink(f"{d}/{n}")
        except OSError:
            pass
    return out


def fd_count(dom):
    return len(fd_map(dom))


def fd_diff(old, new):
    gone = sorted(set(old.values()) - set(new.values()))
    added = [f"{n} -> {t}" for n, t in sorted(new.items()) if old.get(n) != t]
    return f"added: {added}; gone: {gone}"


def domain_xml(name, emulator, disk):
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>{emulator}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}' fdgroup='root'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
    <serial type='pty'><target port='0'/></serial>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>
"""


def nic_xml(tap, rom=None):
    rom_el = f"<rom file='{rom}'/>" if rom else ""
    return (f"<interface type='ethernet'><target dev='{tap}' managed='yes'/>"
            f"<model type='e1000'/>{rom_el}</interface>")


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def with_fd(path, flags, fn):
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def run_variant(label, qemu, confined, a):
    name = f"fdctx-{label}"
    work = a.workdir
    disk = os.path.join(a.nolabel, f"{name}.img")
    with open(disk, "wb") as f:
        f.truncate(4 << 20)
    if confined:
        emulator = os.path.join(work, f"{label}-emulator")
        env = "".join(f"{e} " for e in a.emulator_env)
        write(emulator, "#!/bin/sh\nexec %s%s %s -- %s \"$@\"\n" % (
            env, shlex.quote(a.confine), a.allow_args, shlex.quote(qemu)), 0o755)
    else:
        emulator = qemu
    xml = os.path.join(work, f"{name}.xml")
    write(xml, domain_xml(name, emulator, disk))
    virsh("destroy", name)
    virsh("undefine", name)
    rc, out = virsh("define", xml)
    if not ok(rc == 0, f"{label}: define (libvirt probed the emulator)", out):
        return
    v = f"{label}"

    tables = {}

    def step_fds(step):
        # The guest's firmware sets its virtio queues up (QEMU opens their
        # eventfds) a moment after start: count once the table is steady.
        last, steady = None, 0
        for _ in range(60):
            now = fd_map(name)
            steady = steady + 1 if now == last else 0
            if steady == 3:
                break
            last = now
            time.sleep(0.5)
        tables[step] = now
        n = len(tables[step])
        fd_table.append((v, step, n))
        return n

    try:
        def start(cmd):
            return with_fd(disk, os.O_RDWR, lambda fd: virsh(
                f"dom-fd-associate {name} root --pass-fds {fd}; {cmd}", pass_fds=(fd,)))

        rc, out = start(f"start {name}")
        if not ok(rc == 0, f"{v}: start with the fdgroup disk on the label-less FUSE mount", out):
            return
        base = step_fds("start")
        held = set(tables["start"].values())
        ok("/dev/ptmx" in held and "/dev/urandom" in held,
           f"{v}: the pty serial console and the rng opened (/dev/ptmx, /dev/urandom)", str(sorted(held)))
        if confined:
            with open(f"/proc/{qemu_pid(name)}/status") as f:
                nnp = [line.split()[1] for line in f if line.startswith("NoNewPrivs:")]
            ok(nnp == ["1"], f"{v}: QEMU runs confined (fdctx-confine set no_new_privs before Landlock)", str(nnp))
        save = os.path.join(work, f"{name}.save")
        rc, out = virsh("save", name, save)
        ok(rc == 0 and os.path.getsize(save) > 0, f"{v}: save (migration to an fd libvirt opened)", out)
        rc, out = start(f"restore {save}")
        ok(rc == 0, f"{v}: restore (fdgroup passed again)", out)
        n = step_fds("restore")
        ok(n == base, f"{v}: fds after restore = after start ({n} vs {base})",
           fd_diff(tables["start"], tables["restore"]))
        dump = os.path.join(work, f"{name}.dump")
        rc, out = virsh("dump", name, dump, "--memory-only")
        ok(rc == 0 and os.path.getsize(dump) > 0, f"{v}: dump --memory-only", out)
        n = step_fds("dump")
        ok(n == base, f"{v}: fds after dump = before ({n} vs {base})", fd_diff(tables["restore"], tables["dump"]))
        nic = os.path.join(work, f"{name}-nic.xml")
        write(nic, nic_xml(f"fdctx{label[:4]}0"))
        rc, out = virsh("attach-device", name, nic, "--live")
        ok(rc == 0, f"{v}: tap NIC hotplug (getfd + netdev_add fd=)", out)
        with_nic = step_fds("NIC hotplug")
        ok(with_nic == base + 1, f"{v}: the tap fd is the one fd added ({with_nic} vs {base})",
           fd_diff(tables["dump"], tables["NIC hotplug"]))
        ok(any(t == "/dev/net/tun" for t in tables["NIC hotplug"].values()), f"{v}: QEMU holds the tap fd")
        bad = os.path.join(work, f"{name}-badnic.xml")
        write(bad, nic_xml(f"fdctx{label[:4]}1", rom="/nonexistent/fdctx-missing.rom"))
        rc, out = virsh("attach-device", name, bad, "--live")
        ok(rc != 0, f"{v}: NIC hotplug whose device_add fails is refused", out)
        print(f"      libvirt said: {out.splitlines()[-1] if out else ''}")
        n = step_fds("failed hotplug")
        ok(n == with_nic, f"{v}: rolled back: netdev_del + closefd left no fd ({n} vs {with_nic})")
        path_attacks(v, name, confined, a, with_nic)
    finally:
        virsh("destroy", name)
        virsh("undefine", name)
        for p in (disk,):
            try:
                os.unlink(p)
            except OSError:
                pass


def err_text(reply):
    return (reply.get("error") or {}).get("desc", "")


def path_attacks(v, name, confined, a, base):
    other = a.other_image
    host = "/etc/passwd"
    refused = "confined" if a.patched_text and confined else "Permission denied"
    # (1) A blockdev-add naming another domain's image, and a host file.
    for what, path in (("another domain's image", other), ("a host file", host)):
        r = qmp(name, {"execute": "blockdev-add", "arguments": {
            "driver": "file", "node-name": "byname", "filename": path, "read-only": True}})
        if confined:
            ok("error" in r and refused in err_text(r),
               f"{v}: blockdev-add of {what} by path is refused", json.dumps(r))
        else:
            ok("return" in r, f"{v}: blockdev-add of {what} by path opens (unconfined)", json.dumps(r))
            qmp(name, {"execute": "blockdev-del", "arguments": {"node-name": "byname"}})
    n = fd_count(name)
    fd_table.append((v, "path attacks", n))
    ok(n == base, f"{v}: fds after the by-path attempts = before ({n} vs {base})")
    # (2) The same image passed as an fd works, confined or not.
    def by_fd(fd):
        r = qmp(name, {"execute": "add-fd", "arguments": {"fdset-id": 7}}, pass_fds=(fd,))
        r2 = qmp(name, {"execute": "blockdev-add", "arguments": {
            "driver": "file", "node-name": "byfd", "filename": "/dev/fdset/7", "read-only": True}})
        return r, r2
    r, r2 = with_fd(other, os.O_RDONLY, by_fd)
    ok("return" in r and "return" in r2, f"{v}: the same image passed as an fd (add-fd, /dev/fdset/7) opens",
       json.dumps([r, r2]))
    qmp(name, {"execute": "blockdev-del", "arguments": {"node-name": "byfd"}})
    qmp(name, {"execute": "remove-fd", "arguments": {"fdset-id": 7}})
    if a.patched_text:
        r = with_fd(other, os.O_RDONLY, lambda fd: qmp(name, {"execute": "blockdev-add", "arguments": {
            "driver": "file", "node-name": "byfd0", "filename": "/dev/fd/0", "read-only": True}}, pass_fds=(fd,)))
        ok("return" in r, f"{v}: passed with the command itself and named /dev/fd/0, it opens", json.dumps(r))
        qmp(name, {"execute": "blockdev-del", "arguments": {"node-name": "byfd0"}})
    n = fd_count(name)
    fd_table.append((v, "fds passed, used, released", n))
    ok(n == base, f"{v}: fds after the passed-fd opens are released = before ({n} vs {base})")
    # (3) virsh attach-disk by path: libvirt hands QEMU the path.
    rc, out = virsh("attach-disk", name, other, "vdb", "--targetbus", "virtio", "--mode", "readonly", "--live")
    if confined:
        ok(rc != 0 and refused in out, f"{v}: virsh attach-disk of an image by path is refused", out)
        print(f"      QEMU said: {out.splitlines()[-1] if out else ''}")
    else:
        ok(rc == 0, f"{v}: virsh attach-disk of an image by path works (unconfined)", out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--nolabel", required=True, help="the label-less FUSE mount")
    ap.add_argument("--confine", required=True, help="the fdctx-confine program")
    ap.add_argument("--allow-args", required=True, help="file with the wrapper's --allow arguments")
    ap.add_argument("--emulator-env", action="append", default=[],
                    help="VAR=VALUE for the confined emulator (a QEMU run against another fdctx build)")
    ap.add_argument("--variant", action="append", default=[],
                    help="LABEL:QEMU:confined|unconfined:patched|upstream")
    a = ap.parse_args()
    with open(a.allow_args) as f:
        a.allow_args = " ".join(line.strip() for line in f if line.strip() and not line.startswith("#"))
    os.makedirs(OTHER_DIR, exist_ok=True)
    a.other_image = os.path.join(OTHER_DIR, "fdctx-other-domain.img")
    with open(a.other_image, "wb") as f:
        f.truncate(1 << 20)
    try:
        for spec in a.variant:
            label, qemu, mode, tree = spec.split(":")
            a.patched_text = tree == "patched"
            print(f"== libvirt 9.0 + {tree} QEMU, {mode} ({label})")
            t = time.monotonic()
            run_variant(label, qemu, mode == "confined", a)
            print(f"   ({time.monotonic() - t:.0f} s)")
    finally:
        os.unlink(a.other_image)
    print("== QEMU's open fds (/proc/PID/fd) after each step")
    for v, step, n in fd_table:
        print(f"   {v:<22} {step:<28} {n}")
    print(f"libvirt: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
