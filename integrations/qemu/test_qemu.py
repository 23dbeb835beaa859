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
import fcntl
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


def put_at(fd, target):
    """In a child before exec: `fd` as its inheritable fd `target` (dup2()
    of an fd onto itself would keep its close-on-exec flag)."""
    if fd != target:
        os.dup2(fd, target)
    os.set_inheritable(target, True)


class Daemon:
    """One QEMU process with a QMP monitor on a Unix socket."""

    def __init__(self, build, kind, binary, workdir, suffix="", stdin_null=False):
        self.build = build        # "upstream" or "patched"
        self.kind = kind          # "system" or "qsd"
        self.binary = binary
        self.workdir = workdir
        name = f"{build}-{kind}{suffix}"
        self.sock = os.path.join(workdir, f"{name}.qmp")
        self.log = os.path.join(workdir, f"{name}.log")
        self.hmp_sock = os.path.join(workdir, f"{name}.hmp")
        chardev = f"socket,id=mon0,path={self.sock},server=on,wait=off"
        # A node opened on the command line from its fd 4 (read-only), to
        # reopen later: the name must never be resolved again.
        # (Not named with TAG: the daemon holds it throughout.)
        self.cmdline_file = os.path.join(workdir, f"cmdline-{name}.img")
        with open(self.cmdline_file, "wb") as f:
            f.truncate(1 << 20)
        cl = "driver=file,node-name=cl,filename=/dev/fd/4,read-only=on"
        # Guest RAM that is not all zero (migration skips zero pages)
        self.ram_pattern = b"GUESTRAM"
        ram = os.path.join(workdir, f"ram-{name}.bin")
        with open(ram, "wb") as f:
            f.write(self.ram_pattern * (1 << 17))
        if kind == "system":
            argv = [binary, "-nodefaults", "-machine", "none", "-display", "none",
                    "-m", "16M", "-device", f"loader,file={ram},addr=0,force-raw=on",
                    "-blockdev", cl,
                    "-chardev", chardev, "-mon", "chardev=mon0,mode=control",
                    "-chardev", f"socket,id=hmp0,path={self.hmp_sock},server=on,wait=off",
                    "-mon", "chardev=hmp0,mode=readline"]
        else:
            argv = [binary, "--blockdev", cl, "--chardev", chardev,
                    "--monitor", "chardev=mon0"]
        # Its own fd 0 is a regular file, as an image would be: a path that
        # reaches it opens, and the table shows it.
        # Or, with stdin_null, /dev/null: a character device, which probes
        # that stat() a name see if they reach it.
        stdin = os.path.join(workdir, f"{name}.stdin")
        with open(stdin, "wb") as f:
            f.truncate(1 << 20)
        self.stdin = stdin
        self.own = {stdin, self.log}   # what its own fds 0, 1 and 2 are
        if stdin_null:
            self.own = {os.devnull, self.log}
        env = dict(os.environ, QEMU_QMP_FD_HOLD_MS=str(HOLD_MS))
        cl_fd = os.open(self.cmdline_file, os.O_RDWR | os.O_CLOEXEC)
        with open(self.log, "wb") as log, \
                open(os.devnull if stdin_null else stdin, "rb") as fd0:
            self.proc = subprocess.Popen(argv, stdin=fd0, stdout=log, stderr=log,
                                         env=env,
                                         close_fds=False,   # fds here are CLOEXEC
                                         preexec_fn=lambda: put_at(cl_fd, 4))
        os.close(cl_fd)
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
        self.strict = False   # the fd table must be back to the step's start


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


class Hmp:
    """A readline HMP monitor client; fds ride on a line's bytes."""

    PROMPT = b"(qemu) "

    def __init__(self, daemon):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(daemon.hmp_sock)
        self.until_prompt()

    def until_prompt(self):
        buf = b""
        while not buf.endswith(self.PROMPT):
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("HMP monitor closed the connection")
            buf += chunk
        return buf.decode(errors="replace")

    def line(self, text, fds=()):
        data = text.encode() + b"\n"
        if fds:
            self.s.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                     array.array("i", fds))])
        else:
            self.s.sendall(data)
        return self.until_prompt()

    def close(self):
        self.s.close()


def stdin_set(d, data=b"", size=1 << 20):
    """Give the daemon's own fd 0 (a regular file) known contents."""
    with open(d.stdin, "r+b") as f:
        f.truncate(0)
        f.write(data)
        if size > len(data):
            f.truncate(size)


def stdin_intact(d, data=b"", size=1 << 20):
    """Is the daemon's own fd 0 as stdin_set() left it?"""
    with open(d.stdin, "rb") as f:
        got = f.read()
    return got == data + bytes(size - len(data))


def wait_job(c, job_id, statuses=("concluded",)):
    """Poll query-jobs until the job reaches one of `statuses` (or is gone)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = {j["id"]: j for j in c.cmd("query-jobs")["return"]}
        j = jobs.get(job_id)
        if j is None or j["status"] in statuses:
            return j
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} never reached {statuses}")


def hmc(c, line, fds=()):
    """human-monitor-command: (reply, output text)."""
    r = c.cmd("human-monitor-command", {"command-line": line}, fds)
    return r, r.get("return", "")


def has_cmd(c, name):
    return any(x["name"] == name for x in c.cmd("query-commands")["return"])


def run_attacks(d, files, c, step):
    """Every kind of path from a client string to an fd, as an attacker
    would use it.  The daemon's own fd 0 is a regular file whose contents
    the test knows: work that writes, truncates, maps or reads it instead
    of the client's file shows, and so does an fd of the command's left
    open (the fd table is compared with the one before each step)."""
    system = d.kind == "system"

    def begin(name):
        s = step(name)
        s.strict = True
        stdin_set(d)
        return s, len(d.fds()), d.fds()

    def settle(s, n_before, keep=()):
        """Wait for the step's work to be over, then record what it left."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if len(d.fds()) <= n_before and not [t for t in d.test_fds()
                                                  if t not in keep]:
                break
            time.sleep(0.05)
        s.left = [t for t in d.test_fds() if t not in keep]
        s.total_delta = len(d.fds()) - n_before
        if not stdin_intact(d):
            s.ownfd = 1
            s.note = (s.note + "; " if s.note else "") + "changed its own fd 0"

    # -- 1. Work a command starts: a job, target creation, migration threads
    if has_cmd(c, "blockdev-create"):
        s, n, _ = begin("attack: blockdev-create file /dev/fd/0 (job) with its fd")
        fd, path = files.fd("create")
        r = c.cmd("blockdev-create", {"job-id": "cj", "options": {
            "driver": "file", "filename": "/dev/fd/0", "size": 3 << 20}}, [fd])
        os.close(fd)
        job = wait_job(c, "cj") if ok(r) else None
        resized = os.path.getsize(path) == 3 << 20
        failed = job is not None and "error" in job
        if job is not None:
            c.cmd("job-dismiss", {"id": "cj"})
        s.note = job.get("error", "") if failed else ""
        settle(s, n)
        # The client's file is resized, or the job fails and says why.
        s.served = ok(r) and (resized or failed) and not s.ownfd

    if has_cmd(c, "drive-mirror"):
        s, n, _ = begin("attack: drive-mirror target /dev/fd/0 absolute-paths, its fd")
        src = files.path("mirror-src", 2 << 20)
        with open(src, "r+b") as f:
            f.write(b"MIRRORED")
        r = blockdev_add(c, "msrc", src)
        assert ok(r), r
        fd, path = files.fd("mirror-dst")
        r = c.cmd("drive-mirror", {"job-id": "mj", "device": "msrc",
                                   "target": "/dev/fd/0", "format": "raw",
                                   "sync": "full", "mode": "absolute-paths"}, [fd])
        os.close(fd)
        s.note = why(r)
        if ok(r):
            job = wait_job(c, "mj", ("ready", "concluded"))
            if job and job["status"] == "ready":
                c.cmd("block-job-complete", {"device": "mj"})
            wait_job(c, "mj", ("null",))
        with open(path, "rb") as f:
            mirrored = f.read(8) == b"MIRRORED"
        c.cmd("blockdev-del", {"node-name": "msrc"})
        # drive-mirror completes by replacing the source with the target
        for n_ in c.cmd("query-named-block-nodes")["return"]:
            if n_.get("file") == "/dev/fd/0" and n_["node-name"] != "cl":
                c.cmd("blockdev-del", {"node-name": n_["node-name"]})
        settle(s, n)
        s.served = (mirrored or err(r)) and not s.ownfd

    if system:
        s, n, _ = begin("attack: migrate file:/dev/fd/0 multifd mapped-ram, its fd")
        fd, path = files.fd("migrate", size=0)
        assert ok(c.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "multifd", "state": True},
            {"capability": "mapped-ram", "state": True}]}))
        assert ok(c.cmd("migrate-set-parameters", {"multifd-channels": 2}))
        r = c.cmd("migrate", {"uri": "file:/dev/fd/0"}, [fd])
        os.close(fd)
        status = None
        deadline = time.monotonic() + 60
        while ok(r) and time.monotonic() < deadline:
            status = c.cmd("query-migrate")["return"].get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
        with open(path, "rb") as f:
            ram_copies = f.read().count(d.ram_pattern)
        s.note = f"{status}, the guest's RAM pattern {ram_copies} times in the client's file"
        settle(s, n)
        # Completed with the guest's RAM in the client's file, or failed
        # whole: never "completed" with the RAM somewhere else.
        s.served = ok(r) and (status == "failed" or
                              (status == "completed" and ram_copies >= 1 << 17)) \
            and not s.ownfd
        c.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": "multifd", "state": False},
            {"capability": "mapped-ram", "state": False}]})

    # -- 2. Opens that do not go through qemu_open()
    if has_cmd(c, "object-add"):
        s, n, _ = begin("attack: object-add secret file=/dev/fd/0, no fd sent")
        stdin_set(d, b"YWJj", 4)          # valid base64: readable if reached
        r = c.cmd("object-add", {"qom-type": "secret", "id": "sec0",
                                 "file": "/dev/fd/0", "format": "base64"})
        s.note = why(r)[:60]
        if ok(r):
            s.ownfd = 1
            s.note = "read its own fd 0"
            c.cmd("object-del", {"id": "sec0"})
        stdin_set(d)
        settle(s, n)
        s.served = err(r)

        s, n, _ = begin("attack: object-add secret file=/dev/fd/0 with its fd")
        stdin_set(d, b"!!!!", 4)          # not base64: fails if reached
        fd, path = files.fd("secret", size=0)
        os.write(fd, b"YWJj")
        r = c.cmd("object-add", {"qom-type": "secret", "id": "sec1",
                                 "file": "/dev/fd/0", "format": "base64"}, [fd])
        os.close(fd)
        s.note = why(r)[:60]
        if ok(r):
            c.cmd("object-del", {"id": "sec1"})
        stdin_set(d)
        settle(s, n)
        s.served = ok(r)

    if system:
        s, n, before = begin("attack: memory-backend-file mem-path=/dev/fd/0, no fd")
        r = c.cmd("object-add", {"qom-type": "memory-backend-file", "id": "mb0",
                                 "mem-path": "/dev/fd/0", "size": 1 << 20,
                                 "share": True})
        s.note = why(r)[:60]
        if ok(r):
            s.ownfd = int(own_opened(d, before))
            s.note = "mapped its own fd 0"
            c.cmd("object-del", {"id": "mb0"})
        settle(s, n)
        s.served = err(r)

        s, n, before = begin("attack: memory-backend-file mem-path=/dev/fd/0, its fd")
        fd, path = files.fd("membackend")
        r = c.cmd("object-add", {"qom-type": "memory-backend-file", "id": "mb1",
                                 "mem-path": "/dev/fd/0", "size": 1 << 20,
                                 "share": True}, [fd])
        os.close(fd)
        mapped = node_file(d, before, path)
        s.note = why(r)[:60]
        if ok(r):
            c.cmd("object-del", {"id": "mb1"})
        settle(s, n)
        s.served = ok(r) and mapped

    # -- 3. Numeric fd parameters
    if system:
        s, n, before = begin("attack: netdev_add tap fd=0, nothing sent")
        r = c.cmd("netdev_add", {"type": "tap", "id": "t0", "fd": "0"})
        s.note = why(r)[:60]
        intact = d.fds().get(0) == before.get(0)
        if ok(r):
            c.cmd("netdev_del", {"id": "t0"})
        if not intact:
            s.ownfd = 1
            s.note = "used and closed its own fd 0"
        settle(s, n)
        s.served = err(r) and intact

    # -- 5. HMP, through QMP and on a readline monitor
    if system:
        s, n, _ = begin("attack: human-monitor-command getfd hx with an fd; closefd")
        fd, path = files.fd("hmp-getfd")
        r, out = hmc(c, "getfd hx", [fd])
        os.close(fd)
        held = d.test_fds() == [path]
        r2, out2 = hmc(c, "closefd hx")
        s.note = (out + out2).strip()[:60]
        settle(s, n)
        s.served = ok(r) and held and ok(r2) and not out2.strip()

        s, n, before = begin("attack: human-monitor-command drive_add file=/dev/fd/1")
        r, out = hmc(c, "drive_add 0 if=none,id=hd1,file=/dev/fd/1,format=raw")
        opened_own = own_opened(d, before)
        if "OK" in out:
            hmc(c, "drive_del hd1")
        s.note = out.strip()[:60]
        if opened_own:
            s.ownfd = 1
        settle(s, n)
        s.served = ok(r) and "OK" not in out

        h = Hmp(d)
        s, n, _ = begin("attack: HMP line with an fd that takes none")
        fd, _ = files.fd("hmp-none")
        h.line("info version", [fd])
        os.close(fd)
        settle(s, n)
        s.served = True

        s, n, _ = begin("attack: HMP getfd h1 with its fd; closefd h1")
        fd, path = files.fd("hmp-line-getfd")
        h.line("getfd h1", [fd])
        os.close(fd)
        held = d.test_fds() == [path]
        h.line("closefd h1")
        s.note = "" if held else "getfd took no fd"
        settle(s, n)
        s.served = held and not d.test_fds()

        s, n, before = begin("attack: HMP drive_add file=/dev/fd/1, no fd")
        out = h.line("drive_add 0 if=none,id=hd2,file=/dev/fd/1,format=raw")
        if own_opened(d, before):
            s.ownfd = 1
        if "\r\nOK" in out or "\nOK" in out:
            h.line("drive_del hd2")
        settle(s, n)
        s.served = not s.ownfd
        h.close()

    # -- 4. Reopen: a /dev/fd/N node never re-resolves its name
    s, n, before = begin("attack: blockdev-reopen read-write of command-line /dev/fd/4 node, 5 fds")
    fds = [files.fd(f"reopen5-{i}")[0] for i in range(5)]
    r = c.cmd("blockdev-reopen", {"options": [
        {"driver": "file", "node-name": "cl", "filename": "/dev/fd/4",
         "read-only": False}]}, fds)
    for fd in fds:
        os.close(fd)
    s.note = why(r)[:60]
    settle(s, n)
    holds_own = d.cmdline_file in d.fds().values()
    s.served = ok(r) and holds_own and not s.left

    s, n, before = begin("attack: blockdev-reopen of command-line /dev/fd/4 node, no fds")
    r1 = c.cmd("blockdev-reopen", {"options": [
        {"driver": "file", "node-name": "cl", "filename": "/dev/fd/4",
         "read-only": True}]})
    r2 = c.cmd("blockdev-reopen", {"options": [
        {"driver": "file", "node-name": "cl", "filename": "/dev/fd/4",
         "read-only": False}]})
    s.note = (why(r1) + why(r2))[:60]
    settle(s, n)
    s.served = ok(r1) and ok(r2) and d.cmdline_file in d.fds().values()

    s, n, before = begin("attack: failed blockdev-reopen [n2 cache.direct=on, nx]")
    fd2, path2 = files.fd("reopen-n2")
    fdx, pathx = files.fd("reopen-nx", os.O_RDONLY)
    r = blockdev_add(c, "n2", "/dev/fd/0", [fd2])
    rx = blockdev_add(c, "nx", "/dev/fd/0", [fdx], read_only=True)
    os.close(fdx)
    flags_before = fcntl.fcntl(fd2, fcntl.F_GETFL)
    rr = c.cmd("blockdev-reopen", {"options": [
        {"driver": "file", "node-name": "n2", "filename": "/dev/fd/0",
         "cache": {"direct": True}},
        {"driver": "file", "node-name": "nx", "filename": "/dev/fd/0",
         "read-only": False}]})
    flags_after = fcntl.fcntl(fd2, fcntl.F_GETFL)
    readable = True
    if system and ok(r):
        _, out = hmc(c, 'qemu-io n2 "read 1 4"')
        readable = "error" not in out.lower() and "failed" not in out.lower()
    try:
        os.pread(fd2, 4, 1)             # the client's own unaligned read
        client_reads = True
    except OSError:
        client_reads = False
    os.close(fd2)
    s.note = why(rr)[:60] if err(rr) else "reopen succeeded"
    for node in ("n2", "nx"):
        c.cmd("blockdev-del", {"node-name": node})
    settle(s, n)
    s.served = (ok(r) and ok(rx) and err(rr) and flags_after == flags_before
                and readable and client_reads)
    if flags_after != flags_before:
        s.note = "the client's open file description kept the new flags"

    # -- 6. A chardev client that reconnects to a passed fd
    if system:
        s, n, before = begin("attack: chardev-add socket fd /dev/fd/0 reconnect-ms, peer hangs up")
        ours, theirs = socket.socketpair()
        r = c.cmd("chardev-add", {"id": "rc1", "backend": {"type": "socket", "data": {
            "addr": {"type": "fd", "data": {"str": "/dev/fd/0"}},
            "server": False, "reconnect-ms": 1000}}}, [theirs.fileno()])
        theirs.close()
        kept = True
        if ok(r):
            # The reproduction: the chardev closes the fd on hang-up, a node
            # opens a file, the reconnect timer looks the name up again.
            c.cmd("object-add", {"qom-type": "rng-egd", "id": "rng1", "chardev": "rc1"})
            ours.close()
            time.sleep(0.3)
            victim = files.path("reconnect-victim")
            rb = blockdev_add(c, "rcv", victim)
            time.sleep(2.5)
            kept = victim in d.fds().values()
            if ok(rb):
                c.cmd("blockdev-del", {"node-name": "rcv"})
            c.cmd("object-del", {"id": "rng1"})
            c.cmd("chardev-remove", {"id": "rc1"})
            s.note = "ok" if kept else "the block node's fd was taken by the reconnect"
            if not kept:
                s.ownfd = 1
        else:
            ours.close()
            s.note = why(r)[:60]
        settle(s, n)
        s.served = err(r) and "reconnect-ms" in why(r) and kept

    # -- 7. Failed netdevs close the fds they took
    if system:
        s, n, before = begin("attack: netdev_add tap fds=/dev/fd/0:/dev/fd/1, two pipe ends")
        pr, pw = os.pipe()
        r = c.cmd("netdev_add", {"type": "tap", "id": "tp2",
                                 "fds": "/dev/fd/0:/dev/fd/1"}, [pr, pw])
        os.close(pr)
        os.close(pw)
        if ok(r):
            c.cmd("netdev_del", {"id": "tp2"})
        s.note = why(r)[:60]
        settle(s, n)
        s.served = err(r) and s.total_delta <= 0

        s, n, before = begin("attack: netdev_add socket fd=/dev/fd/0, a pipe")
        pr, pw = os.pipe()
        r = c.cmd("netdev_add", {"type": "socket", "id": "sp2",
                                 "fd": "/dev/fd/0"}, [pr])
        os.close(pr)
        os.close(pw)
        if ok(r):
            c.cmd("netdev_del", {"id": "sp2"})
        s.note = why(r)[:60]
        settle(s, n)
        s.served = err(r) and s.total_delta <= 0

    # -- 8. exec: migration runs a shell that can read QEMU's own fds
    if system:
        s, n, before = begin("attack: migrate exec: listing /proc/$PPID/fd")
        path = files.path("exec-out", 0)
        c.cmd("cont")       # after the file: migration above
        r = c.cmd("migrate", {"uri": f"exec:ls -l /proc/$PPID/fd/ > {path}; "
                                     "cat > /dev/null"})
        status = None
        deadline = time.monotonic() + 60
        while ok(r) and time.monotonic() < deadline:
            status = c.cmd("query-migrate")["return"].get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.1)
        with open(path, "rb") as f:
            reached = d.log.encode() in f.read()   # QEMU's own stderr
        s.note = why(r)[:60] if err(r) else f"{status}"
        if reached:
            s.ownfd = 1
            s.note = "the shell reached QEMU's own fds"
        settle(s, n)
        s.served = err(r) and "exec:" in why(r)

    # -- 9. A snapshot onto a command's /dev/fd/0 of a /dev/fd/0 node
    if has_cmd(c, "blockdev-snapshot-sync"):
        s, n, before = begin("attack: blockdev-snapshot-sync snapshot-file=/dev/fd/0 of a /dev/fd/0 node")
        fda, patha = files.fd("snap-base")
        rb = c.cmd("blockdev-add", {"driver": "raw", "node-name": "snb", "file": {
            "driver": "file", "filename": "/dev/fd/0"}}, [fda])
        os.close(fda)
        fdb, pathb = files.fd("snap-overlay", size=0)
        r = c.cmd("blockdev-snapshot-sync", {
            "node-name": "snb", "snapshot-file": "/dev/fd/0",
            "snapshot-node-name": "sno", "format": "qcow2",
            "mode": "absolute-paths"}, [fdb])
        os.close(fdb)
        with open(pathb, "rb") as f:
            qcow2 = f.read(4) == b"QFI\xfb"
        s.note = why(rb)[:30] + why(r)[:60]
        for node in ("sno", "snb"):
            c.cmd("blockdev-del", {"node-name": node})
        settle(s, n)
        s.served = ok(rb) and ok(r) and qcow2

    # -- 10. Probes that stat() a name, with QEMU's stdin on /dev/null
    if system:
        d2 = Daemon(d.build, d.kind, d.binary, d.workdir, suffix="-null",
                    stdin_null=True)
        try:
            try:
                c2 = Client(d2)
            except OSError as e:
                fail(f"{d2.build} QEMU with stdin on /dev/null: {e}: "
                     f"{d2.proc.poll()} {open(d2.log).read()}")
            for label in ("drive_add", "drive-mirror"):
                s = step(f"attack: {label} of /dev/fd/0 with its fd, QEMU's stdin /dev/null")
                s.strict = True
                before = d2.fds()
                n2 = len(before)
                fd, path = files.fd(f"null-{label}", size=2 << 20)
                if label == "drive_add":
                    r, out = hmc(c2, "drive_add 0 if=none,id=nd1,file=/dev/fd/0,format=raw", [fd])
                    held = node_file(d2, before, path)
                    good = ok(r) and "OK" in out and held
                    s.note = out.strip()[:70]
                    if "OK" in out:
                        hmc(c2, "drive_del nd1")
                else:
                    src = files.path("null-mirror-src", 2 << 20)
                    with open(src, "r+b") as f:
                        f.write(b"MIRRORED")
                    assert ok(blockdev_add(c2, "nsrc", src))
                    r = c2.cmd("drive-mirror", {"job-id": "nmj", "device": "nsrc",
                                                "target": "/dev/fd/0", "format": "raw",
                                                "sync": "full", "mode": "absolute-paths"},
                               [fd])
                    s.note = why(r)[:70]
                    if ok(r):
                        job = wait_job(c2, "nmj", ("ready", "concluded"))
                        if job and job["status"] == "ready":
                            c2.cmd("block-job-complete", {"device": "nmj"})
                        wait_job(c2, "nmj", ("null",))
                    with open(path, "rb") as f:
                        good = ok(r) and f.read(8) == b"MIRRORED"
                    c2.cmd("blockdev-del", {"node-name": "nsrc"})
                    for n_ in c2.cmd("query-named-block-nodes")["return"]:
                        if n_.get("file") == "/dev/fd/0" and n_["node-name"] != "cl":
                            c2.cmd("blockdev-del", {"node-name": n_["node-name"]})
                os.close(fd)
                if own_opened(d2, before):
                    s.ownfd = 1
                    s.note = "opened its own fd 0 (/dev/null)"
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and len(d2.fds()) > n2:
                    time.sleep(0.05)
                s.left = d2.test_fds()
                s.total_delta = len(d2.fds()) - n2
                s.served = good
            c2.close()
        finally:
            d2.stop()


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

    # 12. Attacks on every path where QEMU turns a client string into an
    # fd, and on work a command starts.  Each compares the daemon's fd
    # table with the one before the step once the step is over.
    run_attacks(d, files, c, step)

    # 13. A client that disconnects in the middle of a command.
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

    # 14. qemu.qmp: send_fd_scm() sends the fd just before the command.
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

    def fd_taker(node, fdset):
        if system:
            return {"execute": "add-fd", "arguments": {"fdset-id": fdset}, "id": "c"}
        return {"execute": "blockdev-add", "id": "c",
                "arguments": {"driver": "file", "node-name": node,
                              "filename": "/dev/fd/0"}}

    def release(p, node, fdset):
        if system:
            p.cmd("remove-fd", {"fdset-id": fdset})
        else:
            p.cmd("blockdev-del", {"node-name": node})

    # Without the oob capability the monitor suspends after every command:
    # three commands in one write must still be taken one at a time and
    # answered in order, and the fd (on the write's first byte) go to the
    # first, the one that takes it.
    s = step("three commands in one write, no oob: in order, fd to the first")
    p = Client(d, oob=False, timeout=10)
    fd, path = files.fd("three")
    p.send(b"".join(json.dumps(m).encode() + b"\n" for m in [
        dict(fd_taker("three", 11), id="a"),
        {"execute": "query-version", "id": "b"},
        {"execute": "query-version", "id": "c"}]), [fd])
    os.close(fd)
    order = [p.recv() for _ in range(3)]
    held = d.test_fds()
    s.served = ([m.get("id") for m in order] == ["a", "b", "c"]
                and all(ok(m) for m in order) and held == [path])
    s.note = why(order[0])[:60]
    if ok(order[0]):
        release(p, "three", 11)
    p.close()
    close_step(s, base)

    # A client sends a command, then an fd on a space for the next command
    # without waiting for the first response (qemu.qmp's send_fd_scm, used
    # asynchronously): the kernel may return the first command and the
    # space in one read; the fd must still go to the next command.
    s = step("command, then fd ahead on a space without waiting: fd to the next")
    p = Client(d, oob=False, timeout=10)
    fd, path = files.fd("ahead")
    p.send(json.dumps({"execute": "query-version", "id": "a"}).encode())
    p.send(b" ", [fd])
    os.close(fd)
    p.send(json.dumps(fd_taker("ahead", 12)).encode())
    order = [p.recv() for _ in range(2)]
    held = d.test_fds()
    s.served = ([m.get("id") for m in order] == ["a", "c"]
                and all(ok(m) for m in order) and held == [path])
    s.note = why(order[1])[:60]
    if ok(order[1]):
        release(p, "ahead", 12)
    p.close()
    close_step(s, base)

    # Clients that pipeline many commands and hang up at once: responses
    # then find the client gone while the monitor is still feeding its
    # parser. QEMU must stay up and greet the next client.
    s = step("30 clients pipeline 400 commands and hang up: QEMU stays up")
    for _ in range(30):
        try:
            r = connect_raw(d)
            r.sendall(b'{"execute":"qmp_capabilities"}')
            r.recv(4096)
            r.sendall(b'{"execute":"query-version"}' * 400)
            r.close()
        except OSError:
            pass
        time.sleep(0.05)
        if d.proc.poll() is not None:
            break
    s.served = d.proc.poll() is None and greeted_within(d, 5)
    s.note = "" if d.proc.poll() is None else f"QEMU exited ({d.proc.returncode})"
    if d.proc.poll() is None:
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
        # The deadline plus room for a loaded machine; a locked monitor
        # never greets at all.
        s.served = greeted_within(d, HOLD_MS / 1000 + 4)
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
                        f"stale={s.stale} own={s.ownfd}"
                        + (f" fds{s.total_delta:+d}" if s.strict else "")
                        + (f" ({s.note})" if s.note else ""))
            print(f"  {su.name:58} | {cell(su)}\n  {'':58} | {cell(sp)}")
            good = (sp.served and not sp.left and not sp.stale and not sp.ownfd
                    and not (sp.strict and sp.total_delta > 0))
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
