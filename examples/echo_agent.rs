//! An example agent: invoke target `echo` (returns its payload) and stream
//! target `chat` (streams the `text` of its payload, or a string payload,
//! back word by word).
//!
//! ```text
//! cargo run --example echo_agent -- --bus memory              # serves and calls itself once
//! cargo run --example echo_agent -- --bus nats://127.0.0.1:4222
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use openagentio_core::{Bus, BusError, StreamWriter, middleware};
use openagentio_host::signals::ShutdownSignal;
use openagentio_nats::{NatsOptions, NatsTransport};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "An echo agent on the OpenAgentIO bus")]
struct Args {
    /// `memory`, or a NATS URL such as nats://127.0.0.1:4222.
    #[arg(long, default_value = "memory")]
    bus: String,
    /// Pause between streamed words.
    #[arg(long, default_value_t = 50)]
    word_delay_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter("info").init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The message, not its debug form: it names the URL and the cause.
            eprintln!("echo_agent: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Ctrl-C, or SIGTERM as `docker stop` and systemd send it, from now on.
    let mut stop = ShutdownSignal::listen();
    let builder = Bus::builder()
        .agent_id("echo-agent")
        .middleware(middleware::Recover)
        .middleware(middleware::Logging);
    let bus = if args.bus == "memory" {
        builder.build()
    } else {
        let nats = NatsTransport::connect(NatsOptions::new(&args.bus).name("echo-agent")).await?;
        builder.transport(nats).build()
    };

    bus.handle_invoke("echo", |req| async move { Ok(req.payload().clone()) })
        .await?;
    let delay = Duration::from_millis(args.word_delay_ms);
    bus.handle_stream("chat", move |req, w: StreamWriter| async move {
        // The `text` of an object payload, or a string payload itself.
        let payload = req.payload();
        let text = payload
            .as_str()
            .or_else(|| payload.get("text").and_then(Value::as_str))
            .unwrap_or("")
            .to_owned();
        w.started(json!({"agent": "echo-agent"})).await?;
        let mut words = 0;
        for word in text.split_whitespace() {
            if req.is_cancelled() {
                return Err(BusError::unavailable("caller went away"));
            }
            let sep = if words == 0 { "" } else { " " };
            w.delta_text(format!("{sep}{word}")).await?;
            words += 1;
            tokio::time::sleep(delay).await;
        }
        w.finish(json!({"text": text, "words": words})).await
    })
    .await?;
    println!(
        "echo-agent serving `echo` and `chat` on the {} bus",
        bus.transport().kind()
    );

    if args.bus == "memory" {
        let reply = bus.invoke("echo", json!({"msg": "hello"})).await?;
        println!("echo -> {}", reply.payload_or_null());
        let mut stream = bus
            .stream_invoke("chat", json!({"text": "streams come back word by word"}))
            .await?;
        while let Some(frame) = stream.next().await {
            let frame = frame?;
            println!(
                "chat frame seq={} {} {}",
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
