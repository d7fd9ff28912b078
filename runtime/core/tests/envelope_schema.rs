//! The acp/1.0 envelope against its published JSON Schema.
//!
//! Proves that:
//! - `schema/envelope.schema.json` is the reference project's schema, unchanged,
//!   and that the validator built from it really rejects broken envelopes;
//! - every golden sample (ours in `schema/samples/` and the reference ones in
//!   `../shared/reference/acp-samples/`) validates against the schema and
//!   round-trips through [`Envelope`] with no field lost;
//! - every envelope the Rust bus puts on a transport (requests, started/delta/
//!   final/error frames, automatic and panic frames, `CODEC_FAILURE` replies,
//!   events, dead letters, cancellation notices, tenant-scoped and nested calls)
//!   validates against the schema;
//! - property tests: the decoder never panics on arbitrary bytes or on mutated
//!   envelopes, and arbitrary well-formed envelopes (unicode strings, metadata,
//!   unknown extra fields, nested JSON payloads) survive encode/decode exactly
//!   and encode to schema-valid JSON.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone};
use openagentio_core::codec;
use openagentio_core::middleware::{DeadLetter, Retry, RetryPolicy};
use openagentio_core::transport::{Body, Message, Sink, Transport};
use openagentio_core::{
    Bus, BusError, CallOptions, DeltaPayload, Envelope, ErrorCode, HandleOptions, MemoryTransport,
    SubscribeOptions,
};
use parking_lot::Mutex;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------
// Files

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}

fn our_schema_path() -> PathBuf {
    manifest_dir().join("../../schema/envelope.schema.json")
}

fn our_samples_dir() -> PathBuf {
    manifest_dir().join("../../schema/samples")
}

/// The reference project's files: `../shared` is a sibling of the repository.
fn reference_dir() -> PathBuf {
    manifest_dir().join("../../../shared/reference")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every `*.json` file of `dir`, by name. Panics when there is none, so a
/// missing folder cannot make the sample tests pass vacuously.
fn samples_in(dir: &Path) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| (p.display().to_string(), read_json(&p)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no samples in {}", dir.display());
    out
}

fn all_samples() -> Vec<(String, Value)> {
    let mut all = samples_in(&our_samples_dir());
    all.extend(samples_in(&reference_dir().join("acp-samples")));
    all
}

/// The validator of `schema/envelope.schema.json`, formats (`date-time`) checked.
fn validator() -> &'static jsonschema::Validator {
    static V: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
        jsonschema::options()
            .should_validate_formats(true)
            .build(&read_json(&our_schema_path()))
            .expect("the envelope schema compiles")
    });
    &V
}

/// Validation errors of `instance`, one line each (empty when valid).
fn schema_errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

// ---------------------------------------------------------------------------
// Comparison

const OPTIONAL_STRINGS: [&str; 13] = [
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
];

/// Every top-level key the envelope type knows.
const KNOWN_KEYS: [&str; 22] = [
    "spec_version",
    "schema_version",
    "event_id",
    "event_type",
    "occurred_at",
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
    "seq",
    "is_final",
    "payload",
    "metadata",
];

/// The wire form with only the equivalences acp/1.0 defines folded away: an
/// optional field that is absent, `null` or at its default (`""`, `seq` 0,
/// `is_final` false, `{}` metadata) is the same message; `occurred_at` is
/// compared as an instant together with its UTC offset (`.5Z` and `.500Z` are
/// the same time). Everything else, unknown fields included, must match exactly.
fn canonical(v: &Value) -> Value {
    let mut m = v.as_object().expect("an envelope is an object").clone();
    m.retain(|k, v| {
        let default = match k.as_str() {
            k if OPTIONAL_STRINGS.contains(&k) => v.is_null() || v == "",
            "seq" => v.is_null() || *v == json!(0),
            "is_final" => v.is_null() || *v == json!(false),
            "payload" => v.is_null(),
            "metadata" => v.is_null() || *v == json!({}),
            _ => false,
        };
        !default
    });
    if let Some(Value::String(t)) = m.get("occurred_at") {
        let t = DateTime::parse_from_rfc3339(t).expect("occurred_at is RFC 3339");
        m.insert(
            "occurred_at".into(),
            json!([
                t.to_rfc3339_opts(SecondsFormat::Nanos, true),
                t.offset().local_minus_utc()
            ]),
        );
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------
// The schema and the samples

#[test]
fn our_schema_is_the_reference_schema() {
    assert_eq!(
        read_json(&our_schema_path()),
        read_json(&reference_dir().join("envelope.schema.json")),
        "schema/envelope.schema.json drifted from ../shared/reference/envelope.schema.json"
    );
}

#[test]
fn our_samples_include_the_reference_samples_unchanged() {
    for (path, reference) in samples_in(&reference_dir().join("acp-samples")) {
        let name = Path::new(&path).file_name().unwrap();
        let ours = read_json(&our_samples_dir().join(name));
        assert_eq!(
            ours, reference,
            "schema/samples/{name:?} differs from {path}"
        );
    }
}

#[test]
fn the_schema_rejects_broken_envelopes() {
    let v = validator();
    let good = all_samples()
        .into_iter()
        .find(|(p, _)| p.ends_with("response_error.json"))
        .expect("response_error.json sample")
        .1;
    assert!(v.is_valid(&good));
    type Breakage = fn(&mut Map<String, Value>);
    let broken: [(&str, Breakage); 9] = [
        ("no event_id", |m| {
            m.remove("event_id");
        }),
        ("event_id not a UUID", |m| {
            m.insert("event_id".into(), json!("abc"));
        }),
        ("spec_version", |m| {
            m.insert("spec_version".into(), json!("acp-1"));
        }),
        ("schema_version 0", |m| {
            m.insert("schema_version".into(), json!(0));
        }),
        ("occurred_at not a date", |m| {
            m.insert("occurred_at".into(), json!("yesterday"));
        }),
        ("negative seq", |m| {
            m.insert("seq".into(), json!(-1));
        }),
        ("error payload without code", |m| {
            m["payload"].as_object_mut().unwrap().remove("code");
        }),
        ("unknown error code", |m| {
            m["payload"]["code"] = json!("OOPS");
        }),
        ("is_final on a delta", |m| {
            m.insert("event_type".into(), json!("agent.response.delta"));
            m.insert("frame_type".into(), json!("response.delta"));
        }),
    ];
    for (what, breakage) in broken {
        let mut m = good.as_object().unwrap().clone();
        breakage(&mut m);
        assert!(
            !v.is_valid(&Value::Object(m)),
            "the schema accepted an envelope with {what}"
        );
    }
}

#[test]
fn every_sample_validates_against_the_schema() {
    let v = validator();
    let samples = all_samples();
    assert!(
        samples.len() >= 10,
        "expected our and the reference samples"
    );
    for (path, sample) in samples {
        let errors = schema_errors(v, &sample);
        assert!(errors.is_empty(), "{path}: {errors:#?}");
    }
}

#[test]
fn every_sample_round_trips_through_the_envelope_without_loss() {
    for (path, sample) in all_samples() {
        let bytes = serde_json::to_vec(&sample).unwrap();
        let env = codec::decode(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        let encoded = codec::encode(&env).unwrap();
        let back: Value = serde_json::from_slice(&encoded).unwrap();
        assert_eq!(
            canonical(&back),
            canonical(&sample),
            "{path}: a field was lost or changed"
        );
        // Every key of the sample is still there (defaults aside).
        for key in canonical(&sample).as_object().unwrap().keys() {
            assert!(back.get(key).is_some(), "{path}: {key} was dropped");
        }
        // And a second trip changes nothing at all, byte for byte.
        let again = codec::encode(&codec::decode(&encoded).unwrap()).unwrap();
        assert_eq!(again, encoded, "{path}: re-encoding is not stable");
    }
}

#[test]
fn samples_decode_to_the_fields_they_hold() {
    let by_name = |n: &str| {
        let (_, v) = all_samples()
            .into_iter()
            .find(|(p, _)| p.ends_with(n))
            .unwrap_or_else(|| panic!("sample {n}"));
        codec::decode(&serde_json::to_vec(&v).unwrap()).unwrap()
    };
    let extras = by_name("request_with_metadata_and_extras.json");
    assert_eq!(
        extras.extra["x_vendor_routing"],
        json!({"region": "eu-west-1", "hops": 2})
    );
    assert_eq!(extras.extra["future_field"], json!("kept when forwarding"));
    assert_eq!(extras.metadata["acp.retry.attempt"], json!(2));
    assert_eq!(extras.occurred_at.offset().local_minus_utc(), 7200);
    let err = by_name("response_error_with_cause.json").error().unwrap();
    assert_eq!(err.code(), ErrorCode::AgentUnavailable);
    assert_eq!(err.cause().unwrap()["http_status"], json!(502));
    let tenant = by_name("tenant_request.json");
    assert_eq!(tenant.tenant_id, "acme");
    let started = by_name("response_started.json");
    assert_eq!(started.seq, 0);
    assert_eq!(
        started.payload,
        Some(json!({"meta": {"model": "qwen-max"}}))
    );
    let result = by_name("tool_result.json");
    assert!(result.is_final && result.is_terminal());
    assert_eq!(result.frame_type, "tool.result");
}

// ---------------------------------------------------------------------------
// What the Rust bus produces

#[test]
fn new_envelopes_of_every_type_validate() {
    let v = validator();
    for t in [
        "agent.message.received",
        "agent.response.started",
        "agent.response.delta",
        "agent.response.final",
        "agent.response.error",
        "agent.tool.call",
        "agent.tool.result",
        "agent.task.created",
        "agent.task.completed",
        "matrix.message.received",
    ] {
        let mut env = Envelope::new(t);
        if env.is_error() {
            env.payload = Some(serde_json::to_value(BusError::invalid("x").to_payload()).unwrap());
        }
        env.is_final = openagentio_core::is_terminal(t);
        let json: Value = serde_json::from_slice(&codec::encode(&env).unwrap()).unwrap();
        let errors = schema_errors(v, &json);
        assert!(errors.is_empty(), "{json}: {errors:#?}");
        let id = uuid::Uuid::parse_str(&env.event_id).expect("event_id is a UUID");
        assert_eq!(id.get_version_num(), 7, "event_id is a UUIDv7");
    }
}

/// Keeps every message published on the transport.
#[derive(Default)]
struct Tap(Mutex<Vec<Message>>);

impl Sink for Tap {
    fn deliver(&self, msg: Message) {
        self.0.lock().push(msg);
    }
}

impl Tap {
    /// The wire JSON of every captured message (the bytes NATS would carry).
    fn envelopes(&self) -> Vec<(String, Value)> {
        self.0
            .lock()
            .iter()
            .filter(|m| m.status.is_none())
            .map(|m| {
                let bytes = match &m.body {
                    Body::Envelope(env) => codec::encode(env).unwrap(),
                    Body::Bytes(b) => b.clone(),
                };
                let v = serde_json::from_slice(&bytes)
                    .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", m.subject, bytes));
                (m.subject.to_string(), v)
            })
            .collect()
    }

    async fn wait_for(&self, event_type: &str) {
        self.wait_until(&format!("{event_type} envelope"), |_, v| {
            v["event_type"] == event_type
        })
        .await
    }

    /// Waits until a captured message passes `pred` (`what` names it).
    async fn wait_until(&self, what: &str, pred: impl Fn(&str, &Value) -> bool) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !self.envelopes().iter().any(|(s, v)| pred(s, v)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} was published"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_the_bus_produces_validate_against_the_schema() {
    tokio::time::timeout(Duration::from_secs(60), bus_produced_envelopes())
        .await
        .expect("scenario finished in time");
}

async fn bus_produced_envelopes() {
    let transport = MemoryTransport::new();
    let tap = Arc::new(Tap::default());
    let _tap_sub = transport.subscribe(">", None, tap.clone()).await.unwrap();
    let policy = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(1),
        ..RetryPolicy::default()
    };
    let server = Bus::builder()
        .transport(transport.clone())
        .agent_id("server")
        .middleware(DeadLetter)
        .middleware(Retry::new(policy))
        .build();
    let client = Bus::builder()
        .transport(transport.clone())
        .agent_id("client")
        .build();

    server
        .handle_invoke("echo", |req| async move { Ok(req.payload().clone()) })
        .await
        .unwrap();
    server
        .handle_invoke_with(
            "echo",
            HandleOptions::new().tenant("acme"),
            |req| async move { Ok(json!({"tenant": req.envelope().tenant_id})) },
        )
        .await
        .unwrap();
    server
        .handle_stream("chat", |_req, w| async move {
            w.started(json!({"model": "m-1", "ünïcode": "✓"})).await?;
            w.delta_text("héllo ").await?;
            let mut data = Map::new();
            data.insert("progress".into(), json!(0.5));
            w.delta(DeltaPayload {
                delta: String::new(),
                data,
            })
            .await?;
            w.finish(json!({"text": "héllo wörld"})).await
        })
        .await
        .unwrap();
    server
        .handle_stream("silent", |_req, _w| async move { Ok(()) })
        .await
        .unwrap();
    server
        .handle_invoke("fail", |_req| async move {
            Err::<Value, _>(BusError::invalid("bad field").with_cause(json!({"field": "x"})))
        })
        .await
        .unwrap();
    server
        .handle_invoke("down", |_req| async move {
            Err::<Value, _>(BusError::transport("always down"))
        })
        .await
        .unwrap();
    server
        .handle_invoke("boom", |_req| async move {
            if true {
                panic!("handler exploded");
            }
            Ok(Value::Null)
        })
        .await
        .unwrap();
    server
        .handle_stream("slow", |req, _w| async move {
            req.cancellation().cancelled().await;
            Err(BusError::timeout("cancelled"))
        })
        .await
        .unwrap();
    server
        .handle_invoke("outer", |req| async move {
            let inner = req.bus().invoke("echo", json!({"nested": true})).await?;
            req.bus()
                .emit("demo.nested", json!({"from": "outer"}))
                .await?;
            Ok(inner.payload.unwrap_or_default())
        })
        .await
        .unwrap();
    server
        .subscribe_with(
            "demo.>",
            SubscribeOptions::new(),
            |_env| async move { Ok(()) },
        )
        .await
        .unwrap();

    let opts = || {
        CallOptions::new()
            .session("sess-1")
            .conversation("conv-1")
            .user("u-1")
            .channel("test")
            .meta("dingtalk.conversation_type", "group")
            .meta("labels", json!(["a", "b"]))
    };
    let reply = client
        .invoke_with("echo", json!({"msg": "hi", "n": [1, 2.5]}), opts())
        .await
        .unwrap();
    assert_eq!(reply.payload, Some(json!({"msg": "hi", "n": [1, 2.5]})));
    client
        .invoke_with("echo", json!(null), opts().tenant("acme"))
        .await
        .unwrap();
    let mut s = client
        .stream_invoke_with("chat", json!("go"), opts())
        .await
        .unwrap();
    let mut frames = 0;
    while let Some(f) = s.next().await {
        f.unwrap();
        frames += 1;
    }
    assert_eq!(frames, 4);
    assert_eq!(
        client
            .stream_invoke("silent", json!({}))
            .await
            .unwrap()
            .final_payload()
            .await
            .unwrap(),
        Value::Null
    );
    assert_eq!(
        client.invoke("fail", json!({})).await.unwrap_err().code(),
        ErrorCode::InvalidRequest
    );
    assert_eq!(
        client.invoke("down", json!({})).await.unwrap_err().code(),
        ErrorCode::TransportFailure
    );
    assert_eq!(
        client.invoke("boom", json!({})).await.unwrap_err().code(),
        ErrorCode::AgentUnavailable
    );
    let err = client
        .stream_invoke_with(
            "slow",
            json!({}),
            CallOptions::new().timeout(Duration::from_millis(50)),
        )
        .await
        .unwrap()
        .final_payload()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentTimeout);
    client
        .invoke_with(
            "outer",
            json!({}),
            opts().traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        )
        .await
        .unwrap();
    let mut ev = Envelope::new("demo.event").with_payload(json!({"k": [1, {"z": null}]}));
    ev.extra.insert("x_custom".into(), json!({"kept": true}));
    ev.metadata.insert("m".into(), json!(1));
    client.publish(ev).await.unwrap();
    // Bytes that are not an envelope, with a reply_to: the bus answers CODEC_FAILURE.
    let inbox = client.transport().new_inbox_prefix();
    client
        .transport()
        .publish(Message::bytes(
            "acp.v1.invoke.echo",
            format!(r#"{{"reply_to": "{inbox}.1", "event_id": "broken-1"}}"#),
        ))
        .await
        .unwrap();

    // Fire-and-forget publications: wait for them to be seen.
    tap.wait_for("acp.control.cancel").await;
    tap.wait_for("demo.nested").await;
    // The broken request is answered from a task of its own.
    tap.wait_until("CODEC_FAILURE reply", |_, e| {
        e["correlation_id"] == "broken-1"
    })
    .await;

    let v = validator();
    let envelopes = tap.envelopes();
    let mut failures = Vec::new();
    for (subject, env) in &envelopes {
        if env.get("event_id") == Some(&json!("broken-1")) && env.get("event_type").is_none() {
            continue; // the deliberately broken request itself
        }
        let errors = schema_errors(v, env);
        if !errors.is_empty() {
            failures.push(format!("{subject}: {env}\n  {}", errors.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "invalid envelopes:\n{}",
        failures.join("\n")
    );

    // The scenario did produce every kind of envelope it is meant to check.
    let seen = |pred: &dyn Fn(&str, &Value) -> bool| envelopes.iter().any(|(s, e)| pred(s, e));
    for t in [
        "agent.message.received",
        "agent.response.started",
        "agent.response.delta",
        "agent.response.final",
        "agent.response.error",
        "acp.control.cancel",
        "demo.event",
        "demo.nested",
    ] {
        assert!(seen(&|_, e| e["event_type"] == t), "no {t} envelope seen");
    }
    assert!(
        seen(&|s, _| s.starts_with("acp.v1.dlq.")),
        "no dead letter seen"
    );
    assert!(
        seen(&|s, _| s == "acp.v1.acme.invoke.echo"),
        "no tenant request seen"
    );
    assert!(
        seen(&|_, e| e["payload"]["code"] == "CODEC_FAILURE" && e["correlation_id"] == "broken-1"),
        "no CODEC_FAILURE reply to the broken request"
    );
    assert!(
        seen(&|_, e| e["payload"]["cause"] == json!({"field": "x"})),
        "no error frame with a cause"
    );
    assert!(
        seen(&|_, e| e["event_type"] == "agent.response.final"
            && e["is_final"] == true
            && e.get("payload").is_none()),
        "no automatic final frame"
    );
    assert!(
        seen(&|_, e| e["x_custom"] == json!({"kept": true})),
        "unknown field lost on publish"
    );
}

// ---------------------------------------------------------------------------
// Property tests

/// Any JSON value, nested, with unicode strings and keys.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn metadata() -> impl Strategy<Value = Map<String, Value>> {
    let key = prop_oneof![
        any::<String>(),
        Just("acp.retry.attempt".to_owned()),
        "[a-z]{1,8}\\.[a-z_]{1,8}",
    ];
    proptest::collection::btree_map(key, json_value(), 0..5).prop_map(|m| m.into_iter().collect())
}

/// Unknown top-level fields: any name the envelope does not know.
fn extra_fields() -> impl Strategy<Value = Map<String, Value>> {
    proptest::collection::btree_map(
        any::<String>().prop_filter("unknown key", |k| !KNOWN_KEYS.contains(&k.as_str())),
        json_value(),
        0..4,
    )
    .prop_map(|m| m.into_iter().collect())
}

/// A time with nanoseconds and a whole-minute UTC offset, years 1970..=9998.
fn occurred_at() -> impl Strategy<Value = DateTime<FixedOffset>> {
    (0i64..253_370_764_800, 0u32..1_000_000_000, -1439i32..=1439).prop_map(
        |(secs, nanos, offset_min)| {
            FixedOffset::east_opt(offset_min * 60)
                .unwrap()
                .timestamp_opt(secs, nanos)
                .unwrap()
        },
    )
}

fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("agent.message.received".to_owned()),
        Just("agent.response.started".to_owned()),
        Just("agent.response.delta".to_owned()),
        Just("agent.response.final".to_owned()),
        Just("agent.response.error".to_owned()),
        Just("agent.tool.call".to_owned()),
        Just("agent.tool.result".to_owned()),
        Just("agent.task.completed".to_owned()),
        any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
    ]
}

fn opt_string() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), any::<String>()]
}

prop_compose! {
    fn strings12()(a in opt_string(), b in opt_string(), c in opt_string(), d in opt_string(),
                   e in opt_string(), f in opt_string(), g in opt_string(), h in opt_string(),
                   i in opt_string(), j in opt_string(), k in opt_string(), l in opt_string())
        -> [String; 12] {
        [a, b, c, d, e, f, g, h, i, j, k, l]
    }
}

prop_compose! {
    /// Any envelope the type can hold, every field generated.
    fn envelope()(
        minor in 0u32..100,
        schema_version in any::<u64>(),
        event_id in prop_oneof![
            any::<u128>().prop_map(uuid_text),
            any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        ],
        event_type in event_type(),
        frame_type in opt_string(),
        occurred_at in occurred_at(),
        s in strings12(),
        seq in any::<u64>(),
        is_final in any::<bool>(),
        payload in proptest::option::of(json_value().prop_filter("non-null", |v| !v.is_null())),
        metadata in metadata(),
        extra in extra_fields(),
    ) -> Envelope {
        let mut env = Envelope::new(event_type);
        let [trace_id, span_id, traceparent, session_id, conversation_id, correlation_id,
             reply_to, from, to, channel, tenant_id, user_id] = s;
        env.spec_version = format!("acp/1.{minor}").into();
        env.schema_version = schema_version;
        env.event_id = event_id.into();
        env.frame_type = frame_type.into();
        env.occurred_at = occurred_at;
        env.trace_id = trace_id.into();
        env.span_id = span_id.into();
        env.traceparent = traceparent.into();
        env.session_id = session_id.into();
        env.conversation_id = conversation_id.into();
        env.correlation_id = correlation_id.into();
        env.reply_to = reply_to.into();
        env.from = from.into();
        env.to = to.into();
        env.channel = channel.into();
        env.tenant_id = tenant_id.into();
        env.user_id = user_id.into();
        env.seq = seq;
        env.is_final = is_final;
        env.payload = payload;
        env.metadata = metadata;
        env.extra = extra;
        env
    }
}

fn uuid_text(n: u128) -> String {
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Makes an arbitrary envelope satisfy the schema's extra rules.
fn schema_conforming(mut env: Envelope, n: u128, code: usize) -> Envelope {
    env.event_id = uuid_text(n).into();
    env.schema_version = env.schema_version.max(1);
    let terminal = openagentio_core::is_terminal(&env.event_type)
        || openagentio_core::event_type::is_terminal_frame(&env.frame_type);
    if env.is_final && !terminal {
        env.event_type = "agent.response.final".into();
    }
    if env.event_type == "agent.response.error" {
        let mut p = json!({
            "code": ErrorCode::ALL[code % 8].as_str(),
            "message": env.user_id.clone(),
            "retryable": env.is_final,
        });
        if let Some(cause) = env.payload.take().filter(Value::is_object) {
            p["cause"] = cause;
        }
        env.payload = Some(p);
    }
    env
}

/// `codec::decode` (its own reader, serde_json where that gives up) agrees
/// with plain serde_json on `bytes`: the same envelope, or both refuse.
fn decodes_as_serde_json_does(bytes: &[u8]) -> Result<(), TestCaseError> {
    match (
        codec::decode(bytes),
        serde_json::from_slice::<Envelope>(bytes),
    ) {
        (Ok(ours), Ok(serde)) => {
            prop_assert_eq!(&ours, &serde);
            prop_assert_eq!(ours.occurred_at.offset(), serde.occurred_at.offset());
        }
        (Err(_), Err(_)) => {}
        (ours, serde) => prop_assert!(
            false,
            "codec {:?} but serde_json {:?} for {}",
            ours.map(|_| ()),
            serde.map(|_| ()),
            String::from_utf8_lossy(bytes)
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        decodes_as_serde_json_does(&bytes)?;
        let _ = codec::salvage_reply_fields(&bytes);
    }

    #[test]
    fn decoding_arbitrary_json_never_panics(v in json_value()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        decodes_as_serde_json_does(&bytes)?;
        let _ = codec::salvage_reply_fields(&bytes);
    }

    /// A valid envelope with one field replaced by any JSON value, or removed:
    /// decoding may refuse it but never panics, and whatever it accepts
    /// re-encodes to something it accepts again, equal to itself.
    #[test]
    fn decoding_mutated_envelopes_never_panics(
        env in envelope(),
        key in proptest::sample::select(KNOWN_KEYS.to_vec()),
        replacement in proptest::option::of(json_value()),
    ) {
        let mut v = serde_json::to_value(&env).unwrap();
        let m = v.as_object_mut().unwrap();
        match replacement {
            Some(r) => { m.insert(key.to_owned(), r); }
            None => { m.remove(key); }
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = codec::salvage_reply_fields(&bytes);
        decodes_as_serde_json_does(&bytes)?;
        decodes_as_serde_json_does(&serde_json::to_vec_pretty(&v).unwrap())?;
        if let Ok(decoded) = codec::decode(&bytes) {
            let again = codec::decode(&codec::encode(&decoded).unwrap()).unwrap();
            prop_assert_eq!(&again, &decoded);
        }
    }

    /// An encoded envelope with a byte changed, one inserted, or cut short.
    #[test]
    fn decoding_damaged_bytes_agrees_with_serde_json(
        env in envelope(),
        at in any::<prop::sample::Index>(),
        byte in prop_oneof![
            proptest::sample::select(b"{}[]\",:\\ 0123456789.-eEnulltruefalse\t\n".to_vec()),
            any::<u8>(),
        ],
        how in 0..3u8,
    ) {
        let mut bytes = codec::encode(&env).unwrap().to_vec();
        let i = at.index(bytes.len());
        match how {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            _ => bytes.truncate(i),
        }
        decodes_as_serde_json_does(&bytes)?;
    }

    #[test]
    fn well_formed_envelopes_round_trip_without_loss(env in envelope()) {
        let bytes = codec::encode(&env).unwrap();
        decodes_as_serde_json_does(&bytes)?;
        let back = codec::decode(&bytes).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&bytes))
        });
        prop_assert_eq!(&back, &env);
        // `DateTime` equality ignores the offset: check it too.
        prop_assert_eq!(back.occurred_at.offset(), env.occurred_at.offset());
        prop_assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&env).unwrap()
        );
    }

    /// The codec's own writer makes exactly the bytes serde_json makes.
    #[test]
    fn the_codec_encodes_as_serde_json_does(env in envelope()) {
        let ours = codec::encode(&env).unwrap();
        let serde = serde_json::to_vec(&env).unwrap();
        prop_assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
        prop_assert_eq!(
            env.occurred_at_string(),
            env.occurred_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        );
    }

    /// Any time chrono can hold, leap seconds and offsets with seconds
    /// included, is written as chrono writes it.
    #[test]
    fn times_are_written_as_chrono_writes_them(
        secs in -62_135_596_800i64..400_000_000_000,
        nanos in prop_oneof![Just(0u32), Just(1_000_000u32), 0u32..2_000_000_000],
        offset in prop_oneof![Just(0i32), -86_399i32..86_400],
    ) {
        let offset = FixedOffset::east_opt(offset).unwrap();
        if let Some(t) = offset.timestamp_opt(secs, nanos).single() {
            let env = Envelope { occurred_at: t, ..Envelope::new("t") };
            prop_assert_eq!(
                env.occurred_at_string(),
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
        }
    }

    #[test]
    fn well_formed_envelopes_encode_to_schema_valid_json(
        env in envelope(),
        n in any::<u128>(),
        code in any::<usize>(),
    ) {
        let env = schema_conforming(env, n, code);
        let v: Value = serde_json::from_slice(&codec::encode(&env).unwrap()).unwrap();
        let errors = schema_errors(validator(), &v);
        prop_assert!(errors.is_empty(), "{}: {:#?}", v, errors);
    }
}

#[test]
fn deeply_nested_input_is_refused_without_overflowing_the_stack() {
    for depth in [200usize, 100_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(codec::decode(deep.as_bytes()).is_err());
        let in_payload = format!(
            r#"{{"spec_version":"acp/1.0","schema_version":1,"event_id":"a","event_type":"t","occurred_at":"2026-05-02T10:00:00Z","payload":{}}}"#,
            deep
        );
        assert!(codec::decode(in_payload.as_bytes()).is_err());
        let (reply_to, _) = codec::salvage_reply_fields(in_payload.as_bytes());
        assert_eq!(reply_to, None);
    }
}
