//! The client side: `send_with_fds` (`fdctx_send`) puts every batch of fds
//! on a write that starts at a non-whitespace byte of its command, so the
//! receiver gives each command exactly its fds, pipelined or not; a command
//! with too few such bytes is refused before anything is sent.
//!
//! Every test counts the process's open fds before and after.

mod common;

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use common::fdcount::FdLeakCheck;
use common::{inos, msg_inos, pair, pipes, recv, send_raw, text};
use fdctx::monitor::send::send_with_fds;
use fdctx::{Connection, Error, Framing, Limits};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockType};

/// A monitor connection that accepts up to 1000 fds per command, and the
/// client end of its stream socket.
fn monitor(framing: Framing) -> (Connection, OwnedFd) {
    let (client, server) = pair(SockType::Stream);
    let limits = Limits { max_fds: 1000, ..Limits::default() };
    (Connection::new(server, framing, limits).unwrap(), client)
}

/// `fdctx_send`; the sender's copies of the fds are closed right after, as a
/// client does, so only the receiver's copies stay open.
fn send(sock: &OwnedFd, bytes: &[u8], fds: Vec<OwnedFd>) -> Result<(), Error> {
    let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
    send_with_fds(sock.as_fd(), bytes, &b)
}

/// Closes the client end and checks that nothing else was queued.
fn expect_end(mut conn: Connection, client: OwnedFd) {
    drop(client);
    match conn.recv().unwrap() {
        None => {}
        Some(m) => panic!("unexpected message {:?} with {} fds", text(&m), m.fds().count()),
    }
}

fn einval(r: Result<(), Error>) {
    match r {
        Err(e) => assert_eq!(e.errno(), libc::EINVAL, "{e}"),
        Ok(()) => panic!("sent, but must be refused with EINVAL"),
    }
}

#[test]
fn line_a_newline_with_300_fds_is_refused_and_nothing_is_sent() {
    // Two batches (253 + 47) need two command bytes; "a\n" has one. Sending
    // the second batch on the "\n" would give it to the next line.
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = monitor(Framing::Line);
    einval(send(&client, b"a\n", pipes(300)));
    let next = pipes(1);
    let want = inos(&next);
    send(&client, b"b\n", next).unwrap();
    let m = recv(&mut conn);
    assert_eq!(text(&m), "b");
    assert_eq!(msg_inos(&m), want, "the next line gets exactly its own fd");
    m.finish();
    expect_end(conn, client);
}

#[test]
fn line_with_two_command_bytes_takes_300_fds_and_the_next_line_none() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = monitor(Framing::Line);
    let fds = pipes(300);
    let want = inos(&fds);
    send(&client, b"ab\n", fds).unwrap();
    send(&client, b"c\n", Vec::new()).unwrap();
    let m = recv(&mut conn);
    assert_eq!((text(&m), msg_inos(&m)), ("ab", want));
    m.finish();
    let m = recv(&mut conn);
    assert_eq!((text(&m), m.fds().count()), ("c", 0));
    m.finish();
    expect_end(conn, client);
}

#[test]
fn json_braces_crlf_with_600_fds_is_refused_and_nothing_is_sent() {
    // Three batches (253 + 253 + 94), two command bytes: the third batch
    // would ride on "\r\n" and reach the next command.
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = monitor(Framing::Json);
    einval(send(&client, b"{}\r\n", pipes(600)));
    send(&client, b"{\"n\":2}\r\n", Vec::new()).unwrap();
    let m = recv(&mut conn);
    assert_eq!((text(&m), m.fds().count()), ("{\"n\":2}", 0));
    m.finish();
    expect_end(conn, client);
}

#[test]
fn json_braces_crlf_with_506_fds_gets_them_all_and_the_next_command_none() {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = monitor(Framing::Json);
    let fds = pipes(506);
    let want = inos(&fds);
    send(&client, b"{}\r\n", fds).unwrap();
    send(&client, b"{\"n\":2}\r\n", Vec::new()).unwrap();
    let m = recv(&mut conn);
    assert_eq!((text(&m), msg_inos(&m)), ("{}", want));
    m.finish();
    let m = recv(&mut conn);
    assert_eq!((text(&m), m.fds().count()), ("{\"n\":2}", 0));
    m.finish();
    expect_end(conn, client);
}

#[test]
fn whitespace_only_with_an_fd_is_refused() {
    let _leaks = FdLeakCheck::new();
    let (conn, client) = monitor(Framing::Json);
    einval(send(&client, b" ", pipes(1)));
    einval(send(&client, b"\r\n\t ", pipes(1)));
    einval(send(&client, b"", pipes(1)));
    expect_end(conn, client);
}

/// Reads `sock` one byte per `recvmsg(2)` until end of stream: each byte
/// and the fds the kernel returned with it. The fds of a write arrive with
/// its first byte, so this shows exactly where each fd-carrying write began.
fn bytes_and_fds(sock: &OwnedFd) -> Vec<(u8, Vec<OwnedFd>)> {
    let mut out = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let mut cmsg = nix::cmsg_space!([RawFd; 253]);
        let mut iov = [std::io::IoSliceMut::new(&mut byte)];
        let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC).unwrap();
        let mut fds = Vec::new();
        for c in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these fds for us.
                fds.extend(raw.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        assert!(!msg.flags.contains(MsgFlags::MSG_CTRUNC));
        if msg.bytes == 0 {
            assert!(fds.is_empty());
            return out;
        }
        out.push((byte[0], fds));
    }
}

#[test]
fn every_batch_rides_on_a_non_whitespace_byte_leading_whitespace_goes_first_without_fds() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let cmd = b" \r\n\t{ \"a\" :1 }\r\n";
    let fds = pipes(600);
    let want = inos(&fds);
    send(&client, cmd, fds).unwrap();
    drop(client);
    let got = bytes_and_fds(&server);
    assert_eq!(got.iter().map(|(b, _)| *b).collect::<Vec<u8>>(), cmd.to_vec(), "every byte, in order");
    let carriers: Vec<(char, usize)> =
        got.iter().filter(|(_, f)| !f.is_empty()).map(|(b, f)| (*b as char, f.len())).collect();
    assert_eq!(carriers, [('{', 253), ('"', 253), ('a', 94)], "one batch per non-whitespace byte, from the first");
    let all: Vec<u64> = got.iter().flat_map(|(_, f)| inos(f)).collect();
    assert_eq!(all, want, "every fd once, in order");
}

#[test]
fn one_batch_after_leading_crlf_rides_on_the_first_command_byte() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::Stream);
    let fds = pipes(2);
    let want = inos(&fds);
    send(&client, b"\r\n {\"execute\":\"x\"}\n", fds).unwrap();
    drop(client);
    let got = bytes_and_fds(&server);
    let carriers: Vec<(u8, Vec<u64>)> = got.iter().filter(|(_, f)| !f.is_empty()).map(|(b, f)| (*b, inos(f))).collect();
    assert_eq!(carriers, [(b'{', want)]);
}

/// A command of exactly `len` bytes: with the monitor's 64 KiB reads, one
/// of 65535 bytes leaves room for one byte of the next write in that read.
fn filler(len: usize) -> Vec<u8> {
    let head = br#"{"execute":"fill","arguments":{"pad":""#;
    let tail = br#""}}"#;
    let mut v = head.to_vec();
    v.resize(len - tail.len(), b'x');
    v.extend_from_slice(tail);
    v
}

const OPEN: &[u8] = br#"{"execute":"blockdev-add","arguments":{"filename":"/dev/fd/0"}}"#;

/// Command 1 without fds fills a 64 KiB read minus one byte; command 2
/// begins with `lead` and carries one fd, sent with `fdctx_send`.
fn pipelined_after_64k_minus_one(lead: &[u8]) {
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = monitor(Framing::Json);
    send(&client, &filler(65535), Vec::new()).unwrap();
    let mut cmd2 = lead.to_vec();
    cmd2.extend_from_slice(OPEN);
    let fds = pipes(1);
    let want = inos(&fds);
    send(&client, &cmd2, fds).unwrap();
    let first = recv(&mut conn);
    assert!(first.status().is_ok());
    assert_eq!((first.data().len(), first.fds().count()), (65535, 0), "command 1 gets no fd");
    first.finish();
    let second = recv(&mut conn);
    assert!(second.status().is_ok(), "{:?}", second.status());
    assert_eq!(msg_inos(&second), want, "command 2 gets exactly its fd");
    second.finish();
    expect_end(conn, client);
}

#[test]
fn pipelined_command_beginning_with_a_space_after_a_64k_read_minus_one_gets_exactly_its_fd() {
    pipelined_after_64k_minus_one(b" ");
}

#[test]
fn pipelined_command_beginning_with_crlf_after_a_64k_read_minus_one_gets_exactly_its_fd() {
    pipelined_after_64k_minus_one(b"\r\n");
}

#[test]
fn a_raw_write_starting_on_whitespace_after_a_64k_read_minus_one_gives_its_fd_to_the_command_before() {
    // The receiver's side of the guarantee: it holds only when the write
    // that carries the fds starts inside the command. One sendmsg of " " +
    // command 2 with the fd is read one byte into it, together with command
    // 1, so the fd belongs to command 1 (which names /dev/fd/0 here too).
    // This is also what shows the two tests above exercise a real split.
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = monitor(Framing::Json);
    let fill = filler(65535);
    send_raw(&client, &fill, &[]);
    let mut cmd2 = b" ".to_vec();
    cmd2.extend_from_slice(OPEN);
    let fds = pipes(1);
    let want = inos(&fds);
    send_raw(&client, &cmd2, &fds);
    drop(fds);
    let first = recv(&mut conn);
    assert_eq!(msg_inos(&first), want, "the read that returned the fd held command 1's last bytes");
    first.finish();
    let second = recv(&mut conn);
    assert_eq!(second.fds().count(), 0);
    assert_eq!(second.status().unwrap_err().errno(), libc::EBADF, "refused, never bound to a stranger's fd");
    second.finish();
    expect_end(conn, client);
}

#[test]
fn leading_whitespace_larger_than_the_socket_buffer_goes_out_first_without_fds() {
    // Partial writes of the leading whitespace, then of the command: the
    // fds still go once, with the command's first byte.
    let _leaks = FdLeakCheck::new();
    let (mut conn, client) = monitor(Framing::Json);
    let mut cmd = vec![b' '; 1 << 20];
    cmd.extend_from_slice(OPEN);
    cmd.extend(std::iter::repeat_n(b'\n', 1 << 20));
    let fds = pipes(300);
    let want = inos(&fds);
    // The sender closes its end when done; the monitor reads on to the end.
    let sender = std::thread::spawn(move || send(&client, &cmd, fds).unwrap());
    let m = recv(&mut conn);
    assert_eq!(msg_inos(&m), want);
    m.finish();
    assert!(conn.recv().unwrap().is_none(), "nothing after the command");
    sender.join().unwrap();
}

#[test]
fn a_packet_is_one_write_with_all_its_fds_whatever_its_bytes() {
    let _leaks = FdLeakCheck::new();
    let (client, server) = pair(SockType::SeqPacket);
    let mut conn = Connection::new(server, Framing::Packet, Limits::default()).unwrap();
    let fds = pipes(2);
    let want = inos(&fds);
    send(&client, b" {\"execute\":\"x\"}", fds).unwrap();
    let m = recv(&mut conn);
    assert_eq!((text(&m), msg_inos(&m)), (" {\"execute\":\"x\"}", want));
    m.finish();
    match send(&client, b"{\"execute\":\"x\"}", pipes(254)) {
        Err(e) => assert_eq!(e.errno(), libc::ETOOMANYREFS),
        Ok(()) => panic!("254 fds in one packet"),
    }
    expect_end(conn, client);
}
