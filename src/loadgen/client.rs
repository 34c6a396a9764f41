//! The generator's HTTP side: creating links through the API, sending redirect requests
//! (never following them) and posting explicit events to `POST /v1/events`.

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use url::Url;

use super::plan::Request;

/// Links created concurrently.
const CREATE_CONCURRENCY: usize = 16;

/// HTTP client of one run.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    target: Url,
    api: Url,
    token: Option<String>,
}

/// How a request ended without a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The connection could not be made: the server never saw the request.
    Connect,
    /// No response in time: the server may or may not have processed it.
    Timeout,
    /// Anything else after the request may have been sent.
    Other,
}

impl Failure {
    /// Label for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Other => "other",
        }
    }

    /// Whether the server may have processed the request anyway.
    pub fn outcome_unknown(self) -> bool {
        !matches!(self, Failure::Connect)
    }

    fn of(e: &reqwest::Error) -> Failure {
        if e.is_connect() {
            Failure::Connect
        } else if e.is_timeout() {
            Failure::Timeout
        } else {
            Failure::Other
        }
    }
}

/// `POST /v1/events` answer: indices of refused events and their reasons.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventsAnswer {
    /// Events stored.
    pub accepted: u64,
    /// (index, reason) of refused events.
    pub rejected: Vec<(usize, String)>,
}

#[derive(Deserialize)]
struct Rejected {
    index: usize,
    reason: String,
}

#[derive(Deserialize)]
struct Accepted {
    accepted: u64,
    rejected: Vec<Rejected>,
}

/// Joins `path` (starting with `/`) onto an origin URL that may carry a path prefix.
fn join(base: &Url, path: &str) -> String {
    format!("{}{}", base.as_str().trim_end_matches('/'), path)
}

impl Http {
    /// A client for redirects at `target` and the API at `api`, with up to `concurrency`
    /// pooled connections and a per-request `timeout`; `token` is sent to `POST /v1/events`.
    ///
    /// Errors if the client cannot be built (TLS backend missing for https, ...).
    pub fn new(target: Url, api: Url, token: Option<String>, concurrency: usize, timeout: Duration) -> anyhow::Result<Http> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(concurrency)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .build()
            .context("could not build the HTTP client")?;
        Ok(Http { client, target, api, token })
    }

    /// Creates `n` links (`https://www.example.com/loadgen/{seed}/{i}`) and returns their
    /// codes in creation order. Each create carries an `Idempotency-Key` unique to this
    /// run, so a retried request cannot create a second link.
    ///
    /// Errors on the first refused create (with the API's error body).
    pub async fn create_links(&self, n: usize, seed: u64) -> anyhow::Result<Vec<String>> {
        let run_nonce: u64 = rand::random();
        let url = join(&self.api, "/v1/links");
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(CREATE_CONCURRENCY));
        let mut set = JoinSet::new();
        for i in 0..n {
            let (client, url, sem) = (self.client.clone(), url.clone(), sem.clone());
            set.spawn(async move {
                let _permit = sem.acquire_owned().await.context("semaphore closed")?;
                let body = json!({ "long_url": format!("https://www.example.com/loadgen/{seed}/{i}?utm_source=loadgen") });
                let resp = client
                    .post(&url)
                    .header("idempotency-key", format!("loadgen-{seed}-{run_nonce:016x}-{i}"))
                    .json(&body)
                    .send()
                    .await
                    .with_context(|| format!("could not reach the API at {url}"))?;
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                if !status.is_success() {
                    bail!("creating a link failed with {status}: {text}");
                }
                let v: Value = serde_json::from_str(&text).with_context(|| format!("link API answered non-json: {text}"))?;
                let code = v["code"].as_str().with_context(|| format!("link API answer has no code: {text}"))?.to_owned();
                Ok::<_, anyhow::Error>((i, code))
            });
        }
        let mut codes = vec![String::new(); n];
        while let Some(r) = set.join_next().await {
            let (i, code) = r.context("link creation task failed")??;
            codes[i] = code;
        }
        Ok(codes)
    }

    /// Sends one redirect request for `code` as `req` describes (`ua` is its user agent),
    /// with the client address in `X-Forwarded-For`; returns the status.
    pub async fn redirect(&self, code: &str, req: &Request, ua: &str) -> Result<u16, Failure> {
        let mut h = HeaderMap::with_capacity(4);
        if let Ok(v) = HeaderValue::from_bytes(ua.as_bytes()) {
            h.insert(reqwest::header::USER_AGENT, v);
        }
        if let Ok(v) = HeaderValue::from_str(&req.visitor.ip.to_string()) {
            h.insert("x-forwarded-for", v);
        }
        if let Some(r) = req.referrer
            && let Ok(v) = HeaderValue::from_str(r)
        {
            h.insert(reqwest::header::REFERER, v);
        }
        let url = join(&self.target, &format!("/{code}"));
        let builder = if req.head { self.client.head(url) } else { self.client.get(url) };
        let resp = builder.headers(h).send().await.map_err(|e| Failure::of(&e))?;
        let status = resp.status().as_u16();
        // drain the (empty) body so the connection goes back to the pool
        resp.bytes().await.map_err(|e| Failure::of(&e))?;
        Ok(status)
    }

    /// Posts `events` (wire-shape objects) as one JSON array to `POST /v1/events`.
    ///
    /// Errors: `Err(Failure)` when no answer arrived; `Ok(Err(text))` when the server
    /// refused the whole request (status and body in the text).
    pub async fn post_events(&self, events: &[Value]) -> Result<Result<EventsAnswer, String>, Failure> {
        let mut req = self.client.post(join(&self.api, "/v1/events")).json(&events);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| Failure::of(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| Failure::of(&e))?;
        if status.is_success() {
            return Ok(serde_json::from_str::<Accepted>(&text)
                .map(|a| EventsAnswer { accepted: a.accepted, rejected: a.rejected.into_iter().map(|r| (r.index, r.reason)).collect() })
                .map_err(|e| format!("unreadable answer ({e}): {text}")));
        }
        if status.as_u16() == 400
            && let Ok(v) = serde_json::from_str::<Value>(&text)
            && v["error"]["code"] == "all_events_rejected"
            && let Ok(a) = serde_json::from_value::<Accepted>(v["error"]["details"].clone())
        {
            return Ok(Ok(EventsAnswer { accepted: 0, rejected: a.rejected.into_iter().map(|r| (r.index, r.reason)).collect() }));
        }
        Ok(Err(format!("{status}: {text}")))
    }
}
