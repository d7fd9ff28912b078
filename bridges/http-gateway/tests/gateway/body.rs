//! Oversized, malformed and oddly typed bodies: clear 4xx answers, and the
//! service keeps serving afterwards.

use openagentio_http_gateway::GatewayConfig;
use serde_json::json;

use crate::{Gateway, expect_error};

async fn gateway(config: GatewayConfig) -> Gateway {
    let gw = Gateway::start(config).await;
    gw.bus
        .handle_invoke("echo", |req| async move { Ok(req.payload().clone()) })
        .await
        .unwrap();
    gw.bus
        .handle_stream("echo.stream", |req, w| async move {
            w.finish(req.payload().clone()).await
        })
        .await
        .unwrap();
    gw
}

async fn still_serves(gw: &Gateway) {
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .json(&json!({"ok": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"ok": true})
    );
}

#[tokio::test]
async fn malformed_json_is_400_with_a_clear_message() {
    let gw = gateway(GatewayConfig::default()).await;
    for path in [
        "/v1/agents/echo/invoke",
        "/v1/agents/echo.stream/stream",
        "/v1/events/a.b",
    ] {
        let resp = gw
            .post(path)
            .header("content-type", "application/json")
            .body("{\"a\": ")
            .send()
            .await
            .unwrap();
        let body = expect_error(resp, 400, "INVALID_REQUEST").await;
        assert!(
            body["message"].as_str().unwrap().contains("not valid JSON"),
            "{body}"
        );
        still_serves(&gw).await;
    }
}

#[tokio::test]
async fn bodies_that_are_not_utf8_are_400_and_lone_surrogates_read_as_go_reads_them() {
    let gw = gateway(GatewayConfig::default()).await;
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .body(vec![b'"', 0xff, b'"'])
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, 400, "INVALID_REQUEST").await;
    assert!(
        body["message"].as_str().unwrap().contains("not UTF-8"),
        "{body}"
    );
    // What JavaScript's JSON.stringify writes for half an emoji: U+FFFD,
    // as Go's encoding/json reads it, not a 400.
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .body(r#"{"text":"cut \ud83d"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"text": "cut \u{FFFD}"})
    );
    still_serves(&gw).await;
}

#[tokio::test]
async fn the_default_limit_is_4_mib() {
    let gw = gateway(GatewayConfig::default()).await;
    // A string payload of just under 4 MiB passes.
    let ok = format!("\"{}\"", "a".repeat(4 * 1024 * 1024 - 2));
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .body(ok.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap().len(), ok.len());
    // One byte more is 413.
    let big = format!("\"{}\"", "a".repeat(4 * 1024 * 1024 - 1));
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .body(big)
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, 413, "INVALID_REQUEST").await;
    assert!(
        body["message"].as_str().unwrap().contains("4194304"),
        "{body}"
    );
    still_serves(&gw).await;
}

#[tokio::test]
async fn oversized_bodies_are_413_on_every_route_and_the_service_keeps_serving() {
    let gw = gateway(GatewayConfig {
        body_limit: 64 * 1024,
        ..GatewayConfig::default()
    })
    .await;
    let big = format!("[{}0]", "0,".repeat(512 * 1024)); // 1 MiB
    for path in [
        "/v1/agents/echo/invoke",
        "/v1/agents/echo.stream/stream",
        "/v1/events/a.b",
    ] {
        let resp = gw.post(path).body(big.clone()).send().await.unwrap();
        expect_error(resp, 413, "INVALID_REQUEST").await;
        still_serves(&gw).await;
    }
    // A chunked body (no Content-Length) is held to the same limit.
    let chunks: Vec<Result<String, std::io::Error>> =
        (0..32).map(|_| Ok("0,".repeat(2048))).collect();
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    expect_error(resp, 413, "INVALID_REQUEST").await;
    still_serves(&gw).await;
}

#[tokio::test]
async fn content_types() {
    let gw = gateway(GatewayConfig::default()).await;
    // JSON-ish types, text/plain and curl's default form type are read as JSON.
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "text/plain",
        "application/x-www-form-urlencoded",
    ] {
        let resp = gw
            .post("/v1/agents/echo/invoke")
            .header("content-type", ct)
            .body("{\"k\":1}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{ct}");
    }
    // Others are 415.
    for ct in ["application/xml", "multipart/form-data; boundary=x"] {
        let resp = gw
            .post("/v1/agents/echo/invoke")
            .header("content-type", ct)
            .body("<k>1</k>")
            .send()
            .await
            .unwrap();
        let body = expect_error(resp, 415, "INVALID_REQUEST").await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    still_serves(&gw).await;
}

/// A client that stalls while sending its request is cut off after
/// `read_timeout`: its headers (the connection is closed) or its body (408).
#[tokio::test]
async fn a_client_that_stalls_while_sending_is_cut_off() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let gw = gateway(GatewayConfig {
        read_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    })
    .await;
    let answer_to = |request: &'static str| {
        let addr = gw.addr;
        async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.write_all(request.as_bytes()).await.unwrap();
            let started = Instant::now();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
                .await
                .expect("the gateway did not cut the client off")
                .unwrap();
            (
                String::from_utf8_lossy(&answer).into_owned(),
                started.elapsed(),
            )
        }
    };

    // Half the headers, then nothing.
    let (answer, waited) = answer_to("POST /v1/agents/echo/invoke HTTP/1.1\r\nHost: x\r\n").await;
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");

    // Whole headers, 1 byte of a 100-byte body, then nothing.
    let (answer, waited) = answer_to(
        "POST /v1/agents/echo/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\
         Content-Type: application/json\r\n\r\n{",
    )
    .await;
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("INVALID_REQUEST") && answer.contains("stalled"),
        "{answer}"
    );

    still_serves(&gw).await;
}

/// A body that keeps coming, slowly, is read: `read_timeout` is how long
/// the client may send nothing, not how long the upload may take (up to
/// ten times it).
#[tokio::test]
async fn a_slow_upload_that_keeps_coming_is_read() {
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let gw = gateway(GatewayConfig {
        read_timeout: Duration::from_millis(300),
        ..GatewayConfig::default()
    })
    .await;
    let body = br#"{"slow": "upload"}"#;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/agents/echo/invoke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // 18 bytes, one every 100 ms: 1.8 s in all, six times read_timeout.
    for byte in body {
        tcp.write_all(&[*byte]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""slow":"upload""#), "{answer}");
}
