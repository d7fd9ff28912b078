//! An HTTP client that disconnects from the gateway mid-stream makes the
//! bridge close its upstream connection within 100 ms: gateway, bus and
//! bridge in one process, on the in-memory bus and over a real nats-server
//! (the gateway and the bridge on separate connections, as two processes).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{Replay, config};
use openagentio_core::{Bridge, BridgeHealth, Bus, ServiceStatus, TargetInfo};
use openagentio_http_gateway::{GatewayConfig, router, serve};
use openagentio_openai_sse::SseBridge;
use openagentio_testkit::{NatsServer, nats_bus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

struct NoStatus;

impl ServiceStatus for NoStatus {
    fn bridges(&self) -> Vec<(String, BridgeHealth)> {
        Vec::new()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        Vec::new()
    }
}

/// Serves the gateway over `bus` on a free loopback port.
async fn gateway(bus: Bus) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(bus, GatewayConfig::default(), Arc::new(NoStatus));
    tokio::spawn(serve(
        listener,
        app,
        std::time::Duration::from_secs(30),
        std::future::pending(),
    ));
    addr
}

/// The bridge `chat` on `bus`, against an upstream that sends one token and
/// then holds the connection open until the client closes it.
async fn bridge(bus: &Bus, server: &Replay) -> SseBridge {
    let mut cfg = config(server.base_url());
    cfg.idle_timeout = Duration::from_secs(30);
    let mut bridge = SseBridge::new("chat", cfg);
    bridge.start(bus).await.expect("bridge starts");
    bridge
}

/// Opens `/v1/agents/chat/stream`, reads until the first delta, closes the
/// socket, and returns how long after that the upstream saw its connection close.
async fn disconnect_mid_stream(gw: SocketAddr, server: &Replay) -> Duration {
    let mut sock = tokio::net::TcpStream::connect(gw).await.unwrap();
    let body = r#"{"text": "hi"}"#;
    let req = format!(
        "POST /v1/agents/chat/stream HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"delta\":\"tick\"") {
        let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
            .await
            .expect("the first delta arrives")
            .unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let seen = String::from_utf8_lossy(&seen);
    assert!(seen.starts_with("HTTP/1.1 200"), "{seen}");
    assert!(seen.contains("event: agent.response.started"), "{seen}");
    assert!(server.closed_at.lock().is_empty());

    let left = Instant::now();
    drop(sock);
    for _ in 0..400 {
        if let Some(t) = server.closed_at.lock().first() {
            return t.saturating_duration_since(left);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the upstream never saw its connection close");
}

#[tokio::test]
async fn a_gateway_client_that_disconnects_closes_the_upstream_within_100ms_memory() {
    let server = Replay::start(&["hold"]).await;
    let bus = Bus::memory();
    let _bridge = bridge(&bus, &server).await;
    let gw = gateway(bus).await;
    let after = disconnect_mid_stream(gw, &server).await;
    eprintln!("memory bus: the upstream saw the close {after:?} after the client left");
    assert!(
        after < Duration::from_millis(100),
        "closed {after:?} after the client left"
    );
}

#[tokio::test]
async fn a_gateway_client_that_disconnects_closes_the_upstream_within_100ms_nats() {
    let nats = NatsServer::start();
    let server = Replay::start(&["hold"]).await;
    let bridge_bus = nats_bus(&nats.url(), Bus::builder().agent_id("bridge")).await;
    let _bridge = bridge(&bridge_bus, &server).await;
    let _ = bridge_bus.transport().flush().await;
    let gateway_bus = nats_bus(&nats.url(), Bus::builder().agent_id("gateway")).await;
    let gw = gateway(gateway_bus).await;
    let after = disconnect_mid_stream(gw, &server).await;
    eprintln!("NATS: the upstream saw the close {after:?} after the client left");
    assert!(
        after < Duration::from_millis(100),
        "closed {after:?} after the client left"
    );
}
