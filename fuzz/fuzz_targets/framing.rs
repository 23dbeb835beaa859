//! Fuzz target: framing of a command stream.
//!
//! Input layout: byte 0 selects the framing and limits, byte 1 seeds the
//! read sizes and which writes carry an fd, the rest is the stream.
//! See fuzz/README.md for the invariants.

#![no_main]

use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

use fdctx::testing::{validate_object, FrameEnd, Framing, Scanner, Took};
use fdctx::{Connection, Limits};
use libfuzzer_sys::fuzz_target;

/// Frames found by the scanner: Ok(bytes) or Err(errno).
type Frames = Vec<Result<Vec<u8>, i32>>;

/// Read sizes from a tiny PRNG, so one byte of input picks many cuts.
fn sizes(seed: u8, total: usize) -> Vec<usize> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let n = match seed % 4 {
            0 => 1,
            1 => 1 + (x as usize % 7),
            2 => 1 + (x as usize % 64),
            _ => left,
        }
        .min(left);
        out.push(n);
        left -= n;
    }
    out
}

fn scan(framing: Framing, limits: Limits, stream: &[u8], cuts: &[usize]) -> Frames {
    let mut s = Scanner::new(framing, limits.max_msg_bytes, limits.max_depth).expect("a stream framing");
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut off = 0;
    for &n in cuts {
        let chunk = &stream[off..off + n];
        off += n;
        let mut pos = 0;
        let mut stalled = false;
        while pos < chunk.len() {
            let rest = &chunk[pos..];
            let st = s.step(rest);
            let Took::Frame { bytes, end, .. } = st.took else {
                assert!(st.consumed > 0 && st.consumed <= rest.len(), "whitespace or discarding takes bytes");
                pos += st.consumed;
                continue;
            };
            // Only a frame rejected at a `{` that starts a line ends without
            // consuming a byte (the next frame starts at that `{`), and the
            // step after it consumes.
            let progress = st.consumed > 0 || (!stalled && matches!(end, FrameEnd::Rejected(_)));
            assert!(progress && st.consumed <= rest.len(), "progress within the chunk");
            stalled = st.consumed == 0;
            assert!(bytes.start <= bytes.end && bytes.end <= st.consumed, "frame within the step");
            cur.extend_from_slice(&rest[bytes]);
            pos += st.consumed;
            if !matches!(end, FrameEnd::Open) {
                out.push(frame_end(&mut s, framing, limits, std::mem::take(&mut cur), end));
            }
        }
    }
    out
}

/// What a connection makes of the `bytes` of a frame that ended as `end`
/// says.
fn frame_end(s: &mut Scanner, framing: Framing, limits: Limits, bytes: Vec<u8>, end: FrameEnd) -> Result<Vec<u8>, i32> {
    let fd_refs = match end {
        FrameEnd::Rejected(e) => return Err(e.errno()),
        FrameEnd::Valid { fd_refs } => Some(fd_refs),
        FrameEnd::Complete | FrameEnd::Open => None,
    };
    if framing == Framing::Json {
        assert_eq!(bytes.first(), Some(&b'{'), "a JSON frame starts with an object");
        assert!(matches!(bytes.last(), Some(b'}' | b']')));
        assert!(bytes.len() <= limits.max_msg_bytes, "within max_msg_bytes");
        let check = validate_object(&bytes, limits.max_depth);
        if let Some(refs) = fd_refs {
            assert_eq!(check, Ok(refs), "a frame taken in one pass validates the same");
        }
        if let Err(e) = check {
            // As a connection does: the rest of the line goes with a
            // complete frame that is not JSON.
            s.abandon();
            return Err(e.errno());
        }
    }
    Ok(bytes)
}

fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Writes `bytes` to `client` in one `sendmsg`, with the read end of a new
/// pipe when `with_fd`; returns the pipe's write end (non-blocking) then,
/// to tell later whether the read end is still open anywhere.
fn send(client: &OwnedFd, bytes: &[u8], with_fd: bool) -> Option<OwnedFd> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let raw = [r.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
    let cmsgs: &[nix::sys::socket::ControlMessage<'_>] = if with_fd { &cmsg } else { &[] };
    let sent = nix::sys::socket::sendmsg::<()>(
        client.as_raw_fd(),
        &[IoSlice::new(bytes)],
        cmsgs,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .unwrap();
    assert_eq!(sent, bytes.len());
    drop(r);
    with_fd.then(|| {
        nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
        w
    })
}

/// Sends the stream in the given writes through a socket pair, reading
/// after each write; returns (errno, bytes) per message.
fn through_connection(
    framing: Framing,
    limits: Limits,
    stream: &[u8],
    cuts: &[usize],
    seed: u8,
) -> Vec<(i32, Vec<u8>)> {
    let (client, server) = nix::sys::socket::socketpair(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        None,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC | nix::sys::socket::SockFlag::SOCK_NONBLOCK,
    )
    .unwrap();
    let mut conn = Connection::new(server, framing, limits).unwrap();
    let mut got = Vec::new();
    let mut writers: Vec<OwnedFd> = Vec::new();
    let drain = |conn: &mut Connection, got: &mut Vec<(i32, Vec<u8>)>| loop {
        match conn.recv() {
            Ok(Some(m)) => got.push((m.status().err().map_or(0, |e| e.errno()), m.data().to_vec())),
            Ok(None) => break,
            Err(e) if e.errno() == libc::EAGAIN => break,
            Err(e) => panic!("recv: {e}"),
        }
    };
    let mut off = 0;
    for (i, &n) in cuts.iter().enumerate() {
        let with_fd = (usize::from(seed) + i) % 3 == 0;
        writers.extend(send(&client, &stream[off..off + n], with_fd));
        off += n;
        drain(&mut conn, &mut got);
    }
    drop(client);
    drain(&mut conn, &mut got);
    drop(conn);
    // Every fd sent was delivered (and closed with its message above) or
    // closed by the library: no reader is left.
    for w in &writers {
        assert!(
            matches!(nix::unistd::write(w, b"x"), Err(nix::errno::Errno::EPIPE)),
            "an fd sent with the stream is still open"
        );
    }
    got
}

fuzz_target!(|data: &[u8]| {
    static NO_SIGPIPE: OnceLock<()> = OnceLock::new();
    // SAFETY: ignoring SIGPIPE makes a write to a readerless pipe EPIPE.
    NO_SIGPIPE.get_or_init(|| unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    });
    if data.len() < 2 {
        return;
    }
    let (cfg, seed, stream) = (data[0], data[1], &data[2..]);
    let framing = if cfg & 1 == 0 { Framing::Json } else { Framing::Line };
    let limits = Limits {
        max_msg_bytes: [8, 16, 40, 64, 100, 256, 1000, 1 << 20][usize::from(cfg >> 1 & 7)],
        max_depth: [1, 2, 4, 64][usize::from(cfg >> 4 & 3)],
        max_fds: 1 + usize::from(cfg >> 6),
        ..Limits::default()
    };
    let cuts = sizes(seed, stream.len());
    let frames = scan(framing, limits, stream, &cuts);
    assert_eq!(frames, scan(framing, limits, stream, &[stream.len()]), "messages depend on the read sizes");
    let before = open_fd_count();
    let msgs = through_connection(framing, limits, stream, &cuts, seed);
    assert_eq!(open_fd_count(), before, "fd leak");
    // The connection's messages are the scanner's frames.
    assert_eq!(msgs.len(), frames.len(), "message boundaries");
    for (m, f) in msgs.iter().zip(&frames) {
        match f {
            Err(e) => assert_eq!(m.0, *e, "a rejected frame keeps its reason"),
            Ok(bytes) if framing == Framing::Json => assert_eq!(&m.1, bytes),
            Ok(_) => {}
        }
    }
});
