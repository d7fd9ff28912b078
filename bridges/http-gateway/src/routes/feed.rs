//! `GET /v1/events/{event_type}`: the bus's events as server-sent events, for
//! as long as the client stays (an extension: the reference adapter can only
//! publish).
//!
//! `event_type` may hold the wildcards `*` (one token) and `>` (the rest;
//! sent as `%3E`, since HTTP does not allow `>` raw in a path); `?queue=NAME` shares the events among the feeds of
//! one queue group instead of giving each all of them. The tenant comes from
//! `X-Tenant-Id` or a tenant-bound token, as for the other routes. Each event
//! is one SSE event framed as a stream's frames are (see [`crate::sse`]).
//!
//! A client that cannot keep up is not fed silently with gaps: when more than
//! [`FEED_BUFFER`] events, or [`FEED_BYTES`] of them, wait for it, the feed
//! ends with an `agent.response.error` event (`BACKPRESSURE_DROP`) saying how
//! many were lost (counted in `openagentio_http_feed_events_dropped_total`),
//! and the client can subscribe again. Nor is it fed across a gap the
//! transport made: when the service's connection to the bus was cut and
//! made again (NATS drops what is sent meanwhile), or the transport dropped
//! messages of a subscription that fell behind, the next event that arrives
//! ends the feed with an `agent.response.error` event (`AGENT_UNAVAILABLE`)
//! saying events may have been lost. The feed also ends when the service
//! drains; leaving ends the subscription.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::response::sse::Event;
use openagentio_core::{BusError, Envelope, Registration, SubscribeOptions};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::headers::RequestContext;
use crate::routes::path_param;
use crate::sse::{error_frame, frame_event, sse_response};
use crate::state::AppState;

/// Events that may wait for one slow client before its feed ends.
pub const FEED_BUFFER: usize = 1024;

/// Bytes of events (their payloads, about) that may wait for one slow client
/// before its feed ends: large events fill it before [`FEED_BUFFER`] does.
pub const FEED_BYTES: u64 = 32 * 1024 * 1024;

/// About how many bytes `v` takes as JSON: enough to bound a buffer by.
fn json_size(v: &serde_json::Value) -> u64 {
    use serde_json::Value;
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 8,
        Value::String(s) => s.len() as u64 + 2,
        Value::Array(items) => items.iter().map(json_size).sum::<u64>() + 2,
        Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() as u64 + 3 + json_size(v))
                .sum::<u64>()
                + 2
        }
    }
}

/// The queue group named by `?queue=NAME` (letters, digits, `-`, `_`, `.`;
/// percent-encoded or not).
fn queue_of(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut queue = None;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key != "queue" {
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {key:?} (this route takes `queue`)"
            )));
        }
        let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if value.is_empty() || !value.chars().all(fits) {
            return Err(ApiError::bad_request(format!(
                "queue {value:?}: expected letters, digits, '-', '_' or '.'"
            )));
        }
        queue = Some(value.into_owned());
    }
    Ok(queue)
}

pub(crate) async fn feed(
    State(state): State<AppState>,
    event_type: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    ctx: RequestContext,
) -> Result<Response, ApiError> {
    let event_type = path_param(event_type)?;
    let queue = queue_of(query.as_deref())?;
    let mut opts = SubscribeOptions::new();
    if let Some(t) = &ctx.tenant {
        opts = opts.tenant(t);
    }
    if let Some(q) = queue {
        opts = opts.queue(q);
    }
    let (tx, rx) = mpsc::channel(FEED_BUFFER);
    let lost = Arc::new(AtomicU64::new(0));
    let lost_in_handler = lost.clone();
    let queued_bytes = Arc::new(AtomicU64::new(0));
    let queued_in_handler = queued_bytes.clone();
    let gap = Arc::new(AtomicBool::new(false));
    let gap_in_handler = gap.clone();
    let transport = state.bus().transport().clone();
    let at_start = transport.stats();
    let registration = state
        .bus()
        .subscribe_with(&event_type, opts, move |env| {
            // An event after a gap the transport made ends the feed (below)
            // instead of being fed as if none was missing.
            if !gap_in_handler.load(Ordering::Relaxed) {
                let now = transport.stats();
                if now.reconnects != at_start.reconnects || now.dropped != at_start.dropped {
                    gap_in_handler.store(true, Ordering::Relaxed);
                    // Wakes the feed, which ends after what is queued (a
                    // full queue wakes it anyway).
                    let _ = tx.try_send(None);
                }
            }
            if gap_in_handler.load(Ordering::Relaxed) {
                return std::future::ready(Ok::<(), BusError>(()));
            }
            // Never wait for the client here: a full buffer ends its feed
            // (the stream below reports it); it does not hold up the bus.
            // After the first loss nothing more is queued, so what the
            // client gets has no gap in it.
            let overflowed = lost_in_handler.load(Ordering::Relaxed) > 0;
            let size = env.payload.as_ref().map_or(0, json_size) + 512;
            let too_big = queued_in_handler.load(Ordering::Relaxed) + size > FEED_BYTES;
            if overflowed || too_big {
                lost_in_handler.fetch_add(1, Ordering::Relaxed);
            } else {
                match tx.try_send(Some((env, size))) {
                    Ok(()) => {
                        queued_in_handler.fetch_add(size, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        lost_in_handler.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            std::future::ready(Ok::<(), BusError>(()))
        })
        .await?;
    let feed = Feed {
        rx,
        lost,
        gap,
        queued_bytes,
        registration: Some(registration),
        done: false,
        state: state.clone(),
    };
    let events = futures::stream::unfold(feed, |mut f| async move {
        f.next_event()
            .await
            .map(|e| (Ok::<Event, Infallible>(e), f))
    });
    Ok(sse_response(events, state.config().sse_keep_alive))
}

/// One client's subscription on its way out as SSE events.
struct Feed {
    /// Events with their sizes (see [`json_size`]); `None` after a gap.
    rx: mpsc::Receiver<Option<(Envelope, u64)>>,
    /// Events dropped because the buffer was full.
    lost: Arc<AtomicU64>,
    /// Set when the transport may have lost events (see the module docs).
    gap: Arc<AtomicBool>,
    /// Bytes of the events waiting in `rx`.
    queued_bytes: Arc<AtomicU64>,
    registration: Option<Registration>,
    done: bool,
    state: AppState,
}

impl Feed {
    async fn next_event(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        // After an overflow: stop the subscription, send what is queued (in
        // order), then the error.
        let ending = self.lost.load(Ordering::Relaxed) > 0 || self.gap.load(Ordering::Relaxed);
        // `None` in the queue marks a gap: what came before it goes out.
        let next = if ending {
            self.unsubscribe();
            self.rx.try_recv().ok().flatten()
        } else {
            self.rx.recv().await.flatten()
        };
        let env = match next {
            Some((env, size)) => {
                self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
                env
            }
            None => {
                self.done = true;
                let lost = self.lost.load(Ordering::Relaxed);
                let err = if lost > 0 {
                    self.state.metrics().feed_dropped(lost);
                    BusError::backpressure(format!(
                        "this client fell too far behind ({FEED_BUFFER} events or {} MiB); {lost} \
                     or more were dropped and the feed ends here (subscribe again to go on)",
                        FEED_BYTES >> 20
                    ))
                } else if self.gap.load(Ordering::Relaxed) {
                    BusError::unavailable(
                        "the service's connection to the bus was cut and made again, or its \
                         subscription fell behind, while this feed ran: events may have been \
                         lost, and the feed ends here (subscribe again to go on)",
                    )
                } else {
                    // The subscription ended (the service is draining).
                    return None;
                };
                let env = error_frame(&err, None, "", 0, self.state.bus().agent_id());
                return Some(frame_event(&env, self.state.config().sse_retry));
            }
        };
        self.state.metrics().sse_frame();
        Some(frame_event(&env, self.state.config().sse_retry))
    }

    fn unsubscribe(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return; // no runtime left: the bus goes with it
        };
        if let Some(reg) = self.registration.take() {
            rt.spawn(async move {
                if let Err(e) = reg.unsubscribe().await {
                    tracing::debug!(error = %e, "could not end an event feed's subscription");
                }
            });
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.unsubscribe();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_a_queue_or_nothing() {
        assert_eq!(queue_of(None).unwrap(), None);
        assert_eq!(queue_of(Some("")).unwrap(), None);
        assert_eq!(
            queue_of(Some("queue=workers.a-1")).unwrap().as_deref(),
            Some("workers.a-1")
        );
        // Percent-encoded as some clients send even safe characters.
        assert_eq!(
            queue_of(Some("queue=workers%2Ea%2D1")).unwrap().as_deref(),
            Some("workers.a-1")
        );
        assert!(queue_of(Some("queue=")).is_err());
        assert!(queue_of(Some("queue=a%20b")).is_err());
        assert!(queue_of(Some("group=x")).is_err());
    }
}
