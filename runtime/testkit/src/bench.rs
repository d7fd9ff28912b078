//! What the bench binaries share: the payload, the measuring loop, rounds and
//! the Markdown tables they print for BENCHMARKS.md.
//!
//! ```no_run
//! use openagentio_testkit::bench::{Ratio, measure, print_ratios, print_rows, runtime};
//! runtime().block_on(async {
//!     let bus = openagentio_core::Bus::memory();
//!     bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) }).await.unwrap();
//!     let row = measure("bus invoke (memory)", 64, move || {
//!         let bus = bus.clone();
//!         async move {
//!             bus.invoke("echo", serde_json::json!({})).await.unwrap();
//!         }
//!     })
//!     .await;
//!     let rounds = vec![vec![row]];
//!     print_rows(&rounds);
//!     print_ratios(&rounds, &[]);
//! });
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// One measurement: calls (or frames) per second and call latency. Bench
/// peers in other languages print it as JSON.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// Calls in flight at once.
    pub in_flight: usize,
    /// Calls (or frames) per second.
    pub per_sec: f64,
    /// Median call latency, µs.
    pub p50_us: f64,
    /// 99th percentile call latency, µs.
    pub p99_us: f64,
}

impl Row {
    /// Prints the row as it is measured, for whoever watches the run.
    pub fn show(&self) {
        eprintln!(
            "{:<40} {:>3} in flight: {:>10.0}/s  p50 {:>8.1} µs  p99 {:>8.1} µs",
            self.name, self.in_flight, self.per_sec, self.p50_us, self.p99_us
        );
    }
}

/// The invoke payload of every bench.
pub fn payload() -> Value {
    // About 400 bytes once serialized.
    json!({"text": "x".repeat(360), "n": 12345, "tag": "bench"})
}

/// Seconds per measurement: `BENCH_SECS`, default 3.
pub fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    )
}

/// Runs `call` from `in_flight` concurrent loops for the measurement period.
pub async fn measure<F, Fut>(name: &str, in_flight: usize, call: F) -> Row
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    // Warm up.
    let warm = Instant::now() + Duration::from_millis(300);
    while Instant::now() < warm {
        call().await;
    }
    let end = Instant::now() + secs();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new(3).unwrap();
            let mut n = 0u64;
            while Instant::now() < end {
                let t = Instant::now();
                call().await;
                h.record(t.elapsed().as_nanos() as u64).unwrap();
                n += 1;
            }
            (n, h)
        }));
    }
    let mut total = 0;
    let mut hist = Histogram::<u64>::new(3).unwrap();
    for t in tasks {
        let (n, h) = t.await.unwrap();
        total += n;
        hist.add(h).unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let row = Row {
        name: name.to_owned(),
        in_flight,
        per_sec: total as f64 / elapsed,
        p50_us: hist.value_at_quantile(0.5) as f64 / 1000.0,
        p99_us: hist.value_at_quantile(0.99) as f64 / 1000.0,
    };
    row.show();
    row
}

/// Calls in flight of the invoke measurements: 1 and 64, or the
/// comma-separated list in `BENCH_IN_FLIGHT`.
pub fn in_flight_counts() -> Vec<usize> {
    std::env::var("BENCH_IN_FLIGHT")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 64])
}

/// Alternating rounds of the invoke measurements (`BENCH_ROUNDS`, else
/// `default`). Rows report medians; each ratio is taken within a round, then
/// the median and range over rounds are shown. (The bare channel in
/// particular swings by 2x between runs, with where tokio happens to place
/// its server task.)
pub fn round_count(default: usize) -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// Worker threads of the bench's runtime: `BENCH_WORKERS`, default 2.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::env::var("BENCH_WORKERS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(2),
        )
        .enable_all()
        .build()
        .unwrap()
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The rows of every round merged: medians of each measurement.
fn merge(rounds: &[Vec<Row>]) -> Vec<Row> {
    rounds[0]
        .iter()
        .map(|first| {
            let same: Vec<&Row> = rounds
                .iter()
                .flat_map(|r| r.iter())
                .filter(|r| r.name == first.name && r.in_flight == first.in_flight)
                .collect();
            let med = |f: fn(&Row) -> f64| median(same.iter().map(|r| f(r)).collect());
            Row {
                name: first.name.clone(),
                in_flight: first.in_flight,
                per_sec: med(|r| r.per_sec),
                p50_us: med(|r| r.p50_us),
                p99_us: med(|r| r.p99_us),
            }
        })
        .collect()
}

/// Prints the medians over `rounds` of every row, as a Markdown table.
pub fn print_rows(rounds: &[Vec<Row>]) {
    println!(
        "\n{} round(s); each row is the median over rounds.\n",
        rounds.len()
    );
    println!("| measurement | in flight | per second | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|");
    for r in &merge(rounds) {
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} |",
            r.name, r.in_flight, r.per_sec, r.p50_us, r.p99_us
        );
    }
}

/// One ratio line: the row whose name starts with `ours` against the one
/// whose name starts with `base`, both at `in_flight`.
pub struct Ratio {
    /// What the line says.
    pub label: &'static str,
    /// The start of the measured row's name.
    pub ours: &'static str,
    /// The start of the baseline row's name.
    pub base: &'static str,
    /// Calls in flight of both rows.
    pub in_flight: usize,
    /// The target, if any (shown as it is).
    pub target: &'static str,
}

/// Prints each ratio taken within each round, as the median and range over
/// rounds; ratios whose rows were not measured are left out.
pub fn print_ratios(rounds: &[Vec<Row>], ratios: &[Ratio]) {
    let find = |rows: &[Row], name: &str, n: usize| {
        rows.iter()
            .find(|r| r.name.starts_with(name) && r.in_flight == n)
            .map(|r| r.per_sec)
    };
    println!("\n| ratio (within each round) | median | range | target |");
    println!("|---|---:|---:|---:|");
    for r in ratios {
        let n = r.in_flight;
        let within: Vec<f64> = rounds
            .iter()
            .filter_map(|rows| Some(find(rows, r.ours, n)? / find(rows, r.base, n)?))
            .collect();
        if within.is_empty() {
            continue;
        }
        let lo = within.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = within.iter().copied().fold(0.0, f64::max);
        println!(
            "| {}, {n} in flight | {:.2}x | {lo:.2}–{hi:.2}x | {} |",
            r.label,
            median(within),
            r.target
        );
    }
}
