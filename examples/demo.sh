#!/usr/bin/env bash
# The fdctx demo: a QMP monitor (build/minivmm) linked to libfdctx, driven by
# fdctx-send with real disk images.  Prints a transcript and checks every
# expectation; exits non-zero when one is not met.
#
#   examples/demo.sh            (normally run as: make demo)
#
# Environment: MINIVMM (default build/minivmm), FDCTX_SEND (default
# build/stage/bin/fdctx-send, else target/release/fdctx-send), QEMU_IMG
# (default qemu-img; when it is not found the demo uses raw images only).
set -u

die() { echo "demo: $*" >&2; exit 2; }

MINIVMM=${MINIVMM:-build/minivmm}
QEMU_IMG=${QEMU_IMG:-qemu-img}
if [ -z "${FDCTX_SEND:-}" ]; then
    FDCTX_SEND=build/stage/bin/fdctx-send
    [ -x "$FDCTX_SEND" ] || FDCTX_SEND=target/release/fdctx-send
fi
[ -x "$MINIVMM" ] || die "$MINIVMM not found (run: make build/minivmm)"
[ -x "$FDCTX_SEND" ] || die "$FDCTX_SEND not found (run: make)"
command -v python3 >/dev/null || die "python3 is needed for the dying-client step"
MINIVMM=$(cd "$(dirname "$MINIVMM")" && pwd)/$(basename "$MINIVMM")
FDCTX_SEND=$(cd "$(dirname "$FDCTX_SEND")" && pwd)/$(basename "$FDCTX_SEND")

# The monitor should start with nothing but stdio and its socket: do not
# hand it whatever descriptors the calling environment left open.
SELF=$(readlink -f "$0")
for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] && [ "$(readlink "/proc/$$/fd/$fd")" != "$SELF" ] && eval "exec $fd>&-" 2>/dev/null
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fdctx-demo.XXXXXX") || die "mktemp failed"
VMM_PID=
CLIENT_PID=
cleanup() {
    [ -n "$CLIENT_PID" ] && kill -9 "$CLIENT_PID" 2>/dev/null
    [ -n "$VMM_PID" ] && kill "$VMM_PID" 2>/dev/null
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir "$WORK/bin"
ln -s "$FDCTX_SEND" "$WORK/bin/fdctx-send"
export PATH="$WORK/bin:$PATH"
cd "$WORK" || die "cannot enter $WORK"

# ---------------------------------------------------------------- output

PASS=0
FAIL=0
STEP=0
LOGSEEN=0

step() {
    STEP=$((STEP + 1))
    echo
    echo "== $STEP. $*"
}
note() { echo "   $*"; }
ok() { PASS=$((PASS + 1)); echo "   ok: $*"; }
bad() { FAIL=$((FAIL + 1)); echo "   FAIL: $*"; }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}

# New lines of the monitor's stderr since the last call.
monitor_log() {
    local total
    total=$(wc -l < minivmm.log)
    if [ "$total" -gt "$LOGSEEN" ]; then
        tail -n +"$((LOGSEEN + 1))" minivmm.log | head -n "$((total - LOGSEEN))" | sed 's/^/   [monitor] /'
    fi
    LOGSEEN=$total
}

# Runs fdctx-send, echoing the command line; sets RC and REPLY.
RC=0
REPLY=
send() {
    printf '$ fdctx-send'
    printf " %s" "${@:1:$#-1}"
    printf " '%s'\n" "${!#}"
    REPLY=$(fdctx-send "$@" 2> send.err)
    RC=$?
    [ -n "$REPLY" ] && echo "$REPLY" | sed 's/^/   -> /'
    [ -s send.err ] && sed 's/^/   (stderr) /' send.err
    settle
    monitor_log
}

# fd -> target lines for the monitor, paths shown relative to the demo dir.
fd_table() {
    local f
    [ -n "$VMM_PID" ] || return 0
    for f in /proc/"$VMM_PID"/fd/*; do
        printf '%s -> %s\n' "${f##*/}" "$(readlink "$f" 2>/dev/null)"
    done | sort -n | sed "s|$WORK/||"
}
show_fds() {
    echo "   open fds of the monitor (ls -l /proc/$VMM_PID/fd):"
    fd_table | sed 's/^/     /'
}
fd_count() { fd_table | wc -l; }

# The octal flags of /proc/PID/fdinfo/FD spelled as open(2) flags (Linux's
# x86_64/aarch64 values), e.g. 02100002 -> O_RDWR|O_LARGEFILE|O_CLOEXEC.
decode_flags() {
    local v=$((8#$1)) names
    case $((v & 3)) in 0) names=O_RDONLY ;; 1) names=O_WRONLY ;; *) names=O_RDWR ;; esac
    local bit name
    for bit in 02000:O_APPEND 04000:O_NONBLOCK 040000:O_DIRECT 0100000:O_LARGEFILE \
        0200000:O_DIRECTORY 0400000:O_NOFOLLOW 01000000:O_NOATIME 02000000:O_CLOEXEC \
        04010000:O_SYNC 010000:O_DSYNC 010000000:O_PATH; do
        name=${bit#*:}
        bit=$((8#${bit%%:*}))
        if [ $((v & bit)) -eq "$bit" ]; then
            names="$names|$name"
            v=$((v & ~bit))
        fi
    done
    echo "$names"
}
fds_on() { fd_table | grep -c -- "-> $1\$"; }
socket_count() { fd_table | grep -c -- '-> socket:'; }

# Waits until the monitor has dropped its client (only the listening socket left).
settle() {
    local i
    for i in $(seq 1 100); do
        [ "$(socket_count)" -le 1 ] && return 0
        sleep 0.05
    done
    return 1
}

reply_is_return() { [ "$RC" -eq 0 ] && grep -q '"return"' <<<"$REPLY"; }
reply_is_error() { [ "$RC" -eq 1 ] && grep -q '"error"' <<<"$REPLY"; }
reply_has() { grep -q -- "$1" <<<"$REPLY"; }
reply_matches() { grep -Eqi -- "$1" <<<"$REPLY"; }
count_is() { [ "$1" -eq "$2" ]; }

# ---------------------------------------------------------------- images

echo "fdctx demo: per-command fd contexts on a QMP monitor"
echo "working directory: $WORK"

step "Disk images"
if command -v "$QEMU_IMG" >/dev/null; then
    DISK=disk.qcow2
    DISK_FORMAT=qcow2
    DISK_SIZE=1073741824
    echo '$ qemu-img create -f qcow2 disk.qcow2 1G'
    "$QEMU_IMG" create -f qcow2 disk.qcow2 1G | sed 's/^/   /' || die "qemu-img failed"
    echo '$ qemu-img create -f raw seed.raw 16M'
    "$QEMU_IMG" create -f raw seed.raw 16M | sed 's/^/   /' || die "qemu-img failed"
else
    note "$QEMU_IMG is not installed: using raw images only (apt-get install qemu-utils adds qcow2)"
    DISK=disk.img
    DISK_FORMAT=raw
    DISK_SIZE=67108864
    echo '$ truncate -s 64M disk.img; truncate -s 16M seed.raw'
    truncate -s 64M disk.img && truncate -s 16M seed.raw || die "truncate failed"
fi
echo '$ truncate -s 1M spare.raw'
truncate -s 1M spare.raw || die "truncate failed"
ls -l "$DISK" seed.raw spare.raw | sed 's/^/   /'
if [ "$DISK_FORMAT" = qcow2 ]; then
    check "$DISK starts with the qcow2 magic" eval '[ "$(head -c 3 "$DISK")" = QFI ]'
else
    check "$DISK is $DISK_SIZE bytes" count_is "$(stat -c %s "$DISK")" "$DISK_SIZE"
fi

# ---------------------------------------------------------------- monitor

# Starts minivmm with ARGS in the background (VMM_PID) and waits, up to
# five seconds, for its "ready" line or its exit.
start_monitor() {
    "$MINIVMM" "$@" < /dev/null > minivmm.out 2> minivmm.log &
    VMM_PID=$!
    for i in $(seq 1 100); do
        grep -q '^ready$' minivmm.out 2>/dev/null && break
        kill -0 "$VMM_PID" 2>/dev/null || break
        sleep 0.05
    done
}

step "Start the monitor"
echo "\$ minivmm vmm.sock &"
start_monitor vmm.sock
grep -q '^ready$' minivmm.out 2>/dev/null || { monitor_log; die "minivmm did not start"; }
note "minivmm printed: $(cat minivmm.out)"
monitor_log
show_fds
BASE=$(fd_count)
check "the monitor starts with $BASE fds (stdio and the listening socket)" count_is "$(socket_count)" 1

# ---------------------------------------------------------------- 1

step "Add the $DISK_FORMAT image read-write through /dev/fd/0, passing a second fd it never uses"
note "--fd $DISK:rw becomes /dev/fd/0 of this command, --fd spare.raw becomes /dev/fd/1"
send --qmp --fd "$DISK:rw" --fd spare.raw vmm.sock \
    '{"execute": "blockdev-add", "arguments": {"node-name": "disk0", "driver": "file", "filename": "/dev/fd/0", "read-only": false}, "id": "add-1"}'
check "blockdev-add succeeded" reply_is_return
check "the reply echoes the command's id" reply_has '"id": "add-1"'
check "the monitor logged the unused fd as closed" grep -q 'never used' minivmm.log

step "query-block: format and size were read through the fd"
send --qmp vmm.sock '{"execute": "query-block"}'
check "query-block succeeded" reply_is_return
check "disk0 is $DISK_FORMAT" reply_has "\"node-name\": \"disk0\", \"format\": \"$DISK_FORMAT\""
check "its virtual size is $DISK_SIZE bytes" reply_has "\"virtual-size\": $DISK_SIZE"
check "it is read-write" reply_has '"read-only": false'

step "The monitor's fds after the command"
show_fds
DISK_FD=$(fd_table | awk -v t="$DISK" '$3 == t { print $1; exit }')
if [ -n "$DISK_FD" ]; then
    DISK_FLAGS=$(awk '/^flags/ { print $2 }' /proc/"$VMM_PID"/fdinfo/"$DISK_FD")
    note "fd $DISK_FD's open flags (/proc/$VMM_PID/fdinfo/$DISK_FD): $DISK_FLAGS = $(decode_flags "$DISK_FLAGS")"
fi
check "the used fd is held: $DISK is open once" count_is "$(fds_on "$DISK")" 1
check "the unused fd was closed: spare.raw is not open" count_is "$(fds_on spare.raw)" 0
check "exactly one fd more than at start" count_is "$(fd_count)" $((BASE + 1))
disk_rw() { [ -n "$DISK_FD" ] && [ $((0$(awk '/^flags/ { print $2 }' /proc/"$VMM_PID"/fdinfo/"$DISK_FD") & 3)) -eq 2 ]; }
check "$DISK is held open read-write (O_RDWR in fdinfo flags)" disk_rw

# ---------------------------------------------------------------- 2

step "A command naming /dev/fd/3 when only one fd was passed"
send --qmp --fd spare.raw vmm.sock \
    '{"execute": "blockdev-add", "arguments": {"node-name": "bad", "driver": "file", "filename": "/dev/fd/3"}, "id": "add-2"}'
check "refused with an error" reply_is_error
check "the error names /dev/fd/3" reply_has '/dev/fd/3'
check "the error echoes the id" reply_has '"id": "add-2"'
check "the monitor says the rejected command's fds were closed" grep -q 'rejected, its fds closed: ' minivmm.log
show_fds
check "nothing held: spare.raw is not open" count_is "$(fds_on spare.raw)" 0
check "fd count unchanged" count_is "$(fd_count)" $((BASE + 1))

# ---------------------------------------------------------------- 3

step "A read-write request on a read-only fd"
send --qmp --fd seed.raw:r vmm.sock \
    '{"execute": "blockdev-add", "arguments": {"node-name": "seed", "driver": "file", "filename": "/dev/fd/0", "read-only": false}}'
check "refused with an error" reply_is_error
check "the error says why (access mode)" reply_matches 'permission|access|read-only|denied'
check "the monitor says the refused command's fd was closed" grep -q 'used by the failed command, kept by nothing: closed' minivmm.log
check "nothing held: seed.raw is not open" count_is "$(fds_on seed.raw)" 0
check "fd count unchanged" count_is "$(fd_count)" $((BASE + 1))

note "the same fd asked for read-only is fine:"
send --qmp --fd seed.raw:r vmm.sock \
    '{"execute": "blockdev-add", "arguments": {"node-name": "seed", "driver": "file", "filename": "/dev/fd/0", "read-only": true}}'
check "blockdev-add read-only succeeded" reply_is_return
send --qmp vmm.sock '{"execute": "query-block"}'
check "seed is raw, 16 MiB, read-only" reply_has '"node-name": "seed", "format": "raw", "virtual-size": 16777216, "read-only": true'
send --qmp vmm.sock '{"execute": "blockdev-del", "arguments": {"node-name": "seed"}}'
check "blockdev-del succeeded" reply_is_return
check "seed.raw is closed again" count_is "$(fds_on seed.raw)" 0

# ---------------------------------------------------------------- 4

step "A client that dies in the middle of a command that carries an fd"
cat > dying-client.py <<'EOF'
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect("vmm.sock")
f = s.makefile("rb")
f.readline()                                      # QMP greeting
s.sendall(b'{"execute": "qmp_capabilities"}\n')
f.readline()
fd = os.open("spare.raw", os.O_RDONLY)
# half a command, with its fd attached
socket.send_fds(s, [b'{"execute": "blockdev-add", "arguments": {"node-name": "half", '
                    b'"driver": "file", "filename": "/dev/fd/0"'], [fd])
os.close(fd)
print("sent", flush=True)
time.sleep(60)                                    # ...and is killed here
EOF
sed 's/^/   | /' dying-client.py
echo '$ python3 dying-client.py &'
python3 dying-client.py > client.out 2>&1 &
CLIENT_PID=$!
for i in $(seq 1 100); do
    grep -q sent client.out && [ "$(fds_on spare.raw)" -eq 1 ] && break
    sleep 0.05
done
monitor_log
note "half a command is in: the monitor holds its fd until the command completes or the client goes"
show_fds
check "the half command's fd is held while the client is alive" count_is "$(fds_on spare.raw)" 1
echo "\$ kill -9 $CLIENT_PID"
# (bash's own "Killed" notice for its job is not part of the transcript)
{ kill -9 "$CLIENT_PID"; wait "$CLIENT_PID"; } 2>/dev/null
CLIENT_PID=
settle
monitor_log
show_fds
check "the client is gone and its fd was closed" count_is "$(fds_on spare.raw)" 0
check "fd count back to what it was before the client" count_is "$(fd_count)" $((BASE + 1))

step "The monitor still answers"
send --qmp vmm.sock '{"execute": "query-block", "id": 42}'
check "query-block succeeded" reply_is_return
check "only disk0 is there" reply_matches '^\{"return": \[\{"node-name": "disk0"[^]]*\}\]'
check "numeric id echoed" reply_has '"id": 42'

# ---------------------------------------------------------------- 5

step "fdctx-send's own errors are clear"
send --qmp --fd missing.qcow2 vmm.sock '{"execute": "query-block"}'
check "a missing file: exit status 2 and a clear message" \
    eval '[ "$RC" -eq 2 ] && grep -q "cannot open .missing.qcow2" send.err'

step "Delete the node, then quit"
send --qmp vmm.sock '{"execute": "blockdev-del", "arguments": {"node-name": "disk0"}}'
check "blockdev-del succeeded" reply_is_return
show_fds
check "$DISK is closed" count_is "$(fds_on "$DISK")" 0
check "the monitor holds exactly the fds it started with" count_is "$(fd_count)" "$BASE"
send --qmp vmm.sock '{"execute": "quit"}'
check "quit succeeded" reply_is_return
wait "$VMM_PID"
VMM_RC=$?
VMM_PID=
monitor_log
check "the monitor exited with status 0" count_is "$VMM_RC" 0
send --qmp vmm.sock '{"execute": "query-block"}'
check "after quit: exit status 2 and a clear message" \
    eval '[ "$RC" -eq 2 ] && grep -Eq "no socket|refused" send.err'

# ---------------------------------------------------------------- 6

step "A confined monitor: the image refused by path, served as /dev/fd/0"
landlock_abi() {
    python3 -c 'import ctypes; l = ctypes.CDLL(None); print(max(l.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint(1)), 0))' 2>/dev/null || echo 0
}
if [ "$(uname -m)" != x86_64 ] && [ "$(uname -m)" != aarch64 ] || [ "$(landlock_abi)" -eq 0 ]; then
    note "skipped: this kernel has no usable Landlock, and minivmm --confine refuses to run unconfined"
else
    note "minivmm --confine calls fdctx_confine(NULL, 0, FDCTX_CONFINE_REQUIRE) before serving:"
    note "Landlock then lets it open no file by path; what it serves must come as fds"
    echo "\$ minivmm --confine confined.sock &"
    LOGSEEN=0
    start_monitor --confine confined.sock
    monitor_log
    check "the confined monitor started" grep -q '^ready$' minivmm.out
    echo "\$ grep NoNewPrivs /proc/$VMM_PID/status"
    grep NoNewPrivs /proc/"$VMM_PID"/status | sed 's/^/   /'
    check "no_new_privs is set (NoNewPrivs: 1)" grep -Eq '^NoNewPrivs:[[:space:]]+1$' /proc/"$VMM_PID"/status
    check "the monitor reports its Landlock domain" grep -q 'confined by Landlock (ABI' minivmm.log
    note "the same $DISK_FORMAT image, named by its path:"
    send --qmp confined.sock \
        "{\"execute\": \"blockdev-add\", \"arguments\": {\"node-name\": \"disk0\", \"driver\": \"file\", \"filename\": \"$WORK/$DISK\", \"read-only\": true}}"
    check "refused: the kernel says no (Permission denied)" reply_is_error
    check "the error says the monitor is confined" reply_has 'confined'
    check "$DISK is not open in the monitor" count_is "$(fds_on "$DISK")" 0
    note "and passed as an fd:"
    send --qmp --fd "$DISK:rw" confined.sock \
        '{"execute": "blockdev-add", "arguments": {"node-name": "disk0", "driver": "file", "filename": "/dev/fd/0", "read-only": false}}'
    check "blockdev-add through /dev/fd/0 succeeded" reply_is_return
    send --qmp confined.sock '{"execute": "query-block"}'
    check "disk0 is $DISK_FORMAT, $DISK_SIZE bytes, read-write" \
        reply_has "\"node-name\": \"disk0\", \"format\": \"$DISK_FORMAT\", \"virtual-size\": $DISK_SIZE, \"read-only\": false"
    show_fds
    send --qmp confined.sock '{"execute": "quit"}'
    check "quit succeeded" reply_is_return
    wait "$VMM_PID"
    VMM_RC=$?
    VMM_PID=
    monitor_log
    check "the confined monitor exited with status 0" count_is "$VMM_RC" 0
    check "its socket file stays (a confined monitor cannot remove it)" test -S confined.sock
    rm -f confined.sock
fi

echo
if [ "$FAIL" -eq 0 ]; then
    echo "demo: all $PASS expectations met"
    exit 0
fi
echo "demo: $FAIL of $((PASS + FAIL)) expectations NOT met"
exit 1
