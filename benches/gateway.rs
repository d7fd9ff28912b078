//! HTTP gateway benchmark, run on demand: `cargo bench --bench gateway`
//! (needs `wrk`: `apt-get install wrk`).
//!
//! Drives `POST /v1/agents/echo/invoke` through the gateway over the in-memory
//! bus, and a bare axum handler that parses and returns the same JSON, each with
//! `wrk` at 64 keep-alive connections, in the same run; prints throughput,
//! p50/p99 latency and the ratio as Markdown.

use std::process::Command;
use std::sync::Arc;

use axum::Json;
use axum::routing::post;
use openagentio_core::{BridgeHealth, Bus, ServiceStatus, TargetInfo};
use openagentio_http_gateway::{GatewayConfig, router, serve};
use serde_json::Value;

struct NoBridges;
impl ServiceStatus for NoBridges {
    fn bridges(&self) -> Vec<(String, BridgeHealth)> {
        Vec::new()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        Vec::new()
    }
}

struct Result {
    name: &'static str,
    rps: f64,
    p50: String,
    p99: String,
}

/// Both servers get the gateway's default.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

fn wrk(name: &'static str, url: &str, script: &str, secs: u64) -> Result {
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            &format!("-d{secs}s"),
            "--latency",
            "-s",
            script,
            url,
        ])
        .output()
        .expect("wrk is not installed: apt-get install wrk");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |prefix: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_owned()
    };
    let rps = field("Requests/sec:").parse().unwrap_or(0.0);
    let non2xx = text
        .lines()
        .find(|l| l.contains("Non-2xx"))
        .map(str::to_owned);
    assert!(non2xx.is_none(), "{name}: {non2xx:?}\n{text}");
    let r = Result {
        name,
        rps,
        p50: field("50%"),
        p99: field("99%"),
    };
    eprintln!("{name}: {:.0} req/s, p50 {}, p99 {}", r.rps, r.p50, r.p99);
    r
}

/// The allocator the `openagentio` binary uses, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (bare, gateway) = rt.block_on(async {
        let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bare_addr = bare.local_addr().unwrap();
        let app =
            axum::Router::new().route("/echo", post(|Json(v): Json<Value>| async move { Json(v) }));
        tokio::spawn(serve(bare, app, READ_TIMEOUT, std::future::pending()));

        let bus = Bus::memory();
        bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
            .await
            .unwrap();
        let gw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gw_addr = gw.local_addr().unwrap();
        let app = router(bus, GatewayConfig::default(), Arc::new(NoBridges));
        tokio::spawn(serve(gw, app, READ_TIMEOUT, std::future::pending()));
        (bare_addr, gw_addr)
    });
    let script = std::env::temp_dir().join("openagentio-wrk-post.lua");
    let body = serde_json::json!({"text": "x".repeat(360), "n": 12345, "tag": "bench"}).to_string();
    std::fs::write(
        &script,
        format!("wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"),
    )
    .unwrap();
    let script = script.to_str().unwrap();
    let results = [
        wrk(
            "bare axum handler (same JSON)",
            &format!("http://{bare}/echo"),
            script,
            secs,
        ),
        wrk(
            "gateway invoke (memory bus)",
            &format!("http://{gateway}/v1/agents/echo/invoke"),
            script,
            secs,
        ),
    ];
    println!("\n| measurement | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for r in &results {
        println!("| {} | {:.0} | {} | {} |", r.name, r.rps, r.p50, r.p99);
    }
    println!("\n| ratio | value |");
    println!("|---|---:|");
    println!(
        "| gateway / bare axum, 64 connections | {:.2}x |",
        results[1].rps / results[0].rps
    );
    drop(rt);
}
