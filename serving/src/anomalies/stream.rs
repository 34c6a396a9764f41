//! `GET /v1/anomalies/stream` (module docs of [`super`]).
//!
//! The stream reads the store's event sequence after its position in pages of
//! [`PAGE`], sends the matching events, and sleeps on the store's head watch when it has
//! caught up. Non-matching events advance the position but are not sent, so a client's
//! `Last-Event-ID` is the last event it received and a resume re-filters the rest.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::json;
use sluice_connectors::anomaly_store::AnomalyStore;
use tokio::sync::watch;

use super::dto::AnomalyEventBody;
use super::params::{self, AnomalyFilter};
use super::{AnomaliesState, blocking};
use crate::auth::AdminPrincipal;
use crate::dto::ErrorBody;
use crate::error::ApiError;

/// Events read from the store per step.
const PAGE: usize = 500;

struct Follower {
    store: Arc<AnomalyStore>,
    head: watch::Receiver<u64>,
    filter: AnomalyFilter,
    position: u64,
    done: bool,
    closing: Option<watch::Receiver<bool>>,
}

impl Follower {
    /// The next batch of events to send (possibly empty when nothing matched), or `None`
    /// at the end (store failure, after an `error` event).
    async fn step(&mut self) -> Option<Vec<Event>> {
        if self.done {
            return None;
        }
        loop {
            let head = *self.head.borrow_and_update();
            if head > self.position {
                break;
            }
            let closed = match &mut self.closing {
                Some(c) => {
                    if *c.borrow_and_update() {
                        return None;
                    }
                    tokio::select! {
                        r = self.head.changed() => r.is_err(),
                        r = c.changed() => r.is_err() || *c.borrow(),
                    }
                }
                None => self.head.changed().await.is_err(),
            };
            if closed {
                // Shutting down (or the store is gone).
                return None;
            }
        }
        let after = self.position;
        match blocking(&self.store, move |s| s.events_after(after, PAGE)).await {
            Ok(events) => {
                let mut out = Vec::new();
                for e in &events {
                    self.position = e.event_id;
                    if self.filter.matches(&e.anomaly) {
                        let body = AnomalyEventBody::from(e);
                        let ev = Event::default().event("anomaly").id(e.event_id.to_string());
                        out.push(ev.json_data(&body).unwrap_or_else(|_| Event::default().event("anomaly").id(e.event_id.to_string())));
                    }
                }
                Some(out)
            }
            Err(e) => {
                self.done = true;
                Some(vec![Event::default().event("error").data(e.body().to_string())])
            }
        }
    }
}

/// Server-sent events: every anomaly event matching the filters, as it is stored.
#[utoipa::path(
    get, path = "/v1/anomalies/stream", tag = "anomalies",
    params(
        ("from" = Option<String>, Query, description = "As for the list"),
        ("to" = Option<String>, Query, description = "As for the list"),
        ("kind" = Option<String>, Query, description = "As for the list"),
        ("severity" = Option<String>, Query, description = "As for the list"),
        ("code" = Option<String>, Query, description = "As for the list"),
        ("last_event_id" = Option<u64>, Query, description = "Resume after this event id (the Last-Event-ID header wins when both are given); 0 replays every stored event; default: only events stored from now on"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event id (what EventSource sends on reconnect)"),
    ),
    responses(
        (status = 200, description = "text/event-stream of `anomaly` events (id: event id, data: AnomalyEventBody); `: keep-alive` comments; an `error` event ends the stream if the store fails", content_type = "text/event-stream", body = AnomalyEventBody),
        (status = 400, description = "as the list (without limit/cursor), plus invalid_last_event_id, last_event_id_ahead (an id this store never assigned)", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "admin_loopback_only", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub async fn anomaly_stream(
    _admin: AdminPrincipal,
    State(state): State<AnomaliesState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let p = params::parse_stream(query.as_deref())?;
    let header = match headers.get("last-event-id") {
        Some(v) => {
            let s = v.to_str().unwrap_or("<non-ascii bytes>");
            Some(params::last_event_id("Last-Event-ID", s)?)
        }
        None => None,
    };
    let head = state.store.subscribe();
    let now = *head.borrow();
    let position = match header.or(p.last_event_id) {
        Some(id) if id > now => {
            return Err(ApiError::bad_request("last_event_id_ahead", format!("event id {id} was never assigned by this store (the latest is {now})"))
                .with_details(json!({ "last_event_id": id, "latest_event_id": now })));
        }
        Some(id) => id,
        None => now,
    };
    let follower = Follower { store: Arc::clone(&state.store), head, filter: p.filter, position, done: false, closing: state.closing.clone() };
    let stream = futures::stream::unfold(follower, |mut f| async move { f.step().await.map(|evs| (evs, f)) })
        .flat_map(|evs| futures::stream::iter(evs.into_iter().map(Ok)));
    let keep_alive = KeepAlive::new().interval(state.keep_alive).text("keep-alive");
    Ok(Sse::new(stream).keep_alive(keep_alive))
}
