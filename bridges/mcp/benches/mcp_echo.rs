//! MCP bridge benchmark, run on demand:
//! `cargo bench -p openagentio-mcp --bench mcp_echo`.
//!
//! The `echo` tool of our demo server (`openagentio-mcp-demo`, stdio) called:
//! 1. directly with an rmcp client (`Peer::call_tool_once`), connected the way
//!    the bridge's upstream connects (child process, `AsyncRwTransport`,
//!    `serve_client`);
//! 2. through our bus, `bus.invoke("demo.echo", {"text": ...})`, with
//!    [`McpBridge`] on the in-memory bus and on a real nats-server (caller and
//!    bridge on two separate NATS connections);
//! 3. through the reference Python bridge (`openagentio` 0.3.0 `McpToolBridge`
//!    on its in-memory bus), measured inside Python by `mcp_reference.py` (next
//!    to this file) with the same method.
//!
//! Each configuration spawns its own demo server process (so none share a
//! server), and is measured at 1 call in flight (latency) and 32 in flight
//! (throughput): a 300 ms warm-up, then `in_flight` loops for `BENCH_SECS`
//! seconds (default 3), each call timed on its own. Configurations run one
//! after another, never at the same time.
//!
//! `BENCH_ONLY` (comma-separated: `direct`, `memory`, `nats`, `python`) picks
//! configurations and `BENCH_LEVELS` the calls in flight (default `1,32`).
//! `OPENAGENTIO_MCP_REF_PYTHON` is the Python with `openagentio[mcp]==0.3.0`
//! (default `$HOME/.cache/openagentio/mcp-ref-venv/bin/python`). Results are
//! printed as Markdown tables.

use std::path::PathBuf;
use std::process::Stdio;

use openagentio_core::{Bridge, Bus};
use openagentio_mcp::{McpBridge, McpConfig, McpTransport};
use openagentio_testkit::bench::{Row, measure, secs};
use openagentio_testkit::{NatsServer, nats_bus};
use rmcp::model::{CallToolRequestParams, CallToolResponse, JsonObject};
use rmcp::service::serve_client;
use rmcp::transport::async_rw::AsyncRwTransport;
use serde_json::{Value, json};

/// Calls in flight for the latency and the throughput rows (`BENCH_LEVELS`,
/// comma-separated, picks a subset, e.g. `1` for profiling).
fn levels() -> Vec<usize> {
    std::env::var("BENCH_LEVELS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 32])
}

const REF_HINT: &str = "the reference bridge needs a python with openagentio[mcp]==0.3.0 and nats-py: \
python3 -m venv $HOME/.cache/openagentio/mcp-ref-venv && \
$HOME/.cache/openagentio/mcp-ref-venv/bin/pip install 'openagentio[mcp]==0.3.0' nats-py \
(or set OPENAGENTIO_MCP_REF_PYTHON)";

/// The echo text: about 400 bytes of arguments, as in the bus benchmark.
fn text() -> String {
    "x".repeat(360)
}

fn selected(group: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |v| v.split(',').any(|g| g == group))
}

fn demo_bin() -> &'static str {
    env!("CARGO_BIN_EXE_openagentio-mcp-demo")
}

/// 1. rmcp's client on a child demo server, connected as the bridge's upstream
///    connects (piped stdin/stdout, `AsyncRwTransport`, `serve_client`).
async fn direct(rows: &mut Vec<Row>) {
    let mut child = tokio::process::Command::new(demo_bin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the demo server");
    let stdout = child.stdout.take().unwrap();
    let stdin = child.stdin.take().unwrap();
    let service = serve_client((), AsyncRwTransport::new_client(stdout, stdin))
        .await
        .expect("MCP handshake");
    let peer = service.peer().clone();
    let mut args = JsonObject::new();
    args.insert("text".to_owned(), Value::String(text()));
    // Check the answer once before measuring.
    match peer
        .call_tool_once(CallToolRequestParams::new("echo").with_arguments(args.clone()))
        .await
        .expect("echo")
    {
        CallToolResponse::Complete(r) => {
            assert_eq!(
                r.content[0].as_text().map(|t| t.text.as_str()),
                Some(&*text())
            )
        }
        other => panic!("unexpected echo answer {other:?}"),
    }
    for n in levels() {
        let peer = peer.clone();
        let args = args.clone();
        rows.push(
            measure("direct rmcp client", n, move || {
                let peer = peer.clone();
                let params = CallToolRequestParams::new("echo").with_arguments(args.clone());
                async move {
                    peer.call_tool_once(params).await.unwrap();
                }
            })
            .await,
        );
    }
    let _ = service.cancel().await;
    let _ = child.kill().await;
}

/// 2. `bus.invoke("demo.echo", ...)` with the bridge serving on `server` and
///    the caller on `client` (the same bus for the in-memory transport).
async fn through_bus(rows: &mut Vec<Row>, name: &str, server: &Bus, client: Bus) {
    let cfg = McpConfig::new(McpTransport::stdio(demo_bin(), Vec::<String>::new()));
    let mut bridge = McpBridge::new("demo", cfg).expect("valid config");
    bridge.start(server).await.expect("bridge starts");
    let _ = server.transport().flush().await;
    let _ = client.transport().flush().await;
    let reply = client
        .invoke("demo.echo", json!({"text": text()}))
        .await
        .expect("echo through the bus");
    assert_eq!(reply.payload.unwrap()["text"], Value::String(text()));
    for n in levels() {
        let client = client.clone();
        let args = json!({"text": text()});
        rows.push(
            measure(name, n, move || {
                let client = client.clone();
                let args = args.clone();
                async move {
                    client.invoke("demo.echo", args).await.unwrap();
                }
            })
            .await,
        );
    }
    bridge.stop().await.unwrap();
}

fn ref_python() -> PathBuf {
    std::env::var_os("OPENAGENTIO_MCP_REF_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/openagentio/mcp-ref-venv/bin/python")
        })
}

/// 3. The reference Python bridge, measured inside Python (one JSON row per line).
async fn reference(rows: &mut Vec<Row>) {
    let py = ref_python();
    assert!(
        py.is_file(),
        "{} not found; {REF_HINT} (or leave `python` out of BENCH_ONLY)",
        py.display()
    );
    let script = format!(
        "{}/benches/mcp_reference.py",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
    );
    let levels = levels()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let out = tokio::process::Command::new(&py)
        .arg(script)
        .args(["--server", demo_bin()])
        .args(["--secs", &secs().as_secs_f64().to_string()])
        .args(["--levels", &levels])
        .args(["--text-len", &text().len().to_string()])
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run the reference script");
    assert!(
        out.status.success(),
        "the reference script failed ({}); {REF_HINT}",
        out.status
    );
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(row) = serde_json::from_str::<Row>(line) {
            row.show();
            rows.push(row);
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut rows = Vec::new();
        if selected("direct") {
            direct(&mut rows).await;
        }
        if selected("memory") {
            let bus = Bus::memory();
            through_bus(
                &mut rows,
                "bus invoke, McpBridge (memory)",
                &bus,
                bus.clone(),
            )
            .await;
        }
        if selected("nats") {
            let nats = NatsServer::start();
            let server = nats_bus(&nats.url(), Bus::builder().agent_id("bench-bridge")).await;
            let client = nats_bus(&nats.url(), Bus::builder().agent_id("bench-caller")).await;
            through_bus(&mut rows, "bus invoke, McpBridge (NATS)", &server, client).await;
        }
        if selected("python") {
            reference(&mut rows).await;
        }
        report(&rows);
    });
}

fn report(rows: &[Row]) {
    let direct = |n: usize| {
        rows.iter()
            .find(|r| r.name == "direct rmcp client" && r.in_flight == n)
    };
    println!(
        "\n| path | in flight | calls/s | p50 µs | p99 µs | p50 / direct | p99 / direct | calls/s / direct |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let (p50, p99, tput) = match direct(r.in_flight) {
            Some(d) => (
                format!("{:.2}x", r.p50_us / d.p50_us),
                format!("{:.2}x", r.p99_us / d.p99_us),
                format!("{:.2}x", r.per_sec / d.per_sec),
            ),
            None => ("".into(), "".into(), "".into()),
        };
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {p50} | {p99} | {tput} |",
            r.name, r.in_flight, r.per_sec, r.p50_us, r.p99_us
        );
    }
    let memory = |n: usize| {
        rows.iter()
            .find(|r| r.name == "bus invoke, McpBridge (memory)" && r.in_flight == n)
    };
    if let (Some(d1), Some(m1), Some(d32), Some(m32)) =
        (direct(1), memory(1), direct(32), memory(32))
    {
        let lat = m1.p50_us / d1.p50_us;
        let tput = m32.per_sec / d32.per_sec;
        println!("\n| target (in-memory bus vs direct) | value | target | met |");
        println!("|---|---:|---:|---|");
        println!(
            "| p50 latency, 1 in flight | {lat:.2}x | ≤ 1.15x | {} |",
            if lat <= 1.15 { "yes" } else { "no" }
        );
        println!(
            "| throughput, 32 in flight | {tput:.2}x | ≥ 0.85x | {} |",
            if tput >= 0.85 { "yes" } else { "no" }
        );
    }
}
