//! Receiving over real socket pairs: each command gets exactly its own fds.
//!
//! Every test counts the process's open fds before and after.

mod common;

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use common::fdcount::FdLeakCheck;
use common::{ino_of, inos, msg_inos, pair, pipes, recv, send, send_raw, text};
use fdctx::{Connection, Error, Framing, Limits, Refusal};
use nix::sys::socket::SockType;

/// A monitor connection and the client end of a stream socket.
fn stream(limits: Limits) -> (Connection, OwnedFd) {
    let (client, server) = pair(SockType::Stream);
    (Connection::new(server, Framing::Json, limits).unwrap(), client)
}

#[test]
fn fds_attached_to_the_commands_own_bytes() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    let fds = pipes(2);
    send(&client, br#"{"execute":"blockdev-add","arguments":{"filename":"/dev/fd/1"}}"#, &fds);
    let m = recv(&mut conn);
    assert_eq!(m.status(), Ok(()));
    assert_eq!(m.fds().unused(), 2);
    assert_eq!(msg_inos(&m), inos(&fds));
    assert_eq!(m.get_str("/arguments/filename").unwrap(), "/dev/fd/1");
    assert_eq!(m.finish(), 0, "both were looked at");
}

#[test]
fn one_space_carrying_the_fd_then_the_command() {
    // The qemu.qmp client sends its fd with a single space, then the command.
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    let fds = pipes(1);
    send_raw(&client, b" ", &fds);
    send(&client, br#"{"execute":"getfd","arguments":{"fdname":"x"}}"#, &[]);
    send(&client, br#"{"execute":"query-block"}"#, &[]);
    let m = recv(&mut conn);
    assert_eq!(msg_inos(&m), inos(&fds), "the waiting fd goes to the next command");
    drop(m);
    let m = recv(&mut conn);
    assert_eq!(m.fds().count(), 0, "and to no later one");
}

#[test]
fn two_commands_in_one_write_the_last_gets_the_fds() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    let fds = pipes(1);
    send(&client, b"{\"execute\":\"a\"}\n{\"execute\":\"b\"}\n", &fds);
    let a = recv(&mut conn);
    let b = recv(&mut conn);
    assert_eq!((text(&a), a.fds().count()), ("{\"execute\":\"a\"}", 0));
    assert_eq!(msg_inos(&b), inos(&fds));
}

#[test]
fn a_command_split_over_two_writes_each_with_an_fd() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    let (f0, f1) = (pipes(1), pipes(1));
    send(&client, br#"{"execute":"x","#, &f0);
    send(&client, br#""arguments":{"a":"/dev/fd/0","b":"/dev/fd/1"}}"#, &f1);
    let m = recv(&mut conn);
    assert_eq!(m.status(), Ok(()));
    assert_eq!(msg_inos(&m), [inos(&f0), inos(&f1)].concat(), "accumulated in arrival order");
}

#[test]
fn writes_queued_before_the_monitor_reads() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    let batches: Vec<Vec<OwnedFd>> = (0..5).map(|i| pipes(i % 3)).collect();
    for (i, fds) in batches.iter().enumerate() {
        send(&client, format!("{{\"n\":{i}}}").as_bytes(), fds);
    }
    for (i, fds) in batches.iter().enumerate() {
        let m = recv(&mut conn);
        assert_eq!(m.get_int("/n").unwrap(), i as i64);
        assert_eq!(msg_inos(&m), inos(fds), "command {i}");
    }
}

#[test]
fn three_hundred_fds_in_two_writes() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits { max_fds: 300, ..Limits::default() });
    let fds = pipes(300);
    send(&client, br#"{"execute":"many","arguments":{"last":"/dev/fd/299"}}"#, &fds);
    let m = recv(&mut conn);
    assert_eq!(m.status(), Ok(()));
    assert_eq!(msg_inos(&m), inos(&fds));
}

#[test]
fn too_many_fds_closes_them_all_and_goes_on() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits { max_fds: 4, ..Limits::default() });
    send(&client, br#"{"execute":"x","id":7}"#, &pipes(5));
    send(&client, br#"{"execute":"y"}"#, &pipes(1));
    let m = recv(&mut conn);
    assert_eq!(m.status().unwrap_err().errno(), libc::ETOOMANYREFS);
    assert_eq!(m.fds().count(), 0);
    assert_eq!(m.get_json("/id").unwrap(), "7", "the id can still be echoed");
    let m = recv(&mut conn);
    assert_eq!((m.status(), m.fds().count()), (Ok(()), 1));
}

#[test]
fn fds_lost_to_rlimit_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    let fds = pipes(8);
    send(&client, br#"{"execute":"x"}"#, &fds);
    send(&client, br#"{"execute":"y"}"#, &pipes(1));
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // Room for exactly 3 of the 8 fds: the limit is just past the third
    // free fd number.
    let open = common::fdcount::open_fds();
    let (mut free, mut limit) = (0, 0);
    while free < 3 {
        if !open.contains_key(&limit) {
            free += 1;
        }
        limit += 1;
    }
    setrlimit(Resource::RLIMIT_NOFILE, limit as u64, hard).unwrap();
    let got = conn.recv();
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    let m = got.unwrap().unwrap();
    assert_eq!(m.status().unwrap_err(), &Refusal::FdsLost);
    assert_eq!(m.fds().count(), 0, "the fds that did arrive are closed");
    let m = recv(&mut conn);
    assert_eq!((m.status(), m.fds().count()), (Ok(()), 1));
}

#[test]
fn end_of_stream_mid_command_closes_its_fds() {
    let leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    send(&client, br#"{"execute":"x","arguments":{"#, &pipes(3));
    send_raw(&client, b" ", &pipes(2));
    drop(client);
    assert!(conn.recv().unwrap().is_none());
    assert!(conn.recv().unwrap().is_none(), "end of stream stays the end");
    drop(conn);
    assert_eq!(leaks.delta(), 0);
}

#[test]
fn a_malformed_command_with_an_fd_does_not_pass_it_to_the_next() {
    // The stale-binding fault of per-connection fd queues: the fd of a
    // command that failed must never reach a later command.
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    send(&client, b"{\"execute\": oops}\n", &pipes(1));
    send(&client, br#"{"execute":"getfd","arguments":{"fdname":"a"}}"#, &[]);
    let bad = recv(&mut conn);
    assert_eq!(bad.status().unwrap_err().errno(), libc::EBADMSG);
    assert_eq!(bad.fds().count(), 0);
    let next = recv(&mut conn);
    assert_eq!((next.status(), next.fds().count()), (Ok(()), 0));
}

#[test]
fn garbage_between_commands_is_reported_and_skipped() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits { max_depth: 8, max_msg_bytes: 200, ..Limits::default() });
    let deep = format!("{{\"a\":{}1{}}}\n", "[".repeat(9), "]".repeat(9));
    let big = format!("{{\"a\":\"{}\"}}\n", "x".repeat(300));
    let mut input = Vec::new();
    input.extend_from_slice(deep.as_bytes());
    input.extend_from_slice(b"{\"a\":\"\xff\"}\n");
    input.extend_from_slice(big.as_bytes());
    input.extend_from_slice(b"[1,2]\n\"str\"\n");
    input.extend_from_slice(br#"{"execute":"ok","arguments":{"f":"/dev/fd/0"}}"#);
    send(&client, &input, &pipes(1));
    let want = [libc::EBADMSG, libc::EILSEQ, libc::EMSGSIZE, libc::EBADMSG, libc::EBADMSG];
    for errno in want {
        let m = recv(&mut conn);
        assert_eq!(m.status().unwrap_err().errno(), errno, "{:?}", m.status());
        assert!(!m.status().unwrap_err().to_string().is_empty());
    }
    let m = recv(&mut conn);
    assert_eq!((m.status(), m.fds().count()), (Ok(()), 1));
}

#[test]
fn an_fd_path_with_no_such_fd_is_refused() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    send(&client, br#"{"execute":"blockdev-add","arguments":{"filename":"/dev/fd/3"}}"#, &pipes(1));
    let m = recv(&mut conn);
    assert_eq!(m.status().unwrap_err(), &Refusal::NoSuchIndex { index: 3, count: 1 });
    assert_eq!(m.fds().count(), 0);
}

#[test]
fn eagain_mid_command_keeps_what_arrived() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    nix::fcntl::fcntl(&server, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    assert_eq!(conn.recv().unwrap_err().errno(), libc::EAGAIN);
    let f0 = pipes(1);
    send(&client, br#"{"execute":"x","#, &f0);
    assert_eq!(conn.recv().unwrap_err().errno(), libc::EAGAIN);
    let f1 = pipes(1);
    send(&client, br#""id":1}"#, &f1);
    let m = recv(&mut conn);
    assert_eq!(msg_inos(&m), [inos(&f0), inos(&f1)].concat());
}

#[test]
fn packet_framing_is_exact_and_detects_truncation() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::SeqPacket);
    let mut conn = Connection::new(server, Framing::Packet, Limits { max_msg_bytes: 64, ..Limits::default() }).unwrap();
    let f0 = pipes(2);
    send(&client, br#"{"execute":"a","arguments":{"f":"/dev/fd/1"}}"#, &f0);
    send(&client, b"plain text command", &pipes(1));
    send(&client, &[b'x'; 100], &pipes(3));
    send(&client, br#"{"execute":"b"}"#, &[]);
    let a = recv(&mut conn);
    assert_eq!((a.status(), msg_inos(&a)), (Ok(()), inos(&f0)));
    let p = recv(&mut conn);
    assert_eq!((text(&p), p.fds().count()), ("plain text command", 1));
    let big = recv(&mut conn);
    assert_eq!(big.status().unwrap_err().errno(), libc::EMSGSIZE);
    assert_eq!(big.fds().count(), 0);
    let b = recv(&mut conn);
    assert_eq!((b.status(), b.fds().count()), (Ok(()), 0));
    drop(client);
    assert!(conn.recv().unwrap().is_none());
}

#[test]
fn line_framing() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let mut conn = Connection::new(server, Framing::Line, Limits::default()).unwrap();
    send(&client, b"info block\r\n\n", &[]);
    send(&client, b"drive_add 0 file=/dev/fd/0\n", &pipes(1));
    let a = recv(&mut conn);
    assert_eq!((text(&a), a.fds().count()), ("info block", 0));
    let b = recv(&mut conn);
    assert_eq!((text(&b), b.fds().count()), ("drive_add 0 file=/dev/fd/0", 1));
}

#[test]
fn a_message_outlives_its_connection_on_another_thread() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    let fds = pipes(1);
    send(&client, br#"{"execute":"x"}"#, &fds);
    let mut m = recv(&mut conn);
    drop((conn, client));
    let want = inos(&fds);
    let got = std::thread::spawn(move || {
        let fd = m.fds_mut().take(0).unwrap();
        (ino_of(fd.as_fd()), m.finish())
    })
    .join()
    .unwrap();
    assert_eq!(got, (want[0], 0));
}

#[test]
fn send_survives_partial_writes() {
    // A command far larger than the socket buffer goes out in many partial
    // writes; the fds must arrive once, with the first bytes.
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    nix::sys::socket::setsockopt(&client, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
    nix::fcntl::fcntl(&client, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let fds = pipes(2);
    let big = format!("{{\"a\":\"{}\"}}", "y".repeat(600_000));
    let want = inos(&fds);
    let sender = std::thread::spawn(move || {
        send(&client, big.as_bytes(), &fds);
        client
    });
    let m = recv(&mut conn);
    let client = sender.join().unwrap();
    assert_eq!(m.status(), Ok(()));
    assert_eq!(m.data().len(), 600_008);
    assert_eq!(msg_inos(&m), want);
    drop(client);
    assert!(conn.recv().unwrap().is_none(), "no fds or bytes were sent twice");
}

#[test]
fn fds_from_a_python_style_client() {
    // socket.send_fds(sock, [data], fds) is one sendmsg: fds with the bytes.
    let _leaks = FdLeakCheck::new();
    let (a, b) = UnixStream::pair().unwrap();
    let mut conn = Connection::new(OwnedFd::from(b), Framing::Json, Limits::default()).unwrap();
    let fds = pipes(1);
    send(&OwnedFd::from(a.try_clone().unwrap()), b"{\"execute\":\"x\"}\r\n", &fds);
    (&a).write_all(b"{\"execute\":\"y\"}").unwrap();
    let x = recv(&mut conn);
    assert_eq!(msg_inos(&x), inos(&fds));
    let y = recv(&mut conn);
    assert_eq!(y.fds().count(), 0);
}

#[test]
fn an_empty_packet_is_a_message_not_the_end() {
    let _leaks = FdLeakCheck::new();
    for ty in [SockType::SeqPacket, SockType::Datagram] {
        let (client, server) = pair(ty);
        let mut conn = Connection::new(server, Framing::Packet, Limits::default()).unwrap();
        let sent =
            nix::sys::socket::send(std::os::fd::AsRawFd::as_raw_fd(&client), b"", nix::sys::socket::MsgFlags::empty());
        assert_eq!(sent, Ok(0), "an empty {ty:?} packet");
        send(&client, br#"{"execute":"x"}"#, &pipes(1));
        let empty = recv(&mut conn);
        assert_eq!((empty.data(), empty.fds().count()), (&b""[..], 0), "{ty:?}");
        let x = recv(&mut conn);
        assert_eq!((x.status(), x.fds().count()), (Ok(()), 1), "{ty:?}");
    }
}

#[test]
fn packets_are_received_at_their_size_and_checked() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::SeqPacket);
    // A large limit costs nothing until a packet that large arrives.
    let mut conn =
        Connection::new(server, Framing::Packet, Limits { max_msg_bytes: 1 << 30, ..Limits::default() }).unwrap();
    send(&client, b"bad \xff utf-8", &pipes(1));
    send(&client, br#"["/dev/fd/0"]"#, &[]);
    let bad = recv(&mut conn);
    assert_eq!((bad.status().unwrap_err().errno(), bad.fds().count()), (libc::EILSEQ, 0));
    let plain = recv(&mut conn);
    assert_eq!(plain.status(), Ok(()), "not an object: delivered as it is");
}

#[test]
fn limits_above_their_maximum_are_refused_by_validation() {
    let _leaks = FdLeakCheck::new();
    assert!(Limits { max_msg_bytes: usize::MAX, ..Limits::default() }.validated().is_err());
    assert!(Limits { max_fds: 1 << 20, ..Limits::default() }.validated().is_err());
    assert!(Limits { max_depth: 128, ..Limits::default() }.validated().is_err());
    assert_eq!(Limits::default().validated().unwrap(), Limits::default());
    let zeros = Limits { max_msg_bytes: 0, max_fds: 0, max_depth: 0, max_hold_ms: 0 };
    assert_eq!(zeros.validated().unwrap(), Limits::default(), "0 takes the default");
    // Refused by the connection, never lowered in silence.
    let (_a, b) = pair(SockType::Stream);
    let e = Connection::new(b, Framing::Json, Limits { max_msg_bytes: usize::MAX, ..Limits::default() }).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(Connection::new_fed(Framing::Json, Limits { max_hold_ms: u32::MAX, ..Limits::default() }).is_err());
}

#[test]
fn fds_sent_ahead_by_a_pipelining_client_go_to_the_command_before() {
    // The documented limit of the rule: one read returns the previous
    // command's bytes and the space carrying the fds, so the fds belong to
    // the previous command. (qemu.qmp waits for each reply, so never does
    // this; clients attaching fds to the command's own bytes never can.)
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = stream(Limits::default());
    let fds = pipes(1);
    send(&client, br#"{"execute":"query-block"}"#, &[]);
    send_raw(&client, b" ", &fds);
    send(&client, br#"{"execute":"blockdev-add","arguments":{"filename":"/dev/fd/0"}}"#, &[]);
    let first = recv(&mut conn);
    assert_eq!(msg_inos(&first), inos(&fds));
    let second = recv(&mut conn);
    assert_eq!(second.status().unwrap_err().errno(), libc::EBADF, "refused, never bound to a stranger's fd");
}

#[test]
fn packet_end_of_stream_waits_for_what_is_queued() {
    let _leaks = FdLeakCheck::new();
    let raw = |s: &OwnedFd| std::os::fd::AsRawFd::as_raw_fd(s);
    // An empty packet, then packets, then the peer closes: all delivered.
    let (client, server) = pair(SockType::SeqPacket);
    let mut conn = Connection::new(server, Framing::Packet, Limits::default()).unwrap();
    nix::sys::socket::send(raw(&client), b"", nix::sys::socket::MsgFlags::empty()).unwrap();
    send(&client, b"{}", &pipes(1));
    send(&client, b"x", &[]);
    drop(client);
    let got: Vec<(Vec<u8>, usize)> =
        std::iter::from_fn(|| conn.recv().unwrap()).map(|m| (m.data().to_vec(), m.fds().count())).collect();
    assert_eq!(got, vec![(vec![], 0), (b"{}".to_vec(), 1), (b"x".to_vec(), 0)]);
    // A datagram socket this side shut down for reading has ended.
    let (client, server) = pair(SockType::Datagram);
    nix::sys::socket::shutdown(raw(&server), nix::sys::socket::Shutdown::Read).unwrap();
    let mut conn = Connection::new(server, Framing::Packet, Limits::default()).unwrap();
    assert!(conn.recv().unwrap().is_none());
    drop(client);
}

#[test]
fn packet_framing_needs_a_packet_socket() {
    let _leaks = FdLeakCheck::new();
    let (a, b) = pair(SockType::Stream);
    // Checked once, when the connection is made: refused, not a loop.
    let e = Connection::new(b.as_fd(), Framing::Packet, Limits::default()).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)));
    assert!(Connection::new(b.as_fd(), Framing::Json, Limits::default()).is_ok());
    let (r, _w) = nix::unistd::pipe().unwrap();
    let e = Connection::new(r.as_fd(), Framing::Json, Limits::default()).unwrap_err();
    assert_eq!(e.errno(), libc::ENOTSOCK);
    drop((a, b));
}

#[test]
fn stream_framing_on_a_packet_socket_is_refused_rather_than_cutting_packets() {
    let _leaks = FdLeakCheck::new();
    for ty in [SockType::SeqPacket, SockType::Datagram] {
        let (a, b) = pair(ty);
        for framing in [Framing::Json, Framing::Line] {
            let e = Connection::new(b.as_fd(), framing, Limits::default()).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{ty:?} {framing:?}: {e}");
        }
        assert!(Connection::new(b.as_fd(), Framing::Packet, Limits::default()).is_ok());
        drop((a, b));
    }
}

#[test]
fn packet_framing_refuses_json_nested_deeper_than_max_depth() {
    let _leaks = FdLeakCheck::new();
    let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
    for ty in [SockType::SeqPacket, SockType::Datagram] {
        let (client, server) = pair(ty);
        let mut conn = Connection::new(server, Framing::Packet, Limits::default()).unwrap();
        send(&client, deep(100).as_bytes(), &pipes(1));
        send(&client, deep(64).as_bytes(), &[]);
        let m = recv(&mut conn);
        assert_eq!((m.status().unwrap_err().errno(), m.fds().count()), (libc::EBADMSG, 0), "{ty:?}");
        assert_eq!(recv(&mut conn).status(), Ok(()), "{ty:?}: 64 levels are allowed");
    }
    let mut fed = Connection::new_fed(Framing::Packet, Limits { max_depth: 3, ..Limits::default() }).unwrap();
    fed.feed(deep(4).as_bytes(), pipes(1), fdctx::FeedFlags::default()).unwrap();
    let m = fed.recv().unwrap().unwrap();
    assert_eq!((m.status().unwrap_err().errno(), m.fds().count()), (libc::EBADMSG, 0));
}

#[test]
fn json_smuggled_after_a_malformed_object_on_the_same_line_is_discarded() {
    let _leaks = FdLeakCheck::new();
    for bad in [&b"{\"a\":1,}"[..], &b"{\"a\":\"\xff\"}"[..]] {
        let (mut conn, client) = stream(Limits::default());
        let line = [bad, b" {\"execute\":\"smuggled\",\"arguments\":{\"f\":\"/dev/fd/0\"}}\n"].concat();
        send(&client, &line, &pipes(1));
        send(&client, b"{\"execute\":\"next\"}\n", &[]);
        drop(client);
        let got: Vec<(Vec<u8>, i32, usize)> = std::iter::from_fn(|| conn.recv().unwrap())
            .map(|m| (m.data().to_vec(), m.status().map_or_else(|e| e.errno(), |()| 0), m.fds().count()))
            .collect();
        let want_errno = if bad.contains(&0xff) { libc::EILSEQ } else { libc::EBADMSG };
        assert_eq!(got, vec![(bad.to_vec(), want_errno, 0), (b"{\"execute\":\"next\"}".to_vec(), 0, 0)]);
    }
}

#[test]
fn seqpacket_empty_packets_then_close_are_each_delivered_before_the_end() {
    let _leaks = FdLeakCheck::new();
    let raw = |s: &OwnedFd| std::os::fd::AsRawFd::as_raw_fd(s);
    let (client, server) = pair(SockType::SeqPacket);
    let mut conn = Connection::new(server, Framing::Packet, Limits::default()).unwrap();
    nix::sys::socket::send(raw(&client), b"", nix::sys::socket::MsgFlags::empty()).unwrap();
    let fd = pipes(1);
    let rights = [std::os::fd::AsRawFd::as_raw_fd(&fd[0])];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&rights)];
    let sent = nix::sys::socket::sendmsg::<()>(raw(&client), &[], &cmsg, nix::sys::socket::MsgFlags::empty(), None);
    assert_eq!(sent, Ok(0), "an empty packet carrying an fd");
    drop((client, fd));
    let got: Vec<(Vec<u8>, usize)> =
        std::iter::from_fn(|| conn.recv().unwrap()).map(|m| (m.data().to_vec(), m.fds().count())).collect();
    assert_eq!(got, vec![(vec![], 0), (vec![], 1)]);
    assert!(conn.recv().unwrap().is_none());
}

#[test]
fn a_connection_on_a_borrowed_socket_never_closes_it() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    {
        let mut conn = Connection::new(server.as_fd(), Framing::Json, Limits::default()).unwrap();
        send(&client, b"{\"a\":1}", &pipes(1));
        let m = recv(&mut conn);
        assert_eq!(m.fds().count(), 1);
    }
    send(&client, b"{\"b\":2}", &[]);
    let mut again = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    assert_eq!(text(&recv(&mut again)), "{\"b\":2}", "the socket outlived the borrowing connection");
}

#[test]
fn a_command_cut_short_does_not_swallow_the_next_one_or_its_fd() {
    let _leaks = FdLeakCheck::new();
    for cut_short in [&b"{\"execute\":\"cont\"\n"[..], b"{\"a\":\"unterminated\n", b"{\"a\":1,\n"] {
        let (mut conn, client) = stream(Limits::default());
        let fds = pipes(1);
        send(&client, cut_short, &[]);
        send(&client, b"{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"/dev/fd/0\"}}\n", &fds);
        send(&client, b"{\"execute\":\"query-status\"}\n", &[]);
        drop(client);
        let first = recv(&mut conn);
        assert_eq!(first.status().map_err(|e| e.errno()), Err(libc::EBADMSG), "{:?}", text(&first));
        assert_eq!(first.fds().count(), 0);
        assert_eq!(first.finish(), 0);
        let getfd = recv(&mut conn);
        assert_eq!(getfd.status(), Ok(()));
        assert_eq!(getfd.get_str("/execute").unwrap(), "getfd");
        assert_eq!(msg_inos(&getfd), inos(&fds), "the fd sent with getfd is getfd's");
        getfd.finish();
        let query = recv(&mut conn);
        assert_eq!(query.get_str("/execute").unwrap(), "query-status");
        assert_eq!(query.fds().count(), 0);
        query.finish();
        assert!(conn.recv().unwrap().is_none());
    }
}
