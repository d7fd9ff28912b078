//! Service metrics in the Prometheus text format: calls, errors by code,
//! latency histograms per target, stream frames, bridge restarts, bus counters.
//!
//! A call whose caller gave up (a client that disconnected, a deadline that
//! passed, a drain at shutdown) ends with `outcome="cancelled"`, not with the
//! error its handler returned on the way out: clients going away are not
//! failures of the agent, and are not counted in `openagentio_call_errors_total`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Instant;

use openagentio_core::middleware::{Middleware, Next};
use openagentio_core::{Bus, BusError, Call, CallKind};
use parking_lot::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Distinct (target, kind) series kept; later names are counted under
/// [`OTHER_TARGETS`].
const MAX_TARGETS: usize = 1_000;

/// The `target` label of the calls past [`MAX_TARGETS`].
const OTHER_TARGETS: &str = "_other";

#[derive(Default)]
struct TargetStats {
    ok: u64,
    cancelled: u64,
    errors: BTreeMap<&'static str, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_secs: f64,
    frames: u64,
}

/// How a call ended, as the metrics count it.
#[derive(Clone, Copy)]
enum Outcome<'a> {
    Ok,
    /// Its caller gave up; whatever the handler returned then is not counted
    /// as a failure.
    Cancelled,
    Failed(&'a BusError),
}

/// Counts every call served on the bus. Install it as middleware (it is cheap
/// to clone; clones share the counts) and render with [`Metrics::render`].
#[derive(Clone, Default)]
pub struct Metrics {
    targets: Arc<Mutex<BTreeMap<(String, &'static str), TargetStats>>>,
}

/// How a call was made: `invoke` (the answer alone, as `invoke` and
/// `POST .../invoke` ask, even of a stream target), `stream` (every frame)
/// or `event`.
fn kind_label(call: &Call) -> &'static str {
    match call.kind() {
        CallKind::Invoke => "invoke",
        CallKind::Stream if call.request.stream_requested() == Some(false) => "invoke",
        CallKind::Stream => "stream",
        CallKind::Event => "event",
    }
}

/// Escapes a Prometheus label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self, name: &str, kind: &'static str, secs: f64, frames: u64, outcome: Outcome<'_>) {
        let mut map = self.targets.lock();
        // Names can come from clients (an event feed's pattern): past the
        // cap, new ones share one series instead of growing the scrape.
        let key = (name.to_owned(), kind);
        let key = if map.len() >= MAX_TARGETS && !map.contains_key(&key) {
            (OTHER_TARGETS.to_owned(), kind)
        } else {
            key
        };
        let s = map.entry(key).or_default();
        match outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::Cancelled => s.cancelled += 1,
            Outcome::Failed(e) => *s.errors.entry(e.code().as_str()).or_default() += 1,
        }
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
        s.count += 1;
        s.sum_secs += secs;
        s.frames += frames;
    }

    /// The metrics text. `bridges` gives `(bridge, restarts)`; `bus` adds the
    /// bus and transport counters.
    pub fn render(&self, bus: &Bus, bridges: &[(String, u64)]) -> String {
        let mut out = String::new();
        let map = self.targets.lock();
        let _ = writeln!(
            out,
            "# HELP openagentio_calls_total Calls served, by target, kind and outcome."
        );
        let _ = writeln!(out, "# TYPE openagentio_calls_total counter");
        for ((t, k), s) in map.iter() {
            let _ = writeln!(
                out,
                "openagentio_calls_total{{target=\"{}\",kind=\"{k}\",outcome=\"ok\"}} {}",
                label(t),
                s.ok
            );
            if s.cancelled > 0 {
                let _ = writeln!(
                    out,
                    "openagentio_calls_total{{target=\"{}\",kind=\"{k}\",outcome=\"cancelled\"}} {}",
                    label(t),
                    s.cancelled
                );
            }
            for (code, n) in &s.errors {
                let _ = writeln!(
                    out,
                    "openagentio_calls_total{{target=\"{}\",kind=\"{k}\",outcome=\"{code}\"}} {n}",
                    label(t)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP openagentio_call_errors_total Failed calls, by target and error code."
        );
        let _ = writeln!(out, "# TYPE openagentio_call_errors_total counter");
        // One series per target and code, over every kind of call.
        let mut errors: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for ((t, _), s) in map.iter() {
            for (code, n) in &s.errors {
                *errors.entry((t, code)).or_default() += n;
            }
        }
        for ((t, code), n) in errors {
            let _ = writeln!(
                out,
                "openagentio_call_errors_total{{target=\"{}\",code=\"{code}\"}} {n}",
                label(t)
            );
        }
        let _ = writeln!(
            out,
            "# HELP openagentio_call_duration_seconds Time to serve a call, by target."
        );
        let _ = writeln!(out, "# TYPE openagentio_call_duration_seconds histogram");
        for ((t, k), s) in map.iter() {
            let t = label(t);
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "openagentio_call_duration_seconds_bucket{{target=\"{t}\",kind=\"{k}\",le=\"{le}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "openagentio_call_duration_seconds_bucket{{target=\"{t}\",kind=\"{k}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "openagentio_call_duration_seconds_sum{{target=\"{t}\",kind=\"{k}\"}} {}",
                s.sum_secs
            );
            let _ = writeln!(
                out,
                "openagentio_call_duration_seconds_count{{target=\"{t}\",kind=\"{k}\"}} {}",
                s.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP openagentio_stream_frames_total Response frames sent, by target."
        );
        let _ = writeln!(out, "# TYPE openagentio_stream_frames_total counter");
        for ((t, k), s) in map.iter() {
            if *k != "event" {
                let _ = writeln!(
                    out,
                    "openagentio_stream_frames_total{{target=\"{}\",kind=\"{k}\"}} {}",
                    label(t),
                    s.frames
                );
            }
        }
        drop(map);
        let _ = writeln!(
            out,
            "# HELP openagentio_bridge_restarts_total Restarts of a bridge's background work."
        );
        let _ = writeln!(out, "# TYPE openagentio_bridge_restarts_total counter");
        for (b, n) in bridges {
            let _ = writeln!(
                out,
                "openagentio_bridge_restarts_total{{bridge=\"{}\"}} {n}",
                label(b)
            );
        }
        let stats = bus.stats();
        let transport = bus.transport().stats();
        for (name, help, v) in [
            (
                "openagentio_bad_messages_total",
                "Messages on bus subjects that were not envelopes.",
                stats.bad_messages,
            ),
            (
                "openagentio_handler_panics_total",
                "Handlers that panicked.",
                stats.handler_panics,
            ),
            (
                "openagentio_refused_requests_total",
                "Requests refused at a concurrency limit.",
                stats.refused_requests,
            ),
            (
                "openagentio_overflowed_calls_total",
                "Calls that ended because their frame buffer overflowed.",
                stats.overflowed_calls,
            ),
            (
                "openagentio_dropped_events_total",
                "Events dropped because a subscriber fell behind by more than its buffer.",
                stats.dropped_events,
            ),
            (
                "openagentio_abandoned_handlers_total",
                "Cancelled handlers dropped for not ending within the cancellation grace.",
                stats.abandoned_handlers,
            ),
            (
                "openagentio_stale_requests_total",
                "Requests not served because their caller cancelled them before they arrived.",
                stats.stale_requests,
            ),
            (
                "openagentio_transport_dropped_total",
                "Messages the transport dropped (slow consumers).",
                transport.dropped,
            ),
            (
                "openagentio_transport_reconnects_total",
                "Transport reconnections.",
                transport.reconnects,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        for (name, help, v) in [
            (
                "openagentio_transport_connected",
                "Whether the transport is connected.",
                usize::from(bus.transport().is_connected()),
            ),
            (
                "openagentio_requests_in_flight",
                "Requests being served by this service's handlers.",
                bus.in_flight(),
            ),
            (
                "openagentio_calls_open",
                "Calls made by this service whose answers are still awaited.",
                bus.open_calls(),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[async_trait::async_trait]
impl Middleware for Metrics {
    async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError> {
        let name = call.name().to_owned();
        let kind = kind_label(&call);
        let probe = call.clone();
        let started = Instant::now();
        let result = next.run(call).await;
        let outcome = match &result {
            Ok(()) => Outcome::Ok,
            Err(_) if probe.request.is_cancelled() => Outcome::Cancelled,
            Err(e) => Outcome::Failed(e),
        };
        self.record(
            &name,
            kind,
            started.elapsed().as_secs_f64(),
            probe.frames_sent(),
            outcome,
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn counts_calls_errors_and_latency() {
        let metrics = Metrics::new();
        let bus = Bus::builder().middleware(metrics.clone()).build();
        bus.handle_invoke("ok", |_r| async { Ok(json!(1)) })
            .await
            .unwrap();
        bus.handle_invoke("bad", |_r| async { Err(BusError::invalid("no")) })
            .await
            .unwrap();
        bus.invoke("ok", json!(null)).await.unwrap();
        bus.invoke("ok", json!(null)).await.unwrap();
        let _ = bus.invoke("bad", json!(null)).await;
        let text = metrics.render(&bus, &[("mcp".into(), 2)]);
        assert!(
            text.contains(
                "openagentio_calls_total{target=\"ok\",kind=\"invoke\",outcome=\"ok\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "openagentio_call_errors_total{target=\"bad\",code=\"INVALID_REQUEST\"} 1"
            )
        );
        assert!(
            text.contains(
                "openagentio_call_duration_seconds_count{target=\"ok\",kind=\"invoke\"} 2"
            )
        );
        assert!(text.contains("openagentio_stream_frames_total{target=\"ok\",kind=\"invoke\"} 2"));
        assert!(text.contains("openagentio_bridge_restarts_total{bridge=\"mcp\"} 2"));
    }

    #[tokio::test]
    async fn calls_are_labelled_by_how_they_were_made() {
        let metrics = Metrics::new();
        let bus = Bus::builder().middleware(metrics.clone()).build();
        bus.handle_stream("chat", |_req, w| async move { w.finish(json!("hi")).await })
            .await
            .unwrap();
        bus.invoke("chat", json!(null)).await.unwrap();
        let mut s = bus.stream_invoke("chat", json!(null)).await.unwrap();
        while let Some(f) = s.next().await {
            f.unwrap();
        }
        let text = metrics.render(&bus, &[]);
        for kind in ["invoke", "stream"] {
            let want = format!(
                "openagentio_calls_total{{target=\"chat\",kind=\"{kind}\",outcome=\"ok\"}} 1"
            );
            assert!(text.contains(&want), "{want} not in {text}");
        }
    }

    /// Every sample line once: Prometheus refuses a scrape with duplicates.
    fn assert_no_duplicate_series(text: &str) {
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let series = line.rsplit_once(' ').map_or(line, |(s, _)| s);
            assert!(seen.insert(series), "{series} twice in {text}");
        }
    }

    #[tokio::test]
    async fn errors_of_one_target_made_both_ways_are_one_series() {
        let metrics = Metrics::new();
        let bus = Bus::builder().middleware(metrics.clone()).build();
        bus.handle_stream("fail", |_req, _w| async move {
            Err(BusError::transport("down"))
        })
        .await
        .unwrap();
        let _ = bus.invoke("fail", json!(null)).await;
        let mut s = bus.stream_invoke("fail", json!(null)).await.unwrap();
        while s.next().await.is_some() {}
        let text = metrics.render(&bus, &[]);
        assert_no_duplicate_series(&text);
        assert!(
            text.contains(
                "openagentio_call_errors_total{target=\"fail\",code=\"TRANSPORT_FAILURE\"} 2"
            ),
            "{text}"
        );
    }

    #[tokio::test]
    async fn names_past_the_cap_share_one_series() {
        let metrics = Metrics::new();
        let bus = Bus::builder().middleware(metrics.clone()).build();
        for i in 0..MAX_TARGETS + 50 {
            metrics.record(&format!("feed.{i}"), "event", 0.0, 0, Outcome::Ok);
        }
        let text = metrics.render(&bus, &[]);
        assert_no_duplicate_series(&text);
        assert!(
            text.contains(
                "openagentio_calls_total{target=\"_other\",kind=\"event\",outcome=\"ok\"} 50"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("openagentio_calls_total{").count(),
            MAX_TARGETS + 1
        );
    }

    /// Waits until the two gauges read `want` (calls open, requests in flight).
    async fn gauges_reach(metrics: &Metrics, bus: &Bus, want: (u64, u64)) {
        let value = |text: &str, name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse::<u64>().ok())
        };
        let mut seen = (None, None);
        for _ in 0..200 {
            let text = metrics.render(bus, &[]);
            seen = (
                value(&text, "openagentio_calls_open"),
                value(&text, "openagentio_requests_in_flight"),
            );
            if seen == (Some(want.0), Some(want.1)) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("gauges (calls open, requests in flight) are {seen:?}, not {want:?}");
    }

    /// A counted bus serving `wait`: a stream that ends when its caller leaves.
    async fn bus_with_a_waiting_stream(metrics: &Metrics) -> Bus {
        let bus = Bus::builder().middleware(metrics.clone()).build();
        bus.handle_stream("wait", |req, _w| async move {
            req.cancelled().await;
            Err(BusError::unavailable("the caller went away"))
        })
        .await
        .unwrap();
        bus
    }

    #[tokio::test]
    async fn calls_open_and_requests_in_flight_are_gauges() {
        let metrics = Metrics::new();
        let bus = bus_with_a_waiting_stream(&metrics).await;
        let s = bus.stream_invoke("wait", json!(null)).await.unwrap();
        gauges_reach(&metrics, &bus, (1, 1)).await;
        drop(s);
        gauges_reach(&metrics, &bus, (0, 0)).await;
    }

    #[tokio::test]
    async fn a_call_its_caller_gave_up_on_is_cancelled_not_failed() {
        let metrics = Metrics::new();
        let bus = bus_with_a_waiting_stream(&metrics).await;
        let s = bus.stream_invoke("wait", json!(null)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(s);
        let want =
            "openagentio_calls_total{target=\"wait\",kind=\"stream\",outcome=\"cancelled\"} 1";
        for _ in 0..200 {
            if metrics.render(&bus, &[]).contains(want) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let text = metrics.render(&bus, &[]);
        assert!(text.contains(want), "{text}");
        assert!(
            !text.contains("openagentio_call_errors_total{target=\"wait\""),
            "{text}"
        );
    }
}
