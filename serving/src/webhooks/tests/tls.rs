//! `https://` receivers: a real local TLS server (rustls, with a CA and a leaf certificate
//! for `127.0.0.1` made by rcgen at test time). Trusted through
//! [`WebhookConfig::extra_ca_pem`], a delivery goes over TLS and its signature verifies; with
//! an unknown CA every attempt fails the handshake, is recorded with the certificate error
//! and retried by the backoff until the delivery is failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::{Value, json};
use sluice_schemas::{AnomalyKind, Severity};

use super::{SECRET, T0, api, create, fast_config, receiver_app, wait_for};
use crate::anomalies::tests::anomaly;

/// A test CA named `ca_name` (PEM) and a server certificate chain + key for `127.0.0.1` and
/// `localhost` issued by it.
struct TestPki {
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn pki(ca_name: &str) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, ca_name);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca cert");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut leaf_params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("leaf params");
    leaf_params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("leaf cert");
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der");
    TestPki { ca_pem: ca.pem(), chain: vec![leaf.der().clone(), ca.der().clone()], key }
}

/// Serves `app` over TLS on 127.0.0.1 with `pki`'s certificate; returns the base URL and the
/// number of handshakes that failed.
async fn serve_tls(app: axum::Router, pki: &TestPki) -> (String, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .expect("server certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let failed = Arc::new(AtomicUsize::new(0));
    let f = Arc::clone(&failed);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app, f) = (acceptor.clone(), app.clone(), Arc::clone(&f));
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(_) => {
                        f.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (format!("https://127.0.0.1:{port}"), failed)
}

#[tokio::test]
async fn an_https_receiver_with_a_trusted_ca_gets_a_signed_delivery() {
    let pki = pki("sluice test CA");
    let (app, seen) = receiver_app(0);
    let (recv_base, failed_handshakes) = serve_tls(app, &pki).await;
    let config = super::WebhookConfig { extra_ca_pem: Some(pki.ca_pem.clone().into_bytes()), ..fast_config(true) };
    let (_dir, store, base, _d) = api(true, Some(config)).await;
    let resp = create(&base, json!({"url": format!("{recv_base}/hook"), "secret": SECRET})).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    let event = anomaly(AnomalyKind::ClickBurst, "link:tls", T0, 0, Severity::Critical);
    store.append(std::slice::from_ref(&event)).expect("append");
    wait_for("the https delivery", Duration::from_secs(20), || {
        store.deliveries(&id, None, 10).map(|(d, _)| d.first().is_some_and(|d| d.next_attempt_at_ms.is_none() && !d.attempts.is_empty())).unwrap_or(false)
    })
    .await;
    let (d, _) = store.deliveries(&id, None, 10).expect("read");
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].attempts.len(), 1, "{:?}", d[0].attempts);
    assert_eq!(d[0].attempts[0].status_code, Some(200));
    assert_eq!(d[0].attempts[0].error, None);
    let g = seen.lock();
    assert_eq!(g.requests.len(), 1);
    let (status, valid, body) = &g.requests[0];
    assert_eq!(*status, 200);
    assert!(*valid, "the signature must verify");
    assert_eq!(body, &serde_json::to_value(crate::anomalies::dto::AnomalyEventBody::new(1, &event)).expect("json"));
    assert_eq!(failed_handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_https_receiver_with_an_unknown_ca_fails_every_attempt_with_the_certificate_error() {
    let pki = pki("sluice receiver CA");
    let (app, seen) = receiver_app(0);
    let (recv_base, failed_handshakes) = serve_tls(app, &pki).await;
    // Another CA is trusted; the receiver's is not (nor in the platform's roots).
    let other = self::pki("sluice test CA");
    let config = super::WebhookConfig { extra_ca_pem: Some(other.ca_pem.into_bytes()), ..fast_config(true) };
    let max_attempts = config.max_attempts as usize;
    let (_dir, store, base, _d) = api(true, Some(config)).await;
    let resp = create(&base, json!({"url": format!("{recv_base}/hook"), "secret": SECRET})).await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
    store.append(&[anomaly(AnomalyKind::BotShare, "link:untrusted", T0, 0, Severity::Warning)]).expect("append");
    wait_for("the delivery to fail", Duration::from_secs(20), || {
        store
            .deliveries(&id, None, 10)
            .map(|(d, _)| d.first().is_some_and(|d| d.attempts.len() == max_attempts && d.next_attempt_at_ms.is_none()))
            .unwrap_or(false)
    })
    .await;
    let page: Value = reqwest::get(format!("{base}/v1/webhooks/{id}/deliveries")).await.expect("get").json().await.expect("json");
    let d = &page["items"][0];
    assert_eq!(d["state"], "failed", "{page}");
    let attempts = d["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), max_attempts);
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["attempt"], i + 1);
        assert_eq!(a["status_code"], Value::Null);
        let error = a["error"].as_str().expect("error");
        assert!(error.contains("invalid peer certificate") && error.contains("UnknownIssuer"), "attempt {}: {error}", i + 1);
    }
    // Retried by the backoff: attempts are spaced by at least half the nominal delay.
    let (stored, _) = store.deliveries(&id, None, 10).expect("read");
    let at: Vec<i64> = stored[0].attempts.iter().map(|a| a.at_ms).collect();
    let (base_ms, max_ms) = (fast_config(true).backoff_base.as_millis() as i64, fast_config(true).backoff_max.as_millis() as i64);
    for (n, w) in at.windows(2).enumerate() {
        let nominal = (base_ms << n).min(max_ms);
        assert!(w[1] - w[0] >= nominal / 2, "attempt {} came {} ms after the previous one (nominal backoff {nominal} ms)", n + 2, w[1] - w[0]);
    }
    assert!(seen.lock().requests.is_empty(), "no request may be sent over an unverified connection");
    assert!(failed_handshakes.load(Ordering::SeqCst) >= max_attempts, "the receiver saw the handshakes fail");
}
