#!/usr/bin/env python3
"""Event-loop monitors against real clients: build/epoll-monitor (fdctx
reads each non-blocking socket) and build/glib-monitor (GLib reads, fdctx is
fed), with several clients connected at once.

The clients are Python's socket.send_fds (fds on the command's own bytes,
or on a lone space ahead of it), qemu.qmp's QMPClient (send_fd_scm) and
fdctx-send. Every test checks that each client's command got its own fds
(the monitor's reply names the inode it opened), counts the monitor's open
fds (/proc/PID/fd) after every step, and compares the monitor's and this
process's fd tables before and after. A self-referencing client (its own
socket end sent with an unfinished command) and a stalled one are answered
at the hold deadline while the others are served.

The helpers (monitor process, client, fd accounting, valgrind report, the
qemu.qmp venv) are test_interop.py's.

Usage: test_event_loops.py --monitor PATH [--fdctx-send PATH] [--wrap CMD]
                           [--keep-log PATH] [--no-pip] [-v]
Prints "N passed, N failed[, N skipped]" and exits non-zero on a failure.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

import test_interop as ti
from test_interop import Client, QUERY, blockdev_add, blockdev_del, expect_error


def T(seconds):
    return ti.T(seconds)


def ino(path):
    return os.stat(path).st_ino


def added(r, path):
    """The reply to blockdev-add: the node holds exactly the file at path."""
    assert "return" in r, r
    assert r["return"]["inode"] == ino(path), "got inode %s, sent %s (%s)" % (r["return"]["inode"], ino(path), path)
    return r["return"]


def step(s, want, what):
    """The monitor's fd count after a step: it settles at `want` (the monitor
    may still be working on the last write)."""
    end = time.monotonic() + T(5)
    while s.mon.count() != want:
        if time.monotonic() > end:
            raise AssertionError("after %s: the monitor has %d fds, want %d: %s"
                                 % (what, s.mon.count(), want, s.mon.fds()))
        time.sleep(0.01)


def clients(s, n):
    return [Client(s.mon.path) for _ in range(n)]


def close_all(cs):
    for c in cs:
        c.close()


# ---------------------------------------------------------------- tests


def t_several_clients_each_get_their_own_fds(s):
    """Four clients connected at once, each adds a node from its own image."""
    base = s.mon.count()
    names = ["a.raw", "b.raw", "c.raw", "d.qcow2"]
    cs = clients(s, 4)
    try:
        step(s, base + 4, "four clients connected")
        for i, (c, name) in enumerate(zip(cs, names)):
            fd = s.open(name)
            try:
                added(c.cmd(blockdev_add("n%d" % i, "/dev/fd/0", True), [fd]), s.img(name))
            finally:
                os.close(fd)
            step(s, base + 4 + i + 1, "blockdev-add from client %d" % i)
        for c in cs:
            nodes = {n["node-name"]: n["inode"] for n in c.cmd(QUERY)["return"]}
            assert nodes == {"n%d" % i: ino(s.img(n)) for i, n in enumerate(names)}, nodes
        for i, c in enumerate(cs):
            assert c.cmd(blockdev_del("n%d" % i)) == {"return": {}}
            step(s, base + 4 + 3 - i, "blockdev-del from client %d" % i)
    finally:
        close_all(cs)
    step(s, base, "the clients left")


def t_interleaved_half_commands_keep_their_fds(s):
    """Client A sends half a command with its fd; B a whole one with its own
    fd, C its fd on a lone space ahead (qemu.qmp style); then A finishes."""
    base = s.mon.count()
    a, b, c = clients(s, 3)
    try:
        fa, fb, fc = s.open("a.raw"), s.open("b.raw"), s.open("c.raw")
        try:
            add_a = json.dumps(blockdev_add("ia", "/dev/fd/0", True)).encode() + b"\n"
            a.send(add_a[:20], [fa])
            step(s, base + 3 + 1, "A's half command holds its fd")
            rb = b.cmd(blockdev_add("ib", "/dev/fd/0", True), [fb])
            rc = c.cmd(blockdev_add("ic", "/dev/fd/0", True), [fc], "ahead")
            a.send(add_a[20:])
            ra = a.reply()
        finally:
            for fd in (fa, fb, fc):
                os.close(fd)
        added(ra, s.img("a.raw"))
        added(rb, s.img("b.raw"))
        added(rc, s.img("c.raw"))
        step(s, base + 3 + 3, "three nodes")
        for name in ("ia", "ib", "ic"):
            assert a.cmd(blockdev_del(name)) == {"return": {}}
        step(s, base + 3, "nodes deleted")
    finally:
        close_all([a, b, c])


def t_pipelined_commands_each_with_fds(s):
    """One client writes three fd-carrying commands before reading a reply;
    a second client does the same at the same time."""
    base = s.mon.count()
    a, b = clients(s, 2)
    try:
        fds = {name: s.open(name) for name in ("a.raw", "b.raw", "c.raw", "d.qcow2")}
        try:
            for i, name in enumerate(("a.raw", "b.raw", "c.raw")):
                a.send(blockdev_add("p%d" % i, "/dev/fd/0", True), [fds[name]])
            b.send(dict(blockdev_add("q0", "/dev/fd/1", True), id="b"), [fds["c.raw"], fds["d.qcow2"]])
            got = [a.reply() for _ in range(3)]
            rb = b.reply()
        finally:
            for fd in fds.values():
                os.close(fd)
        for r, name in zip(got, ("a.raw", "b.raw", "c.raw")):
            added(r, s.img(name))
        assert rb["id"] == "b" and added(rb, s.img("d.qcow2"))
        step(s, base + 2 + 4, "four nodes; the unused fd closed")
        for name in ("p0", "p1", "p2", "q0"):
            assert a.cmd(blockdev_del(name)) == {"return": {}}
        step(s, base + 2, "nodes deleted")
    finally:
        close_all([a, b])


def t_bad_commands_close_their_fds(s):
    """Malformed JSON, a missing index and a path to the monitor's own fds,
    each with an fd, from two clients: errors, every fd closed."""
    base = s.mon.count()
    a, b = clients(s, 2)
    try:
        fd = s.open("a.raw")
        try:
            a.send(b'{"execute": oops}\n', [fd])
            expect_error(a.reply())
            step(s, base + 2, "malformed command")
            expect_error(b.cmd(blockdev_add("x", "/dev/fd/3", True), [fd]), "/dev/fd/3")
            expect_error(a.cmd(blockdev_add("x", "/proc/self/fd/0", True), [fd]))
            expect_error(b.cmd({"execute": "no-such-command"}, [fd, fd]), "no-such-command")
            expect_error(a.cmd(blockdev_add("x", "/dev/fd/0", True), [fd] * 40))  # max_fds is 32
        finally:
            os.close(fd)
        step(s, base + 2, "every rejected command's fds closed")
        assert a.cmd(QUERY) == {"return": []}
    finally:
        close_all([a, b])


def t_client_dies_mid_command(s):
    """A client holding fds for an unfinished command is killed; another is served."""
    base = s.mon.count()
    other = Client(s.mon.path)
    try:
        code = ("import socket,os,sys,time\n"
                "s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(4096)\n"
                "fd=os.open(sys.argv[2], os.O_RDONLY)\n"
                "socket.send_fds(s, [b'{\"execute\": \"blockdev-add\", '], [fd, fd])\n"
                "print('sent', flush=True); time.sleep(60)\n")
        p = subprocess.Popen([sys.executable, "-c", code, s.mon.path, s.img("b.raw")],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            assert p.stdout.readline().strip() == b"sent"
            s.mon.wait_for(lambda: s.mon.holds(s.img("b.raw")) == 2, "the half command's fds held")
            assert other.cmd(QUERY) == {"return": []}
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
        step(s, base + 1, "the dead client's fds closed")
    finally:
        other.close()


def t_stalled_client_is_answered_at_the_deadline(s):
    """A client stops mid-command holding an fd: the others are served at
    once; at max_hold_ms it gets an error without sending anything more."""
    base = s.mon.count()
    stalled, other = clients(s, 2)
    try:
        fd = s.open("c.raw")
        try:
            start = time.monotonic()
            stalled.send(b'{"execute": "blockdev-add", "arguments": {', [fd])
        finally:
            os.close(fd)
        step(s, base + 2 + 1, "the stalled command's fd held")
        assert other.cmd(QUERY) == {"return": []}, "another client is served meanwhile"
        stalled.sock.settimeout(T(10) + ti.hold_ms() / 1000.0)
        expect_error(stalled.reply(), "held longer")
        waited = time.monotonic() - start
        assert waited >= ti.hold_ms() / 1000.0 * 0.9, "answered after %.3f s, before the deadline" % waited
        step(s, base + 2, "the held fd closed")
        stalled.send(b"\n")
        assert stalled.cmd(QUERY) == {"return": []}, "the connection goes on"
    finally:
        close_all([stalled, other])


def t_self_referencing_client_is_answered(s):
    """A client sends its own socket end with an unfinished command. The
    monitor must not keep that copy: the socket connection (epoll) refuses
    it at once where the kernel can tell, a fed one (GLib) closes it at the
    hold deadline and answers -ETIMEDOUT. Meanwhile another client is
    served; the self-referencing one gets exactly one error and goes on; one
    that exits instead is dropped."""
    base = s.mon.count()
    selfref, other = clients(s, 2)
    try:
        selfref.send(b'{"execute": "blockdev-add", "arguments": {"node-name": "self"', [selfref.sock.fileno()])
        assert other.cmd(QUERY) == {"return": []}
        s.mon.wait_for(lambda: s.mon.count() == base + 2, "the client's own socket end closed",
                       timeout=5 + ti.hold_ms() / 1000.0)
        selfref.send(b"}}\n")  # completes the command, or is discarded after the deadline
        selfref.sock.settimeout(T(10))
        expect_error(selfref.reply())
        assert selfref.cmd(QUERY) == {"return": []}, "one error, then the connection goes on"
    finally:
        selfref.close()
    try:
        gone = Client(s.mon.path)
        gone.send(b'{"execute": "query-block"', [gone.sock.fileno()])
        gone.close()  # exits: only the monitor's copy would keep it open
        assert other.cmd(QUERY) == {"return": []}
        s.mon.wait_for(lambda: s.mon.count() == base + 1, "the departed self-referencing client dropped",
                       timeout=5 + ti.hold_ms() / 1000.0)
    finally:
        other.close()


def t_fdctx_send_alongside_other_clients(s):
    """fdctx-send adds and deletes a node while two clients stay connected,
    one of them in the middle of a command."""
    base = s.mon.count()
    idle, half = clients(s, 2)
    try:
        half.send(b'{"execute": "query-block",')
        rc, out, err = ti.fdctx_send(s, "--qmp", "--fd", s.img("d.qcow2"), s.mon.path,
                                     json.dumps(blockdev_add("fs", "/dev/fd/0", True)))
        assert rc == 0, (rc, out, err)
        added(json.loads(out), s.img("d.qcow2"))
        step(s, base + 2 + 1, "fdctx-send's node")
        rc, out, err = ti.fdctx_send(s, "--qmp", s.mon.path, json.dumps(blockdev_del("fs")))
        assert rc == 0, (rc, out, err)
        half.send(b' "id": 1}\n')
        assert half.reply() == {"return": [], "id": 1}
        assert idle.cmd(QUERY) == {"return": []}
        step(s, base + 2, "node deleted")
    finally:
        close_all([idle, half])


def t_qemu_qmp_clients_at_once(s):
    """Two qemu.qmp QMPClients at once, each send_fd_scm + blockdev-add."""
    import asyncio
    from qemu.qmp import QMPClient

    base = s.mon.count()

    async def one(name, image):
        qmp = QMPClient("fdctx-" + name)
        await qmp.connect(s.mon.path)
        try:
            fd = s.open(image)
            try:
                qmp.send_fd_scm(fd)
                res = await qmp.execute("blockdev-add", blockdev_add(name, "/dev/fd/0", True)["arguments"])
            finally:
                os.close(fd)
            assert res["inode"] == ino(s.img(image)), (res, image)
            return qmp
        except BaseException:
            await qmp.disconnect()
            raise

    async def main():
        qa, qb = await asyncio.gather(one("qa", "a.raw"), one("qb", "d.qcow2"))
        try:
            step(s, base + 2 + 2, "two qemu.qmp clients, two nodes")
            blocks = await qa.execute("query-block")
            assert sorted(b["node-name"] for b in blocks) == ["qa", "qb"], blocks
            await qa.execute("blockdev-del", {"node-name": "qa"})
            await qb.execute("blockdev-del", {"node-name": "qb"})
            step(s, base + 2, "nodes deleted")
        finally:
            await qa.disconnect()
            await qb.disconnect()

    asyncio.run(main())


def t_client_that_never_reads_is_dropped(s):
    """A client floods commands and never reads a reply: the monitor does not
    block on it; it is dropped once its replies pile up, the others are served."""
    import threading
    base = s.mon.count()
    other = Client(s.mon.path)
    flood = Client(s.mon.path)
    outcome = []

    def send():
        try:
            flood.sock.settimeout(T(60))
            flood.sock.sendall(b'{"execute": "query-block"}\n' * 200000)
            outcome.append("sent")
        except OSError as e:  # dropped while sending
            outcome.append(type(e).__name__)

    t = threading.Thread(target=send)
    t.start()
    try:
        assert other.cmd(QUERY) == {"return": []}, "served during the flood"
        t.join(T(60))
        assert outcome, "the flood is still being sent"
        s.mon.wait_for(lambda: s.mon.count() == base + 1, "the flooding client dropped", timeout=20)
        assert other.cmd(QUERY) == {"return": []}, "served after the flood"
    finally:
        flood.close()
        t.join()
        other.close()


def t_many_clients(s):
    """Twenty clients connected at once, all served."""
    base = s.mon.count()
    cs = clients(s, 20)
    try:
        step(s, base + 20, "twenty clients")
        for i, c in enumerate(cs):
            assert c.cmd(dict(QUERY, id=i)) == {"return": [], "id": i}
    finally:
        close_all(cs)
    step(s, base, "all gone")


TESTS = [
    t_several_clients_each_get_their_own_fds,
    t_interleaved_half_commands_keep_their_fds,
    t_pipelined_commands_each_with_fds,
    t_bad_commands_close_their_fds,
    t_client_dies_mid_command,
    t_stalled_client_is_answered_at_the_deadline,
    t_self_referencing_client_is_answered,
    t_fdctx_send_alongside_other_clients,
    t_client_that_never_reads_is_dropped,
    t_many_clients,
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--monitor", required=True, help="build/epoll-monitor or build/glib-monitor")
    ap.add_argument("--fdctx-send", default=os.path.join(ti.ROOT, "build", "stage", "bin", "fdctx-send"))
    ap.add_argument("--wrap", default="", metavar="CMD", help="run the monitor under this command (valgrind)")
    ap.add_argument("--keep-log", metavar="PATH", help="copy the monitor's stderr here at the end")
    ap.add_argument("--no-pip", action="store_true", help="do not install qemu.qmp; skip its test if absent")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    name = os.path.basename(args.monitor)
    if not os.access(args.monitor, os.X_OK):
        print("event loops: %s not found (run: make %s)" % (args.monitor, args.monitor))
        print("0 passed, 1 failed")
        return 1
    args.minivmm = os.path.abspath(args.monitor)  # the name test_interop's Suite uses
    args.fdctx_send = os.path.abspath(args.fdctx_send)
    args.confine = False  # test_interop's Suite asks; the examples have no --confine
    args.wrap = shlex.split(args.wrap)
    args.valgrind = bool(args.wrap) and os.path.basename(args.wrap[0]).startswith("valgrind")
    if args.valgrind and "--track-fds=yes" not in args.wrap:
        print("event loops: --wrap runs valgrind without --track-fds=yes")
        print("0 passed, 1 failed")
        return 1
    ti.TIME_SCALE = 10.0 if args.wrap else 1.0
    # The examples read their hold deadline from here (test_interop's hold_ms()).
    os.environ["EXAMPLE_MAX_HOLD_MS"] = str(ti.hold_ms())

    why_no_qmp = ti.qemu_qmp_available(args)  # may re-exec this script under the venv
    print("monitor: %s%s (max_hold_ms %d)" % (os.path.relpath(args.monitor),
                                             " under " + shlex.join(args.wrap) if args.wrap else "", ti.hold_ms()))
    sys.stdout.flush()

    with tempfile.TemporaryDirectory(prefix="fdctx-event-loops.") as workdir:
        try:
            suite = ti.Suite(args, workdir)
        except (OSError, RuntimeError) as e:
            print("FAIL start: %s" % e)
            print("0 passed, 1 failed")
            return 1
        try:
            ti.run_tests(suite, TESTS, [t_qemu_qmp_clients_at_once], why_no_qmp)
            try:
                with Client(suite.mon.path) as c, Client(suite.mon.path) as other:
                    assert c.cmd({"execute": "quit", "id": "bye"}) == {"return": {}, "id": "bye"}
                    rc = suite.mon.proc.wait(T(10))
                    assert rc == 0, "%s exited with %d" % (name, rc)
                    other.sock.settimeout(T(5))
                    assert other.sock.recv(1) == b"", "the other client's connection was closed"
                assert not os.path.exists(suite.mon.path), "socket file left behind"
                suite.passed += 1
                print("ok   quit")
            except Exception as e:  # noqa: BLE001
                suite.failed += 1
                print("FAIL quit: %s" % e)
        finally:
            suite.close()
        return ti.finish_run(suite, args, name)


if __name__ == "__main__":
    sys.exit(main())
