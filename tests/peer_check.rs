//! The peer-socket refusal must hold for a connection's whole life: a
//! failure to look the peer up (the process at `RLIMIT_NOFILE`, so the
//! `sock_diag` socket cannot be opened) must not switch it off.
//!
//! Lowering `RLIMIT_NOFILE` would disturb the other tests of this binary,
//! which run on other threads, so each scenario runs in a child process:
//! this test binary again, with one test selected and one test thread.

mod common;

use std::os::fd::{AsFd, OwnedFd};

use common::fdcount::{open_fds, FdLeakCheck};
use common::{errno_of, pair, pipe};
use fdctx::monitor::send::send_with_fds;
use fdctx::testing::peer_inode;
use fdctx::{Connection, Framing, Limits};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::socket::SockType;

/// Set in the child: which scenario it runs.
const CHILD_ENV: &str = "FDCTX_PEER_CHECK_CHILD";

/// Runs `scenario` in a child process (see the module doc); fails if the
/// child's test failed.
fn in_child(scenario: &str) {
    let (a, _b) = pair(SockType::Stream);
    if peer_inode(a.as_fd()).is_none() {
        eprintln!("skip: this kernel has no Unix sock_diag (CONFIG_UNIX_DIAG)");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", scenario, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, scenario)
        .env_remove("FDCTX_SUMMARY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("1 passed"), "child failed:\n{stdout}\n{stderr}");
}

/// Whether this process is the child running `scenario`.
fn is_child(scenario: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == scenario)
}

/// Lowers the soft `RLIMIT_NOFILE` so that exactly `room` more fds can be
/// opened (the lowest free numbers); returns the limits to restore.
fn room_for(room: usize) -> (u64, u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let open = open_fds();
    let (mut free, mut limit) = (0, 0);
    while free < room {
        if !open.contains_key(&limit) {
            free += 1;
        }
        limit += 1;
    }
    // With no room the limit is the lowest free fd number.
    while room == 0 && open.contains_key(&limit) {
        limit += 1;
    }
    setrlimit(Resource::RLIMIT_NOFILE, limit as u64, hard).unwrap();
    (soft, hard)
}

fn restore((soft, hard): (u64, u64)) {
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
}

fn send(sock: &OwnedFd, bytes: &[u8], fds: &[std::os::fd::BorrowedFd<'_>]) {
    send_with_fds(sock.as_fd(), bytes, fds).unwrap();
}

#[test]
fn fds_arriving_at_rlimit_nofile_cannot_switch_the_peer_check_off() {
    in_child("child_fds_arriving_at_rlimit_nofile");
}

#[test]
#[ignore = "run by fds_arriving_at_rlimit_nofile_cannot_switch_the_peer_check_off in a child process"]
fn child_fds_arriving_at_rlimit_nofile() {
    if !is_child("child_fds_arriving_at_rlimit_nofile") {
        return;
    }
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    // The connection's first fds arrive with room for them and nothing
    // more: no socket can be opened for looking the peer up now.
    let (r, _w) = pipe();
    send(&client, b"{\"execute\":\"getfd\"}\n", &[r.as_fd()]);
    let saved = room_for(1);
    let first = conn.recv();
    restore(saved);
    let first = first.unwrap().unwrap();
    // Delivered (the peer was known already) or failed with a clear
    // status; never delivered unchecked in a way that lasts.
    assert!(matches!(errno_of(&first), 0 | libc::EMFILE), "{first:?}");
    drop(first);
    // Later the client's own end, with a complete command: refused.
    send(&client, b"{\"execute\":\"getfd\"}\n", &[client.as_fd()]);
    let own = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&own), own.fds().count()), (libc::EDEADLK, 0), "{own:?}");
    // And the connection goes on.
    send(&client, b"{\"execute\":\"next\"}\n", &[r.as_fd()]);
    let next = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&next), next.fds().count()), (0, 1));
}

#[test]
fn a_peer_lookup_failing_at_rlimit_nofile_fails_the_command_and_is_retried() {
    in_child("child_lookup_failing_at_rlimit_nofile");
}

#[test]
#[ignore = "run by a_peer_lookup_failing_at_rlimit_nofile_fails_the_command_and_is_retried in a child process"]
fn child_lookup_failing_at_rlimit_nofile() {
    if !is_child("child_lookup_failing_at_rlimit_nofile") {
        return;
    }
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    // Made with no fd to spare: the lookup cannot run yet.
    let saved = room_for(0);
    let conn = Connection::new(server, Framing::Json, Limits::default());
    restore(saved);
    let mut conn = conn.unwrap();
    // Two fds sent with room for one: the second is lost in transit and no
    // socket can be opened for the lookup. The status says the fds were
    // lost, which is what happened, rather than that the check could not
    // run.
    let (r, w) = pipe();
    send(&client, b"{\"execute\":\"getfd\"}\n", &[r.as_fd(), w.as_fd()]);
    drop(w);
    let saved = room_for(1);
    let lost = conn.recv();
    restore(saved);
    let lost = lost.unwrap().unwrap();
    assert_eq!((errno_of(&lost), lost.fds().count()), (libc::ECOMM, 0), "{lost:?}");
    drop(lost);
    // The client's own end arrives with room for it and nothing more: the
    // check cannot run, so the command fails rather than run unchecked.
    send(&client, b"{\"execute\":\"getfd\"}\n", &[client.as_fd()]);
    let saved = room_for(1);
    let first = conn.recv();
    restore(saved);
    let first = first.unwrap().unwrap();
    assert_eq!((errno_of(&first), first.fds().count()), (libc::EMFILE, 0), "{first:?}");
    let text = first.status().unwrap_err().to_string();
    assert!(text.contains("peer"), "the status says which check could not run: {text}");
    drop(first);
    // With room again the lookup is retried: the own end is refused, an
    // ordinary fd delivered.
    send(&client, b"{\"execute\":\"getfd\"}\n", &[client.as_fd()]);
    let own = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&own), own.fds().count()), (libc::EDEADLK, 0), "{own:?}");
    send(&client, b"{\"execute\":\"next\"}\n", &[r.as_fd()]);
    let next = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&next), next.fds().count()), (0, 1));
}
