//! Bus benchmarks, run on demand: `cargo bench --bench bus`.
//!
//! In one run on one machine it measures invoke round trips per second and
//! p50/p99 latency at 1 and 64 calls in flight, and stream delta frames per
//! second, for:
//! - a bare tokio `mpsc` request with a `oneshot` reply carrying the same payload
//!   (the in-memory baseline),
//! - the bus on the in-memory transport,
//! - raw `async-nats` request/reply with the same payload size on the same server
//!   (the NATS baseline),
//! - the bus over NATS (two connections, as two processes would have).
//!
//! Streams have baselines of their own: a producer task sending the same
//! delta payloads through an `mpsc` channel, and raw `async-nats` publishes of
//! those payloads to a per-stream inbox.
//!
//! The `parts` group (only when `BENCH_ONLY` names it) splits the distance
//! between raw request/reply and the bus into steps: raw request/reply with
//! the bus's envelope as its body, then replies routed as the bus routes
//! them (one wildcard inbox per connection, a reply subject per call in the
//! body's reach), then the same with the handler decoding and encoding the
//! envelope and the caller decoding the answer.
//!
//! `BENCH_SECS` sets the seconds per measurement (default 3), `BENCH_ROUNDS`
//! the alternating rounds (default 5), `BENCH_ONLY` the groups and
//! `BENCH_IN_FLIGHT` the calls in flight (default `1,64`), `BENCH_WORKERS`
//! the runtime's worker threads (default 2). Results are printed as a
//! Markdown table for BENCHMARKS.md.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use openagentio_core::{Bus, StreamWriter};
use openagentio_testkit::bench::{
    Ratio, Row, in_flight_counts, measure, payload, print_ratios, print_rows, round_count, runtime,
};
use openagentio_testkit::{NatsServer, nats_bus};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// The allocator the `openagentio` binary uses, so the figures are the service's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const STREAM_FRAMES: usize = 1000;

async fn bare_channel(in_flight: usize) -> Row {
    let (tx, mut rx) = mpsc::channel::<(Value, oneshot::Sender<Value>)>(1024);
    tokio::spawn(async move {
        while let Some((v, reply)) = rx.recv().await {
            let _ = reply.send(v);
        }
    });
    let p = payload();
    measure("bare mpsc + oneshot", in_flight, move || {
        let tx = tx.clone();
        let p = p.clone();
        async move {
            let (rtx, rrx) = oneshot::channel();
            tx.send((p, rtx)).await.unwrap();
            rrx.await.unwrap();
        }
    })
    .await
}

/// A request envelope as the bus sends it: the payload with ids, trace
/// context, reply subject and `acp.*` metadata.
fn wire_sized_request() -> openagentio_core::Envelope {
    let mut env = openagentio_core::Envelope::new("agent.message.received").with_payload(payload());
    let trace = openagentio_core::TraceContext::new_root();
    env.traceparent = trace.traceparent();
    env.trace_id = trace.trace_id;
    env.span_id = trace.span_id;
    env.from = "bench-client".into();
    env.to = "bench.echo".into();
    env.reply_to = "_INBOX.f0252b1e2e0f44c0a18469c1ccad2d56.1".into();
    env.metadata.insert("acp.stream".into(), Value::Bool(false));
    env.metadata
        .insert("acp.timeout_ms".into(), Value::from(29_999));
    env
}

async fn echo_handlers(bus: &Bus) {
    bus.handle_invoke("bench.echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    bus.handle_stream("bench.stream", |req, w: StreamWriter| async move {
        let n = req.payload()["frames"].as_u64().unwrap_or(0);
        for _ in 0..n {
            w.delta_text("token ").await?;
        }
        w.finish(Value::Null).await
    })
    .await
    .unwrap();
}

async fn bus_invoke(name: &str, client: Bus, in_flight: usize) -> Row {
    let p = payload();
    measure(name, in_flight, move || {
        let client = client.clone();
        let p = p.clone();
        async move {
            client.invoke("bench.echo", p).await.unwrap();
        }
    })
    .await
}

/// Stream delta frames per second: `in_flight` streams of STREAM_FRAMES deltas at once.
async fn bus_stream(name: &str, client: Bus, in_flight: usize) -> Row {
    let frames_per_call = STREAM_FRAMES as f64 + 1.0;
    let mut row = measure(name, in_flight, move || {
        let client = client.clone();
        async move {
            let mut s = client
                .stream_invoke("bench.stream", json!({"frames": STREAM_FRAMES}))
                .await
                .unwrap();
            let mut n = 0;
            while let Some(f) = s.next().await {
                f.unwrap();
                n += 1;
            }
            assert_eq!(n, STREAM_FRAMES + 1);
        }
    })
    .await;
    row.per_sec *= frames_per_call;
    row
}

/// The delta and terminal payloads of the raw stream baselines: what the
/// bus's stream handler puts in its frames' `payload`.
const DELTA_BODY: &[u8] = br#"{"delta":"token "}"#;
const FINAL_BODY: &[u8] = br#"{"result":null}"#;

/// Baseline for in-memory streams: per stream, a producer task sends
/// STREAM_FRAMES delta values and a final one through a bounded `mpsc`
/// channel of the bus's default frame buffer size (4,096), counted as
/// frames per second.
async fn bare_stream(in_flight: usize) -> Row {
    let (open, mut opened) = mpsc::channel::<mpsc::Sender<Value>>(1024);
    tokio::spawn(async move {
        while let Some(frames) = opened.recv().await {
            tokio::spawn(async move {
                for _ in 0..STREAM_FRAMES {
                    frames.send(json!({"delta": "token "})).await.unwrap();
                }
                frames.send(json!({"result": null})).await.unwrap();
            });
        }
    });
    let mut row = measure("bare mpsc stream", in_flight, move || {
        let open = open.clone();
        async move {
            let (tx, mut rx) = mpsc::channel(4096);
            open.send(tx).await.unwrap();
            let mut n = 0;
            while rx.recv().await.is_some() {
                n += 1;
            }
            assert_eq!(n, STREAM_FRAMES + 1);
        }
    })
    .await;
    row.per_sec *= STREAM_FRAMES as f64 + 1.0;
    row
}

/// Two connections to `url`, as two processes would have: a handler's,
/// subscribed to `subject` in a queue group of that name, and a caller's.
async fn raw_pair(
    url: &str,
    subject: &str,
) -> (
    async_nats::Client,
    async_nats::Subscriber,
    async_nats::Client,
) {
    let server = async_nats::connect(url).await.unwrap();
    let client = async_nats::connect(url).await.unwrap();
    let requests = server
        .queue_subscribe(subject.to_owned(), subject.to_owned())
        .await
        .unwrap();
    (server, requests, client)
}

/// Baseline for streams over NATS: per stream, the caller subscribes to a
/// fresh inbox and publishes a request with it as the reply subject; the
/// handler publishes STREAM_FRAMES deltas and a final message there (the
/// bus's frame payloads as bare bodies, no envelope).
async fn raw_stream(url: &str, in_flight: usize) -> Row {
    let (server, mut requests, client) = raw_pair(url, "raw.stream").await;
    let responder = server.clone();
    let handler = tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let Some(reply) = m.reply else { continue };
            let responder = responder.clone();
            tokio::spawn(async move {
                for _ in 0..STREAM_FRAMES {
                    let delta = bytes::Bytes::from_static(DELTA_BODY);
                    responder.publish(reply.clone(), delta).await.unwrap();
                }
                let last = bytes::Bytes::from_static(FINAL_BODY);
                responder.publish(reply, last).await.unwrap();
            });
        }
    });
    server.flush().await.unwrap();
    // Ready once a request gets an answer (its other frames go nowhere).
    for _ in 0..200 {
        let answer = client.request("raw.stream", bytes::Bytes::new());
        if tokio::time::timeout(Duration::from_secs(1), answer)
            .await
            .is_ok_and(|r| r.is_ok())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut row = measure("raw async-nats stream", in_flight, move || {
        let client = client.clone();
        async move {
            let inbox = client.new_inbox();
            let mut frames = client.subscribe(inbox.clone()).await.unwrap();
            client
                .publish_with_reply("raw.stream", inbox, bytes::Bytes::new())
                .await
                .unwrap();
            for _ in 0..=STREAM_FRAMES {
                frames.next().await.unwrap();
            }
        }
    })
    .await;
    handler.abort();
    row.per_sec *= STREAM_FRAMES as f64 + 1.0;
    row
}

/// Raw request/reply; `body` is the request (echoed back as the reply).
async fn raw_nats(name: &str, url: &str, body: bytes::Bytes, in_flight: usize) -> Row {
    let (server, mut sub, client) = raw_pair(url, "raw.echo").await;
    let responder = server.clone();
    let task = tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    server.flush().await.unwrap();
    // `flush` does not wait for the server to take the subscription: wait
    // until a request gets through.
    for _ in 0..200 {
        if client.request("raw.echo", body.clone()).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let row = measure(name, in_flight, move || {
        let client = client.clone();
        let body = body.clone();
        async move {
            client.request("raw.echo", body).await.unwrap();
        }
    })
    .await;
    task.abort();
    row
}

/// Raw NATS with the bus's reply routing: the caller subscribes once to
/// `{inbox}.*`, a task hands each reply to its call's `oneshot`, and each call
/// publishes with its own reply subject `{inbox}.{n}`. With `codec`, the
/// caller encodes `request` on every call, the handler decodes it and encodes
/// its answer, and the caller decodes the answer, as the bus does.
async fn raw_routed(
    name: &str,
    url: &str,
    request: openagentio_core::Envelope,
    in_flight: usize,
    codec: bool,
) -> Row {
    use openagentio_core::codec::{decode, encode};
    let body = encode(&request).unwrap();
    let request = Arc::new(request);
    use std::sync::atomic::{AtomicU64, Ordering};
    type Slots = std::sync::Mutex<std::collections::HashMap<u64, oneshot::Sender<bytes::Bytes>>>;

    let (server, mut requests, client) = raw_pair(url, "routed.echo").await;
    let responder = server.clone();
    let handler = tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let Some(reply) = m.reply else { continue };
            let answer = if codec {
                encode(&decode(&m.payload).unwrap()).unwrap()
            } else {
                m.payload
            };
            let _ = responder.publish(reply, answer).await;
        }
    });
    let prefix: Arc<str> = client.new_inbox().into();
    let slots: Arc<Slots> = Arc::default();
    let mut replies = client.subscribe(format!("{prefix}.*")).await.unwrap();
    let router = {
        let (slots, skip) = (slots.clone(), prefix.len() + 1);
        tokio::spawn(async move {
            while let Some(m) = replies.next().await {
                let id: u64 = m.subject.as_str()[skip..].parse().unwrap();
                if let Some(tx) = slots.lock().unwrap().remove(&id) {
                    let _ = tx.send(m.payload);
                }
            }
        })
    };
    // Both subscriptions are in place once a round trip through the server is.
    server.flush().await.unwrap();
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next_id = Arc::new(AtomicU64::new(1));
    let row = measure(name, in_flight, move || {
        let (client, body, slots, prefix) =
            (client.clone(), body.clone(), slots.clone(), prefix.clone());
        let request = request.clone();
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        async move {
            let (tx, rx) = oneshot::channel::<bytes::Bytes>();
            slots.lock().unwrap().insert(id, tx);
            let body = if codec {
                encode(&request).unwrap()
            } else {
                body
            };
            client
                .publish_with_reply("routed.echo", format!("{prefix}.{id}"), body)
                .await
                .unwrap();
            let answer = rx.await.unwrap();
            if codec {
                decode(&answer).unwrap();
            }
        }
    })
    .await;
    handler.abort();
    router.abort();
    row
}

/// Whether `BENCH_ONLY` (a comma-separated list of `channel`, `memory`, `raw`,
/// `nats`, `stream`; `parts` runs only when named) selects this group; unset
/// selects all.
fn selected(group: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |v| v.split(',').any(|g| g == group))
}

/// Whether `BENCH_ONLY` names `group` (groups that run only when asked for).
fn only(group: &str) -> bool {
    std::env::var("BENCH_ONLY").is_ok_and(|v| v.split(',').any(|g| g == group))
}

fn main() {
    runtime().block_on(async {
        let nats = NatsServer::start();

        let memory = Bus::builder().agent_id("bench").build();
        echo_handlers(&memory).await;
        let server = nats_bus(&nats.url(), Bus::builder().agent_id("bench-server")).await;
        echo_handlers(&server).await;
        let client = nats_bus(&nats.url(), Bus::builder().agent_id("bench-client")).await;
        let mut rounds: Vec<Vec<Row>> = Vec::new();
        for round in 1..=round_count(5) {
            eprintln!("-- round {round}");
            let mut rows = Vec::new();
            for n in in_flight_counts() {
                if selected("channel") {
                    rows.push(bare_channel(n).await);
                }
                if selected("memory") {
                    rows.push(bus_invoke("bus invoke (memory)", memory.clone(), n).await);
                }
                if selected("raw") {
                    let body = bytes::Bytes::from(serde_json::to_vec(&payload()).unwrap());
                    rows.push(raw_nats("raw async-nats request/reply", &nats.url(), body, n).await);
                    // The bus's request envelope around the same payload, for a
                    // comparison at equal bytes on the wire.
                    let env = openagentio_core::codec::encode(&wire_sized_request()).unwrap();
                    rows.push(
                        raw_nats(
                            &format!("raw async-nats, {}-byte body", env.len()),
                            &nats.url(),
                            env,
                            n,
                        )
                        .await,
                    );
                }
                if only("parts") {
                    let url = nats.url();
                    let (request, name) = (wire_sized_request(), "raw, envelope body, bus routing");
                    rows.push(raw_routed(name, &url, request, n, false).await);
                    let (request, name) = (wire_sized_request(), "raw, bus routing and codec");
                    rows.push(raw_routed(name, &url, request, n, true).await);
                }
                if selected("nats") {
                    rows.push(bus_invoke("bus invoke (NATS)", client.clone(), n).await);
                }
            }
            if round == 1 && selected("stream") {
                for n in [1, 16] {
                    rows.push(bare_stream(n).await);
                    rows.push(bus_stream("bus stream deltas (memory)", memory.clone(), n).await);
                    rows.push(raw_stream(&nats.url(), n).await);
                    rows.push(bus_stream("bus stream deltas (NATS)", client.clone(), n).await);
                }
            }
            rounds.push(rows);
        }

        print_rows(&rounds);
        print_ratios(&rounds, RATIOS);
    });
}

/// The ratios the bench prints: the issue's two targets first.
const RATIOS: &[Ratio] = &[
    Ratio {
        label: "bus (memory) / bare channel",
        ours: "bus invoke (memory)",
        base: "bare mpsc + oneshot",
        in_flight: 64,
        target: "≥ 0.5x",
    },
    Ratio {
        label: "bus (memory) / bare channel",
        ours: "bus invoke (memory)",
        base: "bare mpsc + oneshot",
        in_flight: 1,
        target: "",
    },
    Ratio {
        label: "bus (NATS) / raw async-nats",
        ours: "bus invoke (NATS)",
        base: "raw async-nats request/reply",
        in_flight: 64,
        target: "≥ 0.8x",
    },
    Ratio {
        label: "bus (NATS) / raw async-nats",
        ours: "bus invoke (NATS)",
        base: "raw async-nats request/reply",
        in_flight: 1,
        target: "",
    },
    Ratio {
        label: "bus (NATS) / raw async-nats with an envelope-sized body",
        ours: "bus invoke (NATS)",
        base: "raw async-nats, ",
        in_flight: 64,
        target: "",
    },
    Ratio {
        label: "bus stream (memory) / bare channel stream",
        ours: "bus stream deltas (memory)",
        base: "bare mpsc stream",
        in_flight: 1,
        target: "",
    },
    Ratio {
        label: "bus stream (memory) / bare channel stream",
        ours: "bus stream deltas (memory)",
        base: "bare mpsc stream",
        in_flight: 16,
        target: "",
    },
    Ratio {
        label: "bus stream (NATS) / raw async-nats stream",
        ours: "bus stream deltas (NATS)",
        base: "raw async-nats stream",
        in_flight: 1,
        target: "",
    },
    Ratio {
        label: "bus stream (NATS) / raw async-nats stream",
        ours: "bus stream deltas (NATS)",
        base: "raw async-nats stream",
        in_flight: 16,
        target: "",
    },
    // The `parts` steps, each against raw request/reply.
    Ratio {
        label: "raw, envelope body, bus routing / raw async-nats",
        ours: "raw, envelope body",
        base: "raw async-nats request/reply",
        in_flight: 64,
        target: "",
    },
    Ratio {
        label: "raw, bus routing and codec / raw async-nats",
        ours: "raw, bus routing and codec",
        base: "raw async-nats request/reply",
        in_flight: 64,
        target: "",
    },
];
