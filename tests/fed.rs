//! The fed connection: the caller reads the socket, fdctx frames and
//! associates. Each test counts the process's open fds before and after.

mod common;

use std::os::fd::{AsFd, OwnedFd};

use common::fdcount::FdLeakCheck;
use common::{inos, is_eagain, msg_inos, pair, pipes, send_raw};
use fdctx::testing::{recv_with_fds, CMSG_WORDS};
use fdctx::{Connection, FeedFlags, Framing, Limits, Message};
use nix::sys::socket::{shutdown, Shutdown, SockType};

/// What a monitor saw of one message: its bytes, status errno (0 when
/// good) and the inodes of its fds.
type Seen = (String, i32, Vec<u64>);

fn seen(m: Message) -> Seen {
    let status = m.status().map_or_else(|e| e.errno(), |()| 0);
    let out = (String::from_utf8_lossy(m.data()).into_owned(), status, msg_inos(&m));
    m.finish();
    out
}

/// Every message complete so far on `conn`, then what ended the drain
/// (`true`: end of stream, `false`: EAGAIN).
fn drain(conn: &mut Connection, out: &mut Vec<Seen>) -> bool {
    loop {
        match conn.recv() {
            Ok(Some(m)) => out.push(seen(m)),
            Ok(None) => return true,
            r => {
                assert!(is_eagain(&r), "{r:?}");
                return false;
            }
        }
    }
}

/// Reads `sock` to its end in `recvmsg` calls of at most `cap` bytes, as a
/// VMM does, feeding each read to a fed connection.
fn serve_fed(sock: &OwnedFd, framing: Framing, cap: usize) -> Vec<Seen> {
    let mut conn = Connection::new_fed(framing, Limits::default()).unwrap();
    let mut buf = vec![0u8; cap];
    let mut cmsg = [0u64; CMSG_WORDS];
    let mut out = Vec::new();
    loop {
        let got = recv_with_fds(sock.as_fd(), &mut buf, &mut cmsg).unwrap();
        let end = got.bytes == 0 && framing != Framing::Packet;
        let flags = FeedFlags { fds_lost: got.fds_lost, end };
        conn.feed(&buf[..got.bytes], got.fds, flags).unwrap();
        if drain(&mut conn, &mut out) {
            return out;
        }
        assert!(!end);
    }
}

fn serve_socket(sock: OwnedFd, framing: Framing) -> Vec<Seen> {
    let mut conn = Connection::new(sock, framing, Limits::default()).unwrap();
    let mut out = Vec::new();
    while let Some(m) = conn.recv().unwrap() {
        out.push(seen(m));
    }
    out
}

/// One client script, sent on a fresh stream pair: the fds of each write
/// are fresh pipes; returns the server end and the inodes per write.
fn client_script(writes: &[(&[u8], usize)]) -> (OwnedFd, Vec<Vec<u64>>) {
    let (client, server) = pair(SockType::Stream);
    let mut sent = Vec::new();
    for &(bytes, n) in writes {
        let fds = pipes(n);
        send_raw(&client, bytes, &fds);
        sent.push(inos(&fds));
    }
    shutdown(std::os::fd::AsRawFd::as_raw_fd(&client), Shutdown::Write).unwrap();
    drop(client);
    (server, sent)
}

/// Fds on the command's own bytes, on a lone space before it (qemu.qmp),
/// a command split over writes with fds on both halves, pipelined commands.
const SCRIPT: &[(&[u8], usize)] = &[
    (b"{\"execute\":\"add-fd\",\"arguments\":{\"fd\":\"/dev/fd/0\"}}\r\n", 1),
    (b" ", 1),
    (b"{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"x\"}}", 0),
    (b"{\"execute\":\"blockdev-add\",", 2),
    (b"\"arguments\":{}}\n", 1),
    // Two commands in one write: with fds, which one gets them depends on
    // where the reads cut (see the socket tests), so none here.
    (b"{\"execute\":\"a\"}\n{\"execute\":\"b\"}\n", 0),
    (b"{\"execute\":\"cut-short\",", 1),
];

fn expected(sent: &[Vec<u64>]) -> Vec<Seen> {
    let e = |s: &str, fds: Vec<u64>| (s.to_string(), 0, fds);
    vec![
        e("{\"execute\":\"add-fd\",\"arguments\":{\"fd\":\"/dev/fd/0\"}}", sent[0].clone()),
        e("{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"x\"}}", sent[1].clone()),
        e("{\"execute\":\"blockdev-add\",\"arguments\":{}}", [sent[3].clone(), sent[4].clone()].concat()),
        e("{\"execute\":\"a\"}", vec![]),
        e("{\"execute\":\"b\"}", vec![]),
    ]
}

#[test]
fn fed_one_byte_per_read_like_qemu_chardev() {
    let _leaks = FdLeakCheck::new();
    let (server, sent) = client_script(SCRIPT);
    assert_eq!(serve_fed(&server, Framing::Json, 1), expected(&sent));
}

#[test]
fn fed_whole_reads_match_the_socket_connection() {
    let _leaks = FdLeakCheck::new();
    let (server, sent) = client_script(SCRIPT);
    assert_eq!(serve_socket(server, Framing::Json), expected(&sent));
    let (server, sent) = client_script(SCRIPT);
    assert_eq!(serve_fed(&server, Framing::Json, 65536), expected(&sent));
}

#[test]
fn fed_reads_of_any_size_give_fds_on_the_commands_own_bytes_to_that_command() {
    // Without the lone space: a read of a few bytes may end the previous
    // command and then take the space with its fd, which the rule then
    // gives to the previous command (a client sending fds ahead must wait
    // for each reply, as qemu.qmp does).
    let _leaks = FdLeakCheck::new();
    let script: Vec<_> = SCRIPT.iter().enumerate().filter(|&(i, _)| i != 1).map(|(_, w)| *w).collect();
    for cap in [1, 2, 3, 5, 7, 16, 64, 65536] {
        let (server, sent) = client_script(&script);
        let want = expected(&[sent[0].clone(), vec![], sent[1].clone(), sent[2].clone(), sent[3].clone()]);
        assert_eq!(serve_fed(&server, Framing::Json, cap), want, "reads of {cap} bytes");
    }
}

#[test]
fn fed_recv_is_eagain_until_a_command_is_whole_then_end() {
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Json, Limits::default()).unwrap();
    assert!(is_eagain(&conn.recv()));
    let fds = pipes(1);
    let want = inos(&fds);
    conn.feed(b"{\"a\":", fds, FeedFlags::default()).unwrap();
    assert!(is_eagain(&conn.recv()));
    conn.feed(b"1}", Vec::new(), FeedFlags::default()).unwrap();
    let m = conn.recv().unwrap().unwrap();
    assert_eq!((m.data(), msg_inos(&m)), (&b"{\"a\":1}"[..], want));
    m.finish();
    assert!(is_eagain(&conn.recv()));
    conn.feed(b"", Vec::new(), FeedFlags { end: true, ..FeedFlags::default() }).unwrap();
    assert!(conn.recv().unwrap().is_none());
    assert!(conn.recv().unwrap().is_none(), "the end stays the end");
}

#[test]
fn fed_end_mid_command_closes_its_fds_and_the_waiting_ones() {
    let _leaks = FdLeakCheck::new();
    for framing in [Framing::Json, Framing::Line] {
        let mut conn = Connection::new_fed(framing, Limits::default()).unwrap();
        conn.feed(b"{\"a\"", pipes(2), FeedFlags::default()).unwrap();
        conn.feed(b" ", pipes(1), FeedFlags { end: true, ..FeedFlags::default() }).unwrap();
        // The leak check at the end sees them closed; recv sees the end.
        assert!(conn.recv().unwrap().is_none(), "{framing:?}");
    }
}

#[test]
fn feeding_after_the_end_is_epipe_and_closes_the_fds() {
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Json, Limits::default()).unwrap();
    conn.feed(b"{}", Vec::new(), FeedFlags { end: true, ..FeedFlags::default() }).unwrap();
    let e = conn.feed(b"{}", pipes(3), FeedFlags::default()).unwrap_err();
    assert_eq!(e.errno(), libc::EPIPE);
    let m = conn.recv().unwrap().unwrap();
    assert_eq!((m.data(), m.fds().count()), (&b"{}"[..], 0));
    m.finish();
    assert!(conn.recv().unwrap().is_none());
}

#[test]
fn feeding_a_socket_connection_is_refused_and_closes_the_fds() {
    let _leaks = FdLeakCheck::new();
    let (_client, server) = pair(SockType::Stream);
    let mut conn = Connection::new(server, Framing::Json, Limits::default()).unwrap();
    let e = conn.feed(b"{}", pipes(2), FeedFlags::default()).unwrap_err();
    assert_eq!(e.errno(), libc::EINVAL);
    assert!(!conn.is_fed());
}

#[test]
fn fed_fds_lost_fails_the_command_they_belong_to() {
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Json, Limits::default()).unwrap();
    conn.feed(b"{\"x\":1}\n{\"y\":", pipes(1), FeedFlags { fds_lost: true, end: false }).unwrap();
    conn.feed(b"2}", Vec::new(), FeedFlags { fds_lost: false, end: true }).unwrap();
    let mut out = Vec::new();
    assert!(drain(&mut conn, &mut out));
    assert_eq!(out, vec![("{\"x\":1}".into(), 0, vec![]), ("{\"y\":2}".into(), libc::ECOMM, vec![])]);
}

#[test]
fn fed_fds_over_several_reads_are_bounded_by_max_fds() {
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Json, Limits { max_fds: 4, ..Limits::default() }).unwrap();
    conn.feed(b" ", pipes(3), FeedFlags::default()).unwrap();
    conn.feed(b"{\"a\":", pipes(2), FeedFlags::default()).unwrap();
    conn.feed(b"1}{}", pipes(1), FeedFlags { end: true, ..FeedFlags::default() }).unwrap();
    let mut out = Vec::new();
    assert!(drain(&mut conn, &mut out));
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].1, libc::ETOOMANYREFS);
    assert_eq!(out[1].2.len(), 1, "the next command keeps its own fd");
}

#[test]
fn fed_packets_one_feed_one_packet() {
    let _leaks = FdLeakCheck::new();
    let mut conn = Connection::new_fed(Framing::Packet, Limits { max_msg_bytes: 8, ..Limits::default() }).unwrap();
    let fds = pipes(1);
    let want = inos(&fds);
    conn.feed(b"", Vec::new(), FeedFlags::default()).unwrap();
    conn.feed(b"", fds, FeedFlags::default()).unwrap();
    conn.feed(b"{\"a\":1}", Vec::new(), FeedFlags::default()).unwrap();
    conn.feed(b"123456789", pipes(1), FeedFlags::default()).unwrap();
    conn.feed(b"", Vec::new(), FeedFlags { end: true, ..FeedFlags::default() }).unwrap();
    let mut out = Vec::new();
    assert!(drain(&mut conn, &mut out));
    assert_eq!(
        out,
        vec![
            (String::new(), 0, vec![]),
            (String::new(), 0, want),
            ("{\"a\":1}".into(), 0, vec![]),
            (String::new(), libc::EMSGSIZE, vec![]),
        ]
    );
}

#[test]
fn fed_packets_match_the_socket_connection() {
    let _leaks = FdLeakCheck::new();
    let packets: &[(&[u8], usize)] = &[(b"info", 0), (b"{\"a\":\"/dev/fd/1\"}", 2), (b"x", 1), (b"{]", 1)];
    let run = |fed: bool| {
        let (client, server) = pair(SockType::SeqPacket);
        let mut sent = Vec::new();
        for &(bytes, n) in packets {
            let fds = pipes(n);
            send_raw(&client, bytes, &fds);
            sent.push(inos(&fds));
        }
        drop(client);
        let got = if fed { serve_fed_packets(&server, packets.len()) } else { serve_socket(server, Framing::Packet) };
        (got, sent)
    };
    let (sock, sent) = run(false);
    let (fed, sent2) = run(true);
    assert_eq!(sock.len(), 4);
    let strip = |v: Vec<Seen>| v.into_iter().map(|(d, s, f)| (d, s, f.len())).collect::<Vec<_>>();
    assert_eq!(strip(sock), strip(fed.clone()));
    assert_eq!(fed[1].2, sent2[1]);
    assert_eq!(sent.len(), sent2.len());
}

/// Reads `n` packets from `sock` with exact-size buffers and feeds each.
fn serve_fed_packets(sock: &OwnedFd, n: usize) -> Vec<Seen> {
    let mut conn = Connection::new_fed(Framing::Packet, Limits::default()).unwrap();
    let mut cmsg = [0u64; CMSG_WORDS];
    let mut buf = vec![0u8; 4096];
    for _ in 0..n {
        let got = recv_with_fds(sock.as_fd(), &mut buf, &mut cmsg).unwrap();
        conn.feed(&buf[..got.bytes], got.fds, FeedFlags { fds_lost: got.fds_lost, end: false }).unwrap();
    }
    conn.feed(b"", Vec::new(), FeedFlags { end: true, ..FeedFlags::default() }).unwrap();
    let mut out = Vec::new();
    assert!(drain(&mut conn, &mut out));
    out
}

/// Whether `fd` is close-on-exec.
fn cloexec(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap()).contains(FdFlag::FD_CLOEXEC)
}

/// A pipe's read end made without `O_CLOEXEC`, as a VMM's own reader (or
/// an older kernel path) may hand over.
fn inheritable_pipe() -> OwnedFd {
    let (r, _w) = nix::unistd::pipe2(nix::fcntl::OFlag::empty()).unwrap();
    assert!(!cloexec(r.as_fd()));
    r
}

#[test]
fn fds_fed_without_cloexec_are_handed_out_cloexec_and_never_reach_an_exec() {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let _leaks = FdLeakCheck::new();
    // The Rust API.
    let mut conn = Connection::new_fed(Framing::Json, Limits::default()).unwrap();
    conn.feed(br#"{"execute":"x"}"#, vec![inheritable_pipe()], FeedFlags::default()).unwrap();
    let mut m = conn.recv().unwrap().unwrap();
    let fd = m.fds_mut().take(0).unwrap();
    assert!(cloexec(fd.as_fd()), "taken from a Rust fed connection");
    m.finish();
    // The C ABI: feed, adopt and the association take raw numbers.
    // SAFETY: NULL limits take the defaults.
    let ffi = unsafe { fdctx::testing::ffi::fdctx_conn_new_fed(0, std::ptr::null()) };
    let raw = inheritable_pipe().into_raw_fd();
    let data = br#"{"execute":"y"}"#;
    // SAFETY: a live fed connection; `raw` is handed over with the call.
    assert_eq!(unsafe { fdctx::testing::ffi::fdctx_conn_feed(ffi, data.as_ptr().cast(), data.len(), &raw, 1, 0) }, 0);
    let mut msg = std::ptr::null_mut();
    // SAFETY: a live connection, a writable out-parameter.
    assert_eq!(unsafe { fdctx::testing::ffi::fdctx_conn_recv(ffi, &mut msg) }, 1);
    // SAFETY: a live message; its context is lent.
    let taken = unsafe { fdctx::testing::ffi::fdctx_take(fdctx::testing::ffi::fdctx_msg_fds(msg), 0) };
    assert!(taken >= 0);
    // SAFETY: fdctx_take handed `taken` over to this test.
    let taken = unsafe { OwnedFd::from_raw_fd(taken) };
    assert!(cloexec(taken.as_fd()), "taken from a C fed connection");
    // SAFETY: a live message, then a live connection, each ended once.
    unsafe {
        fdctx::testing::ffi::fdctx_msg_finish(msg);
        fdctx::testing::ffi::fdctx_conn_free(ffi);
    }
    let ctx = fdctx::testing::ffi::fdctx_new();
    let raw = inheritable_pipe().into_raw_fd();
    // SAFETY: a live context; `raw` is handed over.
    assert_eq!(unsafe { fdctx::testing::ffi::fdctx_adopt(ctx, &raw, 1) }, 1);
    // SAFETY: a live context.
    let got = unsafe { fdctx::testing::ffi::fdctx_get(ctx, 0) };
    // SAFETY: `got` stays open while the context lives.
    assert!(cloexec(unsafe { std::os::fd::BorrowedFd::borrow_raw(got) }), "adopted");
    // SAFETY: a context made by fdctx_new, finished once.
    unsafe { fdctx::testing::ffi::fdctx_finish(ctx) };
}
