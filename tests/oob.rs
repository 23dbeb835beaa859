//! Out-of-band bytes (`MSG_OOB`) on the monitor socket. A normal read never
//! returns a stream socket's out-of-band byte or the fds sent with it, and a
//! blocking `recvmsg(2)` sleeps at the out-of-band mark: a client must not
//! be able to stall the monitor, or keep fds past the hold deadline, that
//! way. Each test counts the process's open fds before and after.

mod common;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::fdcount::FdLeakCheck;
use common::{errno_of, pair, pipe};
use fdctx::monitor::send::send_with_fds;
use fdctx::{Connection, Error, Framing, Limits, Message};
use nix::sys::socket::SockType;

fn hold(ms: u32) -> Limits {
    Limits { max_hold_ms: ms, ..Limits::default() }
}

/// One byte sent out of band, with `fds` attached, as `send(2)` with
/// `MSG_OOB` sends it. `false` when this kernel has no out-of-band data on
/// Unix sockets (before Linux 5.15, or `CONFIG_AF_UNIX_OOB` off).
fn send_oob(sock: &OwnedFd, byte: u8, fds: &[BorrowedFd<'_>]) -> bool {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let iov = [std::io::IoSlice::new(std::slice::from_ref(&byte))];
    match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_OOB, None) {
        Ok(n) => {
            assert_eq!(n, 1);
            true
        }
        Err(nix::errno::Errno::EOPNOTSUPP) => false,
        Err(e) => panic!("send(MSG_OOB): {e}"),
    }
}

/// Everything a blocking connection returns until the end of the stream,
/// read on another thread: `None` if that takes longer than `limit` (the
/// reader is then left blocked, and the test fails).
fn drain_within(mut conn: Connection, limit: Duration) -> Option<Vec<Result<Message, Error>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            match conn.recv() {
                Ok(Some(m)) => got.push(Ok(m)),
                Ok(None) => break,
                Err(e) => {
                    got.push(Err(e));
                    break;
                }
            }
        }
        // Closed before the test counts its fds.
        drop(conn);
        let _ = tx.send(got);
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn a_client_sending_its_own_end_out_of_band_after_a_command_and_exiting_cannot_hang_the_monitor() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let conn = Connection::new(server, Framing::Json, hold(300)).unwrap();
    send_with_fds(client.as_fd(), b"{\"execute\":\"query-status\"}\n", &[]).unwrap();
    if !send_oob(&client, b' ', &[client.as_fd()]) {
        eprintln!("skip: no MSG_OOB on Unix sockets in this kernel");
        return;
    }
    drop(client);
    let got = drain_within(conn, Duration::from_secs(5)).expect("the connection reached its end");
    let statuses: Vec<i32> = got.iter().map(|r| r.as_ref().map_or_else(Error::errno, errno_of)).collect();
    assert_eq!(statuses.first(), Some(&0), "the command itself: {got:?}");
    assert!(got.iter().all(|r| r.as_ref().is_ok_and(|m| m.fds().count() == 0)), "{got:?}");
}

#[test]
fn an_unfinished_command_with_an_fd_then_one_out_of_band_byte_cannot_outlast_the_hold() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let conn = Connection::new(server, Framing::Json, hold(300)).unwrap();
    let (r, w) = pipe();
    send_with_fds(client.as_fd(), b"{\"execute\":\"blockdev-add\",", &[r.as_fd()]).unwrap();
    drop(r);
    if !send_oob(&client, b' ', &[]) {
        eprintln!("skip: no MSG_OOB on Unix sockets in this kernel");
        return;
    }
    // The client stays connected: only the deadline can end the hold.
    let start = Instant::now();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut conn = conn;
        let first = conn.recv();
        let _ = tx.send(start.elapsed());
        (first, conn)
    });
    let waited = rx.recv_timeout(Duration::from_secs(5)).expect("recv returned at the hold deadline");
    let (first, conn) = reader.join().unwrap();
    let m = first.unwrap().unwrap();
    assert_eq!((errno_of(&m), m.fds().count()), (libc::ETIMEDOUT, 0), "{m:?}");
    assert!(waited < Duration::from_millis(300 + 1500), "returned after {waited:?}");
    assert_eq!(write_to_reader(&w), Err(nix::errno::Errno::EPIPE), "the held fd was closed");
    drop((conn, client, m));
}

#[test]
fn an_fd_sent_out_of_band_while_a_command_is_unfinished_is_held_no_longer_than_the_deadline() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    common::set_nonblocking(&server, true);
    let mut conn = Connection::new(server, Framing::Json, hold(300)).unwrap();
    send_with_fds(client.as_fd(), b"{\"execute\":\"blockdev-add\",", &[]).unwrap();
    let (r, w) = pipe();
    if !send_oob(&client, b' ', &[r.as_fd()]) {
        eprintln!("skip: no MSG_OOB on Unix sockets in this kernel");
        return;
    }
    drop(r);
    // An event loop: read what is there, then wait for the deadline.
    let start = Instant::now();
    let mut seen = Vec::new();
    while start.elapsed() < Duration::from_secs(3) {
        match conn.recv() {
            Ok(Some(m)) => {
                seen.push((errno_of(&m), m.fds().count()));
                break;
            }
            Ok(None) => panic!("the client is still connected"),
            Err(e) if e.errno() == libc::EAGAIN => {}
            Err(e) => panic!("{e}"),
        }
        std::thread::sleep(conn.deadline().unwrap_or(Duration::from_millis(20)));
    }
    assert_eq!(seen, vec![(libc::ETIMEDOUT, 0)], "the command in progress failed at the deadline");
    assert_eq!(write_to_reader(&w), Err(nix::errno::Errno::EPIPE), "the fd sent out of band was closed");
    drop(client);
}

/// Writes one byte to a pipe: `EPIPE` once no process holds its read end.
fn write_to_reader(w: &OwnedFd) -> Result<usize, nix::errno::Errno> {
    nix::unistd::write(w, b"x")
}
