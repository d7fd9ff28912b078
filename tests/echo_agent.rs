//! The `echo_agent` example, run as a user runs it (`cargo run --example
//! echo_agent -- --bus ...`).
//!
//! Proves that:
//! - `--bus memory` serves `echo` and `chat`, calls both once itself and
//!   exits 0, printing the echoed payload and the chat frames in order;
//! - `--bus nats://...` (a real nats-server) serves another process's bus:
//!   `echo` returns the payload with the caller's metadata inherited, `chat`
//!   streams `started`, one delta per word and `final`, a stream its caller
//!   drops is stopped (the next one is served at once), and SIGTERM ends
//!   the agent cleanly, after the stream in flight has finished;
//! - a `--bus` that cannot be reached ends it with exit code 1 and a message
//!   naming the URL and the cause.
//!
//! (A reference Python SDK caller of the same example is in
//! `tests/python_interop.rs`.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openagentio_core::{Bus, CallOptions};
use openagentio_testkit::{ChildGuard, NatsServer, example_bin, nats_bus};
use serde_json::json;

fn echo_agent() -> Command {
    Command::new(example_bin("echo_agent"))
}

#[test]
fn on_the_memory_bus_it_serves_and_calls_itself() {
    let out = echo_agent()
        .args(["--bus", "memory", "--word-delay-ms", "0"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#"echo -> {"msg":"hello"}"#), "{stdout}");
    let frames: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("chat frame"))
        .collect();
    // started, six words, final: seq 0..=7 in order.
    assert_eq!(frames.len(), 8, "{stdout}");
    for (i, line) in frames.iter().enumerate() {
        assert!(
            line.starts_with(&format!("chat frame seq={i} ")),
            "{stdout}"
        );
    }
    assert!(frames[0].contains("agent.response.started"), "{stdout}");
    assert!(frames[1].contains(r#"{"delta":"streams"}"#), "{stdout}");
    assert!(frames[7].contains(r#""words":6"#), "{stdout}");
}

#[test]
fn an_unreachable_bus_is_a_clear_error() {
    let port = openagentio_testkit::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let out = echo_agent().args(["--bus", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to NATS at {url}")),
        "{stderr}"
    );
    assert!(stderr.contains("refused"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_nats_it_serves_another_process() {
    let nats = NatsServer::start();
    let (mut agent, output) = spawn_on(&nats.url());
    let bus = nats_bus(&nats.url(), Bus::builder().agent_id("caller")).await;

    let reply = bus
        .invoke_with(
            "echo",
            json!({"msg": "over nats"}),
            CallOptions::new().meta("biz.key", "kept"),
        )
        .await
        .unwrap();
    assert_eq!(reply.payload, Some(json!({"msg": "over nats"})));
    assert_eq!(reply.from, "echo-agent");
    assert_eq!(reply.metadata.get("biz.key"), Some(&json!("kept")));

    let mut stream = bus
        .stream_invoke("chat", json!({"text": "one two three"}))
        .await
        .unwrap();
    let mut frames = vec![];
    while let Some(frame) = stream.next().await {
        frames.push(frame.unwrap());
    }
    let kinds: Vec<(&str, u64)> = frames
        .iter()
        .map(|f| (f.event_type.as_str(), f.seq))
        .collect();
    assert_eq!(
        kinds,
        [
            ("agent.response.started", 0),
            ("agent.response.delta", 1),
            ("agent.response.delta", 2),
            ("agent.response.delta", 3),
            ("agent.response.final", 4),
        ]
    );
    let text: String = frames[1..4]
        .iter()
        .map(|f| f.payload_or_null()["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "one two three");
    assert_eq!(
        frames[4].payload,
        Some(json!({"result": {"text": "one two three", "words": 3}}))
    );

    // A long stream its caller drops: the agent stops it and serves on.
    let long = "word ".repeat(10_000);
    let mut dropped = bus
        .stream_invoke("chat", json!({"text": long}))
        .await
        .unwrap();
    dropped.next().await.unwrap().unwrap();
    drop(dropped);
    wait_for(&output, r#"outcome="cancelled""#).await;
    let reply = bus
        .invoke_with(
            "echo",
            json!(1),
            CallOptions::new().timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(reply.payload, Some(json!(1)));

    // SIGTERM (as `docker stop` sends it) while a stream is in flight: the
    // stream is finished, then the agent exits 0.
    let words = "word ".repeat(300);
    let mut in_flight = bus
        .stream_invoke("chat", json!({"text": words}))
        .await
        .unwrap();
    in_flight.next().await.unwrap().unwrap();
    let pid = agent.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut rest = vec![];
    while let Some(frame) = in_flight.next().await {
        rest.push(frame.unwrap());
    }
    assert_eq!(rest.len(), 301, "every delta and the final frame");
    assert_eq!(rest.last().unwrap().event_type, "agent.response.final");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = agent.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

/// Starts the example on `url` and returns once it says it serves, with its
/// output (log lines included) as it comes.
fn spawn_on(url: &str) -> (ChildGuard, Arc<Mutex<String>>) {
    let mut child = echo_agent()
        .args(["--bus", url, "--word-delay-ms", "1"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard(child);
    let output = Arc::new(Mutex::new(String::new()));
    let (serving_tx, serving_rx) = std::sync::mpsc::channel();
    let sink = output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("serving `echo` and `chat` on the nats bus") {
                let _ = serving_tx.send(());
            }
            let mut out = sink.lock().unwrap();
            out.push_str(&line);
            out.push('\n');
        }
    });
    if serving_rx.recv_timeout(Duration::from_secs(20)).is_err() {
        panic!(
            "echo_agent did not start serving: {}",
            output.lock().unwrap()
        );
    }
    (guard, output)
}

/// Waits (up to 10 s) for a line of the agent's output with `needle`.
async fn wait_for(output: &Mutex<String>, needle: &str) {
    let started = Instant::now();
    while !output.lock().unwrap().contains(needle) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no `{needle}` in the agent's output: {}",
            output.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
