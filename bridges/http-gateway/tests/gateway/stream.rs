//! `POST /v1/agents/{target}/stream`: SSE framing, errors before and after the
//! start, and cancellation by a client that leaves.

use std::time::{Duration, Instant};

use futures::StreamExt;
use openagentio_core::{BusError, Envelope};
use openagentio_http_gateway::GatewayConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Gateway, expect_error};

/// One parsed SSE frame: its fields and the raw `data:` text.
struct Frame {
    event: String,
    id: String,
    retry: String,
    data: String,
}

/// Parses a body of frames, requiring the exact layout
/// `event: ..\nid: ..\nretry: ..\ndata: ..\n\n`, and checks that rebuilding
/// it from the parts gives back the very same bytes.
fn parse_exact(body: &str) -> Vec<Frame> {
    assert!(
        body.ends_with("\n\n"),
        "body ends with a blank line: {body:?}"
    );
    let mut frames = Vec::new();
    for block in body[..body.len() - 2].split("\n\n") {
        let lines: Vec<&str> = block.split('\n').collect();
        assert_eq!(lines.len(), 4, "four lines per frame: {block:?}");
        let field = |i: usize, name: &str| -> String {
            lines[i]
                .strip_prefix(&format!("{name}: "))
                .unwrap_or_else(|| panic!("line {i} is {name}: {block:?}"))
                .to_owned()
        };
        frames.push(Frame {
            event: field(0, "event"),
            id: field(1, "id"),
            retry: field(2, "retry"),
            data: field(3, "data"),
        });
    }
    let rebuilt: String = frames
        .iter()
        .map(|f| {
            format!(
                "event: {}\nid: {}\nretry: {}\ndata: {}\n\n",
                f.event, f.id, f.retry, f.data
            )
        })
        .collect();
    assert_eq!(rebuilt, body);
    frames
}

#[tokio::test]
async fn frames_are_framed_byte_exactly_and_the_stream_ends_after_final() {
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_stream("count", |_req, w| async move {
            w.started(json!({"model": "m1"})).await?;
            for i in 0..3 {
                w.delta_text(format!("tok{i}\nline")).await?;
            }
            w.finish(json!({"text": "done"})).await
        })
        .await
        .unwrap();
    let resp = gw
        .post("/v1/agents/count/stream")
        .header("X-Session-Id", "s")
        .json(&json!({"prompt": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    assert_eq!(resp.headers()["x-accel-buffering"], "no");
    let body = resp.text().await.unwrap();
    let frames = parse_exact(&body);
    let types: Vec<&str> = frames.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(
        types,
        [
            "agent.response.started",
            "agent.response.delta",
            "agent.response.delta",
            "agent.response.delta",
            "agent.response.final"
        ]
    );
    let mut request_id = None;
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.retry, "3000");
        let env: Envelope = serde_json::from_str(&f.data).unwrap();
        // `data:` is the whole envelope, in its canonical JSON form.
        assert_eq!(f.data, serde_json::to_string(&env).unwrap());
        assert_eq!(env.event_type, f.event);
        assert_eq!(env.event_id, f.id);
        assert_eq!(env.seq, i as u64);
        assert_eq!(env.session_id, "s");
        let rid = request_id.get_or_insert_with(|| env.correlation_id.clone());
        assert_eq!(&env.correlation_id, rid);
    }
    let last: Envelope = serde_json::from_str(&frames[4].data).unwrap();
    assert!(last.is_final);
    assert_eq!(last.payload, Some(json!({"result": {"text": "done"}})));
    let delta: Envelope = serde_json::from_str(&frames[1].data).unwrap();
    assert_eq!(delta.payload, Some(json!({"delta": "tok0\nline"})));
}

#[tokio::test]
async fn retry_hint_can_be_left_out() {
    let gw = Gateway::start(GatewayConfig {
        sse_retry: None,
        ..GatewayConfig::default()
    })
    .await;
    gw.bus
        .handle_stream("one", |_req, w| async move { w.finish(json!(1)).await })
        .await
        .unwrap();
    let body = gw
        .post("/v1/agents/one/stream")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = body.split('\n').collect();
    assert_eq!(lines.len(), 5, "{body:?}");
    assert_eq!(lines[0], "event: agent.response.final");
    assert!(lines[1].starts_with("id: "));
    assert!(lines[2].starts_with("data: {"));
    assert_eq!(&lines[3..], ["", ""]);
}

#[tokio::test]
async fn no_handler_before_the_start_answers_json_404() {
    let gw = Gateway::start_default().await;
    let resp = gw.post("/v1/agents/nobody/stream").send().await.unwrap();
    expect_error(resp, 404, "NO_HANDLER").await;
}

#[tokio::test]
async fn a_handler_error_after_the_start_is_an_error_frame() {
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_stream("breaks", |_req, w| async move {
            w.started(json!({})).await?;
            w.delta_text("partial").await?;
            Err(BusError::unavailable("upstream went away"))
        })
        .await
        .unwrap();
    let resp = gw.post("/v1/agents/breaks/stream").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let frames = parse_exact(&resp.text().await.unwrap());
    assert_eq!(frames.len(), 3);
    assert_eq!(frames[2].event, "agent.response.error");
    let env: Envelope = serde_json::from_str(&frames[2].data).unwrap();
    assert!(env.is_final);
    assert_eq!(env.seq, 2);
    assert_eq!(
        env.payload,
        Some(
            json!({"code": "AGENT_UNAVAILABLE", "message": "upstream went away", "retryable": false})
        )
    );
}

#[tokio::test]
async fn a_handler_error_as_the_first_frame_is_still_sse() {
    // Reference clients of the stream route read errors from the event stream.
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_stream("refuses", |_req, _w| async move {
            Err(BusError::invalid("no prompt"))
        })
        .await
        .unwrap();
    let resp = gw.post("/v1/agents/refuses/stream").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let frames = parse_exact(&resp.text().await.unwrap());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].event, "agent.response.error");
    assert!(frames[0].data.contains("\"INVALID_REQUEST\""));
}

#[tokio::test]
async fn a_local_timeout_after_the_start_becomes_an_error_frame() {
    let gw = Gateway::start(GatewayConfig {
        default_timeout: Some(Duration::from_millis(400)),
        ..GatewayConfig::default()
    })
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    gw.bus
        .handle_stream("stalls", move |req, w| {
            let tx = tx.clone();
            async move {
                w.started(json!({})).await?;
                req.cancelled().await;
                let _ = tx.send(());
                Ok(())
            }
        })
        .await
        .unwrap();
    let resp = gw
        .post("/v1/agents/stalls/stream")
        .header("X-Session-Id", "sess-t")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let frames = parse_exact(&resp.text().await.unwrap());
    assert_eq!(frames.len(), 2);
    let started: Envelope = serde_json::from_str(&frames[0].data).unwrap();
    let err: Envelope = serde_json::from_str(&frames[1].data).unwrap();
    assert_eq!(err.event_type, "agent.response.error");
    // Made here, it carries the call's context as the handler's frames do.
    assert_eq!(err.session_id, "sess-t");
    assert_eq!(err.session_id, started.session_id);
    assert!(!started.trace_id.is_empty());
    assert_eq!(
        (&err.trace_id, &err.traceparent, &err.to),
        (&started.trace_id, &started.traceparent, &started.to)
    );
    assert_eq!(err.metadata, started.metadata);
    assert_eq!(err.frame_type, "response.error");
    assert!(err.is_final);
    assert_eq!(err.seq, 1);
    assert_eq!(err.correlation_id, started.correlation_id);
    assert_eq!(err.payload.as_ref().unwrap()["code"], "AGENT_TIMEOUT");
    assert_eq!(err.payload.as_ref().unwrap()["retryable"], true);
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("the handler is cancelled")
        .unwrap();
}

#[tokio::test]
async fn an_idle_timeout_ends_a_quiet_stream() {
    let gw = Gateway::start(GatewayConfig {
        idle_timeout: Some(Duration::from_millis(200)),
        ..GatewayConfig::default()
    })
    .await;
    gw.bus
        .handle_stream("quiet", |req, w| async move {
            w.started(json!({})).await?;
            req.cancelled().await;
            Ok(())
        })
        .await
        .unwrap();
    let body = gw
        .post("/v1/agents/quiet/stream")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frames = parse_exact(&body);
    assert_eq!(frames[1].event, "agent.response.error");
    assert!(frames[1].data.contains("AGENT_TIMEOUT"));
}

#[tokio::test]
async fn headers_go_out_before_a_slow_first_frame_and_frames_are_not_buffered() {
    let gw = Gateway::start_default().await;
    let (go_tx, go_rx) = tokio::sync::watch::channel(false);
    gw.bus
        .handle_stream("slow", move |_req, w| {
            let mut go = go_rx.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(800)).await;
                w.delta_text("first").await?;
                let _ = go.wait_for(|v| *v).await;
                w.finish(json!("end")).await
            }
        })
        .await
        .unwrap();
    let t0 = Instant::now();
    let resp = gw.post("/v1/agents/slow/stream").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        t0.elapsed() < Duration::from_millis(700),
        "headers waited {:?}",
        t0.elapsed()
    );
    let mut body = resp.bytes_stream();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("agent.response.delta") {
        let chunk = tokio::time::timeout(Duration::from_secs(3), body.next())
            .await
            .expect("the first frame arrives while the handler still waits")
            .unwrap()
            .unwrap();
        seen.extend_from_slice(&chunk);
    }
    go_tx.send(true).unwrap();
    while let Some(chunk) = body.next().await {
        seen.extend_from_slice(&chunk.unwrap());
    }
    let frames = parse_exact(std::str::from_utf8(&seen).unwrap());
    assert_eq!(frames.len(), 2);
}

/// Serves a stream that sends one delta, then reports when it sees the cancellation.
async fn hanging_target(gw: &Gateway) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    gw.bus
        .handle_stream("hang", move |req, w| {
            let tx = tx.clone();
            async move {
                w.started(json!({})).await?;
                w.delta_text("x").await?;
                req.cancelled().await;
                let _ = tx.send(Instant::now());
                Ok(())
            }
        })
        .await
        .unwrap();
    rx
}

#[tokio::test]
async fn a_client_that_closes_its_socket_cancels_the_handler_within_100ms() {
    let gw = Gateway::start_default().await;
    let mut cancelled = hanging_target(&gw).await;
    for _ in 0..3 {
        let mut sock = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        sock.write_all(
            b"POST /v1/agents/hang/stream HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
        )
        .await
        .unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("event: agent.response.delta") {
            let n = tokio::time::timeout(Duration::from_secs(3), sock.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed early");
            seen.extend_from_slice(&buf[..n]);
        }
        assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 200"));
        let left = Instant::now();
        drop(sock);
        let seen_at = tokio::time::timeout(Duration::from_secs(2), cancelled.recv())
            .await
            .expect("the handler sees the cancellation")
            .unwrap();
        let took = seen_at.saturating_duration_since(left);
        eprintln!("raw socket: the handler saw the cancellation after {took:?}");
        assert!(
            took < Duration::from_millis(100),
            "cancellation took {took:?}"
        );
    }
    // The gateway counted the disconnects.
    let metrics = gw
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("openagentio_http_streams_disconnected_total 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_reqwest_client_that_drops_the_response_cancels_the_handler_within_100ms() {
    let gw = Gateway::start_default().await;
    let mut cancelled = hanging_target(&gw).await;
    let resp = gw.post("/v1/agents/hang/stream").send().await.unwrap();
    let mut body = resp.bytes_stream();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("event: agent.response.delta") {
        seen.extend_from_slice(&body.next().await.unwrap().unwrap());
    }
    let left = Instant::now();
    drop(body);
    let seen_at = tokio::time::timeout(Duration::from_secs(2), cancelled.recv())
        .await
        .expect("the handler sees the cancellation")
        .unwrap();
    let took = seen_at.saturating_duration_since(left);
    eprintln!("reqwest: the handler saw the cancellation after {took:?}");
    assert!(
        took < Duration::from_millis(100),
        "cancellation took {took:?}"
    );
}
