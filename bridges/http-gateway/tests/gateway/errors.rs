//! Every wire error code answers its HTTP status with the JSON error shape.

use std::time::Duration;

use openagentio_core::{BusError, ErrorCode, FrameKind};
use openagentio_http_gateway::GatewayConfig;
use serde_json::json;

use crate::{Gateway, expect_error};

fn target_of(code: ErrorCode) -> String {
    format!("fail.{}", code.as_str().to_ascii_lowercase())
}

#[tokio::test]
async fn each_code_from_a_handler_maps_to_its_status() {
    let gw = Gateway::start_default().await;
    let table = [
        (ErrorCode::AuthFailure, 401),
        (ErrorCode::InvalidRequest, 400),
        (ErrorCode::NoHandler, 404),
        (ErrorCode::AgentTimeout, 504),
        (ErrorCode::AgentUnavailable, 502),
        (ErrorCode::TransportFailure, 502),
        (ErrorCode::BackpressureDrop, 429),
        (ErrorCode::CodecFailure, 500),
    ];
    for (code, _) in table {
        gw.bus
            .handle_invoke(&target_of(code), move |_req| async move {
                Err(BusError::new(code, format!("handler says {code}")))
            })
            .await
            .unwrap();
    }
    for (code, status) in table {
        let resp = gw
            .post(&format!("/v1/agents/{}/invoke", target_of(code)))
            .send()
            .await
            .unwrap();
        let body = expect_error(resp, status, code.as_str()).await;
        assert_eq!(body["message"], format!("handler says {code}"));
        assert_eq!(body["retryable"], code.default_retryable());
    }
}

#[tokio::test]
async fn retryable_and_cause_from_the_handler_are_kept() {
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_invoke("picky", |_req| async move {
            Err(BusError::invalid("field x is missing")
                .with_retryable(true)
                .with_cause(json!({"field": "x"})))
        })
        .await
        .unwrap();
    let resp = gw.post("/v1/agents/picky/invoke").send().await.unwrap();
    let body = expect_error(resp, 400, "INVALID_REQUEST").await;
    assert_eq!(body["retryable"], true);
    assert_eq!(body["cause"], json!({"field": "x"}));
}

#[tokio::test]
async fn no_handler_is_404() {
    let gw = Gateway::start_default().await;
    let resp = gw.post("/v1/agents/nobody/invoke").send().await.unwrap();
    expect_error(resp, 404, "NO_HANDLER").await;
}

#[tokio::test]
async fn a_slow_handler_is_504_and_is_cancelled() {
    let gw = Gateway::start(GatewayConfig {
        default_timeout: Some(Duration::from_millis(200)),
        ..GatewayConfig::default()
    })
    .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    gw.bus
        .handle_invoke("slow", move |req| {
            let tx = tx.clone();
            async move {
                req.cancelled().await;
                let _ = tx.send(());
                Ok(json!(null))
            }
        })
        .await
        .unwrap();
    let resp = gw.post("/v1/agents/slow/invoke").send().await.unwrap();
    expect_error(resp, 504, "AGENT_TIMEOUT").await;
    tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("the handler sees the cancellation")
        .unwrap();
}

#[tokio::test]
async fn an_unknown_code_from_a_peer_is_500_with_the_code_as_sent() {
    // The bus reads a code it does not know as AGENT_UNAVAILABLE and keeps
    // the original (core's `BusError::unknown_code`); the gateway answers it
    // as DESIGN section 4 and the reference adapter do: 500, code as sent.
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_stream("weird", |_req, w| async move {
            w.send(
                FrameKind::Error,
                Some(json!({"code": "WEIRD_CODE", "message": "odd"})),
            )
            .await
        })
        .await
        .unwrap();
    let resp = gw.post("/v1/agents/weird/invoke").send().await.unwrap();
    let body = expect_error(resp, 500, "WEIRD_CODE").await;
    assert_eq!(body["message"], "WEIRD_CODE: odd");
}

#[tokio::test]
async fn x_timeout_ms_sets_the_calls_deadline() {
    let gw = Gateway::start(GatewayConfig {
        default_timeout: Some(Duration::from_millis(200)),
        ..GatewayConfig::default()
    })
    .await;
    gw.bus
        .handle_invoke("takes_600ms", |req| async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(json!({"deadline_ms": req.envelope().metadata["acp.timeout_ms"]}))
        })
        .await
        .unwrap();
    // Longer than the gateway's default: the call waits for the answer.
    let resp = gw
        .post("/v1/agents/takes_600ms/invoke")
        .header("X-Timeout-Ms", "5000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let sent = body["deadline_ms"].as_u64().unwrap();
    assert!((4000..=5000).contains(&sent), "{body}");
    // The same on the stream route.
    let resp = gw
        .post("/v1/agents/takes_600ms/stream")
        .header("X-Timeout-Ms", "5000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("agent.response.final"), "{text}");
    // Shorter: the handler is given that deadline, and the call ends with
    // 504 when it passes.
    gw.bus
        .handle_invoke("deadline", |req| async move {
            Ok(json!({"deadline_ms": req.envelope().metadata["acp.timeout_ms"]}))
        })
        .await
        .unwrap();
    let resp = gw
        .post("/v1/agents/deadline/invoke")
        .header("X-Timeout-Ms", "50")
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["deadline_ms"].as_u64().unwrap() <= 50, "{body}");
    let resp = gw
        .post("/v1/agents/takes_600ms/invoke")
        .header("X-Timeout-Ms", "50")
        .send()
        .await
        .unwrap();
    expect_error(resp, 504, "AGENT_TIMEOUT").await;
    // Not a number of milliseconds in range: 400, naming the header.
    for bad in ["soon", "0", "-5", "1.5", "86400001"] {
        let resp = gw
            .post("/v1/agents/takes_600ms/invoke")
            .header("X-Timeout-Ms", bad)
            .send()
            .await
            .unwrap();
        let body = expect_error(resp, 400, "INVALID_REQUEST").await;
        assert!(
            body["message"].as_str().unwrap().contains("X-Timeout-Ms"),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn a_query_string_on_a_call_is_refused_not_ignored() {
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    for route in ["invoke", "stream"] {
        let resp = gw
            .post(&format!("/v1/agents/echo/{route}?timeout=100&tenant=zz"))
            .body("{}")
            .send()
            .await
            .unwrap();
        let body = expect_error(resp, 400, "INVALID_REQUEST").await;
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains("no query parameters") && message.contains("X-Timeout-Ms"),
            "{message}"
        );
    }
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
