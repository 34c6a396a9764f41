use super::*;
use crate::anomaly::anomaly_id;

fn tally(v: &str, c: u64) -> Tally {
    Tally { value: v.into(), count: c }
}

fn samples() -> Vec<Anomaly> {
    let full = Anomaly {
        anomaly_id: anomaly_id(AnomalyKind::ClickBurst, "link:ab12", 1_700_000_000_000),
        revision: 3,
        status: AnomalyStatus::Updated,
        kind: AnomalyKind::ClickBurst,
        key: "link:ab12".into(),
        severity: Severity::Critical,
        code: Some("ab12".into()),
        org: Some("acme".into()),
        window_start: 1_700_000_000_000,
        window_end: 1_700_000_065_000,
        observed: 412.0,
        expected: 2.25,
        score: 187.5,
        summary: "link \"ab12\": 412 human clicks in 60 s, expected 2.2".into(),
        evidence: Evidence {
            window_ms: 60_000,
            clicks: 440,
            human_clicks: 412,
            bot_clicks: 28,
            visitors: 433,
            top_visitor_share: 0.0068,
            top_countries: vec![tally("US", 120), tally("IN", 40)],
            top_referrers: vec![tally("(direct)", 150), tally("google.com", 30)],
            top_user_agents: vec![tally("Chrome", 300)],
            top_codes: vec![],
            top_visitors: vec![tally("00000000000000ff", 3)],
            network: Some("203.0.113.0/24".into()),
            target_host: Some("evil.example".into()),
            blocklist_patterns: vec!["evil.example".into()],
            baseline_minutes: 17,
        },
        detected_at: 1_700_000_065_123,
    };
    let bare = Anomaly {
        anomaly_id: uuid::Uuid::nil(),
        revision: 0,
        status: AnomalyStatus::Open,
        kind: AnomalyKind::BlocklistedTarget,
        key: String::new(),
        severity: Severity::Info,
        code: None,
        org: None,
        window_start: i64::MIN,
        window_end: i64::MAX,
        observed: 0.0,
        expected: -1.5,
        score: f64::INFINITY,
        summary: "Ünïcødé ✓".into(),
        evidence: Evidence::default(),
        detected_at: 0,
    };
    let mut closed = full.clone();
    closed.status = AnomalyStatus::Closed;
    closed.kind = AnomalyKind::VisitorFlood;
    closed.revision = u32::MAX;
    closed.evidence.top_user_agents = vec![tally(&"x".repeat(600), u64::from(u32::MAX))];
    vec![full, bare, closed]
}

#[test]
fn schema_parses_and_fingerprint_is_pinned() {
    let pcf = parsing_canonical_form(anomaly_schema());
    assert!(pcf.starts_with(r#"{"name":"sluice.anomalies.Anomaly","type":"record","fields":[{"name":"anomaly_id","type":"string"}"#), "{pcf}");
    assert_eq!(rabin_fingerprint(pcf.as_bytes()), ANOMALY_FINGERPRINT, "pinned fingerprint (a schema change must be deliberate)");
    // apache-avro's own Rabin digest over the spec PCF (no logical types left in it).
    let plain = Schema::parse_str(&pcf).expect("pcf parses");
    assert_eq!(plain.canonical_form(), pcf);
    assert_eq!(plain.fingerprint::<apache_avro::rabin::Rabin>().bytes, ANOMALY_FINGERPRINT.to_le_bytes().to_vec());
    let mut header = vec![0xC3, 0x01];
    header.extend_from_slice(&ANOMALY_FINGERPRINT.to_le_bytes());
    assert_eq!(anomaly_header(), header.as_slice());
}

#[test]
fn round_trips() {
    for a in samples() {
        let bytes = encode_anomaly(&a).expect("encode");
        assert_eq!(&bytes[..SINGLE_OBJECT_HEADER_LEN], anomaly_header());
        assert_eq!(decode_anomaly(&bytes).expect("decode"), a);
        let mut datum = Vec::new();
        encode_anomaly_datum_into(&a, &mut datum).expect("datum");
        assert_eq!(datum, bytes[SINGLE_OBJECT_HEADER_LEN..]);
    }
}

/// The first fields laid out per the Avro specification (zig-zag varints, length-prefixed
/// strings, enum indexes), written independently of the library.
#[test]
fn layout_of_the_leading_fields_follows_the_spec() {
    let a = &samples()[0];
    let bytes = encode_anomaly(a).expect("encode");
    let id = a.anomaly_id.hyphenated().to_string();
    let mut want = vec![72u8]; // string length 36, zig-zag
    want.extend_from_slice(id.as_bytes());
    want.push(6); // revision 3
    want.push(2); // status index 1 (updated)
    want.push(0); // kind index 0 (click_burst)
    want.push(18); // key length 9
    want.extend_from_slice(b"link:ab12");
    want.push(4); // severity index 2 (critical)
    want.push(2); // code: union branch 1
    want.push(8);
    want.extend_from_slice(b"ab12");
    assert_eq!(&bytes[SINGLE_OBJECT_HEADER_LEN..SINGLE_OBJECT_HEADER_LEN + want.len()], want.as_slice());
}

#[test]
fn avsc_fields_are_exactly_the_rust_fields() {
    let json: serde_json::Value = serde_json::from_str(ANOMALY_AVSC).expect("avsc is json");
    let names = |fields: &serde_json::Value| {
        let mut v: Vec<String> = fields.as_array().expect("fields").iter().map(|f| f["name"].as_str().expect("name").to_string()).collect();
        v.sort();
        v
    };
    let keys = |v: &serde_json::Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    let rust = serde_json::to_value(&samples()[0]).expect("serialize");
    assert_eq!(names(&json["fields"]), keys(&rust));
    let evidence = json["fields"].as_array().expect("fields").iter().find(|f| f["name"] == "evidence").expect("evidence");
    assert_eq!(names(&evidence["type"]["fields"]), keys(&rust["evidence"]));
    let kinds: Vec<&str> = json["fields"][3]["type"]["symbols"].as_array().expect("symbols").iter().map(|s| s.as_str().expect("str")).collect();
    assert_eq!(kinds, AnomalyKind::ALL.map(AnomalyKind::as_str).to_vec());
}

#[test]
fn bad_input_is_a_decode_error() {
    let good = encode_anomaly(&samples()[0]).expect("encode");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short header", good[..5].to_vec()),
        ("bad marker", [&[0xC3, 0x02][..], &good[2..]].concat()),
        ("other fingerprint", [&good[..2], &[0u8; 8][..], &good[10..]].concat()),
        ("truncated body", good[..good.len() - 3].to_vec()),
        ("trailing bytes", [&good[..], &[0u8][..]].concat()),
        ("anomaly_id not a uuid", {
            let mut b = good.clone();
            b[11] = b'z';
            b
        }),
        ("enum index out of range", {
            let mut b = good.clone();
            b[SINGLE_OBJECT_HEADER_LEN + 38] = 40;
            b
        }),
    ];
    for (name, bytes) in cases {
        match decode_anomaly(&bytes) {
            Err(Error::Decode(_)) => {}
            other => panic!("{name}: expected a decode error, got {other:?}"),
        }
    }
}
