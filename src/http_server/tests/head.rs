//! Real-socket tests of `HEAD`: the answer of a `GET` without its body, the same header
//! fields included (RFC 9110 §9.3.2), `Content-Length` too.

use super::*;

/// The header fields of a raw response that `HEAD` must repeat from `GET` (lower-case
/// names; `date` left out), and whether a body followed the head.
fn head_fields(resp: &str) -> (u16, Vec<(String, String)>, bool) {
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("a response head: {resp:?}"));
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).expect("status line");
    let mut fields: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned())).filter(|(n, _)| n != "date").collect();
    fields.sort();
    (status, fields, !body.is_empty())
}

/// `HEAD` answers carry the header fields of the `GET` answer, `content-length` included
/// (also `content-length: 0` of a redirect), and no body: on the redirect fast path (302,
/// 301, 404), on the router (health, the link API, an unknown route) and for the
/// server's own errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_carry_the_content_length_of_get() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = start_with(dir.path(), ServerOptions::default(), vec![]).await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", s.addr);
    for body in [
        json!({"long_url": "https://example.com/found", "custom_alias": "found"}),
        json!({"long_url": "https://example.com/moved", "custom_alias": "moved", "redirect_type": 301}),
    ] {
        assert_eq!(http.post(format!("{base}/v1/links")).json(&body).send().await.expect("post").status(), 201, "{body}");
    }
    let cases = [
        ("/found", 302),
        ("/moved", 301),
        ("/NoSuchCode", 404),
        ("/healthz", 200),
        ("/v1/links/found", 200),
        ("/v1/links/NoSuchCode", 404),
        ("/v1/no/such/route", 404),
    ];
    for (path, status) in cases {
        // Twice: the second redirect comes from the cache's front (an answer without a wait).
        for round in 0..2 {
            let request = |method: &str| format!("{method} {path} HTTP/1.1\r\nhost: x\r\nuser-agent: {UA}\r\nconnection: close\r\n\r\n").into_bytes();
            let (get_status, get_fields, _) = head_fields(&raw(s.addr, request("GET")).await);
            let (head_status, head_fields, head_body) = head_fields(&raw(s.addr, request("HEAD")).await);
            assert_eq!((get_status, head_status), (status, status), "{path} round {round}");
            assert!(get_fields.iter().any(|(n, _)| n == "content-length"), "GET {path}: {get_fields:?}");
            assert_eq!(head_fields, get_fields, "HEAD {path} round {round}: the fields of GET");
            assert!(!head_body, "HEAD {path}: no body");
        }
    }
    // The server's own error (no Host): the same.
    let no_host = |method: &str| format!("{method} /found HTTP/1.1\r\nconnection: close\r\n\r\n").into_bytes();
    let (get, head) = (head_fields(&raw(s.addr, no_host("GET")).await), head_fields(&raw(s.addr, no_host("HEAD")).await));
    assert_eq!((head.0, &head.1, head.2), (400, &get.1, false), "no Host");
    s.stop.send(()).expect("server running");
}
