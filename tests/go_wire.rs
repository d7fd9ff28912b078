//! Wire compatibility with the reference Go SDK, over one real nats-server
//! per test.
//!
//! No Go toolchain can be installed here, so the Go side is played by raw
//! NATS clients that put on the wire exactly what the Go SDK
//! (`github.com/ModulationAI/openagentio`: `pkg/event`, `pkg/bus`,
//! `pkg/transport/nats`) puts there, and read what the Rust bus sends as its
//! `encoding/json` decoder would. What sets the Go wire apart from the Python
//! SDK's (which `python_interop` runs for real):
//! - requests carry no NATS reply subject: answers go to the envelope's
//!   `reply_to`, an `_INBOX.<nuid>` the caller subscribed for that call alone;
//! - `occurred_at` is a `time.Time`: RFC 3339 with up to nine fraction digits;
//! - fields come in the struct's order; `<`, `>`, `&`, U+2028 and U+2029 in
//!   strings are escaped (`\u003c`, …); `seq` 0, `is_final` false and empty
//!   strings are left out (`omitempty`);
//! - a Go `Invoke` takes the first frame its inbox gets, `StreamInvoke`
//!   expects `seq` from 0 without holes and ends at `is_final`;
//! - a Go handler's failure answers `AGENT_UNAVAILABLE`.

use std::time::Duration;

use futures::StreamExt;
use openagentio_core::{Bus, BusError, Envelope, ErrorCode, codec};
use openagentio_testkit::{NatsServer, bounded, nats_bus};
use serde_json::{Value, json};

/// Longest wait for one message.
const LIMIT: Duration = Duration::from_secs(10);

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A time as Go's `time.Time` marshals it (RFC 3339 with nanoseconds).
const GO_TIME: &str = "2026-11-23T13:37:39.123456789Z";

/// Another: Go cuts the fraction's trailing zeros (`.100000000` is `.1`).
const GO_TIME_CUT: &str = "2026-11-23T13:37:39.1Z";

/// `s` as a JSON string the way Go's `encoding/json` writes it.
fn go_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `v` as Go's `json.Marshal` of a `map[string]any` writes it: keys sorted,
/// strings escaped as [`go_str`] does.
fn go_json(v: &Value) -> String {
    match v {
        Value::String(s) => go_str(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(go_json).collect();
            format!("[{}]", items.join(","))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", go_str(k), go_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        other => other.to_string(),
    }
}

/// The fields of a Go `event.Envelope`, written in its struct's order with
/// `omitempty` as Go applies it.
#[derive(Default)]
struct GoEnvelope<'a> {
    event_id: &'a str,
    /// [`GO_TIME`] when empty.
    occurred_at: &'a str,
    event_type: &'a str,
    frame_type: &'a str,
    trace_id: &'a str,
    span_id: &'a str,
    traceparent: &'a str,
    session_id: &'a str,
    correlation_id: &'a str,
    reply_to: &'a str,
    from: &'a str,
    to: &'a str,
    tenant_id: &'a str,
    seq: u64,
    is_final: bool,
    payload: Option<Value>,
    metadata: Option<Value>,
}

impl GoEnvelope<'_> {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{{\"spec_version\":\"acp/1.0\",\"schema_version\":1,\"event_id\":{},\"event_type\":{}",
            go_str(self.event_id),
            go_str(self.event_type)
        );
        push_omitempty(&mut out, "frame_type", self.frame_type);
        // `occurred_at` is not omitempty; it follows frame_type in the struct.
        let at = if self.occurred_at.is_empty() {
            GO_TIME
        } else {
            self.occurred_at
        };
        out.push_str(&format!(",\"occurred_at\":\"{at}\""));
        for (key, value) in [
            ("trace_id", self.trace_id),
            ("span_id", self.span_id),
            ("traceparent", self.traceparent),
            ("session_id", self.session_id),
            ("correlation_id", self.correlation_id),
            ("reply_to", self.reply_to),
            ("from", self.from),
            ("to", self.to),
            ("tenant_id", self.tenant_id),
        ] {
            push_omitempty(&mut out, key, value);
        }
        if self.seq != 0 {
            out.push_str(&format!(",\"seq\":{}", self.seq));
        }
        if self.is_final {
            out.push_str(",\"is_final\":true");
        }
        if let Some(p) = &self.payload {
            out.push_str(&format!(",\"payload\":{}", go_json(p)));
        }
        if let Some(m) = &self.metadata {
            out.push_str(&format!(",\"metadata\":{}", go_json(m)));
        }
        out.push('}');
        out.into_bytes()
    }
}

/// Appends `,"key":value` unless `value` is empty, as `omitempty` does.
fn push_omitempty(out: &mut String, key: &str, value: &str) {
    if !value.is_empty() {
        out.push_str(&format!(",\"{key}\":{}", go_str(value)));
    }
}

/// Checks that `bytes` decode into Go's `event.Envelope`: `encoding/json`
/// refuses a value of the wrong JSON type for a field (a string `seq`, a
/// float `schema_version`) and `time.Time` takes RFC 3339 alone. Returns the
/// JSON for further checks.
fn go_decodes(bytes: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)));
    let obj = v.as_object().expect("an object");
    assert_eq!(obj["spec_version"], "acp/1.0");
    assert!(obj["schema_version"].is_i64(), "schema_version: {v}");
    for key in [
        "event_id",
        "event_type",
        "frame_type",
        "trace_id",
        "span_id",
        "traceparent",
        "session_id",
        "conversation_id",
        "correlation_id",
        "reply_to",
        "from",
        "to",
        "channel",
        "tenant_id",
        "user_id",
    ] {
        if let Some(field) = obj.get(key) {
            assert!(field.is_string(), "{key} is not a string: {v}");
        }
    }
    let at = obj["occurred_at"].as_str().expect("occurred_at");
    chrono::DateTime::parse_from_rfc3339(at).unwrap_or_else(|e| panic!("occurred_at {at}: {e}"));
    if let Some(seq) = obj.get("seq") {
        assert!(seq.is_u64(), "seq: {v}");
    }
    if let Some(f) = obj.get("is_final") {
        assert!(f.is_boolean(), "is_final: {v}");
    }
    if let Some(m) = obj.get("metadata") {
        assert!(m.is_object() || m.is_null(), "metadata: {v}");
    }
    v
}

async fn raw_client(nats: &NatsServer) -> async_nats::Client {
    async_nats::connect(nats.url()).await.expect("connect")
}

async fn next_message(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(LIMIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

/// A Go caller's `OpenInbox`, request and frames: subscribes a fresh inbox,
/// publishes the request without a NATS reply subject, and reads frames until
/// `is_final` (a Go `StreamInvoke`; a Go `Invoke` keeps the first).
async fn go_call(client: &async_nats::Client, target: &str, request: GoEnvelope<'_>) -> Vec<Value> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    let request = GoEnvelope {
        reply_to: &inbox,
        ..request
    };
    client
        .publish(format!("acp.v1.invoke.{target}"), request.to_bytes().into())
        .await
        .unwrap();
    let mut frames = Vec::new();
    loop {
        let msg = next_message(&mut sub).await;
        let frame = go_decodes(&msg.payload);
        let last = frame["is_final"] == true;
        frames.push(frame);
        if last {
            return frames;
        }
    }
}

/// A Go `InvokeRequest` envelope from agent `go-agent`.
fn go_request<'a>(event_id: &'a str, payload: Value, metadata: Value) -> GoEnvelope<'a> {
    GoEnvelope {
        event_id,
        event_type: "agent.message.received",
        frame_type: "request",
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
        span_id: "00f067aa0ba902b7",
        traceparent: TRACEPARENT,
        session_id: "s-go",
        from: "go-agent",
        to: "echo",
        payload: Some(payload),
        metadata: Some(metadata),
        ..GoEnvelope::default()
    }
}

async fn rust_bus(nats: &NatsServer) -> Bus {
    nats_bus(
        &nats.url(),
        Bus::builder()
            .agent_id("rust")
            .default_timeout(Duration::from_secs(10)),
    )
    .await
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_caller_invokes_and_streams_from_rust_handlers() {
    bounded(go_calls_rust()).await
}

async fn go_calls_rust() {
    let nats = NatsServer::start();
    let bus = rust_bus(&nats).await;
    bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    bus.handle_stream("words", |req, w| async move {
        let text = req.payload()["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for word in text.split(' ') {
            w.delta_text(word).await?;
        }
        w.finish(json!({"words": text.split(' ').count()})).await
    })
    .await
    .unwrap();
    bus.handle_invoke("refuse", |_req| async move {
        Err::<Value, _>(BusError::invalid("no <html> & such"))
    })
    .await
    .unwrap();
    let go = raw_client(&nats).await;
    let payload = json!({"text": "a <b> & \u{2028} c", "n": 7, "nested": {"k": [1, 2.5, null]}});
    let metadata = json!({"dingtalk.chat": "c-1", "acp.retry.attempt": 0});

    // Invoke: one final frame, as a Go `Invoke` reads it.
    let request_id = "019ab3c2-7e1f-7a00-8000-000000000001";
    let frames = go_call(
        &go,
        "echo",
        go_request(request_id, payload.clone(), metadata.clone()),
    )
    .await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let answer = &frames[0];
    assert_eq!(answer["event_type"], "agent.response.final");
    assert_eq!(answer["frame_type"], "response.final");
    assert_eq!(answer["correlation_id"], request_id);
    assert_eq!(answer["is_final"], true);
    assert!(answer.get("seq").is_none(), "seq 0 is left out: {answer}");
    assert_eq!(
        answer["payload"], payload,
        "escaped strings read back as they were"
    );
    assert_eq!(answer["from"], "rust");
    assert_eq!(answer["to"], "go-agent");
    assert_eq!(answer["session_id"], "s-go");
    assert_eq!(answer["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(
        answer["traceparent"]
            .as_str()
            .unwrap()
            .contains("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(answer["metadata"]["dingtalk.chat"], "c-1");
    assert!(answer["metadata"].get("acp.retry.attempt").is_none());

    // StreamInvoke: seq from 0 without holes, ending at is_final.
    let frames = go_call(
        &go,
        "words",
        go_request(
            "019ab3c2-7e1f-7a00-8000-000000000002",
            json!({"text": "one two three"}),
            json!({}),
        ),
    )
    .await;
    let seqs: Vec<u64> = frames
        .iter()
        .map(|f| f["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3], "{frames:?}");
    let words: Vec<&str> = frames[..3]
        .iter()
        .map(|f| {
            assert_eq!(f["event_type"], "agent.response.delta");
            assert!(
                f.get("is_final").is_none(),
                "is_final false is left out: {f}"
            );
            f["payload"]["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(words, ["one", "two", "three"]);
    assert_eq!(frames[3]["payload"]["result"], json!({"words": 3}));

    // A failure: an error frame with its code, as Go's `event.ErrorPayload`.
    let frames = go_call(
        &go,
        "refuse",
        go_request(
            "019ab3c2-7e1f-7a00-8000-000000000003",
            json!(null),
            json!({}),
        ),
    )
    .await;
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["event_type"], "agent.response.error");
    assert_eq!(frames[0]["payload"]["code"], "INVALID_REQUEST");
    assert_eq!(frames[0]["payload"]["message"], "no <html> & such");
}

// ---------------------------------------------------------------------------

/// A Go handler: answers each request on `acp.v1.invoke.{target}` (queue group
/// `target`, as `HandleInvoke` subscribes) at the envelope's `reply_to`,
/// with frames made by `answer`.
async fn go_handler(
    client: async_nats::Client,
    target: &'static str,
    answer: impl Fn(&Value) -> Vec<GoFrame> + Send + 'static,
) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let mut sub = client
        .queue_subscribe(format!("acp.v1.invoke.{target}"), target.to_owned())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let req = go_decodes(&msg.payload);
            let reply_to = req["reply_to"].as_str().expect("reply_to").to_owned();
            for (seq, frame) in answer(&req).into_iter().enumerate() {
                let bytes = GoEnvelope {
                    event_id: &format!("019ab3c2-7e1f-7a00-9000-{seq:012}"),
                    // The first frame at full precision, later ones cut.
                    occurred_at: if seq == 0 { GO_TIME } else { GO_TIME_CUT },
                    event_type: frame.event_type,
                    frame_type: frame.event_type.trim_start_matches("agent."),
                    trace_id: req["trace_id"].as_str().unwrap_or_default(),
                    span_id: req["span_id"].as_str().unwrap_or_default(),
                    traceparent: req["traceparent"].as_str().unwrap_or_default(),
                    session_id: req["session_id"].as_str().unwrap_or_default(),
                    correlation_id: req["event_id"].as_str().unwrap(),
                    from: "go-agent",
                    to: req["from"].as_str().unwrap_or_default(),
                    tenant_id: req["tenant_id"].as_str().unwrap_or_default(),
                    seq: seq as u64,
                    is_final: frame.is_final,
                    payload: frame.payload,
                    metadata: inherited(&req["metadata"]),
                    ..GoEnvelope::default()
                }
                .to_bytes();
                client
                    .publish(reply_to.clone(), bytes.into())
                    .await
                    .unwrap();
            }
            let _ = seen.send(req);
        }
    });
    requests
}

/// One frame a Go handler sends.
struct GoFrame {
    event_type: &'static str,
    is_final: bool,
    payload: Option<Value>,
}

impl GoFrame {
    fn new(event_type: &'static str, payload: Value) -> GoFrame {
        GoFrame {
            event_type,
            is_final: matches!(event_type, "agent.response.final" | "agent.response.error"),
            payload: Some(payload),
        }
    }
}

/// Go's `inheritMetadata`: the non-`acp.` keys, or nothing when none are left.
fn inherited(metadata: &Value) -> Option<Value> {
    let kept: serde_json::Map<String, Value> = metadata
        .as_object()?
        .iter()
        .filter(|(k, _)| !k.starts_with("acp."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!kept.is_empty()).then_some(Value::Object(kept))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_caller_invokes_and_streams_from_go_handlers() {
    bounded(rust_calls_go()).await
}

async fn rust_calls_go() {
    let nats = NatsServer::start();
    let go = raw_client(&nats).await;
    let mut invoked = go_handler(go.clone(), "gotool", |req| {
        vec![GoFrame::new(
            "agent.response.final",
            json!({"echo": req["payload"], "html": "<ok> & done"}),
        )]
    })
    .await;
    let _streamed = go_handler(go.clone(), "gostream", |_req| {
        vec![
            GoFrame::new("agent.response.started", json!({"model": "go"})),
            GoFrame::new("agent.response.delta", json!({"delta": "hel"})),
            GoFrame::new("agent.response.delta", json!({"delta": "lo"})),
            GoFrame::new("agent.response.final", json!({"result": "hello"})),
        ]
    })
    .await;
    let _failing = go_handler(go.clone(), "gofail", |_req| {
        vec![GoFrame::new(
            "agent.response.error",
            json!({"code": "AGENT_UNAVAILABLE", "message": "boom"}),
        )]
    })
    .await;
    let bus = rust_bus(&nats).await;
    let opts = openagentio_core::CallOptions::default()
        .session("s-rust")
        .meta("dingtalk.chat", json!("c-9"));

    let answer = bus
        .invoke_with("gotool", json!({"q": "<b>"}), opts.clone())
        .await
        .unwrap();
    assert_eq!(answer.payload_or_null()["echo"], json!({"q": "<b>"}));
    assert_eq!(answer.payload_or_null()["html"], "<ok> & done");
    assert_eq!(answer.from, "go-agent");
    assert_eq!(answer.session_id, "s-rust");
    assert_eq!(answer.metadata["dingtalk.chat"], "c-9");
    assert_eq!(
        answer
            .occurred_at
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        GO_TIME,
        "nanoseconds kept"
    );
    let forwarded = codec::encode(&answer).unwrap();
    assert!(
        String::from_utf8_lossy(&forwarded).contains(GO_TIME),
        "a Go time is written back unchanged"
    );
    // What the Go handler was sent decodes into Go's envelope, reply_to set.
    let req = tokio::time::timeout(LIMIT, invoked.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(req["event_type"], "agent.message.received");
    assert_eq!(req["frame_type"], "request");
    assert_eq!(req["to"], "gotool");
    assert_eq!(req["session_id"], "s-rust");
    assert!(req["reply_to"].as_str().unwrap().starts_with("_INBOX."));

    let mut stream = bus.stream_invoke("gostream", json!("hi")).await.unwrap();
    let mut frames: Vec<Envelope> = Vec::new();
    while let Some(frame) = stream.next().await {
        frames.push(frame.unwrap());
    }
    let shape: Vec<(&str, u64, bool)> = frames
        .iter()
        .map(|f| (f.event_type.as_str(), f.seq, f.is_final))
        .collect();
    assert_eq!(
        shape,
        [
            ("agent.response.started", 0, false),
            ("agent.response.delta", 1, false),
            ("agent.response.delta", 2, false),
            ("agent.response.final", 3, true),
        ]
    );
    assert_eq!(frames[3].payload_or_null()["result"], "hello");
    assert_eq!(
        frames[3].occurred_at,
        chrono::DateTime::parse_from_rfc3339(GO_TIME_CUT).unwrap(),
        "a fraction with its zeros cut reads as the same time"
    );
    // `invoke` of the same target skips to the answer.
    let answer = bus.invoke("gostream", json!("hi")).await.unwrap();
    assert_eq!(answer.payload_or_null()["result"], "hello");

    let err = bus.invoke("gofail", json!(null)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentUnavailable);
    assert_eq!(err.message(), "boom");
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_between_rust_and_go_shaped_peers() {
    bounded(events_both_ways()).await
}

async fn events_both_ways() {
    let nats = NatsServer::start();
    let go = raw_client(&nats).await;
    let bus = rust_bus(&nats).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _sub = bus
        .subscribe("goc.incident.created", move |env: Envelope| {
            let _ = tx.send(env);
            std::future::ready(Ok(()))
        })
        .await
        .unwrap();
    let mut go_sub = go.subscribe("acp.v1.events.rust.>").await.unwrap();
    go.flush().await.unwrap();

    // Go's `Publish` of `event.NewEvent("goc.incident.created")`.
    let event = GoEnvelope {
        event_id: "019ab3c2-7e1f-7a00-8000-0000000000e1",
        event_type: "goc.incident.created",
        from: "go-agent",
        tenant_id: "",
        payload: Some(json!({"id": 42, "title": "disk <full> & hot"})),
        metadata: Some(json!({"severity": "high"})),
        ..GoEnvelope::default()
    };
    go.publish(
        "acp.v1.events.goc.incident.created",
        event.to_bytes().into(),
    )
    .await
    .unwrap();
    let got = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.event_id, "019ab3c2-7e1f-7a00-8000-0000000000e1");
    assert_eq!(
        got.frame_type, "",
        "no frame_type for an event type Go does not map"
    );
    assert_eq!(got.payload_or_null()["title"], "disk <full> & hot");
    assert_eq!(got.metadata["severity"], "high");
    assert_eq!(got.from, "go-agent");

    // And the other way: what Rust publishes decodes into Go's envelope.
    bus.publish_confirmed(
        Envelope::new("rust.report.ready")
            .with_payload(json!({"rows": 3, "note": "a & b"}))
            .with_metadata("origin", json!("rust")),
    )
    .await
    .unwrap();
    let msg = next_message(&mut go_sub).await;
    assert_eq!(msg.subject.as_str(), "acp.v1.events.rust.report.ready");
    let v = go_decodes(&msg.payload);
    assert_eq!(v["event_type"], "rust.report.ready");
    assert_eq!(v["payload"], json!({"rows": 3, "note": "a & b"}));
    assert_eq!(v["metadata"]["origin"], "rust");
    assert_eq!(v["from"], "rust");
}
