//! The two stream scanners, fed the same input cut into reads every way.

use super::*;
use crate::monitor::json::validate_object;
use crate::testing::fdcount::FdLeakCheck;

/// A frame's bytes and what a connection makes of it: the highest fd
/// reference it names, or the errno it fails with.
type Checked = (Vec<u8>, Result<Option<usize>, i32>);

/// Feeds `input` to `s` in pieces of `cut` bytes; `done` turns each frame
/// end (the frame's bytes and how it ended) into an entry of the result.
fn scan<T>(
    s: &mut Scanner,
    input: &[u8],
    cut: usize,
    mut done: impl FnMut(&mut Scanner, Vec<u8>, FrameEnd) -> T,
) -> Vec<T> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for chunk in input.chunks(cut) {
        let mut pos = 0;
        while pos < chunk.len() {
            let step = s.step(&chunk[pos..]);
            if let Took::Frame { bytes, end, .. } = step.took {
                // Only a frame rejected at a `{` that starts a line (and
                // the next frame) ends without consuming a byte.
                assert!(step.consumed > 0 || matches!(end, FrameEnd::Rejected(_)));
                cur.extend_from_slice(&chunk[pos..][bytes]);
                if end != FrameEnd::Open {
                    out.push(done(s, std::mem::take(&mut cur), end));
                }
            } else {
                assert!(step.consumed > 0);
            }
            pos += step.consumed;
        }
    }
    out
}

/// Feeds `input` in pieces of `cut` bytes to a scanner with limits 64
/// bytes, depth 4; returns (frame text or errno) for every frame end.
fn frames(framing: Framing, input: &[u8], cut: usize) -> Vec<Result<String, i32>> {
    let mut s = Scanner::new(framing, 64, 4).unwrap();
    scan(&mut s, input, cut, |_, frame, end| match end {
        FrameEnd::Rejected(e) => Err(e.errno()),
        _ => Ok(String::from_utf8(frame).unwrap()),
    })
}

/// Feeds `input` in pieces of `cut` bytes to a JSON scanner (limits
/// `max_bytes`, depth 4) and validates each complete frame as a connection
/// does, abandoning the line of one that fails.
fn checked_frames(input: &[u8], cut: usize, max_bytes: usize) -> Vec<Checked> {
    let mut s = Scanner::new(Framing::Json, max_bytes, 4).unwrap();
    scan(&mut s, input, cut, |s, frame, end| {
        let check = match end {
            FrameEnd::Rejected(e) => Err(e.errno()),
            FrameEnd::Valid { fd_refs } => {
                assert_eq!(validate_object(&frame, 4), Ok(fd_refs), "one pass and validation agree");
                Ok(fd_refs)
            }
            FrameEnd::Complete | FrameEnd::Open => validate_object(&frame, 4).map_err(|e| {
                s.abandon();
                e.errno()
            }),
        };
        (frame, check)
    })
}

/// What a connection gets from `input` read `cut` bytes at a time is what
/// it gets reading one byte at a time: the incremental scan alone, since
/// no frame lies whole in a one-byte read.
fn assert_cuts_agree(input: &[u8], max_bytes: usize, cuts: impl IntoIterator<Item = usize>) -> Vec<Checked> {
    let want = checked_frames(input, 1, max_bytes);
    assert!(!want.is_empty());
    for cut in cuts {
        assert_eq!(checked_frames(input, cut, max_bytes), want, "cut {cut} of {:?}", String::from_utf8_lossy(input));
    }
    want
}

/// Whether the first step over `input` takes a frame in one pass.
fn one_pass(s: &mut Scanner, input: &[u8]) -> Option<Option<usize>> {
    match s.step(input).took {
        Took::Frame { end: FrameEnd::Valid { fd_refs }, .. } => Some(fd_refs),
        _ => None,
    }
}

#[test]
fn one_pass_frames_like_the_incremental_scan() {
    let _leaks = FdLeakCheck::new();
    let inputs: &[&[u8]] = &[
        br#"{"execute":"add-fd","arguments":{"opaque":"/dev/fd/0"}}"#,
        b"{\"a\":\"/dev/fd/3\",\"b\":[\"/dev/fd/1\"]}\r\n{\"c\":\"\\/dev\\/fd\\/7\"}  {}",
        // Not JSON, with brackets that still balance, then good ones.
        b"{\"a\" 1}{\"b\":1}\n{\"a\":1,}{\"ok\":[]}\n{\"a\":tru}{\"x\":\"}\"}",
        // Too deep (limit 4), and at the limit.
        b"{\"a\":[[[[1]]]]}{\"a\":[[1]]}\n{\"b\":[{\"c\":[1]}]}{\"a\":[[[1]]]}",
        // Too large (limit 64), and exactly 64 bytes.
        b"{\"a\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}\n{\"a\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
        // Not UTF-8 in a key and in a value; a raw control character.
        b"{\"\xff\":1}{\"a\":\"\xc3\x28\"}\n{\"a\":\"\x01\"}\n{\"ok\":1}",
        // Escapes, numbers, literals, a lone surrogate escape.
        br#"{"s":"\"}\\","n":-1.5e3,"t":true,"f":false,"z":null,"u":"\u00e9\ud83d\ude00"}{"v":"\udc00"}"#,
        b"[1]{\"x\":1}\n{\"y\":\"/dev/fd/01\",\"z\":\"/dev/fd/12\"}",
    ];
    for input in inputs {
        assert_cuts_agree(input, 64, 2..=input.len());
    }
    // The one pass is taken for a good frame whole in the read, and not
    // for one that is not good.
    let mut s = Scanner::new(Framing::Json, 64, 4).unwrap();
    assert_eq!(one_pass(&mut s, inputs[0]), Some(Some(0)));
    assert_eq!(one_pass(&mut s, b"{\"a\":1,}"), None);
}

/// Frames past 256 bytes, with multi-byte characters throughout, invalid
/// UTF-8 past the first 256 bytes, and a frame over the limit (2000).
fn long_frames() -> Vec<u8> {
    let mut input = Vec::new();
    for (i, len) in [300usize, 600, 1100, 1999].into_iter().enumerate() {
        let mut frame = format!("{{\"n\":{i},\"fd\":\"/dev/fd/{i}\",\"s\":\"");
        while frame.len() < len - 6 {
            frame.push(if frame.len() % 7 == 0 { '\u{1F600}' } else { 'é' });
        }
        while frame.len() < len - 2 {
            frame.push('a');
        }
        frame.push_str("\"}");
        input.extend_from_slice(frame.as_bytes());
    }
    input.extend_from_slice(b"\n{\"a\":\"");
    input.extend_from_slice(&[b'x'; 400]);
    input.extend_from_slice(b"\xff\"}\n{\"b\":\"");
    input.extend_from_slice(&[b'y'; 2100]);
    input.extend_from_slice(b"\"}\n{\"ok\":true}");
    input
}

#[test]
fn long_frames_end_alike_at_every_cut() {
    let _leaks = FdLeakCheck::new();
    let input = long_frames();
    let cuts = [2, 3, 7, 255, 256, 257, 511, 512, 1000, 1023, 1024, 1025, 4096, input.len()];
    let want = assert_cuts_agree(&input, 2000, cuts);
    let summary: Vec<_> = want.iter().map(|(f, r)| (f.len(), *r)).collect();
    assert_eq!(want.len(), 7, "{summary:?}");
    assert!(want[..4].iter().enumerate().all(|(i, (_, r))| *r == Ok(Some(i))), "{summary:?}");
    assert_eq!(want[4].1, Err(libc::EILSEQ));
    assert_eq!(want[5].1, Err(libc::EMSGSIZE));
    let mut s = Scanner::new(Framing::Json, 2000, 4).unwrap();
    assert_eq!(one_pass(&mut s, &input), Some(Some(0)), "a 300-byte frame in one pass");
}

#[test]
fn json_frames_at_any_cut() {
    let _leaks = FdLeakCheck::new();
    let input = br#" {"a":"}{\"x"} 
{"b":[1,{"c":2}]}{"d":"\\"}"#;
    for cut in 1..input.len() {
        assert_eq!(
            frames(Framing::Json, input, cut),
            vec![
                Ok(r#"{"a":"}{\"x"}"#.to_string()),
                Ok(r#"{"b":[1,{"c":2}]}"#.to_string()),
                Ok(r#"{"d":"\\"}"#.to_string())
            ],
            "cut {cut}"
        );
    }
}

#[test]
fn json_rejects_then_resynchronises_at_newline() {
    let _leaks = FdLeakCheck::new();
    let ebadmsg = libc::EBADMSG;
    let input = b"[1]{\"x\":1}\n{\"a\":[[[[[1]]]]]} {\"y\":1}\n{\"ok\":1}";
    assert_eq!(frames(Framing::Json, input, 5), vec![Err(ebadmsg), Err(ebadmsg), Ok("{\"ok\":1}".into())]);
}

type Case = (&'static [u8], Vec<Result<String, i32>>);

fn bad() -> Result<String, i32> {
    Err(libc::EBADMSG)
}

fn ok(s: &str) -> Result<String, i32> {
    Ok(s.to_string())
}

/// Each case's frames, the same at every cut.
fn assert_json_cases(cases: &[Case]) {
    for (input, want) in cases {
        for cut in 1..=input.len() {
            assert_eq!(&frames(Framing::Json, input, cut), want, "cut {cut} of {:?}", String::from_utf8_lossy(input));
        }
    }
}

#[test]
fn a_command_cut_short_does_not_swallow_the_next_lines() {
    let _leaks = FdLeakCheck::new();
    assert_json_cases(&[
        // Unclosed: the next line's command starts a frame of its own.
        (b"{\"execute\":\"cont\"\n{\"b\":1}\n{\"c\":2}", vec![bad(), ok("{\"b\":1}"), ok("{\"c\":2}")]),
        (b"{\"a\":1,\n  {\"b\":1}\n", vec![bad(), ok("{\"b\":1}")]),
        (b"{\"a\":[1]\r\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
        // Where a `{` may begin a value, it does: the frame goes on.
        (b"{\"a\":[1,\n{\"b\":1}]}", vec![ok("{\"a\":[1,\n{\"b\":1}]}")]),
        // A line break inside a string ends the frame there.
        (b"{\"a\":\"unterminated\n{\"b\":1}\n", vec![bad(), ok("{\"b\":1}")]),
        (b"{\"a\":\"x\\\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
        // Valid JSON over several lines is one command.
        (b"{\n \"a\": {\n  \"b\": [1,\n 2]\n }\n}\n", vec![ok("{\n \"a\": {\n  \"b\": [1,\n 2]\n }\n}")]),
        (b"{\"a\":\n{\"b\":1}}", vec![ok("{\"a\":\n{\"b\":1}}")]),
    ]);
}

#[test]
fn a_bad_byte_loses_the_rest_of_its_line() {
    let _leaks = FdLeakCheck::new();
    assert_json_cases(&[
        (b"{x {\"smuggled\":1}\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
        (b"{\"a\" {\"smuggled\":1}}\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
        (b"{\"a\":1 2}{\"smuggled\":1}\n{\"b\":1}", vec![bad(), ok("{\"b\":1}")]),
        (b"{\"a\":1]\n{\"b\":[}]}\n{\"c\":{\"d\"}}\n{}", vec![bad(), bad(), bad(), ok("{}")]),
    ]);
}

#[test]
fn json_too_large() {
    let _leaks = FdLeakCheck::new();
    let big = format!("{{\"a\":\"{}\"}}\n{{}}", "x".repeat(100));
    assert_eq!(frames(Framing::Json, big.as_bytes(), 7), vec![Err(libc::EMSGSIZE), Ok("{}".into())]);
    let exact = format!("{{\"a\":\"{}\"}}", "x".repeat(56));
    assert_eq!(exact.len(), 64);
    assert_eq!(frames(Framing::Json, exact.as_bytes(), 9), vec![Ok(exact.clone())]);
}

#[test]
fn too_large_is_rejected_at_the_same_byte_whatever_the_cuts() {
    let _leaks = FdLeakCheck::new();
    // Limit 64: rejected at byte 65, inside the second line; discarding
    // ends with that line, so the third line is garbage of its own.
    let input = b"{\"a\":\n\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\n\"b\":1}\n{\"c\":2}";
    let whole = frames(Framing::Json, input, input.len());
    assert_eq!(whole, vec![Err(libc::EMSGSIZE), Err(libc::EBADMSG), Ok("{\"c\":2}".into())]);
    for cut in 1..input.len() {
        assert_eq!(frames(Framing::Json, input, cut), whole, "cut {cut}");
    }
}

#[test]
fn line_frames() {
    let _leaks = FdLeakCheck::new();
    let input = b"info block\r\n\n  \nquit\n";
    assert_eq!(frames(Framing::Line, input, 3), vec![Ok("info block\r".into()), Ok("quit".into())]);
    let long = format!("{}\nnext\n", "y".repeat(65));
    assert_eq!(frames(Framing::Line, long.as_bytes(), 10), vec![Err(libc::EMSGSIZE), Ok("next".into())]);
}

#[test]
fn line_too_large_is_rejected_at_the_same_byte_whatever_the_cuts() {
    let _leaks = FdLeakCheck::new();
    // 64 bytes and its break is a line; 65 is not, with or without its
    // break in the same read; the rest of a line too long is discarded.
    let input = format!("{}\n{}\n{}x\nlast", "a".repeat(64), "b".repeat(65), "c".repeat(70));
    let want = vec![Ok("a".repeat(64)), Err(libc::EMSGSIZE), Err(libc::EMSGSIZE)];
    for cut in 1..=input.len() {
        assert_eq!(frames(Framing::Line, input.as_bytes(), cut), want, "cut {cut}");
    }
}

#[test]
fn packet_framing_has_no_scanner() {
    assert!(Scanner::new(Framing::Packet, 64, 4).is_none());
}
