//! `GET /v1/links` cursors are bound to the filters (`tag`, `enabled`) of the page that
//! made them and to their position: with other filters, or edited, they are 400
//! `invalid_cursor`, never a page of another listing or from another position; with the
//! same filters (any spelling of them, any `limit`) paging goes on.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp};

backend_tests!(links_cursors_are_bound_to_their_filters, filtered_paging_goes_on_while_links_are_created, edited_links_cursors_are_invalid_cursor);

fn page_codes(v: &Value) -> Vec<String> {
    v["items"].as_array().expect("items").iter().map(|l| l["code"].as_str().expect("code").to_owned()).collect()
}

/// The exact error of a cursor used with filters other than its page's.
fn other_filters(cursor: &str) -> Value {
    json!({
        "code": "invalid_cursor",
        "message": "cursor is not valid here: it was made with different filters (or altered); use the next_cursor of a previous page with the same filters",
        "details": {"cursor": cursor}
    })
}

async fn links_cursors_are_bound_to_their_filters(b: Backend) {
    let app = TestApp::start(b).await;
    // l0..l5: even ones tagged "a", odd ones "b"; l4 and l5 disabled.
    for i in 0..6 {
        let tag = if i % 2 == 0 { "a" } else { "b" };
        app.create(json!({"long_url": format!("https://example.com/{i}"), "custom_alias": format!("l{i}"), "tags": [tag]})).await;
    }
    for code in ["l4", "l5"] {
        assert_eq!(app.patch_json(&format!("/v1/links/{code}"), &json!({"enabled": false}), None).await.status, StatusCode::OK);
    }
    let cursor_of = |v: &Value| v["next_cursor"].as_str().expect("next_cursor").to_owned();

    // tag=a: l0 | l2 | l4.
    let first = app.get("/v1/links?tag=a&limit=1").await.json();
    assert_eq!(page_codes(&first), ["l0"]);
    let ca = cursor_of(&first);
    // The same filters, in any spelling of the tag and with another limit: the next page.
    for query in ["tag=a&limit=1", "tag=%20a%20&limit=1", "limit=1&tag=a"] {
        let next = app.get(&format!("/v1/links?{query}&cursor={ca}")).await.json();
        assert_eq!(page_codes(&next), ["l2"], "{query}");
    }
    let next = app.get(&format!("/v1/links?tag=a&limit=5&cursor={ca}")).await.json();
    assert_eq!((page_codes(&next), &next["next_cursor"]), (vec!["l2".to_owned(), "l4".to_owned()], &Value::Null));
    // Other filters, or none: 400 invalid_cursor (it used to page the other listing: tag=b
    // after l0 answered l1, l3, l5).
    for query in ["tag=b", "", "tag=a&enabled=true", "tag=A", "enabled=false"] {
        let r = app.get(&format!("/v1/links?limit=5&{query}&cursor={ca}")).await;
        assert_eq!(r.assert_error(400, "invalid_cursor"), other_filters(&ca), "{query}");
    }

    // No filter: a cursor of the whole listing is refused with a tag or an enabled filter.
    let all = app.get("/v1/links?limit=2").await.json();
    assert_eq!(page_codes(&all), ["l0", "l1"]);
    let call = cursor_of(&all);
    assert_eq!(page_codes(&app.get(&format!("/v1/links?limit=2&cursor={call}")).await.json()), ["l2", "l3"]);
    for query in ["tag=a", "enabled=true", "enabled=false"] {
        let r = app.get(&format!("/v1/links?limit=2&{query}&cursor={call}")).await;
        assert_eq!(r.assert_error(400, "invalid_cursor"), other_filters(&call), "{query}");
    }

    // enabled=true: `1` is the same filter, `false` or none is another.
    let enabled = app.get("/v1/links?enabled=true&limit=3").await.json();
    assert_eq!(page_codes(&enabled), ["l0", "l1", "l2"]);
    let ce = cursor_of(&enabled);
    assert_eq!(page_codes(&app.get(&format!("/v1/links?enabled=1&limit=3&cursor={ce}")).await.json()), ["l3"]);
    for query in ["enabled=false", "enabled=0", "", "enabled=true&tag=b"] {
        let r = app.get(&format!("/v1/links?limit=3&{query}&cursor={ce}")).await;
        assert_eq!(r.assert_error(400, "invalid_cursor"), other_filters(&ce), "{query}");
    }
    // Both filters: tag=b&enabled=false is l5 alone; each filter belongs to the cursor.
    let both = app.get("/v1/links?tag=b&enabled=false&limit=1").await.json();
    assert_eq!(page_codes(&both), ["l5"]);
    let cb = cursor_of(&both);
    assert_eq!(app.get(&format!("/v1/links?tag=b&enabled=0&limit=1&cursor={cb}")).await.json(), json!({"items": [], "next_cursor": null}));
    for query in ["tag=b", "enabled=false", "tag=a&enabled=false", "tag=b&enabled=true"] {
        let r = app.get(&format!("/v1/links?limit=1&{query}&cursor={cb}")).await;
        assert_eq!(r.assert_error(400, "invalid_cursor"), other_filters(&cb), "{query}");
    }
}

/// Paging a filtered listing while links are created: every link of the filter once, in
/// creation order, the late ones at the end; links of other filters never show.
async fn filtered_paging_goes_on_while_links_are_created(b: Backend) {
    let app = TestApp::start(b).await;
    let mut want = Vec::new();
    for i in 0..5 {
        let tagged = app.create(json!({"long_url": format!("https://example.com/t{i}"), "tags": ["t"]})).await;
        want.push(tagged["code"].as_str().expect("code").to_owned());
        app.create(json!({"long_url": format!("https://example.com/u{i}"), "tags": ["u"]})).await;
    }
    let mut got = Vec::new();
    let mut url = "/v1/links?tag=t&limit=2".to_owned();
    let mut pages = 0;
    loop {
        let page = app.get(&url).await.json();
        got.extend(page_codes(&page));
        pages += 1;
        if pages == 1 {
            // Created after the first page: listed at the end, once.
            let late = app.create(json!({"long_url": "https://example.com/late", "tags": ["t"]})).await;
            want.push(late["code"].as_str().expect("code").to_owned());
            app.create(json!({"long_url": "https://example.com/late-u", "tags": ["u"]})).await;
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/v1/links?tag=t&limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(got, want);
    // 6 links at 2 a page: 3 full pages, then an empty one that says null.
    assert_eq!(pages, 4);
}

/// The fields of a cursor, as a client decoding it reads them: `(kind, position,
/// fingerprint)`.
pub fn cursor_fields(cursor: &str) -> (String, String, String) {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).expect("base64url")).expect("utf8");
    let fields: Vec<&str> = text.split(':').collect();
    assert_eq!(fields.len(), 3, "{text}");
    (fields[0].to_owned(), fields[1].to_owned(), fields[2].to_owned())
}

/// The cursor of `fields`, encoded as the server encodes them.
pub fn cursor_of_fields(kind: &str, position: &str, fp: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{position}:{fp}"))
}

/// QA finding (session 55): a `GET /v1/links` cursor with its position edited was accepted,
/// paging from wherever the edit pointed. Every edited field is now 400 `invalid_cursor`;
/// the untouched cursor still pages on.
async fn edited_links_cursors_are_invalid_cursor(b: Backend) {
    let app = TestApp::start(b).await;
    for i in 0..4 {
        app.create(json!({"long_url": format!("https://example.com/{i}"), "custom_alias": format!("e{i}"), "tags": ["t"]})).await;
    }
    let first = app.get("/v1/links?tag=t&limit=1").await.json();
    assert_eq!(page_codes(&first), ["e0"]);
    let c = first["next_cursor"].as_str().expect("next_cursor").to_owned();
    let (kind, seq, fp) = cursor_fields(&c);
    let n: i64 = seq.parse().expect("a sequence number");
    let flipped = format!("{}{}", if fp.starts_with('0') { '1' } else { '0' }, &fp[1..]);
    let not_this = |cursor: &str| {
        json!({
            "code": "invalid_cursor",
            "message": "cursor is not valid here: not a cursor of this endpoint; use the next_cursor of a previous page with the same filters",
            "details": {"cursor": cursor}
        })
    };
    let mut refused = Vec::new();
    // The position moved back (to replay a page) or on (to skip links), or spelt otherwise;
    // the fingerprint changed: the filters' error ("… (or altered)").
    for position in [n - 1, n + 1, n + 2, 0].map(|p| p.to_string()).into_iter().chain([format!("0{seq}")]) {
        let edited = cursor_of_fields(&kind, &position, &fp);
        refused.push((edited.clone(), other_filters(&edited)));
    }
    let edited = cursor_of_fields(&kind, &seq, &flipped);
    refused.push((edited.clone(), other_filters(&edited)));
    // The kind (an audit cursor's, the previous version's) or the fingerprint's form.
    for (k, f) in [("u2", fp.clone()), ("l2", fp.clone()), (kind.as_str(), fp.to_ascii_uppercase()), (kind.as_str(), format!("{fp}0"))] {
        if (k, f.as_str()) != (kind.as_str(), fp.as_str()) {
            let edited = cursor_of_fields(k, &seq, &f);
            refused.push((edited.clone(), not_this(&edited)));
        }
    }
    for (cursor, want) in refused {
        let r = app.get(&format!("/v1/links?tag=t&limit=1&cursor={cursor}")).await;
        assert_eq!(r.assert_error(400, "invalid_cursor"), want, "{cursor}");
    }
    // The untouched cursor pages on.
    let next = app.get(&format!("/v1/links?tag=t&limit=1&cursor={c}")).await.json();
    assert_eq!(page_codes(&next), ["e1"]);
}
