//! Property tests: random and hostile strings in `long_url`, `custom_alias` and `tags`
//! never produce a 5xx or a panic, and every refusal uses the JSON error shape.

use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::json;

use crate::harness::{Backend, TestApp};

fn hostile_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("javascript:".to_owned()),
        Just("\r\n".to_owned()),
        Just("\t".to_owned()),
        Just("%".to_owned()),
        Just("%00".to_owned()),
        Just("%zz".to_owned()),
        Just("\u{0}".to_owned()),
        Just("@".to_owned()),
        Just(":".to_owned()),
        Just("//".to_owned()),
        Just("\\".to_owned()),
        Just("[::1]".to_owned()),
        Just("xn--".to_owned()),
        Just("..".to_owned()),
        Just("\u{202e}".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("😀".to_owned()),
        Just("ß".to_owned()),
        Just("sho.rt.example".to_owned()),
        Just("?#&=+".to_owned()),
        "[a-z0-9.-]{0,12}",
        any::<String>(),
    ]
}

fn hostile_string(max_parts: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(hostile_fragment(), 0..max_parts).prop_map(|v| v.concat())
}

fn url_like() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile_string(8),
        hostile_string(8).prop_map(|s| format!("https://{s}")),
        (hostile_string(4), hostile_string(6)).prop_map(|(h, p)| format!("http://{h}/{p}")),
        (hostile_string(3), 0usize..10_000).prop_map(|(s, n)| format!("https://example.com/{s}{}", "a".repeat(n))),
    ]
}

#[test]
fn hostile_inputs_never_cause_5xx() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let app = rt.block_on(TestApp::start(Backend::Sqlite));
    let mut runner = TestRunner::new(PropConfig { cases: 300, failure_persistence: None, ..PropConfig::default() });
    let strategy = (url_like(), prop::option::of(hostile_string(4)), prop::option::of(prop::collection::vec(hostile_string(3), 0..4)), any::<bool>());
    runner
        .run(&strategy, |(long_url, alias, tags, patch)| {
            rt.block_on(async {
                let mut body = json!({ "long_url": long_url });
                if let Some(a) = &alias {
                    body["custom_alias"] = json!(a);
                }
                if let Some(t) = &tags {
                    body["tags"] = json!(t);
                }
                let r = app.post_json("/v1/links", &body).await;
                prop_assert!(!r.status.is_server_error(), "POST {body} -> {}", r.status);
                if r.status == StatusCode::CREATED {
                    let v = r.json();
                    let code = v["code"].as_str().expect("code").to_owned();
                    let stored = v["long_url"].as_str().expect("long_url").to_owned();
                    prop_assert!(stored.is_ascii() && !stored.contains(' ') && !stored.chars().any(char::is_control), "{stored:?}");
                    let g = app.get(&format!("/{code}")).await;
                    prop_assert_eq!(g.status, StatusCode::FOUND);
                    prop_assert_eq!(g.location(), Some(stored.as_str()));
                    if patch {
                        let p = app.patch_json(&format!("/v1/links/{code}"), &json!({"long_url": long_url, "tags": tags}), None).await;
                        prop_assert!(!p.status.is_server_error());
                    }
                } else {
                    prop_assert!(r.status.is_client_error());
                    let v = r.json();
                    prop_assert!(v["error"]["code"].is_string(), "{v}");
                }
                if let Some(a) = &alias {
                    // Any path segment the alias makes: never a 5xx.
                    let enc: String = a.bytes().map(|b| format!("%{b:02X}")).collect();
                    let g = app.get(&format!("/v1/links/{enc}")).await;
                    prop_assert!(!g.status.is_server_error());
                    let g = app.get(&format!("/{enc}")).await;
                    prop_assert!(!g.status.is_server_error());
                }
                Ok(())
            })
        })
        .expect("no 5xx, no panic");
}
