//! Unit tests of the JSON error listener: head scanning, the 400/414/431 replacements and
//! the HTTP/2 preface refusal.

use proptest::strategy::Just;

use super::*;

fn scan_of(bytes: &[u8]) -> HeadScan {
    let mut s = HeadScan::default();
    s.feed(bytes);
    s
}

/// A burst of connections the server has not accepted yet completes at once: the backlog
/// holds them (with the standard library's 128, the kernel drops the handshakes past it and
/// their clients wait a second for a SYN retransmission).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listen_backlog_holds_a_burst_of_connections() {
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn").expect("somaxconn").trim().parse().expect("number");
    let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let burst = 600.min(somaxconn as usize - 1);
    assert!(burst > 128, "somaxconn {somaxconn} leaves no room above the old backlog");
    let mut held = Vec::new();
    for i in 0..burst {
        let c = tokio::time::timeout(std::time::Duration::from_millis(500), TcpStream::connect(addr)).await;
        held.push(c.unwrap_or_else(|_| panic!("connection {i} waited for a SYN retransmission")).expect("connect"));
    }
    drop(listener);
}

#[tokio::test]
async fn accepted_connections_send_without_nagle_delay() {
    let mut listener = JsonErrorListener::new(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    let addr = listener.local_addr().expect("addr");
    let client = tokio::spawn(TcpStream::connect(addr));
    let (io, _) = Listener::accept(&mut listener).await;
    assert!(io.inner.nodelay().expect("nodelay"), "TCP_NODELAY on the accepted socket");
    let client = client.await.expect("join").expect("connect");
    assert!(!client.nodelay().expect("nodelay"), "a plain socket starts with Nagle on");
}

#[test]
fn only_hypers_bare_400_414_and_431_heads_are_replaced() {
    let s = HeadScan::default();
    assert!(replacement(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n", &s).is_some());
    assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n", &s).is_some());
    assert!(replacement(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", &s).is_some());
    assert!(replacement(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 5\r\n\r\n", &s).is_none());
    assert!(replacement(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\nextra", &s).is_none());
    assert!(replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n", &s).is_none(), "ours");
    assert!(replacement(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", &s).is_none());
    assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", &s).is_none());
}

#[test]
fn a_replacement_is_json_not_cached_and_closes() {
    let out =
        replacement(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: Mon, 30 Nov 2026 00:00:00 GMT\r\n\r\n", &HeadScan::default()).expect("replaced");
    let out = String::from_utf8(out).expect("utf-8");
    let (head, body) = out.split_once("\r\n\r\n").expect("head");
    let body_json =
        r#"{"error":{"code":"malformed_request","message":"the request is not valid HTTP/1.1: malformed request line or header field (RFC 9112)"}}"#;
    assert_eq!(
        head,
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: {}\r\ndate: Mon, 30 Nov 2026 00:00:00 GMT",
            body_json.len()
        )
    );
    assert_eq!(serde_json::from_str::<Value>(body).expect("json"), serde_json::from_str::<Value>(body_json).expect("json"));
}

/// The scan byte by byte, written independently of [`HeadScan::feed`]'s line-end search.
fn feed_bytewise(s: &mut HeadScan, new: &[u8]) {
    let mut start = 0;
    for (i, &b) in new.iter().enumerate() {
        if b == b'\n' {
            let upto = s.cur.bytes.saturating_add(i + 1 - start);
            if s.line_blank {
                if s.cur.lines > 0 {
                    if let Some(slot) = s.kept.get_mut(s.pending) {
                        *slot = Some(HeadStats { bytes: upto, ..s.cur });
                    }
                    s.pending += 1;
                }
                s.cur = HeadStats::default();
                start = i + 1;
            } else {
                s.cur.first_line.get_or_insert(upto);
                s.cur.lines += 1;
                s.line_blank = true;
            }
        } else {
            if b != b'\r' {
                s.line_blank = false;
            }
            if s.cur.first_line.is_none() {
                step_target(&mut s.cur.target, b);
            }
        }
    }
    s.cur.bytes += new.len() - start;
}

/// The target scan byte by byte: the reference of [`TargetScan::feed`].
fn step_target(t: &mut TargetScan, b: u8) {
    match (b, t.spaces) {
        (b' ', 0) => t.spaces = 1,
        (b' ', 1) => {
            t.spaces = 2;
            t.raw_byte = t.first_refused;
        }
        (_, 1) if t.first_refused.is_none() => {
            t.in_query |= b == b'?';
            if refused_in_target(b, t.in_query) {
                t.first_refused = Some(b);
            }
        }
        _ => {}
    }
}

proptest::proptest! {
    /// Any bytes, cut into any reads, with answers in between: the line-end scan keeps
    /// exactly the state of the byte-by-byte scan.
    #[test]
    fn the_head_scan_equals_a_bytewise_scan(
        reads in proptest::collection::vec(
            (proptest::collection::vec(proptest::prop_oneof![
                Just(b'\r'), Just(b'\n'), Just(b'a'), Just(b':'), Just(b' '), Just(b'"'), Just(b'?'), Just(b'`'), proptest::num::u8::ANY
            ], 0..64), proptest::bool::ANY),
            0..24,
        )
    ) {
        let (mut fast, mut slow) = (HeadScan::default(), HeadScan::default());
        for (bytes, answer) in &reads {
            fast.feed(bytes);
            feed_bytewise(&mut slow, bytes);
            if *answer {
                fast.answered();
                slow.answered();
            }
            proptest::prop_assert_eq!((fast.cur, fast.line_blank, fast.pending, fast.kept), (slow.cur, slow.line_blank, slow.pending, slow.kept));
        }
    }
}

fn stats(bytes: usize, lines: usize, first_line: Option<usize>) -> HeadStats {
    HeadStats { bytes, lines, first_line, ..HeadStats::default() }
}

/// [`stats`] of a head whose request line had `spaces` spaces so far (no raw `"`).
fn spaced(bytes: usize, lines: usize, first_line: Option<usize>, spaces: u8) -> HeadStats {
    HeadStats { target: TargetScan { spaces, ..TargetScan::default() }, ..stats(bytes, lines, first_line) }
}

/// A raw byte counts between the request line's first and second space only, however the
/// line is cut into reads (the first refused one is named); and it picks the message of a
/// 400 for the head it answers.
#[test]
fn a_raw_byte_in_the_request_target_is_told_from_one_elsewhere() {
    let raw_byte = |line: &[u8]| {
        let whole = scan_of(line).cur.target.raw_byte;
        for cut in 1..line.len() {
            let mut s = HeadScan::default();
            s.feed(&line[..cut]);
            s.feed(&line[cut..]);
            assert_eq!(s.cur.target.raw_byte, whole, "{line:?} cut at {cut}");
        }
        whole
    };
    for line in ["GET /a?q=\"x\" HTTP/1.1\r\n", "GET /\" HTTP/1.1\r\n", "GET \"/ HTTP/1.0\r\nx: y", "\r\nGET /?\" HTTP/1.1\r\n"] {
        assert_eq!(raw_byte(line.as_bytes()), Some(b'"'), "{line:?}");
    }
    for line in ["G\"ET /a HTTP/1.1\r\n", "GET /a HTTP/1.1\"\r\n", "GET /a?q=\"x\"\r\n", "GET /a HTTP/1.1\r\nx: \"y\" z\r\n", "GET /a HTTP/1.1\r\n\r\nGET /b"] {
        assert_eq!(raw_byte(line.as_bytes()), None, "{line:?}");
    }
    for (line, want) in [
        (&b"GET /a<b>c HTTP/1.1\r\n"[..], Some(b'<')),
        (b"GET /a?q=> HTTP/1.1\r\n", Some(b'>')),
        (b"GET /a`b HTTP/1.1\r\n", Some(b'`')),
        (b"GET /a?q=`&r=\" HTTP/1.1\r\n", Some(b'"')),
        (b"GET /a?q=` HTTP/1.1\r\n", None),
        (b"GET /a\x7f HTTP/1.1\r\n", Some(0x7f)),
        (b"GET /caf\xc3\xa9 HTTP/1.1\r\n", None),
        (b"GET /a\tb HTTP/1.1\r\n", Some(b'\t')),
        (b"GET /a\x01\"b HTTP/1.1\r\n", Some(0x01)),
        (b"GET /a\\b^c{d|e} HTTP/1.1\r\n", None),
        (b"GET /a%60b HTTP/1.1\r\n", None),
    ] {
        assert_eq!(raw_byte(line), want, "{line:?}");
    }
    assert_eq!(raw_byte_message(b'"'), RAW_QUOTE_MESSAGE);
    assert_eq!(
        raw_byte_message(b'`'),
        "the request target holds a raw '`', which no URI may contain (RFC 3986 section 2, RFC 9112 section 3.2): send it percent-encoded as %60"
    );
    assert_eq!(
        raw_byte_message(0x09),
        "the request target holds a raw byte 0x09, which no URI may contain (RFC 3986 section 2, RFC 9112 section 3.2): send it percent-encoded as %09"
    );
    let hyper_400 = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    let message = |scan: &HeadScan| {
        let out = String::from_utf8(replacement(hyper_400, scan).expect("replaced")).expect("utf-8");
        serde_json::from_str::<Value>(out.split_once("\r\n\r\n").expect("head").1).expect("json")["error"]["message"].as_str().expect("message").to_owned()
    };
    let mut s = scan_of(b"GET /a HTTP/1.1\r\n\r\nGET /?\" HTTP/1.1\r\n\r\n");
    assert_eq!(message(&s), "the request is not valid HTTP/1.1: malformed request line or header field (RFC 9112)", "the first head is answered first");
    s.answered();
    assert_eq!(message(&s), RAW_QUOTE_MESSAGE);
}

#[test]
fn the_head_scan_pairs_pipelined_heads_with_their_answers() {
    let mut s = scan_of(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\nx-");
    assert_eq!(s.answering(), Some((spaced(28, 2, Some(17), 2), true)), "the first head, complete");
    s.answered();
    assert_eq!(s.answering(), Some((spaced(28, 2, Some(17), 2), false)), "then the one being read");
    let mut s = scan_of(b"GET /a HTTP/1.1\nhost: x\n\nGET");
    s.answered();
    assert_eq!(s.answering(), Some((stats(3, 0, None), false)));
    // Fed in pieces, split inside the CRLFCRLF.
    let mut s = HeadScan::default();
    for piece in [&b"GET /a HTTP/1.1\r\nhost: x\r"[..], b"\n\r", b"\nGE", b"T /"] {
        s.feed(piece);
    }
    assert_eq!((s.pending, s.kept[0], s.cur), (1, Some(spaced(28, 2, Some(17), 2)), spaced(5, 0, None, 1)));
    let s = scan_of(b"\r\n\r\nGET");
    assert_eq!((s.pending, s.cur), (0, stats(3, 0, None)), "leading empty lines are not heads");
    // Deeper pipelining than remembered: the heads past KEPT_HEADS are unknown.
    let mut s = scan_of(&b"GET / HTTP/1.1\r\n\r\n".repeat(KEPT_HEADS + 1));
    for _ in 0..KEPT_HEADS {
        assert!(s.answering().is_some_and(|(_, complete)| complete));
        s.answered();
    }
    assert_eq!(s.answering(), None);
    s.answered();
    assert_eq!(s.answering(), Some((HeadStats::default(), false)));
}

#[test]
fn a_431_names_the_limit_that_was_hit() {
    let incomplete = |bytes, lines| Some((stats(bytes, lines, Some(20)), false));
    assert_eq!(cause_431(incomplete(MAX_HEAD_BYTES, 3)).1, "headers_too_large");
    assert_eq!(cause_431(incomplete(MAX_HEAD_BYTES + 1, 500)).1, "too_many_headers", "hyper's parser stops at the 101st field first");
    let (status, code, message, details) = cause_431(Some((stats(5_000, MAX_HEADER_FIELDS + 2, Some(20)), true)));
    assert_eq!(
        (status, code, message.as_str(), details),
        (431, "too_many_headers", "the request has more than 100 header fields", serde_json::json!({"max_fields": 100}))
    );
    assert_eq!(cause_431(Some((stats(5_000, MAX_HEADER_FIELDS + 1, Some(20)), true))).1, "headers_too_large", "100 fields and the request line: not the count");
    let (status, code, _, details) = cause_431(Some((stats(5_000, 20, Some(20)), true)));
    assert_eq!((status, code, details), (431, "headers_too_large", serde_json::json!({"max_bytes": MAX_HEAD_BYTES, "max_fields": 100})));
    assert_eq!(cause_431(None).2, "the request head is larger than 417792 bytes or has more than 100 header fields");
    for (line, complete) in [(None, false), (Some(MAX_HEAD_BYTES), false), (Some(MAX_HEAD_BYTES + 3), true)] {
        let (status, code, _, details) = cause_431(Some((stats(MAX_HEAD_BYTES + 7, 1, line), complete)));
        assert_eq!((status, code, details), (414, "uri_too_long", serde_json::json!({"max_bytes": MAX_URI_BYTES})), "the request line alone: {line:?}");
    }
    // The whole 500 KB head in one read (line feeds and the empty line included), as
    // the server sees it when the client's bytes are all there before hyper reads.
    let mut s = scan_of(format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(500_000)).as_bytes());
    assert_eq!(cause_431(s.answering()).1, "uri_too_long");
    s.answered();
    assert_eq!(cause_431(Some((stats(MAX_HEAD_BYTES + 7, 3, Some(100)), true))).1, "headers_too_large", "a short line, big fields");
}

#[test]
fn the_h2_refusal_is_a_settings_and_a_goaway_frame() {
    let f = h2_refusal();
    assert_eq!(&f[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0], "empty SETTINGS on stream 0");
    let len = (usize::from(f[9]) << 16) | (usize::from(f[10]) << 8) | usize::from(f[11]);
    assert_eq!((f[12], f[13], &f[14..18]), (7, 0, &[0u8, 0, 0, 0][..]), "GOAWAY on stream 0");
    assert_eq!(len, f.len() - 18);
    assert_eq!(&f[18..26], &[0, 0, 0, 0, 0, 0, 0, 0x0d], "last stream 0, HTTP_1_1_REQUIRED");
    assert_eq!(&f[26..], b"HTTP/2 is not served here; use HTTP/1.1");
}
