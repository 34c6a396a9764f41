//! Unit tests of the express lane's request classification, query bytes and date.

use super::*;
use std::time::SystemTime;

/// The header names a default redirect state reads (no trusted proxy).
fn names() -> Vec<HeaderName> {
    sluice_redirect::click::READ_HEADERS.into_iter().chain(sluice_redirect::prefetch::READ_HEADERS).collect()
}

fn is_plain(req: &str) -> bool {
    matches!(classify(req.as_bytes(), &names()), Head::Plain(_))
}

fn is_other(req: &str) -> bool {
    matches!(classify(req.as_bytes(), &names()), Head::Other)
}

#[test]
fn a_browser_request_is_plain_and_keeps_only_the_fields_the_handler_reads() {
    let req = "GET /Ab3_-x?utm=a&b=%20c HTTP/1.1\r\nHost: sho.rt:8080\r\nUser-Agent: Mozilla/5.0 (X11)\r\nAccept: text/html\r\n\
               referer: https://news.example/\r\nAccept-Language: de\r\nSec-Purpose: prefetch\r\nConnection: Keep-Alive\r\n\r\nGET /next";
    let names = names();
    let Head::Plain(p) = classify(req.as_bytes(), &names) else { panic!("plain") };
    assert_eq!(p.len, req.len() - "GET /next".len(), "the head ends at its empty line");
    assert!(!p.head);
    assert_eq!(&req[usize::from(p.target.0)..usize::from(p.target.1)], "/Ab3_-x?utm=a&b=%20c");
    let kept: Vec<(&str, &str)> = p.kept[..p.n_kept].iter().map(|&(i, s, e)| (names[usize::from(i)].as_str(), &req[usize::from(s)..usize::from(e)])).collect();
    assert_eq!(kept, [("user-agent", "Mozilla/5.0 (X11)"), ("referer", "https://news.example/"), ("accept-language", "de"), ("sec-purpose", "prefetch")]);
    let head = LaneHead::new(&req.as_bytes()[..p.len], &p, &names).expect("head");
    assert_eq!((head.is_head(), head.path(), head.query()), (false, "/Ab3_-x", Some("utm=a&b=%20c")));
    assert_eq!(head.first(&HeaderName::from_static("user-agent")), Some(b"Mozilla/5.0 (X11)".as_slice()));
    assert_eq!(head.first(&HeaderName::from_static("accept-language")), Some(b"de".as_slice()));
    assert_eq!(head.first(&HeaderName::from_static("accept")), None, "not kept");
    assert_eq!(head.first(&HeaderName::from_static("x-purpose")), None, "kept name, absent");
    assert!(is_plain("HEAD /c HTTP/1.1\r\nhost: x\r\n\r\n"));
}

#[test]
fn repeated_fields_are_all_kept_in_order() {
    let req = "GET /c HTTP/1.1\r\nhost: x\r\nx-purpose: a\r\nx-purpose: preview\r\n\r\n";
    let names = names();
    let Head::Plain(p) = classify(req.as_bytes(), &names) else { panic!("plain") };
    let head = LaneHead::new(req.as_bytes(), &p, &names).expect("head");
    let values: Vec<&[u8]> = head.all(&HeaderName::from_static("x-purpose")).collect();
    assert_eq!(values, [b"a".as_slice(), b"preview".as_slice()]);
}

#[test]
fn heads_not_yet_whole_wait_for_more() {
    for partial in ["", "G", "GET /c HTTP/1.1\r\n", "GET /c HTTP/1.1\r\nhost: x\r\n", "GET /c HTTP/1.1\r\nhost: x\r\n\r"] {
        assert!(matches!(classify(partial.as_bytes(), &names()), Head::Partial), "{partial:?}");
    }
}

#[test]
fn every_other_request_goes_to_hyper() {
    let h = "host: x\r\n";
    for req in [
        format!("POST /c HTTP/1.1\r\n{h}\r\n"),
        format!("get /c HTTP/1.1\r\n{h}\r\n"),
        format!("OPTIONS * HTTP/1.1\r\n{h}\r\n"),
        format!("GET /c HTTP/1.0\r\n{h}\r\n"),
        format!("GET /%50c HTTP/1.1\r\n{h}\r\n"),
        format!("GET /healthz HTTP/1.1\r\n{h}\r\n"),
        format!("GET /v1/links HTTP/1.1\r\n{h}\r\n"),
        format!("GET / HTTP/1.1\r\n{h}\r\n"),
        format!("GET /a/b HTTP/1.1\r\n{h}\r\n"),
        format!("GET /{} HTTP/1.1\r\n{h}\r\n", "x".repeat(65)),
        format!("GET http://x/c HTTP/1.1\r\n{h}\r\n"),
        format!("GET /c?q=\"x HTTP/1.1\r\n{h}\r\n"),
        format!("GET /c?q={{x}} HTTP/1.1\r\n{h}\r\n"),
        format!("GET /c?q=\u{e9} HTTP/1.1\r\n{h}\r\n"),
        format!("GET /c?q=a|b HTTP/1.1\r\n{h}\r\n"),
        format!("GET /c#frag HTTP/1.1\r\n{h}\r\n"),
        "GET /c HTTP/1.1\r\n\r\n".to_owned(),
        format!("GET /c HTTP/1.1\r\n{h}{h}\r\n"),
        "GET /c HTTP/1.1\r\nhost: a b\r\n\r\n".to_owned(),
        "GET /c HTTP/1.1\r\nhost: user@x\r\n\r\n".to_owned(),
        format!("GET /c HTTP/1.1\r\n{h}content-length: 0\r\n\r\n"),
        format!("GET /c HTTP/1.1\r\n{h}transfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
        format!("GET /c HTTP/1.1\r\n{h}expect: 100-continue\r\n\r\n"),
        format!("GET /c HTTP/1.1\r\n{h}upgrade: websocket\r\n\r\n"),
        format!("GET /c HTTP/1.1\r\n{h}connection: close\r\n\r\n"),
        format!("GET /c HTTP/1.1\r\n{h}connection: keep-alive, upgrade\r\n\r\n"),
        format!("GET /c HTTP/1.1\r\n{h}{}\r\n", "x-a: 1\r\n".repeat(MAX_FIELDS)),
        format!("GET /c HTTP/1.1\r\n{h}{}\r\n", "referer: r\r\n".repeat(MAX_KEPT + 1)),
        format!("GET /c HTTP/1.1\r\n{h}x-a: {}\r\n\r\n", "v".repeat(MAX_HEAD_BYTES)),
        format!("GET /c HTTP/1.1\r\n{h}bad field: 1\r\n\r\n"),
        format!("GET /c HTTP/1.1\r\n{h} folded: 1\r\n\r\n"),
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_owned(),
        "\u{16}\u{3}\u{1}garbage".to_owned(),
    ] {
        assert!(is_other(&req), "{req:?}");
    }
    // At the limits: still plain.
    assert!(is_plain(&format!("GET /c HTTP/1.1\r\n{h}{}\r\n", "x-a: 1\r\n".repeat(MAX_FIELDS - 1))));
    assert!(is_plain(&format!("GET /c HTTP/1.1\r\n{h}{}\r\n", "referer: r\r\n".repeat(MAX_KEPT))));
    assert!(is_plain(&format!("GET /{} HTTP/1.1\r\n{h}\r\n", "x".repeat(64))));
}

#[test]
fn every_query_byte_the_lane_takes_makes_the_path_and_query_of_hypers_uri() {
    let taken: Vec<u8> = (0..=255u8).filter(|&b| query_byte(b)).collect();
    assert_eq!(taken.len(), 26 * 2 + 10 + 4 + 11 + 5, "unreserved, sub-delims, ':', '@', '/', '?', '%'");
    let names = names();
    for &b in &taken {
        let target = format!("/c?a{}b", char::from(b));
        let uri = axum::http::Uri::from_maybe_shared(Bytes::from(target.clone())).unwrap_or_else(|e| panic!("{target}: {e}"));
        assert_eq!((uri.path(), uri.query()), ("/c", Some(&target[3..])), "{target}");
        let req = format!("GET {target} HTTP/1.1\r\nhost: x\r\n\r\n");
        let Head::Plain(p) = classify(req.as_bytes(), &names) else { panic!("{target} is plain") };
        let head = LaneHead::new(req.as_bytes(), &p, &names).expect("head");
        assert_eq!((head.path(), head.query()), (uri.path(), uri.query()), "{target}");
    }
}

#[test]
fn the_date_is_an_imf_fixdate_of_now() {
    let date = with_date(|d| String::from_utf8(d.to_vec()).expect("ascii"));
    assert_eq!(date.len(), 29, "{date}");
    assert!(date.ends_with(" GMT"), "{date}");
    let at = httpdate::parse_http_date(&date).expect("parses");
    let now = SystemTime::now();
    let off = now.duration_since(at).unwrap_or_else(|e| e.duration());
    assert!(off < Duration::from_secs(2), "{date} is now");
}
