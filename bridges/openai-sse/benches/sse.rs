//! SSE bridge benchmark, run on demand:
//! `cargo bench -p openagentio-openai-sse --bench sse` (needs `nats-server`).
//!
//! An upstream of our own (a keep-alive HTTP/1.1 server on its own thread)
//! answers every `POST /v1/chat/completions` with 200 content chunks, each
//! written as soon as the previous one is, then a `finish_reason` chunk and
//! `[DONE]`. Measured, in the same run:
//!
//! - time to first token (request → first content delta), p50/p99, through
//!   the bridge on the in-memory bus and over NATS (a real nats-server, the
//!   caller and the bridge on separate connections), against consuming the
//!   same upstream directly with `reqwest` + `eventsource-stream` (and
//!   `serde_json` to read each chunk, as any consumer must);
//! - chunk throughput (content chunks per second of wall time), one stream at
//!   a time and 16 at a time, the same three ways, in 11 alternating rounds
//!   (the median round is reported);
//! - 1,000 concurrent streams through the bridge over NATS: every stream must
//!   end with `final`, with `seq` 0, 1, 2, … and the 200 chunks in order.
//!
//! Callers run in tasks on the runtime's 2 workers, as a service's do; the
//! upstream and nats-server share the same machine.
//!
//! Prints Markdown tables. `BENCH_ITERS` (default 1000) sets the number of
//! sequential streams per path for the latency figures.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use openagentio_core::{Bridge, Bus, CallOptions};
use openagentio_openai_sse::{SseBridge, SseConfig};
use openagentio_testkit::{NatsServer, nats_bus};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The allocator the `openagentio` binary uses, so the figures are the service's
/// (the direct path runs with it too).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tokio::net::{TcpListener, TcpStream};

/// Content chunks per answer.
const CHUNKS: usize = 200;
/// Concurrent streams of the load check.
const LOAD_STREAMS: usize = 1000;
/// Alternating rounds of the throughput measurement (`BENCH_ROUNDS`, default 11).
fn round_count() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(11)
}

/// The whole answer.
static WHOLE_TEXT: LazyLock<String> = LazyLock::new(|| (0..CHUNKS).map(piece).collect());

/// The text of content chunk `i`.
fn piece(i: usize) -> String {
    format!("t{i} ")
}

/// The answer, framed as HTTP chunks, one per SSE event.
fn answer() -> Vec<Vec<u8>> {
    let event = |data: String| {
        let sse = format!("data: {data}\n\n");
        format!("{:x}\r\n{sse}\r\n", sse.len()).into_bytes()
    };
    let mut out: Vec<Vec<u8>> = (0..CHUNKS)
        .map(|i| {
            let role = if i == 0 { r#""role":"assistant","# } else { "" };
            event(format!(
                r#"{{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench","choices":[{{"index":0,"delta":{{{role}"content":"{}"}},"finish_reason":null}}]}}"#,
                piece(i)
            ))
        })
        .collect();
    out.push(event(
        r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#.into(),
    ));
    out.push(event("[DONE]".into()));
    out.push(b"0\r\n\r\n".to_vec());
    out
}

/// Starts the upstream on its own thread and runtime; returns its address.
fn start_upstream() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            let answer = Arc::new(answer());
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                tokio::spawn(serve_connection(sock, answer.clone()));
            }
        });
    });
    rx.recv().unwrap()
}

/// Serves requests on one keep-alive connection until the client closes it.
async fn serve_connection(mut sock: TcpStream, answer: Arc<Vec<Vec<u8>>>) {
    let _ = sock.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut tmp = [0u8; 4096];
    loop {
        // One request: head, then Content-Length bytes of body.
        let (head_end, body_len) = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (i + 4, len);
            }
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        while buf.len() < head_end + body_len {
            match sock.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        buf.drain(..head_end + body_len);
        let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
        if sock.write_all(head).await.is_err() {
            return;
        }
        for chunk in answer.iter() {
            if sock.write_all(chunk).await.is_err() {
                return;
            }
        }
    }
}

/// One stream, as the caller saw it.
struct Sample {
    ttft: Duration,
    total: Duration,
}

/// The upstream consumed directly: reqwest + eventsource-stream + serde_json.
struct Direct {
    client: reqwest::Client,
    url: String,
    body: String,
}

impl Direct {
    fn new(upstream: SocketAddr) -> Direct {
        Direct {
            client: reqwest::Client::builder()
                .tcp_nodelay(true)
                .build()
                .unwrap(),
            url: format!("http://{upstream}/v1/chat/completions"),
            body: json!({"model": "bench", "messages": [{"role": "user", "content": "hi"}],
                         "stream": true, "stream_options": {"include_usage": true}})
            .to_string(),
        }
    }

    async fn run(&self) -> Result<Sample, String> {
        let t0 = Instant::now();
        let resp = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(self.body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let mut events = resp.bytes_stream().eventsource();
        let mut ttft = None;
        let mut n = 0;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| e.to_string())?;
            if event.data == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
            if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str() {
                if text != piece(n) {
                    return Err(format!("chunk {n} is {text:?}"));
                }
                ttft.get_or_insert_with(|| t0.elapsed());
                n += 1;
            }
        }
        if n != CHUNKS {
            return Err(format!("{n} chunks"));
        }
        Ok(Sample {
            ttft: ttft.unwrap(),
            total: t0.elapsed(),
        })
    }
}

/// One stream through the bridge: checks `started`, the 200 deltas in
/// order, `final` with the whole text, and `seq` 0, 1, 2, … without gaps.
async fn through_bridge(bus: &Bus, opts: CallOptions) -> Result<Sample, String> {
    let t0 = Instant::now();
    let mut stream = bus
        .stream_invoke_with("chat", json!({"text": "hi"}), opts)
        .await
        .map_err(|e| e.to_string())?;
    let mut ttft = None;
    let mut seq = 0;
    let mut n = 0;
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| format!("{}: {}", e.code().as_str(), e.message()))?;
        if frame.seq != seq {
            return Err(format!("seq {} where {seq} was due", frame.seq));
        }
        seq += 1;
        match frame.effective_frame_type() {
            "response.started" if frame.seq == 0 => {}
            "response.delta" => {
                let text = frame.payload_or_null()["delta"].as_str().unwrap_or("");
                if text != piece(n) {
                    return Err(format!("delta {n} is {text:?}"));
                }
                ttft.get_or_insert_with(|| t0.elapsed());
                n += 1;
            }
            "response.final" => {
                let text = &frame.payload_or_null()["result"]["text"];
                if n != CHUNKS || text.as_str() != Some(WHOLE_TEXT.as_str()) {
                    return Err(format!("final after {n} deltas with text {text}"));
                }
                return Ok(Sample {
                    ttft: ttft.unwrap(),
                    total: t0.elapsed(),
                });
            }
            other => return Err(format!("unexpected frame {other}: {frame:?}")),
        }
    }
    Err(format!("the stream ended after {n} deltas without final"))
}

#[derive(Clone, Copy)]
enum Path {
    Direct,
    Memory,
    Nats,
}

const PATHS: [Path; 3] = [Path::Direct, Path::Memory, Path::Nats];

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "direct (reqwest + eventsource-stream)",
            Path::Memory => "bridge, in-memory bus",
            Path::Nats => "bridge, NATS",
        }
    }
}

struct Setup {
    direct: Direct,
    memory: Bus,
    nats_client: Bus,
    _bridges: Vec<SseBridge>,
    _nats: NatsServer,
}

impl Setup {
    async fn run(&self, path: Path) -> Result<Sample, String> {
        match path {
            Path::Direct => self.direct.run().await,
            Path::Memory => through_bridge(&self.memory, CallOptions::new()).await,
            Path::Nats => through_bridge(&self.nats_client, CallOptions::new()).await,
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// Streams `total` answers with `in_flight` at a time; content chunks per second.
async fn throughput(setup: &Arc<Setup>, path: Path, in_flight: usize, total: usize) -> f64 {
    let t0 = Instant::now();
    let workers: Vec<_> = (0..in_flight)
        .map(|w| {
            let setup = setup.clone();
            tokio::spawn(async move {
                for _ in (w..total).step_by(in_flight) {
                    setup.run(path).await.expect("stream");
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    (total * CHUNKS) as f64 / t0.elapsed().as_secs_f64()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let load_before = loadavg();
    let upstream = start_upstream();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Everything runs in a spawned task: on the runtime's workers, as the
    // callers of a service do (a `block_on` future runs on the main thread, and
    // every wake-up between it and the workers would cross threads).
    rt.block_on(async move {
        tokio::spawn(measure(upstream, iters, load_before))
            .await
            .unwrap()
    });
}

async fn measure(upstream: SocketAddr, iters: usize, load_before: String) {
    let nats = NatsServer::start();
    let cfg = SseConfig::new(format!("http://{upstream}/v1").parse().unwrap(), "bench");
    let memory = Bus::memory();
    let mut on_memory = SseBridge::new("chat", cfg.clone());
    on_memory.start(&memory).await.unwrap();
    let nats_server = nats_bus(&nats.url(), Bus::builder().agent_id("bridge")).await;
    let mut on_nats = SseBridge::new("chat", cfg);
    on_nats.start(&nats_server).await.unwrap();
    let _ = nats_server.transport().flush().await;
    let nats_client = nats_bus(&nats.url(), Bus::builder().agent_id("caller")).await;
    let setup = Arc::new(Setup {
        direct: Direct::new(upstream),
        memory,
        nats_client,
        _bridges: vec![on_memory, on_nats],
        _nats: nats,
    });

    // Warm up every path (connections, pools, allocator).
    for _ in 0..50 {
        for p in PATHS {
            setup.run(p).await.expect("warm-up stream");
        }
    }

    // (a) TTFT, one stream at a time, the paths interleaved.
    let mut ttft: [Vec<Duration>; 3] = Default::default();
    let mut total: [Vec<Duration>; 3] = Default::default();
    for k in 0..iters {
        for j in 0..PATHS.len() {
            // Rotate the order, so no path always follows the same one.
            let i = (j + k) % PATHS.len();
            let s = setup.run(PATHS[i]).await.expect("stream");
            ttft[i].push(s.ttft);
            total[i].push(s.total);
        }
    }
    for v in ttft.iter_mut().chain(total.iter_mut()) {
        v.sort();
    }

    // (b) chunk throughput, 1 and 16 streams in flight, in alternating
    // rounds (each path once per round, the order rotated); the median round
    // is reported, so a burst of background load does not pick a winner.
    let mut rounds: [[Vec<f64>; 2]; 3] = Default::default();
    let mut ratios: [[Vec<f64>; 2]; 3] = Default::default();
    for r in 0..round_count() {
        for (c, (in_flight, streams)) in [(1, 100), (16, 320)].into_iter().enumerate() {
            let mut got = [0.0f64; 3];
            for j in 0..PATHS.len() {
                let i = (j + r) % PATHS.len();
                got[i] = throughput(&setup, PATHS[i], in_flight, streams).await;
                rounds[i][c].push(got[i]);
            }
            for i in 0..PATHS.len() {
                ratios[i][c].push(got[i] / got[0]);
            }
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let tput: Vec<[(f64, f64); 2]> = (0..PATHS.len())
        .map(|i| [0, 1].map(|c| (median(&rounds[i][c]), median(&ratios[i][c]))))
        .collect();

    // (c) 1,000 concurrent streams over NATS.
    let t0 = Instant::now();
    let calls: Vec<_> = (0..LOAD_STREAMS)
        .map(|_| {
            let bus = setup.nats_client.clone();
            tokio::spawn(async move {
                through_bridge(&bus, CallOptions::new().timeout(Duration::from_secs(120))).await
            })
        })
        .collect();
    let mut errors = Vec::new();
    let mut load_ttft = Vec::new();
    for c in calls {
        match c.await.unwrap() {
            Ok(s) => load_ttft.push(s.ttft),
            Err(e) => errors.push(e),
        }
    }
    let load_wall = t0.elapsed();
    load_ttft.sort();
    let load_before_after = (load_before, loadavg());

    // Report.
    println!(
        "\nCommand: `cargo bench -p openagentio-openai-sse --bench sse` (BENCH_ITERS={iters})"
    );
    println!(
        "Machine: {} CPUs; load average before {}, after {}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before_after.0,
        load_before_after.1
    );
    println!(
        "Time to first token, {CHUNKS}-chunk answers, one stream at a time ({iters} streams per path):\n"
    );
    println!("| path | TTFT p50 | TTFT p99 | added p50 | added p99 | whole stream p50 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, p) in PATHS.into_iter().enumerate() {
        let added = |q: f64| {
            let (a, b) = (pct(&ttft[i], q), pct(&ttft[0], q));
            if i == 0 {
                "—".to_owned()
            } else if a >= b {
                format!("+{}", us(a - b))
            } else {
                format!("−{}", us(b - a))
            }
        };
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            p.name(),
            us(pct(&ttft[i], 0.5)),
            us(pct(&ttft[i], 0.99)),
            added(0.5),
            added(0.99),
            us(pct(&total[i], 0.5)),
        );
    }
    println!(
        "\nChunk throughput (content chunks/s of wall time, median of {} alternating rounds of 100 streams one at a time and 320 streams 16 at a time; the ratio is the median of the rounds' ratios, their lowest and highest in brackets):\n",
        round_count()
    );
    println!("| path | 1 stream in flight | vs direct | 16 in flight | vs direct |");
    println!("|---|---:|---:|---:|---:|");
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        format!("({lo:.2}–{hi:.2})")
    };
    for (i, p) in PATHS.into_iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.2}x {} | {:.0} | {:.2}x {} |",
            p.name(),
            tput[i][0].0,
            tput[i][0].1,
            spread(&ratios[i][0]),
            tput[i][1].0,
            tput[i][1].1,
            spread(&ratios[i][1]),
        );
    }
    let frames = load_ttft.len() * (CHUNKS + 2);
    println!("\n{LOAD_STREAMS} concurrent streams through the bridge over NATS:\n");
    println!(
        "| streams | ok | errors | frames received | lost or reordered | wall time | frames/s | TTFT p50 | TTFT p99 |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {LOAD_STREAMS} | {} | {} | {frames} | {} | {:.2} s | {:.0} | {} | {} |",
        load_ttft.len(),
        errors.len(),
        errors
            .iter()
            .filter(|e| e.contains("seq") || e.contains("delta"))
            .count(),
        load_wall.as_secs_f64(),
        frames as f64 / load_wall.as_secs_f64(),
        load_ttft
            .first()
            .map_or("-".into(), |_| us(pct(&load_ttft, 0.5))),
        load_ttft
            .first()
            .map_or("-".into(), |_| us(pct(&load_ttft, 0.99))),
    );
    if !errors.is_empty() {
        eprintln!("first errors: {:?}", &errors[..errors.len().min(5)]);
    }
    let p50_added = pct(&ttft[1], 0.5).saturating_sub(pct(&ttft[0], 0.5));
    println!(
        "\nTargets: added TTFT p50 in memory {} (≤ 1 ms: {}); throughput in memory {:.2}x direct (≥ 0.8x: {}); \
         1,000 streams over NATS without error or lost/reordered frame: {}",
        us(p50_added),
        if p50_added <= Duration::from_millis(1) {
            "met"
        } else {
            "MISSED"
        },
        tput[1][0].1,
        if tput[1][0].1 >= 0.8 { "met" } else { "MISSED" },
        if errors.is_empty() { "met" } else { "MISSED" },
    );
}
