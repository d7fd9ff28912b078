//! The gateway's own counters, rendered after the service's metrics on `/metrics`:
//!
//! - `openagentio_http_requests_total{route,method,status}`
//! - `openagentio_http_request_duration_seconds{route}` (histogram; for streams,
//!   the time until the response headers)
//! - `openagentio_http_sse_frames_total`
//! - `openagentio_http_streams_disconnected_total` (clients gone before the end)
//! - `openagentio_http_feed_events_dropped_total` (events an event feed's
//!   client fell too far behind for, its feed then ended)

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;

use crate::state::AppState;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Counters of the gateway.
#[derive(Default)]
pub(crate) struct GatewayMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    sse_frames: AtomicU64,
    disconnects: AtomicU64,
    feed_dropped: AtomicU64,
}

impl GatewayMetrics {
    fn record(&self, route: &str, method: &str, status: u16, secs: f64) {
        *self
            .requests
            .lock()
            .entry((route.to_owned(), method.to_owned(), status))
            .or_default() += 1;
        let mut d = self.durations.lock();
        let h = d.entry(route.to_owned()).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn sse_frame(&self) {
        self.sse_frames.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_disconnected(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }
    pub fn feed_dropped(&self, events: u64) {
        self.feed_dropped.fetch_add(events, Ordering::Relaxed);
    }

    /// The Prometheus text form.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP openagentio_http_requests_total HTTP requests answered, by route, method and status.\n");
        out.push_str("# TYPE openagentio_http_requests_total counter\n");
        for ((route, method, status), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "openagentio_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                escape(route),
                escape(method)
            );
        }
        out.push_str("# HELP openagentio_http_request_duration_seconds Time until the response headers, by route.\n");
        out.push_str("# TYPE openagentio_http_request_duration_seconds histogram\n");
        for (route, h) in self.durations.lock().iter() {
            let route = escape(route);
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "openagentio_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "openagentio_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "openagentio_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "openagentio_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count
            );
        }
        let _ = write!(
            out,
            "# HELP openagentio_http_sse_frames_total SSE frames sent.\n\
             # TYPE openagentio_http_sse_frames_total counter\n\
             openagentio_http_sse_frames_total {}\n\
             # HELP openagentio_http_streams_disconnected_total Streams whose client left before the end.\n\
             # TYPE openagentio_http_streams_disconnected_total counter\n\
             openagentio_http_streams_disconnected_total {}\n\
             # HELP openagentio_http_feed_events_dropped_total Events an event feed's client fell too far behind for.\n\
             # TYPE openagentio_http_feed_events_dropped_total counter\n\
             openagentio_http_feed_events_dropped_total {}\n",
            self.sse_frames.load(Ordering::Relaxed),
            self.disconnects.load(Ordering::Relaxed),
            self.feed_dropped.load(Ordering::Relaxed),
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The layer that counts every request by route template (never by raw path,
/// so that target names from clients do not make new series).
pub(crate) async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    let secs = started.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    state.metrics().record(&route, &method, status, secs);
    tracing::debug!(%method, %route, status, duration_ms = secs * 1000.0, "http request");
    resp
}
