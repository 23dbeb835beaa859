//! `fdctx-send`: send one command with file descriptors attached to a
//! monitor socket and print the reply.
//!
//! ```text
//! fdctx-send [--qmp] [--fd PATH[:r|w|rw]]... [--timeout SECS] [--raw] SOCKET JSON
//! ```
//!
//! Every `--fd` file is opened with the stated access (default `r`) and
//! becomes fd N of the command in the order given, so the first is
//! `/dev/fd/0` in the command's arguments, the second `/dev/fd/1`, and so on.
//! The fds travel attached to the command's own bytes.
//!
//! Exit status: 0 on a `{"return": ...}` reply, 1 on an `{"error": ...}`
//! reply, 2 on a usage error or an I/O or protocol failure.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

const USAGE: &str = "\
usage: fdctx-send [--qmp] [--fd PATH[:r|w|rw]]... [--timeout SECS] [--raw] SOCKET JSON

Send the command JSON to the monitor listening on the Unix socket SOCKET,
with the files named by --fd attached as SCM_RIGHTS descriptors, and print
the reply.

  --qmp             read the QMP greeting and negotiate capabilities
                    (qmp_capabilities) before sending the command
  --fd PATH[:MODE]  open PATH and pass it with the command; MODE is r
                    (read-only, the default), w (write-only) or rw
                    (read-write). The N-th --fd is /dev/fd/N of the command,
                    counting from 0. May be repeated. A file whose own
                    name ends in :r, :w or :rw is named with its mode
                    (--fd a:w:r opens the file a:w read-only).
  --timeout SECS    give up when no reply came within SECS seconds
                    (default 30; 0 waits forever)
  --raw             send JSON exactly as given, without checking that it
                    is a JSON object and without adding a line break
  -h, --help        show this help

Exit status: 0 for a {\"return\": ...} reply, 1 for an {\"error\": ...} reply,
2 for a usage error, a file or socket that cannot be used, or a monitor
that closes the connection before replying.";

/// A failure that ends the program with exit status 2.
struct Fail(String);

type Res<T> = Result<T, Fail>;

fn fail<T>(msg: impl Into<String>) -> Res<T> {
    Err(Fail(msg.into()))
}

/// `io::Error` text without the trailing " (os error N)".
fn errtext(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    fn describe(self) -> &'static str {
        match self {
            Access::Read => "reading",
            Access::Write => "writing",
            Access::ReadWrite => "reading and writing",
        }
    }
}

struct Options {
    qmp: bool,
    raw: bool,
    timeout: u64,
    fds: Vec<(String, Access)>,
    socket: String,
    json: String,
}

enum Parsed {
    Run(Options),
    Help,
}

/// Splits `PATH[:r|w|rw]`; a suffix other than those three is part of the path.
fn parse_fd_spec(spec: &str) -> Res<(String, Access)> {
    let (path, access) = match spec.rsplit_once(':') {
        Some((p, "r")) => (p, Access::Read),
        Some((p, "w")) => (p, Access::Write),
        Some((p, "rw")) => (p, Access::ReadWrite),
        _ => (spec, Access::Read),
    };
    if path.is_empty() {
        return fail(format!("--fd needs a file name, got '{spec}'"));
    }
    Ok((path.to_string(), access))
}

fn parse_args(args: Vec<String>) -> Res<Parsed> {
    let mut qmp = false;
    let mut raw = false;
    let mut timeout = 30u64;
    let mut fds = Vec::new();
    let mut positional = Vec::new();
    let mut it = args.into_iter();
    let mut options_done = false;
    while let Some(arg) = it.next() {
        if options_done || !arg.starts_with('-') || arg == "-" {
            positional.push(arg);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |what: &str| -> Res<String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => fail(format!("{name} needs {what}")),
            }
        };
        match name.as_str() {
            "--" => options_done = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "--qmp" => qmp = true,
            "--raw" => raw = true,
            "--fd" => fds.push(parse_fd_spec(&value("a file name")?)?),
            "--timeout" => {
                let v = value("a number of seconds")?;
                timeout = match v.parse() {
                    Ok(t) => t,
                    Err(_) => return fail(format!("--timeout: '{v}' is not a number of seconds")),
                }
            }
            _ => return fail(format!("unknown option '{arg}'")),
        }
        if inline.is_some() && matches!(name.as_str(), "--qmp" | "--raw" | "--") {
            return fail(format!("{name} takes no value"));
        }
    }
    if positional.len() != 2 {
        return fail(format!(
            "expected SOCKET and JSON, got {} argument{}",
            positional.len(),
            if positional.len() == 1 { "" } else { "s" }
        ));
    }
    let json = positional.pop().unwrap();
    let socket = positional.pop().unwrap();
    Ok(Parsed::Run(Options { qmp, raw, timeout, fds, socket, json }))
}

fn open_file(path: &str, access: Access) -> Res<File> {
    let mut o = OpenOptions::new();
    match access {
        Access::Read => o.read(true),
        Access::Write => o.write(true),
        Access::ReadWrite => o.read(true).write(true),
    };
    o.open(path).or_else(|e| fail(format!("cannot open '{path}' for {}: {}", access.describe(), errtext(&e))))
}

fn connect(path: &str) -> Res<UnixStream> {
    UnixStream::connect(path).or_else(|e| {
        let why = match e.kind() {
            io::ErrorKind::NotFound => format!("no socket at '{path}' (is the monitor running?)"),
            io::ErrorKind::ConnectionRefused => {
                format!("connection refused at '{path}': nothing is listening (is the monitor running?)")
            }
            _ => format!("cannot connect to '{path}': {}", errtext(&e)),
        };
        fail(why)
    })
}

/// Reads a stream of JSON values (QMP: one object per line, but any
/// whitespace between values is accepted) and returns each with its text.
struct Replies<'a> {
    sock: &'a UnixStream,
    buf: Vec<u8>,
    timeout: u64,
}

impl<'a> Replies<'a> {
    /// The next value and its exact text, or `None` at end of stream.
    fn next(&mut self) -> Res<Option<(Value, String)>> {
        loop {
            let start = self.buf.iter().position(|b| !b.is_ascii_whitespace());
            match start {
                None => self.buf.clear(),
                Some(start) => {
                    let mut stream = serde_json::Deserializer::from_slice(&self.buf[start..]).into_iter::<Value>();
                    match stream.next() {
                        Some(Ok(v)) => {
                            let end = start + stream.byte_offset();
                            let text = String::from_utf8_lossy(&self.buf[start..end]).into_owned();
                            self.buf.drain(..end);
                            return Ok(Some((v, text)));
                        }
                        Some(Err(e)) if e.is_eof() => {}
                        Some(Err(e)) => {
                            return fail(format!(
                                "the monitor sent something that is not JSON ({e}): {}",
                                String::from_utf8_lossy(&self.buf[start..]).trim_end()
                            ))
                        }
                        None => self.buf.clear(),
                    }
                }
            }
            let mut chunk = [0u8; 4096];
            let n = loop {
                match (&*self.sock).read(&mut chunk) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                        return fail(format!("no reply from the monitor within {} s", self.timeout))
                    }
                    Err(e) => return fail(format!("reading from the monitor failed: {}", errtext(&e))),
                }
            };
            if n == 0 {
                if self.buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    return fail("the monitor closed the connection in the middle of a reply");
                }
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next reply to a command: skips QMP events and greetings.
    fn reply(&mut self, waiting_for: &str) -> Res<(Value, String)> {
        loop {
            let Some((v, text)) = self.next()? else {
                return fail(format!("the monitor closed the connection before replying to {waiting_for}"));
            };
            match &v {
                Value::Object(m) if m.contains_key("return") || m.contains_key("error") => return Ok((v, text)),
                Value::Object(m) if m.contains_key("event") || m.contains_key("QMP") => continue,
                _ => return fail(format!("unexpected reply to {waiting_for}: {text}")),
            }
        }
    }
}

fn send(sock: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>], what: &str) -> Res<()> {
    fdctx::monitor::send::send_with_fds(sock.as_fd(), bytes, fds)
        .or_else(|e| fail(format!("sending {what} to the monitor failed: {e}")))
}

fn run(opts: Options) -> Res<bool> {
    let mut payload = if opts.raw {
        opts.json.clone().into_bytes()
    } else {
        match serde_json::from_str::<Value>(&opts.json) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return fail("the command must be a JSON object, e.g. '{\"execute\": \"query-block\"}'"),
            Err(e) => return fail(format!("the command is not valid JSON: {e} (use --raw to send it anyway)")),
        }
        let mut p = opts.json.trim_end().as_bytes().to_vec();
        p.push(b'\n');
        p
    };
    if payload.is_empty() {
        payload.push(b'\n');
    }

    // Open every file first: a missing file must not leave a half-sent command.
    let files = opts.fds.iter().map(|(path, access)| open_file(path, *access)).collect::<Res<Vec<File>>>()?;

    let sock = connect(&opts.socket)?;
    if opts.timeout > 0 {
        sock.set_read_timeout(Some(Duration::from_secs(opts.timeout)))
            .or_else(|e| fail(format!("cannot set a read timeout: {}", errtext(&e))))?;
    }
    let mut replies = Replies { sock: &sock, buf: Vec::new(), timeout: opts.timeout };

    if opts.qmp {
        let greeting = match replies.next()? {
            Some((v, text)) => {
                if v.get("QMP").is_none() {
                    return fail(format!("not a QMP monitor: its first message was {text}"));
                }
                v
            }
            None => return fail("the monitor closed the connection before its QMP greeting"),
        };
        drop(greeting);
        send(&sock, b"{\"execute\": \"qmp_capabilities\"}\n", &[], "qmp_capabilities")?;
        let (v, text) = replies.reply("qmp_capabilities")?;
        if v.get("return").is_none() {
            return fail(format!("capabilities negotiation failed: {text}"));
        }
    }

    let borrowed: Vec<BorrowedFd<'_>> = files.iter().map(|f| f.as_fd()).collect();
    send(&sock, &payload, &borrowed, "the command")?;
    // The monitor has its own copies now.
    drop(borrowed);
    drop(files);

    let (v, text) = replies.reply("the command")?;
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|_| out.flush())
        .or_else(|e| fail(format!("writing the reply failed: {}", errtext(&e))))?;
    Ok(v.get("return").is_some())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(Fail(msg)) => {
            eprintln!("fdctx-send: {msg}");
            eprintln!("Try 'fdctx-send --help' for more information.");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Fail(msg)) => {
            eprintln!("fdctx-send: {msg}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fd accounting every test holds: with the `testing` feature, as
    /// `make check` builds these tests; a plain `cargo test` has none.
    #[cfg(feature = "testing")]
    fn leak_check() -> fdctx::testing::fdcount::FdLeakCheck {
        fdctx::testing::fdcount::FdLeakCheck::new()
    }
    #[cfg(not(feature = "testing"))]
    fn leak_check() -> impl Sized {}

    #[test]
    fn fd_specs_take_a_mode_suffix_and_names_may_hold_colons() {
        let _leaks = leak_check();
        let spec = |s: &str| parse_fd_spec(s).ok();
        assert_eq!(spec("disk.img"), Some(("disk.img".into(), Access::Read)));
        assert_eq!(spec("disk.img:rw"), Some(("disk.img".into(), Access::ReadWrite)));
        assert_eq!(spec("a:w"), Some(("a".into(), Access::Write)));
        assert_eq!(spec("a:w:r"), Some(("a:w".into(), Access::Read)), "a name ending in a mode, with its mode");
        assert_eq!(spec("host:port.img"), Some(("host:port.img".into(), Access::Read)));
        assert_eq!(spec(":w"), None);
    }
}
