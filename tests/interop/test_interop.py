#!/usr/bin/env python3
"""Interop tests: real QMP clients against build/minivmm.

Python's standard socket.send_fds drives the monitor in both styles a
client may use to pass descriptors:

  - attached: the fds ride on the command's own bytes (libvirt, libqtest,
    socket.send_fds with the whole command, fdctx-send);
  - ahead: one space byte carries the fd, the command follows in a separate
    write (qemu.qmp's send_fd_scm);

fdctx-send, the crate's command-line client, is checked for its replies,
exit statuses and error messages;
and every test checks the monitor's open fds (/proc/PID/fd) and this
process's own (/proc/self/fd) before and after.

When the qemu.qmp package can be installed with pip into a venv under
build/, its QMPClient and legacy QEMUMonitorProtocol are tested too;
otherwise those tests are reported as skipped, with the reason.

The monitor can run under a wrapper that execs it in the same process, so
that /proc/PID/fd is still the monitor's:

  --wrap "valgrind --track-fds=yes --error-exitcode=1 ..."
      timeouts are stretched; after the closing `quit` the wrapper's exit
      status must be 0 and valgrind's FILE DESCRIPTORS report (read from the
      monitor's stderr) must list no fd beyond 0, 1 and 2;
  a minivmm built with -fsanitize=address,undefined (detected in the binary)
      any AddressSanitizer/LeakSanitizer/UBSan report in its stderr fails.

  --confine
      the monitor runs as `minivmm --confine` (Landlock: no file opens by
      path): every test still passes, images by path are refused with a
      text saying the monitor is confined, /proc/PID/status shows
      NoNewPrivs: 1, and the socket file stays after quit (a confined
      monitor cannot remove it). Skipped where the kernel has no Landlock.

Usage: test_interop.py [--minivmm PATH] [--fdctx-send PATH] [--wrap CMD]
                       [--confine] [--time-scale N] [--keep-log PATH]
                       [--no-pip] [-v]
Prints "N passed, N failed[, N skipped]" and exits non-zero on a failure.
"""

import argparse
import array
import errno
import json
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV = os.path.join(ROOT, "build", "interop-venv")
REEXEC_ENV = "FDCTX_INTEROP_REEXEC"

O_NONBLOCK = os.O_NONBLOCK

# Every timeout is multiplied by this; set from the command line (a monitor
# under valgrind runs some ten times slower and needs about a second to start).
TIME_SCALE = 1.0


def T(seconds):
    return seconds * TIME_SCALE


def landlock_abi():
    """The kernel's Landlock ABI version (0 without Landlock)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    nr = {"x86_64": 444, "aarch64": 444}.get(os.uname().machine)
    if nr is None:
        return 0
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    return max(libc.syscall(nr, None, ctypes.c_size_t(0), ctypes.c_uint(1)), 0)


def fd_list(pid):
    """{fd: target} for a process."""
    d = "/proc/%s/fd" % pid
    out = {}
    for name in os.listdir(d):
        try:
            out[int(name)] = os.readlink(os.path.join(d, name))
        except OSError:
            pass  # closed while listing (the listing's own fd)
    return out


def unix_socket_inode(path):
    """The inode of the Unix socket bound to path, from /proc/net/unix (None if absent)."""
    try:
        with open("/proc/net/unix") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) >= 8 and parts[7] == path:
                    return parts[6]
    except OSError:
        pass
    return None


def descendants(pid):
    """The PIDs of a process's children, grandchildren, ..."""
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                for child in f.read().split():
                    out.append(int(child))
                    out.extend(descendants(int(child)))
    except OSError:
        pass
    return out


def own_fd_count():
    # os.listdir opens one fd of its own, the same every time
    return len(os.listdir("/proc/self/fd"))


class Monitor:
    """A running build/minivmm, optionally under a wrapper such as valgrind.

    The wrapper must exec the monitor in its own process (valgrind does: the
    launcher execs the tool, which runs the program in the same PID), so that
    self.pid is the process whose /proc/PID/fd holds the monitor's fds. A
    wrapper's own fds (valgrind keeps some near the fd limit) are there too;
    they do not change during a run, and every test compares the whole table
    before and after.
    """

    def __init__(self, binary, workdir, wrap=(), options=()):
        self.workdir = workdir
        self.path = os.path.join(workdir, "vmm.sock")
        self.log = open(os.path.join(workdir, "minivmm.log"), "wb")
        # close_fds (the default): the monitor starts with fds 0, 1 and 2 only
        # A short hold deadline, so the deadline tests do not wait 10 s.
        env = dict(os.environ, MINIVMM_MAX_HOLD_MS=str(hold_ms()))
        self.proc = subprocess.Popen(list(wrap) + [binary] + list(options) + [self.path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log, close_fds=True, env=env)
        self.pid = self.proc.pid
        line = b""
        if select.select([self.proc.stdout], [], [], T(10))[0]:
            line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError("minivmm did not print ready within %gs (got %r); log:\n%s"
                               % (T(10), line, self.log_text()))
        # The process whose fds the tests read must be the one listening.
        inode = unix_socket_inode(self.path)
        fds = self.fds()
        if inode:
            listening = "socket:[%s]" % inode in fds.values()
        else:  # not in /proc/net/unix (another network namespace?): one socket will do
            listening = sum(t.startswith("socket:") for t in fds.values()) == 1
        if not listening:
            self.stop()
            raise RuntimeError("process %d does not hold the listening socket %s: a wrapper must exec the "
                               "monitor in its own process; its fds: %s" % (self.pid, self.path, fds))

    def log_text(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def fds(self):
        return fd_list(self.pid)

    def count(self):
        return len(self.fds())

    def holds(self, path):
        """How many of the monitor's fds point at path."""
        path = os.path.realpath(path)
        return sum(1 for t in self.fds().values() if t == path)

    def sockets(self):
        return sum(1 for t in self.fds().values() if t.startswith("socket:"))

    def wait_idle(self, timeout=5.0):
        """Wait until the monitor has dropped its clients (only its listening socket left)."""
        end = time.monotonic() + T(timeout)
        while self.sockets() > 1:
            if time.monotonic() > end:
                raise AssertionError("monitor still has %d sockets open" % self.sockets())
            time.sleep(0.02)

    def wait_for(self, pred, what, timeout=5.0):
        end = time.monotonic() + T(timeout)
        while not pred():
            if time.monotonic() > end:
                raise AssertionError("timed out waiting for: %s; monitor fds: %s" % (what, self.fds()))
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            # a wrapper that forked instead of exec'ing leaves children: end them too
            for pid in descendants(self.pid):
                try:
                    os.kill(pid, 15)
                except OSError:
                    pass
            self.proc.terminate()
            try:
                self.proc.wait(T(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


class Client:
    """A QMP client on a plain socket; fds go through socket.send_fds."""

    def __init__(self, path, negotiate=True):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(T(10))
        self.sock.connect(path)
        self.buf = b""
        self.greeting = self.read()
        if negotiate:
            r = self.cmd({"execute": "qmp_capabilities"})
            assert r == {"return": {}}, r

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self):
        """The next JSON value from the monitor."""
        dec = json.JSONDecoder()
        while True:
            try:
                text = self.buf.decode("utf-8").lstrip()
            except UnicodeDecodeError:
                text = ""  # a character cut in two: read on
            if text:
                try:
                    value, end = dec.raw_decode(text)
                    self.buf = text[end:].encode()
                    return value
                except json.JSONDecodeError:
                    pass
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("monitor closed the connection")
            self.buf += data

    def reply(self):
        """The next reply, events skipped."""
        while True:
            v = self.read()
            if "event" not in v:
                return v

    def send(self, data, fds=(), style="attached"):
        if isinstance(data, dict):
            data = json.dumps(data).encode() + b"\n"
        if not fds:
            self.sock.sendall(data)
        elif style == "attached":
            sent = socket.send_fds(self.sock, [data], list(fds))
            if sent < len(data):
                self.sock.sendall(data[sent:])
        elif style == "ahead":
            for fd in fds:  # one space byte per fd, as qemu.qmp does
                assert socket.send_fds(self.sock, [b" "], [fd]) == 1
            self.sock.sendall(data)
        else:
            raise ValueError(style)

    def cmd(self, data, fds=(), style="attached"):
        self.send(data, fds, style)
        return self.reply()


def blockdev_add(name, filename, read_only=False, **extra):
    args = {"node-name": name, "driver": "file", "filename": filename, "read-only": read_only}
    args.update(extra)
    return {"execute": "blockdev-add", "arguments": args}


def blockdev_del(name):
    return {"execute": "blockdev-del", "arguments": {"node-name": name}}


QUERY = {"execute": "query-block"}


def is_error(r, *words):
    if set(r) - {"id"} != {"error"}:
        return False
    e = r["error"]
    if e.get("class") != "GenericError" or not isinstance(e.get("desc"), str):
        return False
    desc = e["desc"].lower()
    return all(w.lower() in desc for w in words)


def expect_error(r, *words):
    assert is_error(r, *words), "expected an error mentioning %s, got %r" % (words, r)


def expect_ok(r, value=None):
    assert "return" in r, "expected a return, got %r" % (r,)
    if value is not None:
        assert r["return"] == value, r


class Suite:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.mon = Monitor(args.minivmm, workdir, args.wrap, ["--confine"] if args.confine else [])
        self.passed = self.failed = self.skipped = 0
        self.images = {}
        for name, size in (("a.raw", 1 << 20), ("b.raw", 2 << 20), ("c.raw", 3 << 20)):
            p = os.path.join(workdir, name)
            with open(p, "wb") as f:
                f.truncate(size)
            self.images[name] = p
        # a minimal qcow2 header: magic, version 3, virtual size 5 GiB
        p = os.path.join(workdir, "d.qcow2")
        hdr = bytearray(512)
        hdr[0:4] = b"QFI\xfb"
        hdr[4:8] = (3).to_bytes(4, "big")
        hdr[24:32] = (5 << 30).to_bytes(8, "big")
        with open(p, "wb") as f:
            f.write(hdr)
        self.images["d.qcow2"] = p

    def img(self, name):
        return self.images[name]

    def open(self, name, flags=os.O_RDONLY):
        return os.open(self.img(name), flags | os.O_CLOEXEC)

    def run(self, name, fn, *a):
        """Runs one test with fd accounting for both processes."""
        try:
            self.mon.wait_idle()
            mon_before = self.mon.fds()
            own_before = own_fd_count()
            fn(*a)
            self.mon.wait_idle()
            mon_after = self.mon.fds()
            own_after = own_fd_count()
            assert mon_after == mon_before, "monitor fds changed: before %s, after %s" % (mon_before, mon_after)
            assert own_after == own_before, "test process fds: %d before, %d after" % (own_before, own_after)
        except Skip as e:
            self.skipped += 1
            print("SKIP %s: %s" % (name, e))
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            self.failed += 1
            frame = traceback.extract_tb(e.__traceback__)[-1]
            print("FAIL %s: %s (line %d: %s)" % (name, str(e) or type(e).__name__, frame.lineno, frame.line))
            if self.args.verbose:
                traceback.print_exc()
            self.reset()
        else:
            self.passed += 1
            print("ok   %s" % name)

    def reset(self):
        """After a failure: delete the nodes it left, so the next test starts clean."""
        try:
            with Client(self.mon.path) as c:
                for node in c.cmd(QUERY).get("return", []):
                    c.cmd(blockdev_del(node["node-name"]))
        except Exception as e:  # noqa: BLE001
            print("     (could not clean up after the failure: %s)" % e)

    def close(self):
        self.mon.stop()

    def check(self, name, fn):
        """A check of the finished run (no fd accounting: the monitor is gone)."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            self.failed += 1
            print("FAIL %s: %s" % (name, e))
        else:
            self.passed += 1
            print("ok   %s" % name)


class Skip(Exception):
    pass


# ---------------------------------------------------------------- tests


def t_greeting(s):
    with Client(s.mon.path, negotiate=False) as c:
        g = c.greeting["QMP"]
        assert set(g["version"]["qemu"]) == {"major", "minor", "micro"}, g
        assert isinstance(g["version"]["package"], str) and g["capabilities"] == [], g
        expect_error(c.cmd(QUERY), "qmp_capabilities")
        expect_ok(c.cmd({"execute": "qmp_capabilities"}), {})
        expect_error(c.cmd({"execute": "qmp_capabilities"}), "already")
        expect_ok(c.cmd(QUERY), [])


def t_id_echo(s):
    with Client(s.mon.path) as c:
        for ident in ("x-1", 7, {"a": [1, "b\"\\\n"]}, None, "\u00e9\u4e2d"):
            r = c.cmd(dict(QUERY, id=ident))
            assert r == {"return": [], "id": ident}, r
        r = c.cmd({"execute": "no-such-command", "id": "q"})
        expect_error(r, "no-such-command")
        assert r["id"] == "q", r


def _add_use_del(s, style, image, fmt, size, read_only=False):
    with Client(s.mon.path) as c:
        base = s.mon.count()
        fd = s.open(image, os.O_RDONLY if read_only else os.O_RDWR)
        try:
            r = c.cmd(dict(blockdev_add("n0", "/dev/fd/0", read_only), id="add"), [fd], style)
        finally:
            os.close(fd)
        assert r == {"return": {}, "id": "add"}, r
        assert s.mon.count() == base + 1, s.mon.fds()
        assert s.mon.holds(s.img(image)) == 1, s.mon.fds()
        r = c.cmd(QUERY)
        assert r["return"] == [{"node-name": "n0", "format": fmt, "virtual-size": size,
                                "read-only": read_only}], r
        expect_ok(c.cmd(blockdev_del("n0")), {})
        assert s.mon.count() == base and s.mon.holds(s.img(image)) == 0, s.mon.fds()


def t_attached_raw(s):
    _add_use_del(s, "attached", "b.raw", "raw", 2 << 20)


def t_attached_qcow2(s):
    _add_use_del(s, "attached", "d.qcow2", "qcow2", 5 << 30)


def t_ahead_raw(s):
    _add_use_del(s, "ahead", "b.raw", "raw", 2 << 20, read_only=True)


def t_ahead_qcow2(s):
    _add_use_del(s, "ahead", "d.qcow2", "qcow2", 5 << 30)


def _two_fds_use_second(s, style):
    with Client(s.mon.path) as c:
        base = s.mon.count()
        fa, fb = s.open("a.raw"), s.open("c.raw")
        try:
            r = c.cmd(blockdev_add("n1", "/dev/fd/1", True), [fa, fb], style)
        finally:
            os.close(fa)
            os.close(fb)
        expect_ok(r, {})
        assert s.mon.holds(s.img("c.raw")) == 1, s.mon.fds()
        assert s.mon.holds(s.img("a.raw")) == 0, "the unused fd is still open: %s" % s.mon.fds()
        assert s.mon.count() == base + 1, s.mon.fds()
        assert c.cmd(QUERY)["return"][0]["virtual-size"] == 3 << 20
        expect_ok(c.cmd(blockdev_del("n1")))


def t_attached_two_fds_one_unused(s):
    _two_fds_use_second(s, "attached")


def t_ahead_two_fds_one_unused(s):
    _two_fds_use_second(s, "ahead")


def t_ordinary_path(s):
    with Client(s.mon.path) as c:
        r = c.cmd(blockdev_add("p", s.img("a.raw"), True))
        if s.args.confine:
            # The kernel refuses; the text says why.
            expect_error(r, "permission denied", "confined")
            assert s.mon.holds(s.img("a.raw")) == 0
            return
        expect_ok(r, {})
        assert s.mon.holds(s.img("a.raw")) == 1
        expect_ok(c.cmd(blockdev_del("p")))


def t_confined(s):
    """minivmm --confine: no_new_privs set, no file by path (an image read
    or written, /dev/null), the same image served through /dev/fd/0."""
    with open("/proc/%d/status" % s.mon.pid) as f:
        status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
    assert status["NoNewPrivs"].strip() == "1", status.get("NoNewPrivs")
    log = s.mon.log_text()
    assert "confined by Landlock" in log, log
    with Client(s.mon.path) as c:
        for path, ro in ((s.img("d.qcow2"), False), (s.img("a.raw"), True), ("/dev/null", True)):
            expect_error(c.cmd(blockdev_add("q", path, ro)), "permission denied", "confined")
        fd = s.open("d.qcow2", os.O_RDWR)
        try:
            expect_ok(c.cmd(blockdev_add("q", "/dev/fd/0", False), [fd]), {})
        finally:
            os.close(fd)
        q = c.cmd(QUERY)["return"]
        assert [(n["node-name"], n["format"], n["virtual-size"]) for n in q] == [("q", "qcow2", 5 << 30)], q
        assert s.mon.holds(s.img("d.qcow2")) == 1
        expect_ok(c.cmd(blockdev_del("q")))


def _unused_fd(s, style, command):
    with Client(s.mon.path) as c:
        base = s.mon.count()
        fd = s.open("a.raw")
        try:
            r = c.cmd(command, [fd], style)
        finally:
            os.close(fd)
        assert s.mon.holds(s.img("a.raw")) == 0, "fd kept after %r: %s" % (command, s.mon.fds())
        assert s.mon.count() == base, s.mon.fds()
        return r


def t_fd_with_query_attached(s):
    expect_ok(_unused_fd(s, "attached", QUERY), [])


def t_fd_with_query_ahead(s):
    expect_ok(_unused_fd(s, "ahead", QUERY), [])


def t_fd_with_unknown_command(s):
    expect_error(_unused_fd(s, "attached", {"execute": "getfd", "arguments": {"fdname": "x"}}), "getfd")


def t_fd_with_failing_command(s):
    # blockdev-add that fails on its arguments: the fd it carried is closed
    expect_error(_unused_fd(s, "attached", blockdev_add("x", "/dev/fd/0", driver="qcow2")), "driver")


def _stale(s, style, malformed):
    """A malformed command with an fd, then a command with none that names
    /dev/fd/0: the second must not get the first one's fd."""
    with Client(s.mon.path) as c:
        base = s.mon.count()
        fd = s.open("a.raw")
        try:
            c.send(malformed, [fd], style)
        finally:
            os.close(fd)
        r = c.reply()
        assert "error" in r, r
        r = c.cmd(blockdev_add("stale", "/dev/fd/0", True))
        expect_error(r, "/dev/fd/0")
        assert s.mon.holds(s.img("a.raw")) == 0, s.mon.fds()
        assert s.mon.count() == base, s.mon.fds()
        assert c.cmd(QUERY)["return"] == []


def t_stale_after_malformed_attached(s):
    _stale(s, "attached", b'{"execute": "blockdev-add", "arguments": {"node-name": ,}}\n')


def t_stale_after_malformed_ahead(s):
    _stale(s, "ahead", b'{"execute" "query-block"}\n')


def t_stale_after_non_object(s):
    _stale(s, "attached", b'["execute", "query-block"]\n')


def t_missing_index(s):
    with Client(s.mon.path) as c:
        fd = s.open("a.raw")
        try:
            r = c.cmd(dict(blockdev_add("m", "/dev/fd/3", True), id=3), [fd])
        finally:
            os.close(fd)
        expect_error(r, "/dev/fd/3")
        assert r["id"] == 3
        assert s.mon.holds(s.img("a.raw")) == 0, s.mon.fds()


def t_no_fds_at_all(s):
    with Client(s.mon.path) as c:
        expect_error(c.cmd(blockdev_add("m", "/dev/fd/0", True)), "/dev/fd/0")


def t_readwrite_on_readonly_fd(s):
    with Client(s.mon.path) as c:
        fd = s.open("a.raw", os.O_RDONLY)
        try:
            r = c.cmd(blockdev_add("rw", "/dev/fd/0", False), [fd])
        finally:
            os.close(fd)
        expect_error(r)
        assert s.mon.holds(s.img("a.raw")) == 0, s.mon.fds()


def t_malformed_fd_paths(s):
    with Client(s.mon.path) as c:
        for path in ("/dev/fd/00", "/dev/fd/+0", "/dev/fd/0/", "/dev/fd/", "/dev//fd/0",
                     "/dev/./fd/0", "/proc/self/fd/0", "/proc/thread-self/fd/0", "/dev/stdin"):
            fd = s.open("a.raw")
            try:
                r = c.cmd(blockdev_add("bad", path, True), [fd])
            finally:
                os.close(fd)
            assert is_error(r), "%s: %r" % (path, r)
            assert s.mon.holds(s.img("a.raw")) == 0, "%s: %s" % (path, s.mon.fds())
        assert c.cmd(QUERY)["return"] == []


def t_symlink_to_own_fds(s):
    """Symlinks into the monitor's own fd table are refused (openat2 with
    RESOLVE_NO_MAGICLINKS). Under valgrind, which may not implement openat2,
    fdctx falls back to open(2) with lexical checks only: skipped there."""
    link = os.path.join(s.workdir, "link-to-proc")
    for target in ("/proc/self/fd/0", "/proc/%d/fd/0" % s.mon.pid, "/dev/stdin"):
        os.symlink(target, link)
        try:
            with Client(s.mon.path) as c:
                r = c.cmd(blockdev_add("l", link, True))
                if "return" in r:
                    c.cmd(blockdev_del("l"))
        finally:
            os.unlink(link)
        if s.args.valgrind and not is_error(r, "own file descriptors"):
            raise Skip("%s does not implement openat2; fdctx falls back to open(2), which refuses "
                       "fd paths lexically only, so a symlink to %s is not caught (reply: %s)"
                       % (s.args.valgrind, target, json.dumps(r)))
        assert is_error(r, "Operation not permitted", "own file descriptors"), "%s -> %s: %r" % (link, target, r)


def t_too_many_fds(s):
    with Client(s.mon.path) as c:
        fd = s.open("a.raw")
        fds = [fd] + [os.dup(fd) for _ in range(39)]
        try:
            r = c.cmd(dict(blockdev_add("many", "/dev/fd/0", True), id="many"), fds)
        finally:
            for f in fds:
                os.close(f)
        expect_error(r)
        assert s.mon.holds(s.img("a.raw")) == 0, s.mon.fds()
        assert c.cmd(QUERY)["return"] == []


def t_split_command_fds_accumulate(s):
    """A command written in two pieces, one fd on each: both are its fds, in order."""
    with Client(s.mon.path) as c:
        cmd = json.dumps(blockdev_add("split", "/dev/fd/1", True)).encode() + b"\n"
        half = len(cmd) // 2
        fa, fc = s.open("a.raw"), s.open("c.raw")
        try:
            assert socket.send_fds(c.sock, [cmd[:half]], [fa]) == half
            time.sleep(0.05)  # let the monitor read the first piece alone
            assert socket.send_fds(c.sock, [cmd[half:]], [fc]) == len(cmd) - half
        finally:
            os.close(fa)
            os.close(fc)
        expect_ok(c.reply(), {})
        assert s.mon.holds(s.img("c.raw")) == 1 and s.mon.holds(s.img("a.raw")) == 0, s.mon.fds()
        expect_ok(c.cmd(blockdev_del("split")))


def t_two_commands_one_write(s):
    """Two commands in one write with one fd: it belongs to the last one."""
    with Client(s.mon.path) as c:
        data = json.dumps(QUERY).encode() + b"\n" + json.dumps(blockdev_add("two", "/dev/fd/0", True)).encode() + b"\n"
        fd = s.open("b.raw")
        try:
            c.send(data, [fd])
        finally:
            os.close(fd)
        assert c.reply() == {"return": []}
        expect_ok(c.reply(), {})
        assert s.mon.holds(s.img("b.raw")) == 1
        expect_ok(c.cmd(blockdev_del("two")))


def t_nonblock_cleared(s):
    """The client's O_NONBLOCK must not leak into the monitor's blocking I/O."""
    with Client(s.mon.path) as c:
        fd = s.open("a.raw", os.O_RDONLY | O_NONBLOCK)
        try:
            expect_ok(c.cmd(blockdev_add("nb", "/dev/fd/0", True), [fd]))
            held = [n for n, t in s.mon.fds().items() if t == s.img("a.raw")]
            assert len(held) == 1, s.mon.fds()
            with open("/proc/%d/fdinfo/%d" % (s.mon.pid, held[0])) as f:
                flags = int([line.split()[1] for line in f if line.startswith("flags:")][0], 8)
            assert not flags & O_NONBLOCK, "monitor's fd has O_NONBLOCK: flags %o" % flags
        finally:
            os.close(fd)
        expect_ok(c.cmd(blockdev_del("nb")))


def t_client_dies_mid_command(s):
    base = s.mon.count()
    h0 = s.mon.holds(s.img("c.raw"))
    with Client(s.mon.path) as c:
        fd = s.open("c.raw")
        try:
            c.send(b'{"execute": "blockdev-add", "arguments": {"node-name": "half", "filename": "/dev/fd/0"', [fd])
        finally:
            os.close(fd)
        # the fd belongs to the unfinished command, held by the monitor...
        s.mon.wait_for(lambda: s.mon.holds(s.img("c.raw")) == h0 + 1, "the half command's fd to arrive")
    # ...and closed when the client goes
    s.mon.wait_idle()
    s.mon.wait_for(lambda: s.mon.holds(s.img("c.raw")) == h0, "the fd to be closed")
    assert s.mon.count() == base, s.mon.fds()
    with Client(s.mon.path) as c2:
        assert c2.cmd(QUERY) == {"return": []}


def t_ahead_fd_then_disconnect(s):
    """An fd sent ahead of a command that never comes is closed at disconnect."""
    h0 = s.mon.holds(s.img("c.raw"))
    with Client(s.mon.path) as c:
        fd = s.open("c.raw")
        try:
            c.send(b"", [fd], "ahead")
        finally:
            os.close(fd)
        s.mon.wait_for(lambda: s.mon.holds(s.img("c.raw")) == h0 + 1, "the fd to arrive")
    s.mon.wait_idle()
    s.mon.wait_for(lambda: s.mon.holds(s.img("c.raw")) == h0, "the waiting fd to be closed")


def hold_ms():
    """The monitor's max_hold_ms for this run (MINIVMM_MAX_HOLD_MS)."""
    return int(1000 * TIME_SCALE)


def t_self_referencing_client_cannot_hang_the_monitor(s):
    """A client sends its own end of the socket with an unfinished command and exits.

    The monitor's copy would keep the connection open for ever; it must be
    refused (or expire at the hold deadline) so the next client is served.
    """
    c = Client(s.mon.path)
    try:
        c.send(b'{"execute": "blockdev-add", "arguments": {"node-name": "self"', [c.sock.fileno()])
    finally:
        c.close()
    with Client(s.mon.path) as c2:  # its greeting comes only once the monitor is free
        assert c2.cmd(QUERY) == {"return": []}


def t_self_reference_ahead_then_exit(s):
    """The same on a lone space (qemu.qmp style), before any command."""
    c = Client(s.mon.path)
    try:
        c.send(b"", [c.sock.fileno()], "ahead")
    finally:
        c.close()
    with Client(s.mon.path) as c2:
        assert c2.cmd(QUERY) == {"return": []}


def oob_send(sock, byte, fds):
    """One byte sent out of band (MSG_OOB) with fds. socket.send_fds drops its
    flags argument, hence sendmsg. False where Unix sockets have no MSG_OOB."""
    try:
        n = sock.sendmsg([byte], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))], socket.MSG_OOB)
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return False
        raise
    assert n == 1
    return True


def t_own_end_out_of_band_then_exit(s):
    """A client sends a command, then its own end of the socket on one MSG_OOB byte, and exits.

    Whether a monitor that does not read the byte in line hangs depends on
    whether the client's close or the monitor's next read comes first, so the
    attack is made three times. The monitor must read the byte in line and
    refuse the fd (or expire it at the hold deadline): the next client is
    served each time.
    """
    for _ in range(3):
        c = Client(s.mon.path)
        try:
            c.send(QUERY)
            if not oob_send(c.sock, b" ", [c.sock.fileno()]):
                raise Skip("no MSG_OOB on Unix sockets in this kernel")
        finally:
            c.close()
        start = time.monotonic()
        with Client(s.mon.path) as c2:  # its greeting comes only once the monitor is free
            assert c2.cmd(QUERY) == {"return": []}
        assert time.monotonic() - start < T(5) + hold_ms() / 1000.0


def t_stalled_client_holding_fds_is_timed_out(s):
    """A client stops mid-command holding an fd: at the deadline the fd is closed,
    the client gets an error, the rest of that line is discarded, the connection goes on."""
    h0 = s.mon.holds(s.img("c.raw"))
    with Client(s.mon.path) as c:
        fd = s.open("c.raw")
        try:
            c.send(b'{"execute": "blockdev-add", "arguments": {"node-name": "stall"', [fd])
        finally:
            os.close(fd)
        c.sock.settimeout(T(10) + hold_ms() / 1000.0)
        expect_error(c.reply(), "held longer")
        assert s.mon.holds(s.img("c.raw")) == h0, "the held fd was closed"
        c.send(b', "filename": "/dev/fd/0"}} {"execute": "smuggled"}\n')
        assert c.cmd(QUERY) == {"return": []}, "the rest of the line was discarded"
    with Client(s.mon.path) as c2:
        assert c2.cmd(QUERY) == {"return": []}


def t_oversized_command_with_fd(s):
    """A command over the 1 MiB limit with an fd: refused, fd closed, the next command works."""
    with Client(s.mon.path) as c:
        big = json.dumps(dict(blockdev_add("big", "/dev/fd/0", True), pad="x" * (2 << 20))).encode() + b"\n"
        fd = s.open("b.raw")
        try:
            c.send(big, [fd])
        finally:
            os.close(fd)
        expect_error(c.reply())
        assert s.mon.holds(s.img("b.raw")) == 0, s.mon.fds()
        assert c.cmd(dict(QUERY, id="after")) == {"return": [], "id": "after"}


# ---------------------------------------------------------------- fdctx-send


def fdctx_send(s, *args):
    if not s.args.fdctx_send or not os.access(s.args.fdctx_send, os.X_OK):
        raise Skip("fdctx-send not built (%s)" % s.args.fdctx_send)
    p = subprocess.run([s.args.fdctx_send] + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60, cwd=s.workdir)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def t_fdctx_send_replies(s):
    rc, out, err = fdctx_send(s, "--qmp", "--fd", s.img("d.qcow2") + ":rw", "--fd", s.img("a.raw"),
                              s.mon.path, json.dumps(dict(blockdev_add("fs", "/dev/fd/0"), id="fs-1")))
    assert (rc, json.loads(out)) == (0, {"return": {}, "id": "fs-1"}), (rc, out, err)
    s.mon.wait_idle()
    assert s.mon.holds(s.img("d.qcow2")) == 1 and s.mon.holds(s.img("a.raw")) == 0, s.mon.fds()
    rc, out, err = fdctx_send(s, "--qmp", s.mon.path, json.dumps(QUERY))
    assert rc == 0 and json.loads(out)["return"][0]["format"] == "qcow2", (rc, out, err)
    # an error reply: exit status 1, the reply printed
    rc, out, err = fdctx_send(s, "--qmp", "--fd", s.img("a.raw") + ":r", s.mon.path,
                              json.dumps(blockdev_add("fs2", "/dev/fd/0", False)))
    assert rc == 1 and is_error(json.loads(out)), (rc, out, err)
    # without --qmp the monitor insists on negotiation: an error reply too
    rc, out, err = fdctx_send(s, s.mon.path, json.dumps(QUERY))
    assert rc == 1 and is_error(json.loads(out), "qmp_capabilities"), (rc, out, err)
    rc, out, err = fdctx_send(s, "--qmp", s.mon.path, json.dumps(blockdev_del("fs")))
    assert rc == 0, (rc, out, err)
    s.mon.wait_idle()
    assert s.mon.holds(s.img("d.qcow2")) == 0, s.mon.fds()


def t_fdctx_send_failures(s):
    # a missing file: nothing is sent at all
    rc, out, err = fdctx_send(s, "--qmp", "--fd", "no-such-file", s.mon.path, json.dumps(QUERY))
    assert rc == 2 and out == "" and "cannot open 'no-such-file'" in err, (rc, out, err)
    # usage errors
    for args in ([], [s.mon.path], ["--fd"], ["--bogus", s.mon.path, "{}"], [s.mon.path, "{not json"],
                 [s.mon.path, "[1]"], ["--timeout", "x", s.mon.path, "{}"]):
        rc, out, err = fdctx_send(s, *args)
        assert rc == 2 and out == "" and err.startswith("fdctx-send: "), (args, rc, out, err)
    # no socket file
    rc, out, err = fdctx_send(s, os.path.join(s.workdir, "nothing.sock"), "{}")
    assert rc == 2 and "no socket at" in err, (rc, err)
    # a socket nobody listens on
    dead = os.path.join(s.workdir, "dead.sock")
    with socket.socket(socket.AF_UNIX) as d:
        d.bind(dead)
        rc, out, err = fdctx_send(s, dead, "{}")
    os.unlink(dead)
    assert rc == 2 and "connection refused" in err, (rc, err)
    # a monitor that closes the connection before replying
    gone = os.path.join(s.workdir, "gone.sock")
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(gone)
        srv.listen()
        p = subprocess.Popen([s.args.fdctx_send, "--fd", s.img("a.raw"), gone, json.dumps(QUERY)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        conn, _ = srv.accept()
        with conn:
            data, fds, _, _ = socket.recv_fds(conn, 4096, 4)
            for f in fds:
                os.close(f)
        out, err = p.communicate(timeout=30)
    os.unlink(gone)
    assert len(fds) == 1 and b"query-block" in data, (data, fds)
    assert p.returncode == 2 and b"closed the connection before replying" in err, (p.returncode, err)


# ---------------------------------------------------------------- qemu.qmp


def t_qemu_qmp_client_send_fd_scm(s):
    """qemu.qmp's asyncio QMPClient: send_fd_scm (fd ahead of the command) + execute."""
    import asyncio
    from qemu.qmp import QMPClient, ExecuteError

    async def main():
        qmp = QMPClient("fdctx-interop")
        await qmp.connect(s.mon.path)
        try:
            base = s.mon.count()
            fd = s.open("d.qcow2", os.O_RDWR)
            try:
                qmp.send_fd_scm(fd)
                res = await qmp.execute("blockdev-add", blockdev_add("q0", "/dev/fd/0")["arguments"])
            finally:
                os.close(fd)
            assert res == {}, res
            assert s.mon.holds(s.img("d.qcow2")) == 1 and s.mon.count() == base + 1, s.mon.fds()
            blocks = await qmp.execute("query-block")
            assert blocks == [{"node-name": "q0", "format": "qcow2", "virtual-size": 5 << 30,
                               "read-only": False}], blocks
            # an error reply comes back as ExecuteError, and the fd is closed
            fd = s.open("a.raw")
            try:
                qmp.send_fd_scm(fd)
                try:
                    await qmp.execute("blockdev-add", blockdev_add("q1", "/dev/fd/3", True)["arguments"])
                    raise AssertionError("blockdev-add /dev/fd/3 succeeded")
                except ExecuteError as e:
                    assert "/dev/fd/3" in str(e), e
            finally:
                os.close(fd)
            assert s.mon.holds(s.img("a.raw")) == 0, s.mon.fds()
            await qmp.execute("blockdev-del", {"node-name": "q0"})
            assert s.mon.count() == base, s.mon.fds()
        finally:
            await qmp.disconnect()

    asyncio.run(main())


def t_qemu_qmp_legacy_send_fd_scm(s):
    """qemu.qmp.legacy.QEMUMonitorProtocol (the synchronous API iotests use)."""
    import asyncio
    from qemu.qmp.legacy import QEMUMonitorProtocol

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        before = own_fd_count()
        mon = QEMUMonitorProtocol(s.mon.path)
        try:
            greeting = mon.connect()
            assert "QMP" in greeting, greeting
            fd = s.open("b.raw")
            try:
                mon.send_fd_scm(fd)
                r = mon.cmd_obj(dict(blockdev_add("l0", "/dev/fd/0", True), id="legacy-1"))
            finally:
                os.close(fd)
            assert r == {"return": {}, "id": "legacy-1"}, r
            assert s.mon.holds(s.img("b.raw")) == 1, s.mon.fds()
            r = mon.cmd_raw("query-block")
            assert r["return"][0]["format"] == "raw", r
            fd = s.open("a.raw")
            try:
                mon.send_fd_scm(fd)  # with a command that takes none: closed
                r = mon.cmd_raw("query-block")
            finally:
                os.close(fd)
            assert len(r["return"]) == 1, r
            assert s.mon.holds(s.img("a.raw")) == 0, s.mon.fds()
            assert "return" in mon.cmd_raw("blockdev-del", {"node-name": "l0"})
        finally:
            mon.close()
        assert own_fd_count() == before, "QEMUMonitorProtocol left fds open"
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def qemu_qmp_available(args):
    """Import qemu.qmp, installing it into a venv under build/ if needed.
    Returns None when available, else the reason it is not."""
    try:
        import qemu.qmp  # noqa: F401
        return None
    except ImportError:
        pass
    if os.environ.get(REEXEC_ENV):
        return "qemu.qmp still not importable in %s" % VENV
    if args.no_pip:
        return "--no-pip given and qemu.qmp is not installed"
    py = os.path.join(VENV, "bin", "python")
    try:
        if not os.path.exists(py):
            print("setting up %s for the qemu.qmp tests" % os.path.relpath(VENV), flush=True)
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        have = subprocess.run([py, "-c", "import qemu.qmp"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=60).returncode == 0
        if not have:
            print("installing qemu.qmp with pip into %s" % os.path.relpath(VENV), flush=True)
            subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--timeout", "30", "--retries", "2", "qemu.qmp"],
                           check=True, timeout=600, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except subprocess.CalledProcessError as e:
        err = (e.stderr or b"").decode(errors="replace").strip().splitlines()
        return "could not install qemu.qmp (%s)" % (err[-1] if err else "exit %d" % e.returncode)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "could not install qemu.qmp (%s)" % e
    # run again under the venv's python, which has qemu.qmp
    sys.stdout.flush()
    env = dict(os.environ, **{REEXEC_ENV: "1"})
    os.execve(py, [py, os.path.abspath(sys.argv[0])] + sys.argv[1:], env)  # the script that asked
    return "exec failed"  # not reached


# ---------------------------------------------------------------- after quit

SANITIZER_ERROR = re.compile(r"ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:")


def sanitized_build(binary):
    """The sanitizers a binary was built with, from the runtime symbols it references."""
    with open(binary, "rb") as f:
        data = f.read()
    found = []
    if b"__asan_init" in data:
        found.append("AddressSanitizer")
    if b"__ubsan_handle_" in data:
        found.append("UBSan")
    return found


def valgrind_lines(log, pid):
    """valgrind's lines in the monitor's stderr, its ==PID== prefix removed."""
    pre = re.compile(r"^==%d==(?: (.*))?$" % pid)
    out = []
    for line in log.splitlines():
        m = pre.match(line)
        if m:
            out.append(m.group(1) or "")
    return out


def check_valgrind_report(s):
    """Print valgrind's FILE DESCRIPTORS report; it must show fds 0, 1, 2 only
    (the inherited stdio), and valgrind must have found no error."""
    lines = valgrind_lines(s.mon.log_text(), s.mon.pid)
    try:
        start = next(i for i, l in enumerate(lines) if "FILE DESCRIPTORS:" in l)
    except StopIteration:
        raise AssertionError("valgrind printed no FILE DESCRIPTORS report (was --track-fds=yes given, "
                             "did the monitor exit?)") from None
    end = next((i for i in range(start, len(lines)) if "HEAP SUMMARY:" in lines[i]), len(lines))
    print("     valgrind's report for the monitor (pid %d):" % s.mon.pid)
    for line in lines[start:end]:
        print("       " + line)
    for line in lines:
        if re.search(r"in use at exit:|definitely lost:|ERROR SUMMARY:", line):
            print("       " + line.strip())
    # "Open file descriptor 4: /path", "Open AF_UNIX socket 5: <unknown>", ...
    extra = sorted({int(m.group(1)) for l in lines[start:end]
                    for m in [re.match(r"Open .*? (\d+):", l)] if m and int(m.group(1)) > 2})
    problems = []
    if extra:
        problems.append("open at exit beyond 0, 1, 2: %s" % " ".join(map(str, extra)))
    if not re.search(r"FILE DESCRIPTORS: 3 open( \(3 std\))? at exit", lines[start]):
        problems.append("unexpected fd count: %s" % lines[start].strip())
    summary = [l for l in lines if "ERROR SUMMARY:" in l]
    if not summary:
        problems.append("no ERROR SUMMARY")
    elif not re.search(r"ERROR SUMMARY: 0 errors", summary[-1]):
        problems.append(summary[-1].strip())
        print("     valgrind's errors:")
        header = re.compile(r"Memcheck,|Copyright|Using Valgrind|Command:|Parent PID|FILE DESCRIPTORS:")
        for line in [l for l in lines[:start] + lines[end:] if l.strip() and not header.search(l)][:80]:
            print("       " + line)
    assert not problems, "; ".join(problems)


def check_sanitizer_log(s):
    lines = s.mon.log_text().splitlines()
    hits = [i for i, l in enumerate(lines) if SANITIZER_ERROR.search(l)]
    if hits:
        print("     the monitor's sanitizer report:")
        for line in lines[max(hits[0] - 1, 0):hits[0] + 80]:
            print("       " + line)
        raise AssertionError("sanitizer report in the monitor's stderr: %s" % lines[hits[0]].strip())


TESTS = [
    t_greeting,
    t_id_echo,
    t_attached_raw,
    t_attached_qcow2,
    t_ahead_raw,
    t_ahead_qcow2,
    t_attached_two_fds_one_unused,
    t_ahead_two_fds_one_unused,
    t_ordinary_path,
    t_fd_with_query_attached,
    t_fd_with_query_ahead,
    t_fd_with_unknown_command,
    t_fd_with_failing_command,
    t_stale_after_malformed_attached,
    t_stale_after_malformed_ahead,
    t_stale_after_non_object,
    t_missing_index,
    t_no_fds_at_all,
    t_readwrite_on_readonly_fd,
    t_malformed_fd_paths,
    t_symlink_to_own_fds,
    t_too_many_fds,
    t_split_command_fds_accumulate,
    t_two_commands_one_write,
    t_nonblock_cleared,
    t_client_dies_mid_command,
    t_ahead_fd_then_disconnect,
    t_oversized_command_with_fd,
    t_self_referencing_client_cannot_hang_the_monitor,
    t_self_reference_ahead_then_exit,
    t_own_end_out_of_band_then_exit,
    t_stalled_client_holding_fds_is_timed_out,
    t_fdctx_send_replies,
    t_fdctx_send_failures,
]

QEMU_QMP_TESTS = [t_qemu_qmp_client_send_fd_scm, t_qemu_qmp_legacy_send_fd_scm]

# Run with --confine only.
CONFINED_TESTS = [t_confined]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minivmm", default=os.path.join(ROOT, "build", "minivmm"))
    ap.add_argument("--fdctx-send", default=os.path.join(ROOT, "build", "stage", "bin", "fdctx-send"))
    ap.add_argument("--wrap", default="", metavar="CMD",
                    help="run the monitor under this command (e.g. valgrind and its options)")
    ap.add_argument("--confine", action="store_true",
                    help="run the monitor as `minivmm --confine` (skipped without Landlock)")
    ap.add_argument("--time-scale", type=float, default=None,
                    help="multiply every timeout (default: 10 with --wrap, else 1)")
    ap.add_argument("--keep-log", metavar="PATH", help="copy the monitor's stderr here at the end")
    ap.add_argument("--no-pip", action="store_true", help="do not install qemu.qmp; skip its tests if absent")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.minivmm = os.path.abspath(args.minivmm)
    if not os.access(args.minivmm, os.X_OK):
        print("interop: %s not found (run: make build/minivmm)" % args.minivmm)
        print("0 passed, 1 failed")
        return 1
    args.wrap = shlex.split(args.wrap)
    args.valgrind = None
    if args.wrap:
        if not shutil.which(args.wrap[0]):
            print("interop: wrapper %s not found" % args.wrap[0])
            print("0 passed, 1 failed")
            return 1
        if os.path.basename(args.wrap[0]).startswith("valgrind"):
            v = subprocess.run([args.wrap[0], "--version"], capture_output=True, timeout=60)
            args.valgrind = v.stdout.decode().strip() or "valgrind"
            if "--track-fds=yes" not in args.wrap:
                print("interop: --wrap runs valgrind without --track-fds=yes: no fd report to check")
                print("0 passed, 1 failed")
                return 1
    if args.confine and not landlock_abi():
        print("SKIP confined monitor: the kernel has no usable Landlock here")
        print("0 passed, 0 failed, 1 skipped")
        return 0
    global TIME_SCALE
    TIME_SCALE = args.time_scale if args.time_scale else (10.0 if args.wrap else 1.0)
    sanitizers = sanitized_build(args.minivmm)

    why_no_qmp = qemu_qmp_available(args)  # may re-exec under the venv
    if why_no_qmp is None:
        from importlib.metadata import version
        print("using qemu.qmp %s under %s" % (version("qemu.qmp"), sys.prefix))

    print("monitor: %s%s%s" % (os.path.relpath(args.minivmm), " --confine" if args.confine else "",
                               ", built with %s" % " and ".join(sanitizers) if sanitizers else ""))
    if args.wrap:
        print("under: %s%s (timeouts x%g)" % (shlex.join(args.wrap),
                                              " [%s]" % args.valgrind if args.valgrind else "", TIME_SCALE))
    sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="fdctx-interop.") as workdir:
        try:
            suite = Suite(args, workdir)
        except (OSError, RuntimeError) as e:
            print("FAIL start: %s" % e)
            print("0 passed, 1 failed")
            return 1
        try:
            run_tests(suite, TESTS + (CONFINED_TESTS if args.confine else []), QEMU_QMP_TESTS, why_no_qmp)
            # quit: the monitor exits cleanly
            try:
                with Client(suite.mon.path) as c:
                    r = c.cmd({"execute": "quit", "id": "bye"})
                    assert r == {"return": {}, "id": "bye"}, r
                    ev = c.read()
                    assert ev.get("event") == "SHUTDOWN", ev
                rc = suite.mon.proc.wait(T(10))
                assert rc == 0, "minivmm exited with %d%s" % (
                    rc, " (valgrind's --error-exitcode when it found errors)" if args.valgrind else "")
                if args.confine:
                    # Confined, the monitor cannot unlink it: the caller does.
                    assert os.path.exists(suite.mon.path), "a confined monitor removed its socket file"
                    os.unlink(suite.mon.path)
                else:
                    assert not os.path.exists(suite.mon.path), "socket file left behind"
                suite.passed += 1
                print("ok   quit")
            except Exception as e:  # noqa: BLE001
                suite.failed += 1
                print("FAIL quit: %s" % e)
        finally:
            suite.close()
        return finish_run(suite, args, "minivmm", sanitizers)


def run_tests(suite, tests, qemu_qmp_tests, why_no_qmp):
    """Each test in turn (t_NAME reported as NAME); the qemu.qmp ones are
    skipped, with the reason, when qemu.qmp is not available."""
    for t in tests:
        suite.run(t.__name__[2:], t, suite)
    for t in qemu_qmp_tests:
        if why_no_qmp is None:
            suite.run(t.__name__[2:], t, suite)
        else:
            suite.skipped += 1
            print("SKIP %s: %s" % (t.__name__[2:], why_no_qmp))


def finish_run(suite, args, name, sanitizers=()):
    """After the monitor exited: valgrind's and the sanitizers' verdicts, the
    kept log, the log itself on a failure, the closing count line; returns
    the exit status. Call it inside the run's working directory."""
    if args.valgrind:
        suite.check("valgrind: no errors, only fds 0, 1, 2 open at exit", lambda: check_valgrind_report(suite))
    if sanitizers:
        suite.check("%s: no report in the monitor's stderr" % " and ".join(sanitizers),
                    lambda: check_sanitizer_log(suite))
    if args.keep_log:
        os.makedirs(os.path.dirname(os.path.abspath(args.keep_log)), exist_ok=True)
        shutil.copyfile(suite.mon.log.name, args.keep_log)
        print("monitor log: %s" % args.keep_log)
    if suite.failed:
        print("--- %s log ---" % name)
        print(suite.mon.log_text().rstrip())
        print("---")
    line = "%d passed, %d failed" % (suite.passed, suite.failed)
    if suite.skipped:
        line += ", %d skipped" % suite.skipped
    print(line)
    return 1 if suite.failed else 0


if __name__ == "__main__":
    sys.exit(main())
