//! A streaming agent: two stream targets that show what a stream handler does
//! beyond echoing.
//!
//! - `countdown` streams one frame per tick (`{"from": 5, "interval_ms": 500}`):
//!   each delta carries text and structured `data`; when the caller goes away
//!   (Ctrl-C on `curl -N`, a dropped stream, a deadline) the handler sees the
//!   cancellation at once and stops.
//! - `shout` is a stream target built on another one: it streams `{"text": ...}`
//!   from an upstream target (`llm.chat` of the demo stack by default) and
//!   passes each delta on in capitals. The nested call inherits the caller's
//!   session, trace and deadline without any code here.
//!
//! ```text
//! cargo run --example streaming_agent -- --bus memory                  # serves and calls itself once
//! cargo run --example streaming_agent -- --bus nats://127.0.0.1:4222   # next to scripts/demo or docker compose
//! ```

use std::time::Duration;

use clap::Parser;
use openagentio_core::{Bus, BusError, DeltaPayload, StreamWriter, middleware};
use openagentio_host::signals::ShutdownSignal;
use openagentio_nats::{NatsOptions, NatsTransport};
use serde_json::{Map, Value, json};

#[derive(Parser)]
#[command(about = "A streaming agent on the OpenAgentIO bus")]
struct Args {
    /// `memory`, or a NATS URL such as nats://127.0.0.1:4222.
    #[arg(long, default_value = "memory")]
    bus: String,
    /// The stream target that `shout` relays.
    #[arg(long, default_value = "llm.chat")]
    upstream: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    // Ctrl-C, or SIGTERM as `docker stop` and systemd send it, from now on.
    let mut stop = ShutdownSignal::listen();
    let builder = Bus::builder()
        .agent_id("streaming-agent")
        .middleware(middleware::Recover)
        .middleware(middleware::Logging);
    let memory = args.bus == "memory";
    let bus = if memory {
        builder.build()
    } else {
        let nats =
            NatsTransport::connect(NatsOptions::new(&args.bus).name("streaming-agent")).await?;
        builder.transport(nats).build()
    };

    bus.handle_stream("countdown", |req, w: StreamWriter| async move {
        let from = req
            .payload()
            .get("from")
            .and_then(Value::as_u64)
            .unwrap_or(5);
        let interval = req
            .payload()
            .get("interval_ms")
            .and_then(Value::as_u64)
            .unwrap_or(500);
        w.started(json!({"agent": "streaming-agent", "ticks": from}))
            .await?;
        for remaining in (1..=from).rev() {
            let mut data = Map::new();
            data.insert("remaining".into(), json!(remaining));
            w.delta(DeltaPayload {
                delta: format!("{remaining}… "),
                data,
            })
            .await?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(interval)) => {}
                _ = req.cancelled() => {
                    tracing::info!(remaining, "countdown: the caller went away; stopping");
                    return Err(BusError::unavailable("cancelled by the caller"));
                }
            }
        }
        w.finish(json!({"text": "liftoff", "ticks": from})).await
    })
    .await?;

    let upstream = args.upstream.clone();
    bus.handle_stream("shout", move |req, w: StreamWriter| {
        let upstream = upstream.clone();
        async move {
            let text = req.payload().get("text").cloned().unwrap_or(json!(""));
            // A call made while serving: it carries this request's session,
            // trace and remaining deadline, and is cancelled with it.
            let mut frames = req
                .bus()
                .stream_invoke(&upstream, json!({"text": text}))
                .await?;
            w.started(json!({"agent": "streaming-agent", "upstream": upstream}))
                .await?;
            let mut shouted = String::new();
            while let Some(frame) = frames.next().await {
                let frame = frame?;
                if frame.is_terminal() {
                    break;
                }
                if let Some(d) = frame.payload_or_null().get("delta").and_then(Value::as_str) {
                    let loud = d.to_uppercase();
                    shouted.push_str(&loud);
                    w.delta_text(loud).await?;
                }
            }
            w.finish(json!({"text": shouted})).await
        }
    })
    .await?;
    println!(
        "streaming-agent serving `countdown` and `shout` (relaying `{}`) on the {} bus",
        args.upstream,
        bus.transport().kind()
    );

    if memory {
        // `shout` needs its upstream, which this in-memory bus does not have.
        let mut stream = bus
            .stream_invoke("countdown", json!({"from": 3, "interval_ms": 100}))
            .await?;
        while let Some(frame) = stream.next().await {
            let frame = frame?;
            println!(
                "countdown seq={} {} {}",
                frame.seq,
                frame.event_type,
                frame.payload_or_null()
            );
        }
        bus.close().await;
        return Ok(());
    }
    // Stop taking calls, let the ones in flight finish (up to 5 s), leave.
    stop.recv().await;
    bus.drain(Duration::from_secs(5)).await;
    bus.close().await;
    Ok(())
}
