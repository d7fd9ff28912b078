//! Request headers fill the envelope the handler sees.

use openagentio_core::{HandleOptions, Request};
use serde_json::{Value, json};

use crate::Gateway;

const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn seen(req: &Request) -> Value {
    let e = req.envelope();
    json!({
        "tenant_id": e.tenant_id,
        "session_id": e.session_id,
        "conversation_id": e.conversation_id,
        "user_id": e.user_id,
        "channel": e.channel,
        "trace_id": e.trace_id,
        "traceparent": e.traceparent,
        "event_type": e.event_type,
        "payload": e.payload,
    })
}

async fn echo_ctx(gw: &Gateway, tenant: Option<&str>) {
    let opts = match tenant {
        Some(t) => HandleOptions::new().tenant(t),
        None => HandleOptions::new(),
    };
    gw.bus
        .handle_invoke_with("ctx", opts, |req| async move { Ok(seen(&req)) })
        .await
        .unwrap();
}

#[tokio::test]
async fn every_header_reaches_the_envelope() {
    let gw = Gateway::start_default().await;
    echo_ctx(&gw, Some("acme")).await;
    let v: Value = gw
        .post("/v1/agents/ctx/invoke")
        .header("X-Tenant-Id", "acme")
        .header("X-Session-Id", "sess-1")
        .header("X-Conversation-Id", "conv-1")
        .header("X-User-Id", "user-1")
        .header("X-Channel", "web")
        .header("X-Traceparent", TP)
        .json(&json!({"q": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tenant_id"], "acme");
    assert_eq!(v["session_id"], "sess-1");
    assert_eq!(v["conversation_id"], "conv-1");
    assert_eq!(v["user_id"], "user-1");
    assert_eq!(v["channel"], "web");
    assert_eq!(v["event_type"], "agent.message.received");
    assert_eq!(v["payload"], json!({"q": 1}));
    // The call continues the caller's trace with a span of its own.
    assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    let tp = v["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{tp}"
    );
    assert_ne!(tp, TP);
}

#[tokio::test]
async fn w3c_traceparent_and_trace_id_are_read_too() {
    let gw = Gateway::start_default().await;
    echo_ctx(&gw, None).await;
    let v: Value = gw
        .post("/v1/agents/ctx/invoke")
        .header("traceparent", TP)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["trace_id"], "0af7651916cd43dd8448eb211c80319c");

    let v: Value = gw
        .post("/v1/agents/ctx/invoke")
        .header("X-Trace-Id", "4bf92f3577b34da6a3ce929d0e0e4736")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    // No headers: empty context, no channel default (as the reference), a new trace.
    let v: Value = gw
        .post("/v1/agents/ctx/invoke")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tenant_id"], "");
    assert_eq!(v["session_id"], "");
    assert_eq!(v["channel"], "");
    assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn stream_requests_carry_the_headers_into_request_and_frames() {
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_stream("ctx", |req, w| async move { w.finish(seen(&req)).await })
        .await
        .unwrap();
    let text = gw
        .post("/v1/agents/ctx/stream")
        .header("X-Session-Id", "sess-2")
        .header("X-User-Id", "user-2")
        .header("X-Channel", "web")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    let frame: Value = serde_json::from_str(data).unwrap();
    assert_eq!(frame["payload"]["result"]["session_id"], "sess-2");
    assert_eq!(frame["payload"]["result"]["user_id"], "user-2");
    assert_eq!(frame["session_id"], "sess-2");
    assert_eq!(frame["channel"], "web");
}
