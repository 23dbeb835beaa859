#!/usr/bin/env python3
"""QEMU with and without the fdctx patch series, side by side.

Starts qemu-system-x86_64 and qemu-storage-daemon from an upstream and a
patched build, drives their QMP monitors with real clients, and after
every step counts the daemon's fds in /proc/PID/fd and reads where each
one points.  Every test file has a unique name, so an fd the daemon still
holds on it is visible by name, whatever else the daemon opens.

Clients:
  - stdlib sockets that attach the fds to the command's own bytes, as
    libvirt sends them (one sendmsg: the command and its SCM_RIGHTS);
  - qemu.qmp (QEMU's own Python library, from the QEMU tree), whose
    send_fd_scm() sends each fd just before the command, with one space.

Each step says what its client means; the step is "served" when the
outcome is that.  The patched daemons must serve every step, leave no fd
behind, bind no stale fd and open no path that names their own fds; the
upstream daemons must show today's faults (else the test would prove
nothing).  Closes with a table, upstream vs patched, and the QMP round
trip of a command carrying one fd on each build (reported, not judged:
the machine's load decides more of it than the code does).
"""

import argparse
import array
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

TAG = "fdctx-qemu-test"

# The hold deadline given to both builds (QEMU_QMP_FD_HOLD_MS; upstream
# ignores it): fds held for a command that does not complete are closed
# after this long, and a client that sent its own socket end with them
# must not lock the monitor for longer.
HOLD_MS = 1500


def fail(msg):
    print(f"test_qemu: {msg}", file=sys.stderr)
    sys.exit(1)


class Daemon:
    """One QEMU process with a QMP monitor on a Unix socket."""

    def __init__(self, build, kind, binary, workdir):
        self.build = build        # "upstream" or "patched"
        self.kind = kind          # "system" or "qsd"
        self.sock = os.path.join(workdir, f"{build}-{kind}.qmp")
        self.log = os.path.join(workdir, f"{build}-{kind}.log")
        chardev = f"socket,id=mon0,path={self.sock},server=on,wait=off"
        if kind == "system":
            argv = [binary, "-nodefaults", "-machine", "none", "-display", "none",
                    "-chardev", chardev, "-mon", "chardev=mon0,mode=control"]
        else:
            argv = [binary, "--chardev", chardev, "--monitor", "chardev=mon0"]
        # Its own fd 0 is a regular file, as an image would be: a path that
        # reaches it opens, and the table shows it.
        stdin = os.path.join(workdir, f"{build}-{kind}.stdin")
        with open(stdin, "wb") as f:
            f.truncate(1 << 20)
        self.own = {stdin, self.log}   # what its own fds 0, 1 and 2 are
        env = dict(os.environ, QEMU_QMP_FD_HOLD_MS=str(HOLD_MS))
        with open(self.log, "wb") as log, open(stdin, "rb") as fd0:
            self.proc = subprocess.Popen(argv, stdin=fd0, stdout=log, stderr=log,
                                         env=env)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                fail(f"{build} {kind} did not start: {open(self.log).read()}")
            time.sleep(0.05)
        self.pid = self.proc.pid

    def fds(self):
        """{fd number: target} of the daemon's open fds."""
        out = {}
        d = f"/proc/{self.pid}/fd"
        for name in os.listdir(d):
            try:
                out[int(name)] = os.readlink(f"{d}/{name}")
            except FileNotFoundError:
                pass
        return out

    def test_fds(self):
        """Targets of the daemon's fds that are test files."""
        return sorted(t for t in self.fds().values() if TAG in t)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Client:
    """A QMP client on a stdlib socket; fds ride on the command's bytes."""

    def __init__(self, daemon, oob=True, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        deadline = time.monotonic() + 30
        while True:   # the socket may exist a moment before it listens
            try:
                self.s.connect(daemon.sock)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.buf = b""
        self.ids = 0
        greeting = self.recv()
        caps = greeting["QMP"]["capabilities"]
        self.oob = oob and "oob" in caps
        args = {"enable": ["oob"]} if self.oob else {}
        r = self.cmd("qmp_capabilities", args)
        assert "return" in r, r

    def send(self, data, fds=()):
        if isinstance(data, dict):
            data = json.dumps(data).encode() + b"\n"
        if fds:
            n = self.s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                         array.array("i", fds))])
            if n < len(data):
                self.s.sendall(data[n:])
        else:
            self.s.sendall(data)

    def recv(self, want_id=None):
        """The next reply (or greeting), skipping events and other ids."""
        while True:
            while b"\n" not in self.buf:
                chunk = self.s.recv(65536)
                if not chunk:
                    raise ConnectionError("monitor closed the connection")
                self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            if not line.strip():
                continue
            msg = json.loads(line)
            if "event" in msg:
                continue
            if want_id is not None and msg.get("id") != want_id:
                continue
            return msg

    def cmd(self, name, args=None, fds=(), oob=False):
        """Send a command and return its reply (matched by a fresh id)."""
        self.ids += 1
        msg = {"exec-oob" if oob else "execute": name, "id": self.ids}
        if args is not None:
            msg["arguments"] = args
        self.send(msg, fds)
        return self.recv(self.ids)

    def sync(self):
        """Skip whatever replies are still due (a malformed input may get
        more than one error): the next reply read is the next command's."""
        assert "return" in self.cmd("query-version")

    def close(self):
        self.s.close()


class Files:
    """Uniquely named test files: an fd on one is visible by its name."""

    def __init__(self, workdir):
        self.dir = workdir
        self.n = 0

    def path(self, label, size=1 << 20):
        self.n += 1
        p = os.path.join(self.dir, f"{TAG}-{self.n}-{label}.img")
        with open(p, "wb") as f:
            f.truncate(size)
        return p

    def fd(self, label, mode=os.O_RDWR, size=1 << 20):
        p = self.path(label, size)
        return os.open(p, mode | os.O_CLOEXEC), p


def ok(r):
    return "return" in r


def err(r):
    return "error" in r


class Step:
    def __init__(self, name):
        self.name = name
        self.served = False
        self.left = []        # test files still open in the daemon, not meant to be
        self.stale = 0        # commands that used an fd not sent with them
        self.ownfd = 0        # paths naming the daemon's own fds that it opened
        self.total_delta = 0  # fds in /proc/PID/fd against the baseline
        self.note = ""


def blockdev_add(c, node, filename, fds=(), read_only=False, oob=False):
    return c.cmd("blockdev-add", {"driver": "file", "node-name": node,
                                  "filename": filename, "read-only": read_only},
                 fds, oob)


def why(r):
    return r["error"]["desc"] if "error" in r else ""


def opened(d, before):
    """Targets of the daemon's fds that are new since `before` (an fd
    number may have been closed and reused meanwhile: compare both)."""
    return [t for n, t in d.fds().items() if before.get(n) != t]


def own_opened(d, before):
    """Has the daemon opened its own stdin or stderr anew since `before`?"""
    return any(t in d.own for t in opened(d, before))


def node_file(d, before, path):
    """Has the daemon opened `path` (and not one of its own files) anew?"""
    new = opened(d, before)
    return path in new and not any(t in d.own for t in new)


def run_steps(d, files, qemu_python):
    """Every point of the design on one daemon; returns the steps."""
    steps = []
    system = d.kind == "system"
    c = Client(d)

    # Warm up what the steps use (block layer threads, event fds), so that
    # the baseline is the steady state.
    p = files.path("warmup")
    r = blockdev_add(c, "warm", p)
    assert ok(r), r
    assert ok(c.cmd("blockdev-del", {"node-name": "warm"}))
    baseline = len(d.fds())

    def step(name):
        s = Step(name)
        steps.append(s)
        return s

    def close_step(s, keep=()):
        s.left = [t for t in d.test_fds() if t not in keep]
        s.total_delta = len(d.fds()) - baseline

    # 1. An fd sent with a command that takes none.
    s = step("fd sent with a command that takes none (query-version)")
    fd, path_a = files.fd("takes-none")
    r = c.cmd("query-version", fds=[fd])
    os.close(fd)
    s.served = ok(r)
    close_step(s)

    # 2. getfd with no fd at all, after step 1 (system only: qsd has no getfd).
    if system:
        s = step("getfd sent with no fd, after that")
        r = c.cmd("getfd", {"fdname": "nofd"})
        s.served = err(r)
        if ok(r):
            s.stale = 1
            s.note = "bound the fd of an earlier command"
            c.cmd("closefd", {"fdname": "nofd"})
        close_step(s)

    # 3. Unknown command, and 4. malformed JSON, each with an fd.
    s = step("fd sent with an unknown command")
    fd, _ = files.fd("unknown")
    r = c.cmd("no-such-command", fds=[fd])
    os.close(fd)
    s.served = err(r) and r["error"]["class"] == "CommandNotFound"
    close_step(s)

    s = step("fd sent with malformed JSON")
    fd, _ = files.fd("malformed")
    c.send(b'{"execute": ]}\n', [fd])
    os.close(fd)
    r = c.recv()
    s.served = err(r)
    c.sync()
    close_step(s)

    # 5. /dev/fd/0 of the command, libvirt style (fd on the command's bytes).
    s = step("blockdev-add filename=/dev/fd/0 with its fd")
    fd, path = files.fd("devfd0")
    before = d.fds()
    r = blockdev_add(c, "n0", "/dev/fd/0", [fd])
    os.close(fd)
    bound = node_file(d, before, path)
    s.served = ok(r) and bound
    s.note = why(r)
    s.ownfd = int(own_opened(d, before))
    if s.ownfd:
        s.note = "opened its own fd 0"
    close_step(s, keep=[path] if bound else [])
    if ok(r):
        c.cmd("blockdev-del", {"node-name": "n0"})
        if s.served and d.test_fds():
            s.left = d.test_fds()
            s.served = False

    # 6. Access mode: a read-only fd for a read-write node.
    s = step("read-only fd for a read-write node")
    fd, path = files.fd("rdonly", os.O_RDONLY)
    before = d.fds()
    r = blockdev_add(c, "n1", "/dev/fd/0", [fd])
    os.close(fd)
    s.served = err(r)
    if ok(r):
        s.ownfd = int(own_opened(d, before))
        s.note = "opened read-write"
        c.cmd("blockdev-del", {"node-name": "n1"})
    close_step(s)

    # 7. Paths that name the daemon's own fds, no fd sent.
    for own in ["/dev/fd/2", "/proc/self/fd/2", f"/proc/{d.pid}/fd/2",
                "/dev/stderr"]:
        s = step(f"blockdev-add filename={own.replace(str(d.pid), 'PID')}")
        r = blockdev_add(c, "own", own)
        s.served = err(r)
        s.note = why(r)[:60]
        if ok(r):
            s.ownfd = 1
            s.note = "opened its own stderr"
            c.cmd("blockdev-del", {"node-name": "own"})
        close_step(s)

    # 8. getfd with its fd, a second fd too; named fds as before.
    if system:
        s = step("getfd with two fds; closefd")
        fd0, path0 = files.fd("getfd0")
        fd1, _ = files.fd("getfd1")
        r = c.cmd("getfd", {"fdname": "g"}, [fd0, fd1])
        os.close(fd0)
        os.close(fd1)
        held = d.test_fds()
        s.served = ok(r) and held == [path0]
        close_step(s, keep=[path0])
        r = c.cmd("closefd", {"fdname": "g"})
        s.served = s.served and ok(r) and not d.test_fds()
        if not s.left:
            s.left = d.test_fds()

        s = step("add-fd with its fd; /dev/fdset/N; remove-fd")
        fd, path = files.fd("addfd")
        r = c.cmd("add-fd", {"fdset-id": 7, "opaque": "x"}, [fd])
        os.close(fd)
        good = ok(r) and d.test_fds() == [path]
        r = blockdev_add(c, "fs", "/dev/fdset/7")
        good = good and ok(r)
        if ok(r):
            c.cmd("blockdev-del", {"node-name": "fs"})
        sets = c.cmd("query-fdsets")
        good = good and any(fs["fdset-id"] == 7 for fs in sets.get("return", []))
        r = c.cmd("remove-fd", {"fdset-id": 7})
        s.served = good and ok(r)
        close_step(s)

    # 9. An out-of-band command beside a queued in-band one, each with its fd.
    if c.oob:
        s = step("in-band command and out-of-band command, one fd each")
        fd_ib, path_ib = files.fd("inband")
        fd_oob, _ = files.fd("oob")
        if system:
            c.send({"execute": "add-fd", "arguments": {"fdset-id": 8}, "id": "ib"},
                   [fd_ib])
            c.send({"exec-oob": "migrate-pause", "id": "oob"}, [fd_oob])
        else:
            c.send({"execute": "blockdev-add", "id": "ib",
                    "arguments": {"driver": "file", "node-name": "ib",
                                  "filename": "/dev/fd/0"}}, [fd_ib])
            c.send({"exec-oob": "query-version", "id": "oob"}, [fd_oob])
        os.close(fd_ib)
        os.close(fd_oob)
        replies = {}
        while len(replies) < 2:
            m = c.recv()
            replies[m.get("id")] = m
        held = d.test_fds()
        s.served = ok(replies.get("ib", {})) and held == [path_ib]
        s.note = why(replies.get("ib", {}))
        if ok(replies.get("ib", {})) and held != [path_ib]:
            s.stale = 1
            s.note = f"in-band command holds {[os.path.basename(h) for h in held] or 'no test file'}"
        close_step(s, keep=[path_ib])
        if system:
            c.cmd("remove-fd", {"fdset-id": 8})
        else:
            c.cmd("blockdev-del", {"node-name": "ib"})

    # 10. Pipelined: a command without fds and one with its fd, sent back
    # to back; a read that returns both must give the fd to the second.
    s = step("pipelined: a command without fds, then one with its fd")
    fd, path = files.fd("pipelined")
    before = d.fds()
    c.send({"execute": "query-version", "id": "p1"})
    if system:
        c.send({"execute": "add-fd", "arguments": {"fdset-id": 9}, "id": "p2"}, [fd])
    else:
        c.send({"execute": "blockdev-add", "id": "p2",
                "arguments": {"driver": "file", "node-name": "p2",
                              "filename": "/dev/fd/0"}}, [fd])
    os.close(fd)
    replies = {}
    while len(replies) < 2:
        m = c.recv()
        replies[m.get("id")] = m
    bound = node_file(d, before, path) if not system else d.test_fds() == [path]
    s.served = ok(replies["p1"]) and ok(replies["p2"]) and bound
    s.note = why(replies["p2"])
    close_step(s, keep=[path] if s.served else [])
    if ok(replies["p2"]):
        if system:
            c.cmd("remove-fd", {"fdset-id": 9})
        else:
            c.cmd("blockdev-del", {"node-name": "p2"})

    # 11. A /dev/fd/N node is never reopened by that name.
    s = step("reopen read-write of a /dev/fd/0 node (fd read-write)")
    fd, path = files.fd("reopen-rw")
    before = d.fds()
    r = blockdev_add(c, "rn", "/dev/fd/0", [fd], read_only=True)
    os.close(fd)
    if ok(r):
        r = c.cmd("blockdev-reopen", {"options": [
            {"driver": "file", "node-name": "rn", "filename": "/dev/fd/0",
             "read-only": False}]})
        bound = node_file(d, before, path)
        s.served = ok(r) and bound
        s.note = why(r)
        s.ownfd = int(own_opened(d, before))
        if s.ownfd:
            s.note = "opened its own fd 0"
        close_step(s, keep=[path] if bound else [])
        c.cmd("blockdev-del", {"node-name": "rn"})
    else:
        s.note = r["error"]["desc"]
        close_step(s)

    s = step("reopen read-write of a /dev/fd/0 node (fd read-only)")
    fd, path = files.fd("reopen-ro", os.O_RDONLY)
    before = d.fds()
    r = blockdev_add(c, "ro", "/dev/fd/0", [fd], read_only=True)
    os.close(fd)
    bound = ok(r) and node_file(d, before, path)
    if ok(r):
        r = c.cmd("blockdev-reopen", {"options": [
            {"driver": "file", "node-name": "ro", "filename": "/dev/fd/0",
             "read-only": False}]})
        s.served = bound and err(r)
        if ok(r):
            s.ownfd = int(own_opened(d, before))
            s.note = "reopened read-write by name"
        close_step(s, keep=[path] if bound else [])
        c.cmd("blockdev-del", {"node-name": "ro"})
    else:
        s.note = r["error"]["desc"]
        close_step(s)

    # 12. A client that disconnects in the middle of a command.
    s = step("client disconnects mid-command with an fd")
    fd, _ = files.fd("disconnect")
    c.send(b'{"execute": "query-version", "arguments": ', [fd])
    os.close(fd)
    time.sleep(0.2)
    c.close()
    deadline = time.monotonic() + 5
    while d.test_fds() and time.monotonic() < deadline:
        time.sleep(0.05)
    s.served = True
    close_step(s)

    # 13. qemu.qmp: send_fd_scm() sends the fd just before the command.
    sys.path.insert(0, qemu_python)
    from qemu.qmp.legacy import QEMUMonitorProtocol  # noqa: E402

    s = step("qemu.qmp send_fd_scm, then blockdev-add /dev/fd/0")
    q = QEMUMonitorProtocol(d.sock)
    q.connect()
    fd, path = files.fd("qmp-devfd")
    before = d.fds()
    q.send_fd_scm(fd)
    os.close(fd)
    r = q.cmd_raw("blockdev-add", {"driver": "file", "node-name": "q0",
                                   "filename": "/dev/fd/0"})
    bound = node_file(d, before, path)
    s.served = ok(r) and bound
    s.note = why(r)
    s.ownfd = int(own_opened(d, before))
    if s.ownfd:
        s.note = "opened its own fd 0"
    close_step(s, keep=[path] if bound else [])
    if ok(r):
        q.cmd_raw("blockdev-del", {"node-name": "q0"})

    if system:
        s = step("qemu.qmp send_fd_scm, then getfd; closefd")
        fd, path = files.fd("qmp-getfd")
        q.send_fd_scm(fd)
        os.close(fd)
        r = q.cmd_raw("getfd", {"fdname": "q"})
        s.served = ok(r) and d.test_fds() == [path]
        close_step(s, keep=[path])
        r = q.cmd_raw("closefd", {"fdname": "q"})
        s.served = s.served and ok(r)
    q.close()

    # Everything closed: the daemon is back where it started.
    s = step("after all steps, disconnected")
    deadline = time.monotonic() + 5
    while (d.test_fds() or len(d.fds()) > baseline) and time.monotonic() < deadline:
        time.sleep(0.05)
    s.served = True
    close_step(s)
    if s.total_delta > 0:
        s.note = f"{s.total_delta} more fds than at the start"
    return steps


def greeted_within(d, seconds):
    """Does a new client get the QMP greeting within `seconds`?"""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(seconds)
    t0 = time.monotonic()
    try:
        s.connect(d.sock)
        buf = b""
        while b"\n" not in buf:
            left = seconds - (time.monotonic() - t0)
            if left <= 0:
                return False
            s.settimeout(left)
            chunk = s.recv(4096)
            if not chunk:
                return False
            buf += chunk
        return b'"QMP"' in buf
    except OSError:
        return False
    finally:
        s.close()


def connect_raw(d):
    """A bare client socket, greeting read if one comes soon (a locked
    monitor sends none)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(d.sock)
    try:
        s.recv(4096)
    except socket.timeout:
        pass
    return s


def run_assoc_steps(d, files):
    """What the association service gives the monitor: limits, lost fds,
    fds sent with discarded bytes, the hold deadline, the client's own
    socket end refused.  Run after every other test: a client that sends
    its own socket end locks an upstream monitor for good."""
    steps = []
    system = d.kind == "system"

    def step(name):
        s = Step(name)
        steps.append(s)
        return s

    def settled(before, seconds=3):
        """Wait until the daemon holds no test file and no more fds than
        `before`; returns how many more it holds."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not d.test_fds() and len(d.fds()) <= before:
                return 0
            time.sleep(0.05)
        return len(d.fds()) - before

    def close_step(s, before, keep=()):
        s.total_delta = settled(before)
        s.left = [t for t in d.test_fds() if t not in keep]
        if s.total_delta > 0 and not s.left:
            s.left = [f"{s.total_delta} more fds"]

    def takes_fd(c):
        """A command that uses /dev/fd/0 if it got one: ok means it did."""
        if system:
            r = c.cmd("getfd", {"fdname": "probe"})
            if ok(r):
                c.cmd("closefd", {"fdname": "probe"})
            return r
        r = blockdev_add(c, "probe", "/dev/fd/0")
        if ok(r):
            c.cmd("blockdev-del", {"node-name": "probe"})
        return r

    base = len(d.fds())

    # Without the oob capability the monitor suspends after every command:
    # three commands in one write, read at once, must still be taken one at
    # a time, answered in order, and the fd (on the write, so on the last
    # command's bytes) go to the third.
    s = step("three commands in one write, no oob: in order, fd to the third")
    p = Client(d, oob=False, timeout=10)
    fd, path = files.fd("three")
    if system:
        third = {"execute": "add-fd", "arguments": {"fdset-id": 11}, "id": "c"}
    else:
        third = {"execute": "blockdev-add", "id": "c",
                 "arguments": {"driver": "file", "node-name": "three",
                               "filename": "/dev/fd/0"}}
    p.send(b"".join(json.dumps(m).encode() + b"\n" for m in [
        {"execute": "query-version", "id": "a"},
        {"execute": "query-version", "id": "b"}, third]), [fd])
    os.close(fd)
    order = [p.recv() for _ in range(3)]
    held = d.test_fds()
    s.served = ([m.get("id") for m in order] == ["a", "b", "c"]
                and all(ok(m) for m in order) and held == [path])
    s.note = why(order[2])[:60]
    if ok(order[2]):
        if system:
            p.cmd("remove-fd", {"fdset-id": 11})
        else:
            p.cmd("blockdev-del", {"node-name": "three"})
    p.close()
    close_step(s, base)

    # QEMU serves one client per QMP socket: this one once that one left.
    c = Client(d, timeout=10)
    base = len(d.fds())

    # More fds in one write than the socket chardev takes (16): the
    # kernel drops the rest; the command must fail, with its id.
    s = step("17 fds in one write: error with its id, nothing kept")
    opened_fds = [files.fd(f"seventeen{i}")[0] for i in range(17)]
    c.ids += 1
    c.send({"execute": "query-version", "id": c.ids}, opened_fds)
    for fd in opened_fds:
        os.close(fd)
    r = c.recv()
    s.served = err(r) and r.get("id") == c.ids
    s.note = why(r)[:60] if err(r) else "ran with 16 of its 17 fds" if ok(r) else ""
    close_step(s, base)

    # Over max_fds (32) in three writes of 11: error with its id.
    s = step("33 fds in three writes: error with its id")
    c.ids += 1
    parts = [b'{"execute": ', b'"query-version", ', b'"id": %d}\n' % c.ids]
    for part in parts:
        batch = [files.fd("thirtythree")[0] for _ in range(11)]
        c.send(part, batch)
        for fd in batch:
            os.close(fd)
    r = c.recv()
    s.served = err(r) and r.get("id") == c.ids
    s.note = why(r)[:60]
    close_step(s, base)

    # An fd sent with bytes the parser discards after a lexical error.
    s = step("fd sent with bytes discarded after a lexical error")
    fd, _ = files.fd("discarded")
    c.send(b"\xff")
    time.sleep(0.1)
    c.send(b"zzz", [fd])
    os.close(fd)
    time.sleep(0.1)
    c.send(b"\n")
    r = c.recv()                      # the lexical error
    c.sync()
    held = d.test_fds()
    r = takes_fd(c)
    s.served = err(r) and not held
    if ok(r):
        s.stale = 1
        s.note = "the next command got the discarded fd"
    close_step(s, base)

    # A command that never completes, holding an fd; the client stays.
    s = step(f"unfinished command holding an fd: closed after {HOLD_MS} ms")
    fd, _ = files.fd("unfinished")
    t0 = time.monotonic()
    c.send(b'{"execute": "query-version", ', [fd])
    os.close(fd)
    while not d.test_fds() and time.monotonic() < t0 + 2:
        time.sleep(0.01)              # until the daemon has read it
    held = bool(d.test_fds())
    while d.test_fds() and time.monotonic() < t0 + HOLD_MS / 1000 + 2:
        time.sleep(0.05)
    s.served = held and not d.test_fds()
    s.note = "fd never held" if not held else "fd still held" if d.test_fds() else ""
    if s.served:
        c.s.settimeout(2)
        try:
            r = c.recv()              # the expired command's error
            s.note = f"closed after {(time.monotonic() - t0) * 1000:.0f} ms: {why(r)[:40]}"
            c.s.settimeout(10)
            c.sync()
        except OSError:
            s.served = False
            s.note = "closed, but the command was never answered"
    c.close()
    close_step(s, base)

    # A client that sends its own socket end and exits: QEMU serves one
    # client per QMP socket, so the next client must still be greeted.
    attacks = [
        ("ahead of a command on a space", lambda a: (
            a.sendmsg([b" "], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [a.fileno()]))]),
            a.sendall(b'{"execute": "query-version"}\n'))),
        ("with an unfinished command", lambda a: (
            a.sendmsg([b'{"execute": "query-'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                  array.array("i", [a.fileno()]))]),)),
        ("on an out-of-band byte", lambda a: (
            a.sendall(b'{"execute": "query-version"}\n'),
            a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                array.array("i", [a.fileno()]))], socket.MSG_OOB))),
    ]
    for label, attack in attacks:
        s = step(f"own socket end sent {label}, then exit")
        before = len(d.fds())
        try:
            a = connect_raw(d)
            attack(a)
            a.close()
        except OSError as e:
            s.note = f"client: {e}"
        t0 = time.monotonic()
        s.served = greeted_within(d, HOLD_MS / 1000 + 1)
        if s.served:
            s.note = f"next client greeted after {(time.monotonic() - t0) * 1000:.0f} ms"
        else:
            s.note = "next client never greeted"
        close_step(s, before)
    return steps


def spread(v):
    """Median and interquartile range."""
    q = statistics.quantiles(v, n=4)
    return statistics.median(v), q[0], q[2]


def round_trip(daemons, files, n):
    """Microseconds of one QMP round trip per build: query-status, and
    getfd carrying one fd (median, quartiles).  The builds take turns
    command by command, so that a burst of load on the machine falls on
    both alike."""
    clients = {d.build: Client(d, oob=False) for d in daemons}
    fd, _ = files.fd("timing")
    getfd = json.dumps({"execute": "getfd", "arguments": {"fdname": "t"}}).encode() + b"\n"
    status = json.dumps({"execute": "query-status"}).encode() + b"\n"
    out = {}
    for name, cmd, fds in [("query-status", status, []), ("getfd", getfd, [fd])]:
        per = {b: [] for b in clients}
        for c in clients.values():        # warm up
            for _ in range(50):
                c.send(cmd, fds)
                c.recv()
        for _ in range(n):
            for b, c in clients.items():
                t0 = time.perf_counter()
                c.send(cmd, fds)
                r = c.recv()
                per[b].append((time.perf_counter() - t0) * 1e6)
                assert ok(r), r
        out[name] = {b: spread(v) for b, v in per.items()}
    for c in clients.values():
        c.cmd("closefd", {"fdname": "t"})
        c.close()
    os.close(fd)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="bin directory of the upstream build")
    ap.add_argument("--patched", required=True, help="bin directory of the patched build")
    ap.add_argument("--qemu-python", required=True, help="python/ of the QEMU tree (qemu.qmp)")
    ap.add_argument("--timing-commands", type=int, default=3000,
                    help="round trips timed on each build")
    a = ap.parse_args()

    workdir = tempfile.mkdtemp(prefix="fdctx-qemu-")
    files = Files(workdir)
    bins = {"upstream": a.upstream, "patched": a.patched}
    exe = {"system": "qemu-system-x86_64", "qsd": "qemu-storage-daemon"}
    results = {}
    daemons = []
    try:
        for kind in ["system", "qsd"]:
            for build in ["upstream", "patched"]:
                d = Daemon(build, kind, os.path.join(bins[build], exe[kind]), workdir)
                daemons.append(d)
                results[(build, kind)] = run_steps(d, files, a.qemu_python)
        timing = round_trip([d for d in daemons if d.kind == "system"], files,
                            a.timing_commands)
        for d in daemons:
            results[(d.build, d.kind)] += run_assoc_steps(d, files)
    finally:
        for d in daemons:
            d.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    passed = failed = 0
    problems = []
    for kind in ["system", "qsd"]:
        name = exe[kind]
        up, pa = results[("upstream", kind)], results[("patched", kind)]
        print(f"\n{name}: each step, upstream | patched "
              "(served, test fds left behind, stale bindings, own-fd paths opened)")
        for su, sp in zip(up, pa):
            assert su.name == sp.name

            def cell(s):
                return (f"{'served' if s.served else 'WRONG ':6} left={len(s.left)} "
                        f"stale={s.stale} own={s.ownfd}" + (f" ({s.note})" if s.note else ""))
            print(f"  {su.name:58} | {cell(su)}\n  {'':58} | {cell(sp)}")
            good = sp.served and not sp.left and not sp.stale and not sp.ownfd
            if good:
                passed += 1
            else:
                failed += 1
                problems.append(f"patched {name}: {sp.name}: {cell(sp)} {sp.left}")

    def totals(steps):
        return (sum(len(s.left) for s in steps), sum(s.stale for s in steps),
                sum(s.ownfd for s in steps), sum(s.served for s in steps), len(steps))

    print("\n| | qemu-system-x86_64 upstream | patched | qemu-storage-daemon upstream | patched |")
    print("|---|---|---|---|---|")
    t = {k: totals(v) for k, v in results.items()}
    rows = [("fds left behind", 0), ("stale bindings", 1), ("own-fd paths opened", 2)]
    for label, i in rows:
        print(f"| {label} | " + " | ".join(str(t[(b, k)][i]) for k in ["system", "qsd"]
                                          for b in ["upstream", "patched"]) + " |")
    print("| commands served as meant | " + " | ".join(
        f"{t[(b, k)][3]}/{t[(b, k)][4]}" for k in ["system", "qsd"]
        for b in ["upstream", "patched"]) + " |")
    print(f"\nQMP round trip, qemu-system-x86_64, {a.timing_commands} commands per build, "
          "taking turns (median [quartiles], us):")
    for name, tm in timing.items():
        (mu, lu, hu), (mp, lp, hp) = tm["upstream"], tm["patched"]
        print(f"  {name:22} upstream {mu:.1f} [{lu:.1f}-{hu:.1f}], patched {mp:.1f} "
              f"[{lp:.1f}-{hp:.1f}], patched/upstream {mp / mu:.3f}")

    # The comparison must be live: upstream shows the faults the series removes.
    for kind in ["system", "qsd"]:
        left, stale, own, _, _ = t[("upstream", kind)]
        if left == 0 or own == 0 or (kind == "system" and stale == 0):
            failed += 1
            problems.append(f"upstream {exe[kind]} shows none of today's faults "
                            f"(left={left} stale={stale} own={own}): the test is not measuring")
    for p in problems:
        print(f"FAIL: {p}")
    print(f"\nqemu: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
