//! The hold deadline and the peer-socket refusal: a client must not be able
//! to make the monitor hold its fds, or wait, for ever. Each test counts the
//! process's open fds before and after.

mod common;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use common::fdcount::FdLeakCheck;
use common::{errno_of, is_eagain, pair, pipes};
use fdctx::monitor::send::send_with_fds;
use fdctx::testing::peer_inode;
use fdctx::{Connection, FeedFlags, Framing, Limits};
use nix::sys::socket::SockType;

fn send(sock: &OwnedFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
    send_with_fds(sock.as_fd(), bytes, fds).unwrap();
}

fn hold(ms: u32) -> Limits {
    Limits { max_hold_ms: ms, ..Limits::default() }
}

/// Whether this kernel tells a Unix socket's peer (`sock_diag`).
fn kernel_tells_peers() -> bool {
    let (a, _b) = pair(SockType::Stream);
    peer_inode(a.as_fd()).is_some()
}

/// Sleeps until the connection's hold deadline has passed.
fn wait_out(conn: &Connection) {
    while let Some(left) = conn.deadline() {
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left);
    }
}

#[test]
fn a_client_sending_its_own_socket_end_mid_command_and_exiting_cannot_hang_the_monitor() {
    // The monitor's copy of the client's end would keep the socket open:
    // without the refusal and the deadline this recv never returns.
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let mut conn = Connection::new(server, Framing::Json, hold(2000)).unwrap();
    send(&client, b"{\"execute\":\"blockdev-add\",", &[client.as_fd()]);
    drop(client);
    let first = conn.recv().unwrap();
    if kernel_tells_peers() {
        assert!(first.is_none(), "refused at once, so the end of stream came: {first:?}");
    } else {
        eprintln!("no Unix sock_diag: the deadline answers instead");
        assert_eq!(errno_of(first.as_ref().unwrap()), libc::ETIMEDOUT);
        assert!(conn.recv().unwrap().is_none());
    }
}

#[test]
fn a_client_sending_its_own_socket_end_on_a_lone_space_cannot_hang_the_monitor() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let mut conn = Connection::new(server, Framing::Json, hold(2000)).unwrap();
    // One raw sendmsg, as qemu.qmp sends its fds (fdctx_send refuses fds
    // on whitespace only).
    let own = [std::os::fd::AsRawFd::as_raw_fd(&client)];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&own)];
    let iov = [std::io::IoSlice::new(b" ")];
    let sent = nix::sys::socket::sendmsg::<()>(own[0], &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None);
    assert_eq!(sent, Ok(1));
    drop(client);
    if !kernel_tells_peers() {
        // Waiting fds expire without a message; then the end comes.
        eprintln!("skip: no Unix sock_diag on this kernel (the fed tests cover the deadline)");
        return;
    }
    assert!(conn.recv().unwrap().is_none());
}

#[test]
fn the_peer_socket_sent_with_a_command_fails_it_and_closes_every_fd_it_brought() {
    let _leaks = FdLeakCheck::new();
    if !kernel_tells_peers() {
        eprintln!("skip: no Unix sock_diag on this kernel");
        return;
    }
    let (client, server) = pair(SockType::Stream);
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let p = pipes(1);
    send(&client, b"{\"execute\":\"getfd\"}\n", &[p[0].as_fd(), client.as_fd()]);
    send(&client, b"{\"execute\":\"next\"}\n", &[p[0].as_fd()]);
    let bad = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&bad), bad.fds().count()), (libc::EDEADLK, 0));
    let next = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&next), next.fds().count()), (0, 1), "the connection goes on");
}

#[test]
fn an_o_path_fd_of_the_peer_socket_is_served_and_keeps_nothing_open() {
    // An O_PATH fd names the socket's inode but holds no socket: the end of
    // stream still comes when the client closes its end. Such an fd is not
    // refused, and the check never asks a file system about it (a client's
    // own FUSE server could leave that question unanswered).
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&client));
    let opath = open(path.as_str(), OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
    send(&client, b"{\"execute\":\"getfd\"}\n", &[opath.as_fd()]);
    drop(opath);
    let mut m = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&m), m.fds().count()), (0, 1));
    let kept = m.fds_mut().take(0).unwrap();
    m.finish();
    drop(client);
    assert!(conn.recv().unwrap().is_none(), "the end of stream comes while the O_PATH fd is kept");
    drop(kept);
}

#[test]
fn the_monitor_end_itself_sent_back_is_refused_too() {
    // A client holding both ends (a socket pair it shares) must not make the
    // connection hold its own socket either.
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let copy = server.try_clone().unwrap();
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    send(&client, b"{}", &[copy.as_fd()]);
    drop(copy);
    let m = conn.recv().unwrap().unwrap();
    assert_eq!(errno_of(&m), libc::EDEADLK);
}

#[test]
fn the_peer_socket_in_a_packet_is_refused() {
    let _leaks = FdLeakCheck::new();
    if !kernel_tells_peers() {
        eprintln!("skip: no Unix sock_diag on this kernel");
        return;
    }
    let (client, server) = pair(SockType::SeqPacket);
    let mut conn = Connection::new(server, Framing::Packet, Limits::default()).unwrap();
    send(&client, b"{}", &[client.as_fd()]);
    drop(client);
    let m = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&m), m.fds().count()), (libc::EDEADLK, 0));
    assert!(conn.recv().unwrap().is_none());
}

#[test]
fn a_client_stalling_mid_command_with_fds_is_timed_out_and_the_connection_goes_on() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let mut conn = Connection::new(server, Framing::Json, hold(100)).unwrap();
    let p = pipes(2);
    send(&client, b"{\"execute\":\"blockdev-add\",", &[p[0].as_fd()]);
    // A blocking recv: it returns at the deadline, not never.
    let partial = conn.recv().unwrap().unwrap();
    assert_eq!(errno_of(&partial), libc::ETIMEDOUT);
    assert_eq!((partial.data(), partial.fds().count()), (&b"{\"execute\":\"blockdev-add\","[..], 0));
    assert_eq!(conn.deadline(), None, "nothing held any more");
    // The rest of that line is discarded; the next line is served.
    send(&client, b"\"arguments\":{}} {\"execute\":\"smuggled\"}\n{\"execute\":\"next\"}\n", &[p[1].as_fd()]);
    let next = conn.recv().unwrap().unwrap();
    assert_eq!((next.data(), errno_of(&next), next.fds().count()), (&b"{\"execute\":\"next\"}"[..], 0, 1));
}

#[test]
fn a_nonblocking_connection_holding_fds_returns_eagain_then_the_timeout() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    nix::fcntl::fcntl(&server, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
    let mut conn = Connection::new(server, Framing::Json, hold(50)).unwrap();
    let p = pipes(1);
    send(&client, b"{\"a\":", &[p[0].as_fd()]);
    assert!(is_eagain(&conn.recv()), "a non-blocking recv does not wait for the deadline");
    let left = conn.deadline().expect("fds are held");
    assert!(left <= Duration::from_millis(50));
    wait_out(&conn);
    let m = conn.recv().unwrap().unwrap();
    assert_eq!(errno_of(&m), libc::ETIMEDOUT);
    assert!(is_eagain(&conn.recv()));
}

#[test]
fn fed_fds_held_mid_command_expire_at_the_deadline() {
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Json, hold(30)).unwrap();
    conn.feed(b"{\"a\":", Vec::new(), FeedFlags::default()).unwrap();
    assert_eq!(conn.deadline(), None, "no fd, no deadline");
    conn.feed(b"1,", pipes(1), FeedFlags::default()).unwrap();
    assert!(conn.deadline().is_some());
    assert!(is_eagain(&conn.recv()));
    wait_out(&conn);
    let m = conn.recv().unwrap().unwrap();
    assert_eq!((m.data(), errno_of(&m)), (&b"{\"a\":1,"[..], libc::ETIMEDOUT));
    conn.feed(b"\"b\":2}\n{\"c\":3}", Vec::new(), FeedFlags { end: true, ..FeedFlags::default() }).unwrap();
    let c = conn.recv().unwrap().unwrap();
    assert_eq!((c.data(), errno_of(&c)), (&b"{\"c\":3}"[..], 0));
    assert!(conn.recv().unwrap().is_none());
}

#[test]
fn fed_fds_waiting_on_a_lone_space_expire_and_fail_the_next_command() {
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Json, hold(30)).unwrap();
    conn.feed(b" ", pipes(2), FeedFlags::default()).unwrap();
    wait_out(&conn);
    assert!(is_eagain(&conn.recv()), "no command was in progress: nothing to deliver yet");
    assert_eq!(conn.deadline(), None);
    conn.feed(b"{\"execute\":\"getfd\"}{\"execute\":\"after\"}", Vec::new(), FeedFlags::default()).unwrap();
    let getfd = conn.recv().unwrap().unwrap();
    assert_eq!((errno_of(&getfd), getfd.fds().count()), (libc::ETIMEDOUT, 0));
    let after = conn.recv().unwrap().unwrap();
    assert_eq!(errno_of(&after), 0);
}

#[test]
fn a_hold_ends_with_its_command_and_the_next_one_starts_anew() {
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Json, hold(60_000)).unwrap();
    conn.feed(b"{\"a\":", pipes(1), FeedFlags::default()).unwrap();
    assert!(conn.deadline().is_some());
    conn.feed(b"1}", Vec::new(), FeedFlags::default()).unwrap();
    assert_eq!(conn.deadline(), None);
    let m = conn.recv().unwrap().unwrap();
    assert_eq!(m.fds().count(), 1);
    m.finish();
    let left = conn.deadline();
    assert_eq!(left, None);
}

#[test]
fn max_hold_ms_above_one_hour_is_refused() {
    let _leaks = FdLeakCheck::new();
    assert!(hold(3_600_001).validated().is_err());
    assert_eq!(hold(3_600_000).validated().unwrap().max_hold_ms, 3_600_000);
    assert_eq!(Limits::default().max_hold_ms, 10_000);
}

#[test]
fn two_clients_holding_each_others_socket_ends_are_released_at_the_deadline() {
    // Each client sends the other's end of its monitor socket with an
    // unfinished command, then both exit. Neither end is a connection's
    // own peer, so only the deadline can end both connections.
    let _leaks = FdLeakCheck::new();
    let (c1, s1) = pair(SockType::Stream);
    let (c2, s2) = pair(SockType::Stream);
    for s in [&s1, &s2] {
        nix::fcntl::fcntl(s, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
    }
    let mut conn1 = Connection::new(s1, Framing::Json, hold(40)).unwrap();
    let mut conn2 = Connection::new(s2, Framing::Json, hold(40)).unwrap();
    send(&c1, b"{\"execute\":\"x\",", &[c2.as_fd()]);
    send(&c2, b"{\"execute\":\"y\",", &[c1.as_fd()]);
    drop((c1, c2));
    // An event loop: wait for the earliest deadline, then call recv.
    let mut seen = [Vec::new(), Vec::new()];
    let mut ended = [false, false];
    let mut idle_rounds = 0;
    while !(ended[0] && ended[1]) {
        for (i, conn) in [&mut conn1, &mut conn2].into_iter().enumerate() {
            while !ended[i] {
                match conn.recv() {
                    Ok(Some(m)) => seen[i].push(errno_of(&m)),
                    Ok(None) => ended[i] = true,
                    Err(e) if e.errno() == libc::EAGAIN => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        let next = [conn1.deadline(), conn2.deadline()].into_iter().flatten().min();
        if let Some(left) = next {
            std::thread::sleep(left);
        } else if !(ended[0] && ended[1]) {
            // Nothing held any more: the ends were closed, so the end of
            // stream is queued on the sockets; the next round must see it.
            idle_rounds += 1;
            assert!(idle_rounds < 3, "nothing held, yet no end of stream: {seen:?} {ended:?}");
        }
    }
    assert_eq!(seen, [vec![libc::ETIMEDOUT], vec![libc::ETIMEDOUT]]);
}

#[test]
fn fed_bytes_arriving_after_the_deadline_do_not_rescue_the_expired_command() {
    // A socket connection expires what is due before its next read; a fed
    // one before taking the next feed: the same messages either way.
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Json, hold(20)).unwrap();
    conn.feed(b"{\"a\":", pipes(1), FeedFlags::default()).unwrap();
    wait_out(&conn);
    conn.feed(b"1}\n{\"b\":2}", Vec::new(), FeedFlags::default()).unwrap();
    let late = conn.recv().unwrap().unwrap();
    assert_eq!((late.data(), errno_of(&late), late.fds().count()), (&b"{\"a\":"[..], libc::ETIMEDOUT, 0));
    let b = conn.recv().unwrap().unwrap();
    assert_eq!((b.data(), errno_of(&b)), (&b"{\"b\":2}"[..], 0));
}
