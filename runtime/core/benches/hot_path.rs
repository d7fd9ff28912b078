//! CPU cost and allocations of the bus's hot paths, on one thread:
//! `cargo bench -p openagentio-core --bench hot_path`.
//!
//! A single-threaded runtime takes scheduling noise out, so the figures show
//! what one call costs in CPU time and in heap allocations. They explain the
//! multi-threaded throughput figures of `benches/bus.rs`.

use std::time::Instant;

use openagentio_core::{Bus, StreamWriter, codec};
use serde_json::{Value, json};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn allocations() -> u64 {
    let s = GLOBAL.stats();
    (s.allocations + s.reallocations) as u64
}

fn payload() -> Value {
    json!({"text": "x".repeat(360), "n": 12345, "tag": "bench"})
}

fn report(name: &str, n: u64, t: Instant, allocs: u64) {
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    let a = (allocations() - allocs) as f64 / n as f64;
    println!("| {name} | {ns:.0} | {a:.1} |");
}

async fn run<F, Fut>(name: &str, n: u64, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    run_per(name, n, 1, f).await
}

/// Runs `f` `n` times; each run is `ops` operations.
async fn run_per<F, Fut>(name: &str, n: u64, ops: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    // HOT_ONLY=<part of a row's name> runs just the matching rows (for profiling).
    if std::env::var("HOT_ONLY").is_ok_and(|only| !name.contains(only.as_str())) {
        return;
    }
    for _ in 0..n / 10 {
        f().await;
    }
    let allocs = allocations();
    let t = Instant::now();
    for _ in 0..n {
        f().await;
    }
    report(name, n * ops, t, allocs);
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let bus = Bus::builder().agent_id("bench").build();
        bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
            .await
            .unwrap();
        bus.handle_stream("frames", |req, w: StreamWriter| async move {
            let n = req.payload()["frames"].as_u64().unwrap_or(0);
            for _ in 0..n {
                w.delta_text("token ").await?;
            }
            w.finish(Value::Null).await
        })
        .await
        .unwrap();
        let p = payload();
        println!("| hot path (one thread) | ns per op | allocations per op |");
        println!("|---|---:|---:|");
        run("payload clone (in every row below)", 200_000, || {
            let p = p.clone();
            async move {
                drop(p);
            }
        })
        .await;
        // The in-memory baseline of benches/bus.rs: a request on a tokio mpsc
        // channel, its reply on a oneshot, served by a task.
        let (tx, mut rx) =
            tokio::sync::mpsc::channel::<(Value, tokio::sync::oneshot::Sender<Value>)>(1024);
        tokio::spawn(async move {
            while let Some((v, reply)) = rx.recv().await {
                let _ = reply.send(v);
            }
        });
        run("bare mpsc + oneshot round trip", 200_000, || {
            let tx = tx.clone();
            let p = p.clone();
            async move {
                let (rtx, rrx) = tokio::sync::oneshot::channel();
                tx.send((p, rtx)).await.unwrap();
                rrx.await.unwrap();
            }
        })
        .await;
        run("invoke, memory bus", 200_000, || {
            let bus = bus.clone();
            let p = p.clone();
            async move {
                bus.invoke("echo", p).await.unwrap();
            }
        })
        .await;
        // 200 deltas a stream: below the reply buffer, as a real stream's consumer keeps up.
        let frames = 200u64;
        run_per(
            "stream of 200 deltas, memory bus (per delta)",
            2_000,
            frames + 1,
            || {
                let bus = bus.clone();
                async move {
                    let mut s = bus
                        .stream_invoke("frames", json!({ "frames": frames }))
                        .await
                        .unwrap();
                    while let Some(f) = s.next().await {
                        f.unwrap();
                    }
                }
            },
        )
        .await;
        let env = openagentio_core::Envelope::new("agent.message.received")
            .with_payload(p.clone())
            .with_session("s-1")
            .with_metadata("acp.stream", json!(false));
        let bytes = codec::encode(&env).unwrap();
        run("encode a request envelope", 200_000, || {
            let b = codec::encode(&env).unwrap();
            async move {
                drop(b);
            }
        })
        .await;
        run("decode a request envelope", 200_000, || {
            let e = codec::decode(&bytes).unwrap();
            async move {
                drop(e);
            }
        })
        .await;
    });
}
