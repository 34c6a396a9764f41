//! Test double of a Confluent-compatible schema registry: exactly the three endpoints
//! `schema_registry_converter` calls for Sluice, with the registry's observable behaviour
//! (global ids deduplicated by canonical schema, versions per subject, BACKWARD compatibility
//! check on registration, Confluent error bodies). No real registry can be installed on our
//! build machines; see the module docs of `kafka`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sluice_schemas::avro_wire::schema_fingerprint;

#[derive(Default)]
struct Inner {
    /// Schema text by id - 1.
    schemas: Vec<(String, i64)>,
    /// Ids of each subject's versions, oldest first.
    subjects: BTreeMap<String, Vec<u32>>,
    /// Calls per endpoint (`"post_version"`, `"get_by_id"`, `"get_latest"`).
    calls: BTreeMap<&'static str, u64>,
    unavailable: bool,
}

type Shared = Arc<Mutex<Inner>>;

/// A running double on 127.0.0.1 (its own thread and runtime); stops when dropped.
pub(crate) struct RegistryDouble {
    pub url: String,
    state: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RegistryDouble {
    /// Starts the double on a free port; usable from sync and async tests alike.
    pub fn start() -> RegistryDouble {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind registry double");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/subjects/{subject}/versions", post(post_version))
            .route("/subjects/{subject}/versions/latest", get(get_latest))
            .route("/schemas/ids/{id}", get(get_by_id))
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await
                    .expect("serve registry double");
            });
        });
        RegistryDouble { url: format!("http://{addr}"), state, stop: Some(tx), thread: Some(thread) }
    }

    /// How often `endpoint` (`"post_version"`, `"get_by_id"`, `"get_latest"`) was called.
    pub fn calls(&self, endpoint: &str) -> u64 {
        self.state.lock().expect("state").calls.get(endpoint).copied().unwrap_or(0)
    }

    /// Makes every endpoint answer 503 (as a registry restarting or overloaded does).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state.lock().expect("state").unavailable = unavailable;
    }

    /// Registers `schema` under `subject` as another client would; returns the id.
    pub fn register(&self, subject: &str, schema: &str) -> u32 {
        match register(&mut self.state.lock().expect("state"), subject, schema) {
            Ok(id) => id,
            Err((status, body)) => panic!("double refused {subject}: {status} {body}"),
        }
    }
}

impl Drop for RegistryDouble {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, Json(json!({"error_code": code, "message": message}))).into_response()
}

fn register(inner: &mut Inner, subject: &str, text: &str) -> Result<u32, (StatusCode, Value)> {
    let schema =
        Schema::parse_str(text).map_err(|e| (StatusCode::UNPROCESSABLE_ENTITY, json!({"error_code": 42201, "message": format!("Invalid schema: {e}")})))?;
    let fp = schema_fingerprint(&schema);
    let versions = inner.subjects.get(subject).cloned().unwrap_or_default();
    if let Some(&id) = versions.iter().find(|&&id| inner.schemas[id as usize - 1].1 == fp) {
        return Ok(id);
    }
    if let Some(&latest) = versions.last() {
        let old = Schema::parse_str(&inner.schemas[latest as usize - 1].0).expect("stored schemas parse");
        // BACKWARD (the registry default): the new schema must read data written with the latest.
        if SchemaCompatibility::can_read(&old, &schema).is_err() {
            return Err((StatusCode::CONFLICT, json!({"error_code": 409, "message": "Schema being registered is incompatible with an earlier schema"})));
        }
    }
    let id = match inner.schemas.iter().position(|(_, f)| *f == fp) {
        Some(i) => i as u32 + 1,
        None => {
            inner.schemas.push((text.to_string(), fp));
            inner.schemas.len() as u32
        }
    };
    inner.subjects.entry(subject.to_string()).or_default().push(id);
    Ok(id)
}

async fn post_version(State(state): State<Shared>, Path(subject): Path<String>, body: String) -> Response {
    let mut inner = state.lock().expect("state");
    *inner.calls.entry("post_version").or_default() += 1;
    if inner.unavailable {
        return error(StatusCode::SERVICE_UNAVAILABLE, 50301, "unavailable");
    }
    let Ok(req) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, 400, "body is not json");
    };
    if req.get("schemaType").and_then(Value::as_str).is_some_and(|t| t != "AVRO") {
        return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "only AVRO is supported by this double");
    }
    let Some(text) = req.get("schema").and_then(Value::as_str) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, 42201, "missing schema");
    };
    match register(&mut inner, &subject, text) {
        Ok(id) => Json(json!({"id": id})).into_response(),
        Err((status, body)) => (status, Json(body)).into_response(),
    }
}

async fn get_by_id(State(state): State<Shared>, Path(id): Path<u32>) -> Response {
    let mut inner = state.lock().expect("state");
    *inner.calls.entry("get_by_id").or_default() += 1;
    if inner.unavailable {
        return error(StatusCode::SERVICE_UNAVAILABLE, 50301, "unavailable");
    }
    match id.checked_sub(1).and_then(|i| inner.schemas.get(i as usize)) {
        Some((text, _)) => Json(json!({"schema": text})).into_response(),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn get_latest(State(state): State<Shared>, Path(subject): Path<String>) -> Response {
    let mut inner = state.lock().expect("state");
    *inner.calls.entry("get_latest").or_default() += 1;
    if inner.unavailable {
        return error(StatusCode::SERVICE_UNAVAILABLE, 50301, "unavailable");
    }
    match inner.subjects.get(&subject).and_then(|v| v.last().map(|id| (v.len(), *id))) {
        Some((version, id)) => Json(json!({
            "subject": subject,
            "version": version,
            "id": id,
            "schema": inner.schemas[id as usize - 1].0,
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, 40401, "Subject not found"),
    }
}
