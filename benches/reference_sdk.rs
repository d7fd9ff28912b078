//! The bus against the reference Python SDK's bus (`openagentio` 0.3.0), run
//! on demand: `cargo bench --bench reference_sdk`.
//!
//! Invoke round trips per second and p50/p99 latency at 1 and 64 calls in
//! flight, with the payload of `benches/bus.rs` echoed back, for:
//! - each bus on its in-memory transport, caller and handler in one process
//!   (the reference's in one Python process, ours in this one);
//! - over one nats-server, every pairing of a Python and a Rust caller with a
//!   Python and a Rust handler, each side on a connection of its own (a
//!   mixed fleet pays for its slower side: the rows say which side costs what).
//!
//! The Python side is `benches/python/reference_bus.py`, run by the
//! interpreter of the reference SDK's virtualenv (`OPENAGENTIO_PYTHON`, else
//! the one `./scripts/test` installs). `BENCH_SECS`, `BENCH_ROUNDS` (default
//! 3), `BENCH_IN_FLIGHT` and `BENCH_WORKERS` work as in `benches/bus.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

use openagentio_core::Bus;
use openagentio_testkit::bench::{
    Ratio, Row, in_flight_counts, measure, payload, print_ratios, print_rows, round_count, runtime,
    secs,
};
use openagentio_testkit::{NatsServer, nats_bus, reference_python};
use serde_json::Value;

/// The allocator the `openagentio` binary uses, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The target our echo handler serves.
const RUST_ECHO: &str = "bench.echo";
/// The target the Python echo handler serves (another name: handlers of one
/// target share a queue group, and would split the calls between them).
const PYTHON_ECHO: &str = "bench.py_echo";

/// The Python side, found when the bench runs (cargo says where the package is).
fn script() -> String {
    format!(
        "{}/benches/python/reference_bus.py",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
    )
}

/// One measurement by the Python caller: `where` is `memory` or a NATS URL.
fn python_call(name: &str, r#where: &str, target: &str, in_flight: usize) -> Row {
    let out = Command::new(reference_python())
        .arg(script())
        .args(["call", r#where, target])
        .arg(in_flight.to_string())
        .arg(secs().as_secs_f64().to_string())
        .stderr(Stdio::inherit())
        .output()
        .expect("the reference SDK's Python runs");
    assert!(out.status.success(), "{name}: the Python caller failed");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: the Python caller printed {:?}: {e}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    let row = Row {
        name: name.to_owned(),
        in_flight,
        per_sec: v["per_sec"].as_f64().unwrap(),
        p50_us: v["p50_us"].as_f64().unwrap(),
        p99_us: v["p99_us"].as_f64().unwrap(),
    };
    row.show();
    row
}

/// The Python echo handler, serving [`PYTHON_ECHO`] on `url` until dropped.
struct PythonHandler {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl PythonHandler {
    fn start(url: &str) -> PythonHandler {
        let mut child = Command::new(reference_python())
            .arg(script())
            .args(["serve", url, PYTHON_ECHO])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the reference SDK's Python runs");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready", "the Python handler did not start");
        let stdin = child.stdin.take();
        PythonHandler { child, stdin }
    }
}

impl Drop for PythonHandler {
    fn drop(&mut self) {
        // Closing its stdin ends it.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

async fn rust_call(name: &str, caller: Bus, target: &'static str, in_flight: usize) -> Row {
    let p = payload();
    measure(name, in_flight, move || {
        let caller = caller.clone();
        let p = p.clone();
        async move {
            caller.invoke(target, p).await.unwrap();
        }
    })
    .await
}

async fn echo_handler(bus: &Bus) {
    bus.handle_invoke(RUST_ECHO, |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
}

fn main() {
    runtime().block_on(async {
        let nats = NatsServer::start();
        let url = nats.url();
        let memory = Bus::builder().agent_id("bench").build();
        echo_handler(&memory).await;
        let server = nats_bus(&url, Bus::builder().agent_id("bench-server")).await;
        echo_handler(&server).await;
        let client = nats_bus(&url, Bus::builder().agent_id("bench-client")).await;
        let _python_handler = PythonHandler::start(&url);

        let mut rounds = Vec::new();
        for round in 1..=round_count(3) {
            eprintln!("-- round {round}");
            let mut rows = Vec::new();
            for n in in_flight_counts() {
                rows.push(python_call(
                    "reference bus (memory)",
                    "memory",
                    PYTHON_ECHO,
                    n,
                ));
                rows.push(rust_call("our bus (memory)", memory.clone(), RUST_ECHO, n).await);
                rows.push(python_call("NATS: Python → Python", &url, PYTHON_ECHO, n));
                rows.push(python_call("NATS: Python → Rust", &url, RUST_ECHO, n));
                rows.push(rust_call("NATS: Rust → Python", client.clone(), PYTHON_ECHO, n).await);
                rows.push(rust_call("NATS: Rust → Rust", client.clone(), RUST_ECHO, n).await);
            }
            rounds.push(rows);
        }
        print_rows(&rounds);
        print_ratios(&rounds, &ratios());
    });
}

/// Each of ours against the reference, at every count in flight.
fn ratios() -> Vec<Ratio> {
    let mut ratios = Vec::new();
    for in_flight in in_flight_counts() {
        for (label, ours, base) in [
            (
                "our bus / reference bus, in memory",
                "our bus (memory)",
                "reference bus (memory)",
            ),
            (
                "Rust → Rust / Python → Python, NATS",
                "NATS: Rust → Rust",
                "NATS: Python → Python",
            ),
            (
                "Python → Rust / Python → Python, NATS (a Rust handler for a Python caller)",
                "NATS: Python → Rust",
                "NATS: Python → Python",
            ),
            (
                "Rust → Python / Python → Python, NATS (a Rust caller of a Python handler)",
                "NATS: Rust → Python",
                "NATS: Python → Python",
            ),
        ] {
            ratios.push(Ratio {
                label,
                ours,
                base,
                in_flight,
                target: "",
            });
        }
    }
    ratios
}
