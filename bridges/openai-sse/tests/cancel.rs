//! A caller that gives up makes the bridge close the upstream connection at once.

mod common;

use std::time::Duration;

use common::{Replay, bus_with, config, error, f};
use openagentio_core::{Bridge, CallOptions};
use serde_json::json;
use tokio::time::Instant;

/// Waits until the replay server has seen the client close a held connection.
async fn upstream_close(server: &Replay) -> Instant {
    for _ in 0..200 {
        if let Some(t) = server.closed_at.lock().first() {
            return *t;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the upstream never saw its connection close");
}

fn first_frames() -> Vec<common::Frame> {
    vec![
        f("started", json!({"meta": {"model": "m", "id": "h1"}})),
        f("delta", json!({"delta": "tick"})),
    ]
}

#[tokio::test]
async fn dropping_the_stream_closes_the_upstream_within_100ms() {
    let server = Replay::start(&["hold"]).await;
    let (bus, _bridge) = bus_with(config(server.base_url())).await;
    let mut stream = bus
        .stream_invoke("chat", json!({"text": "hi"}))
        .await
        .unwrap();
    let mut frames = Vec::new();
    for _ in 0..2 {
        frames.push(common::frame(&stream.next().await.unwrap().unwrap()));
    }
    assert_eq!(frames, first_frames());
    let dropped = Instant::now();
    drop(stream);
    let closed = upstream_close(&server).await;
    let after = closed.saturating_duration_since(dropped);
    eprintln!("upstream saw the close {after:?} after the drop");
    assert!(
        after < Duration::from_millis(100),
        "closed {after:?} after the drop"
    );
}

#[tokio::test]
async fn a_caller_timeout_closes_the_upstream_within_100ms() {
    let server = Replay::start(&["hold"]).await;
    let mut cfg = config(server.base_url());
    cfg.idle_timeout = Duration::from_secs(30);
    let (bus, _bridge) = bus_with(cfg).await;
    let opts = CallOptions::new().timeout(Duration::from_millis(300));
    let mut stream = bus
        .stream_invoke_with("chat", json!({"text": "hi"}), opts)
        .await
        .unwrap();
    let mut frames = Vec::new();
    let timed_out = loop {
        match stream.next().await.unwrap() {
            Ok(env) => frames.push(common::frame(&env)),
            Err(e) => {
                assert_eq!(e.code(), openagentio_core::ErrorCode::AgentTimeout);
                break Instant::now();
            }
        }
    };
    assert_eq!(frames, first_frames());
    let closed = upstream_close(&server).await;
    let after = closed.saturating_duration_since(timed_out);
    eprintln!("upstream saw the close {after:?} after the caller's timeout");
    assert!(
        after < Duration::from_millis(100),
        "closed {after:?} after the timeout"
    );
}

#[tokio::test]
async fn stopping_the_bridge_ends_calls_in_flight() {
    let server = Replay::start(&["hold"]).await;
    let mut cfg = config(server.base_url());
    cfg.idle_timeout = Duration::from_secs(30);
    let (bus, mut bridge) = bus_with(cfg).await;
    let mut stream = bus
        .stream_invoke("chat", json!({"text": "hi"}))
        .await
        .unwrap();
    let mut frames = Vec::new();
    for _ in 0..2 {
        frames.push(common::frame(&stream.next().await.unwrap().unwrap()));
    }
    bridge.stop().await.unwrap();
    frames.push(common::frame(&stream.next().await.unwrap().unwrap()));
    let mut expected = first_frames();
    expected.push(error("AGENT_UNAVAILABLE", "the bridge is stopped", false));
    assert_eq!(frames, expected);
    assert!(stream.next().await.is_none());
    upstream_close(&server).await;
    assert_eq!(
        bridge.health().state,
        openagentio_core::HealthState::Unhealthy
    );
}
