//! Interoperability with the reference Python SDK (`openagentio==0.3.0` and
//! `nats-py`) over one real nats-server per test.
//!
//! Proves, with the Python side running as a child process (the scripts in
//! `tests/python/`, reporting back as JSON lines on stdout):
//! - a Python caller invokes and streams from Rust handlers;
//! - a Rust caller invokes and streams from Python handlers;
//! - events published on either side arrive on the other;
//! - a Python caller invokes and streams from the `echo_agent` example;
//! - with a custom subject prefix and a tenant on both sides, calls and
//!   events cross both ways and other prefixes and tenants are not reached;
//! - dead letters of either side land on the same subject with the same
//!   `acp.dlq.*` keys, read by the other;
//!
//! with payloads, `correlation_id`, `seq`, `is_final`, session fields, metadata
//! (non-`acp.*` request keys inherited into every reply) and error codes (a
//! handler error on each side arrives with its code, message and retryable
//! flag) intact, and tenant-scoped subjects that match.
//!
//! Needs the reference SDK: `reference_python()` (set `OPENAGENTIO_PYTHON`, or
//! run `scripts/test`, which creates the virtualenv).

use std::future::Future;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openagentio_core::{
    Bus, BusBuilder, BusError, CallOptions, DeltaPayload, Envelope, ErrorCode, HandleOptions,
};
use openagentio_testkit::{NatsServer, nats_bus, reference_python};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Longest wait for one line from the Python peer (its start included).
const LIMIT: Duration = Duration::from_secs(30);

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// No test may hang: each is bounded.
async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), test)
        .await
        .expect("test did not finish within 120 s");
}

// ---------------------------------------------------------------------------
// The Python peer

/// A reference-SDK script running as a child process. Its stderr is collected
/// and printed when the test fails; the process is killed when dropped.
struct PyPeer {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    stderr_task: Option<JoinHandle<()>>,
}

impl PyPeer {
    fn spawn(script: &str, nats_url: &str) -> PyPeer {
        let path =
            Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
                .join("tests/python")
                .join(script);
        let mut child = Command::new(reference_python())
            .arg("-u")
            .arg(&path)
            .arg(nats_url)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        let stderr_task = tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        PyPeer {
            name: script.to_owned(),
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().unwrap()).lines(),
            child,
            stderr,
            stderr_task: Some(stderr_task),
        }
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Fails the test with `what` and everything the peer wrote to stderr.
    async fn fail(&mut self, what: String) -> ! {
        let _ = self.child.start_kill();
        if let Some(t) = self.stderr_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        panic!(
            "{}: {what}\n--- python stderr ---\n{}",
            self.name,
            self.stderr_text()
        );
    }

    /// The next JSON line of the peer.
    async fn next(&mut self) -> Value {
        let line = match tokio::time::timeout(LIMIT, self.stdout.next_line()).await {
            Err(_) => self.fail(format!("no output within {LIMIT:?}")).await,
            Ok(Err(e)) => self.fail(format!("cannot read stdout: {e}")).await,
            Ok(Ok(None)) => self.fail("exited before reporting".into()).await,
            Ok(Ok(Some(line))) => line,
        };
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => self.fail(format!("not a JSON line ({e}): {line}")).await,
        };
        if v["kind"] == "failed" {
            self.fail(format!("the peer failed: {}", v["error"])).await;
        }
        v
    }

    /// The next line, which must be of `kind`.
    async fn expect(&mut self, kind: &str) -> Value {
        let v = self.next().await;
        if v["kind"] != kind {
            self.fail(format!("expected a {kind:?} line, got {v}"))
                .await;
        }
        v
    }

    async fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write to the peer");
        stdin.flush().await.expect("flush to the peer");
    }

    /// Closes stdin, reads to `done` and checks the peer exits cleanly.
    async fn finish(mut self) {
        self.stdin = None;
        self.expect("done").await;
        match tokio::time::timeout(LIMIT, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => {}
            other => self.fail(format!("did not exit cleanly: {other:?}")).await,
        }
    }
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} stderr ---\n{}--- end ---",
                self.name,
                self.stderr_text()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// The Rust side's bus settings: agent `rust`, 10 s calls.
fn rust_builder() -> BusBuilder {
    Bus::builder()
        .agent_id("rust")
        .default_timeout(Duration::from_secs(10))
}

async fn rust_bus(nats: &NatsServer) -> Bus {
    nats_bus(&nats.url(), rust_builder()).await
}

/// A subscription handler that sends each envelope into `tx`.
fn into_channel(
    tx: mpsc::UnboundedSender<Envelope>,
) -> impl Fn(Envelope) -> std::future::Ready<Result<(), BusError>> + Send + Sync + 'static {
    move |env| {
        let _ = tx.send(env);
        std::future::ready(Ok(()))
    }
}

/// A wire dict from Python, decoded by the Rust envelope type.
fn envelope(v: &Value) -> Envelope {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not an envelope ({e}): {v}"))
}

fn frames(v: &Value) -> Vec<Envelope> {
    v["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(envelope)
        .collect()
}

fn meta(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

/// Frame kinds in order, with their `seq` and `is_final`.
fn shape(frames: &[Envelope]) -> Vec<(String, u64, bool)> {
    frames
        .iter()
        .map(|f| (f.event_type.to_string(), f.seq, f.is_final))
        .collect()
}

fn owned(rows: &[(&str, u64, bool)]) -> Vec<(String, u64, bool)> {
    rows.iter()
        .map(|(t, s, f)| ((*t).to_owned(), *s, *f))
        .collect()
}

// ---------------------------------------------------------------------------
// (a) Python calls Rust

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_caller_invokes_and_streams_from_rust_handlers() {
    bounded(python_calls_rust()).await
}

async fn python_calls_rust() {
    let nats = NatsServer::start();
    // Python sends no deadline; the serve timeout bounds such requests.
    let bus = nats_bus(
        &nats.url(),
        rust_builder().serve_timeout(Duration::from_secs(1)),
    )
    .await;
    let (hang_tx, mut hang_seen) = mpsc::unbounded_channel();
    bus.handle_invoke("rs-hang", move |req| {
        let hang_tx = hang_tx.clone();
        async move {
            let started = std::time::Instant::now();
            req.cancelled().await;
            let _ = hang_tx.send(started.elapsed());
            Err::<Value, _>(BusError::unavailable("stopped"))
        }
    })
    .await
    .unwrap();
    bus.handle_invoke("rs-echo", |req| async move {
        let e = req.envelope();
        Ok(json!({
            "payload": req.payload(), "event_id": e.event_id, "metadata": e.metadata,
            "session_id": e.session_id, "from": e.from, "to": e.to,
        }))
    })
    .await
    .unwrap();
    bus.handle_invoke_with(
        "rs-echo",
        HandleOptions::new().tenant("acme"),
        |req| async move { Ok(json!({"tenant": req.envelope().tenant_id, "served_by": "rust-acme"})) },
    )
    .await
    .unwrap();
    bus.handle_stream("rs-chat", |req, w| async move {
        let text = req.payload().as_str().unwrap_or_default().to_owned();
        w.started(json!({"model": "rust"})).await?;
        let words: Vec<&str> = text.split(' ').collect();
        for word in &words {
            w.delta_text(*word).await?;
        }
        w.finish(json!({"words": words.len()})).await
    })
    .await
    .unwrap();
    bus.handle_invoke("rs-fail", |_req| async move {
        Err::<Value, _>(BusError::invalid("rust says no").with_cause(json!({"field": "text"})))
    })
    .await
    .unwrap();
    bus.handle_stream("rs-fail-stream", |_req, w| async move {
        w.delta_text("partial").await?;
        Err(BusError::timeout("rust stream gave up"))
    })
    .await
    .unwrap();
    bus.handle_stream("rs-silent", |_req, _w| async move { Ok(()) })
        .await
        .unwrap();

    let mut py = PyPeer::spawn("call_rust.py", &nats.url());
    let mut results = std::collections::HashMap::new();
    loop {
        let v = py.next().await;
        if v["kind"] == "done" {
            break;
        }
        results.insert(v["name"].as_str().expect("name").to_owned(), v);
    }
    let get = |name: &str| {
        results
            .get(name)
            .unwrap_or_else(|| panic!("no result for {name}"))
    };

    // invoke: payload, correlation, session fields and metadata.
    let r = get("echo");
    let (req, reply) = (envelope(&r["request"]), envelope(&r["reply"]));
    assert_eq!(reply.event_type, "agent.response.final");
    // (The reference Python envelope has no `frame_type`: it drops it on decode.)
    assert!(reply.is_final);
    assert_eq!(reply.seq, 0);
    assert_eq!(reply.correlation_id, req.event_id);
    assert_eq!(
        (reply.from.as_str(), reply.to.as_str()),
        ("rust", "py-caller")
    );
    assert_eq!(reply.session_id, "sess-py");
    assert_eq!(reply.conversation_id, "conv-py");
    assert_eq!(reply.user_id, "user-py");
    assert_eq!(reply.channel, "python");
    let seen = reply.payload.clone().expect("echo payload");
    assert_eq!(
        seen["payload"],
        *req.payload_or_null(),
        "request payload reached Rust intact"
    );
    assert_eq!(seen["event_id"], json!(req.event_id));
    assert_eq!(
        meta(seen["metadata"].clone()),
        req.metadata,
        "Rust saw all request metadata"
    );
    assert_eq!(
        (seen["from"].as_str(), seen["to"].as_str()),
        (Some("py-caller"), Some("rs-echo"))
    );
    assert_eq!(
        reply.metadata,
        meta(json!({"biz.key": "v1", "dingtalk.conv": {"id": 7}})),
        "non-acp metadata inherited, acp.* dropped"
    );

    // stream, asking for every frame.
    let r = get("chat-streaming");
    let (req, fs) = (envelope(&r["request"]), frames(r));
    assert_eq!(
        shape(&fs),
        owned(&[
            ("agent.response.started", 0, false),
            ("agent.response.delta", 1, false),
            ("agent.response.delta", 2, false),
            ("agent.response.delta", 3, false),
            ("agent.response.final", 4, true),
        ])
    );
    for f in &fs {
        assert_eq!(f.correlation_id, req.event_id);
        assert_eq!(f.metadata, meta(json!({"biz.key": "v2"})));
        assert_eq!(f.session_id, "sess-py");
    }
    assert_eq!(fs[0].payload, Some(json!({"meta": {"model": "rust"}})));
    let deltas: Vec<String> = fs[1..4]
        .iter()
        .map(|f| f.payload_as::<DeltaPayload>().unwrap().delta)
        .collect();
    assert_eq!(deltas, ["one", "two", "three"]);
    assert_eq!(fs[4].payload, Some(json!({"result": {"words": 3}})));

    // A Rust handler error reaches Python with its code.
    let r = get("fail");
    let (req, reply) = (envelope(&r["request"]), envelope(&r["reply"]));
    assert_eq!(reply.event_type, "agent.response.error");
    assert!(reply.is_final);
    assert_eq!(reply.correlation_id, req.event_id);
    assert_eq!(reply.metadata, meta(json!({"biz.key": "v4"})));
    assert_eq!(
        reply.payload,
        Some(
            json!({"code": "INVALID_REQUEST", "message": "rust says no", "retryable": false, "cause": {"field": "text"}})
        )
    );

    let r = get("fail-stream");
    let (req, fs) = (envelope(&r["request"]), frames(r));
    assert_eq!(
        shape(&fs),
        owned(&[
            ("agent.response.delta", 0, false),
            ("agent.response.error", 1, true)
        ])
    );
    assert!(fs.iter().all(|f| f.correlation_id == req.event_id));
    let err = fs[1].error().unwrap();
    assert_eq!(err.code(), ErrorCode::AgentTimeout);
    assert_eq!(err.message(), "rust stream gave up");
    assert!(err.retryable());

    let r = get("silent-stream");
    let fs = frames(r);
    assert_eq!(shape(&fs), owned(&[("agent.response.final", 0, true)]));
    assert_eq!(fs[0].payload, None);

    let r = get("tenant");
    let reply = envelope(&r["reply"]);
    assert_eq!(reply.tenant_id, "acme");
    assert_eq!(
        reply.payload,
        Some(json!({"tenant": "acme", "served_by": "rust-acme"}))
    );

    // A request with no deadline (the reference SDK sends none) is cancelled
    // at the Rust bus's serve timeout, and Python gets AGENT_TIMEOUT.
    let r = get("hang");
    let (req, reply) = (envelope(&r["request"]), envelope(&r["reply"]));
    assert!(!req.metadata.contains_key("acp.timeout_ms"));
    assert_eq!(reply.event_type, "agent.response.error");
    assert_eq!(reply.correlation_id, req.event_id);
    let err = reply.error().unwrap();
    assert_eq!(err.code(), ErrorCode::AgentTimeout, "{err}");
    assert!(err.message().contains("serve timeout"), "{err}");
    let took = hang_seen
        .try_recv()
        .expect("the handler saw the cancellation");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "cancelled after {took:?}"
    );

    assert_eq!(bus.stats().bad_messages, 0, "{:?}", bus.stats());
    let status = tokio::time::timeout(LIMIT, py.child.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "{status:?}");
}

// ---------------------------------------------------------------------------
// (b) Rust calls Python

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_caller_invokes_and_streams_from_python_handlers() {
    bounded(rust_calls_python()).await
}

async fn rust_calls_python() {
    let nats = NatsServer::start();
    let bus = rust_bus(&nats).await;
    let mut py = PyPeer::spawn("serve_rust.py", &nats.url());
    py.expect("ready").await;

    // invoke: payload, correlation, context fields, metadata, trace.
    let payload =
        json!({"text": "héllo 世界 👋", "n": [1, 2.5, null, true], "deep": {"a": {"b": []}}});
    let opts = CallOptions::new()
        .session("sess-rs")
        .conversation("conv-rs")
        .user("user-rs")
        .channel("rust")
        .traceparent(TRACEPARENT)
        .meta("biz.key", "v1")
        .meta("nested", json!({"a": [1, 2.5]}));
    let reply = bus
        .invoke_with("py-echo", payload.clone(), opts)
        .await
        .unwrap();
    assert_eq!(reply.event_type, "agent.response.final");
    assert!(reply.is_final);
    assert_eq!(reply.seq, 0);
    let seen = reply.payload.clone().expect("echo payload");
    assert_eq!(
        seen["payload"], payload,
        "request payload reached Python intact"
    );
    assert_eq!(reply.correlation_id, seen["event_id"].as_str().unwrap());
    assert_eq!(
        (reply.from.as_str(), reply.to.as_str()),
        ("py-server", "rust")
    );
    assert_eq!(seen["from"], "rust");
    assert_eq!(seen["to"], "py-echo");
    assert_eq!(reply.session_id, "sess-rs");
    assert_eq!(reply.conversation_id, "conv-rs");
    assert_eq!(reply.user_id, "user-rs");
    assert_eq!(reply.channel, "rust");
    assert_eq!(seen["session_id"], "sess-rs");
    let sent_meta = seen["metadata"].as_object().expect("request metadata");
    assert_eq!(sent_meta["biz.key"], "v1");
    assert!(sent_meta["acp.timeout_ms"].is_u64(), "{sent_meta:?}");
    let tp = seen["traceparent"].as_str().unwrap();
    assert!(
        tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "trace continued: {tp}"
    );
    assert_eq!(reply.traceparent, tp);
    assert_eq!(
        reply.metadata,
        meta(json!({"biz.key": "v1", "nested": {"a": [1, 2.5]}})),
        "non-acp metadata inherited, acp.* dropped"
    );

    // stream: every frame, in order, correlated, metadata inherited.
    let mut s = bus
        .stream_invoke_with(
            "py-chat",
            json!("one two three"),
            CallOptions::new().meta("biz.key", "v2").session("sess-rs"),
        )
        .await
        .unwrap();
    let request_id = s.request_id().to_owned();
    let mut fs = Vec::new();
    while let Some(f) = s.next().await {
        fs.push(f.unwrap());
    }
    assert_eq!(
        shape(&fs),
        owned(&[
            ("agent.response.started", 0, false),
            ("agent.response.delta", 1, false),
            ("agent.response.delta", 2, false),
            ("agent.response.delta", 3, false),
            ("agent.response.final", 4, true),
        ])
    );
    for f in &fs {
        assert_eq!(f.correlation_id, request_id);
        assert_eq!(f.metadata, meta(json!({"biz.key": "v2"})));
        assert_eq!(f.session_id, "sess-rs");
        assert_eq!(f.from, "py-server");
    }
    assert_eq!(fs[0].payload, Some(json!({"meta": {"model": "python"}})));
    let deltas: Vec<String> = fs[1..4]
        .iter()
        .map(|f| f.payload_as::<DeltaPayload>().unwrap().delta)
        .collect();
    assert_eq!(deltas, ["one", "two", "three"]);
    assert_eq!(fs[4].payload, Some(json!({"result": {"words": 3}})));

    // invoke of a Python stream handler: the terminal frame is the answer.
    let reply = bus.invoke("py-chat", json!("a b")).await.unwrap();
    assert_eq!(reply.payload, Some(json!({"result": {"words": 2}})));
    assert_eq!(reply.seq, 3);

    // Python handler errors arrive with their codes.
    let err = bus.invoke("py-fail", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
    assert_eq!(err.message(), "python says no");
    assert!(!err.retryable());
    let err = bus.invoke("py-crash", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentUnavailable, "{err}");
    assert_eq!(err.message(), "python crashed");

    let mut s = bus
        .stream_invoke("py-fail-stream", json!(null))
        .await
        .unwrap();
    let request_id = s.request_id().to_owned();
    let mut fs = Vec::new();
    while let Some(f) = s.next().await {
        fs.push(f.unwrap());
    }
    assert_eq!(
        shape(&fs),
        owned(&[
            ("agent.response.delta", 0, false),
            ("agent.response.error", 1, true)
        ])
    );
    assert!(fs.iter().all(|f| f.correlation_id == request_id));
    let err = fs[1].error().unwrap();
    assert_eq!(err.code(), ErrorCode::AgentTimeout);
    assert_eq!(err.message(), "python stream gave up");
    assert!(err.retryable());

    let done = bus
        .stream_invoke("py-silent", json!(null))
        .await
        .unwrap()
        .final_payload()
        .await
        .unwrap();
    assert_eq!(done, Value::Null);

    // Tenant-scoped subjects agree.
    let reply = bus
        .invoke_with("echo", json!(null), CallOptions::new().tenant("acme"))
        .await
        .unwrap();
    assert_eq!(
        reply.payload,
        Some(json!({"tenant": "acme", "served_by": "py-acme"}))
    );
    assert_eq!(reply.tenant_id, "acme");

    // Nobody serves it: the Rust caller learns at once, with the Python peer on the server.
    let started = std::time::Instant::now();
    let err = bus.invoke("py-nobody", json!(null)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoHandler);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A mixed fleet: Rust and Python workers of the same targets share one
    // queue group, and the Rust caller cannot tell them apart.
    bus.handle_invoke(
        "mixed",
        |_req| async move { Ok(json!({"served_by": "rust"})) },
    )
    .await
    .unwrap();
    bus.handle_stream("mixed-stream", |_req, w| async move {
        w.delta_text("rust").await?;
        w.finish(json!({"served_by": "rust"})).await
    })
    .await
    .unwrap();
    bus.transport().flush().await.unwrap();
    let mut invoked = std::collections::BTreeMap::<String, usize>::new();
    let mut streamed = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..40 {
        let reply = bus.invoke("mixed", json!(null)).await.unwrap();
        let by = reply.payload.unwrap()["served_by"]
            .as_str()
            .unwrap()
            .to_owned();
        *invoked.entry(by).or_default() += 1;
        let mut s = bus
            .stream_invoke("mixed-stream", json!(null))
            .await
            .unwrap();
        let mut fs = Vec::new();
        while let Some(f) = s.next().await {
            fs.push(f.unwrap());
        }
        let by = fs.last().unwrap().payload.clone().unwrap()["result"]["served_by"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            fs[0].payload_as::<DeltaPayload>().unwrap().delta,
            by,
            "one worker served the whole stream"
        );
        *streamed.entry(by).or_default() += 1;
    }
    for counts in [&invoked, &streamed] {
        assert_eq!(
            counts.keys().collect::<Vec<_>>(),
            ["python", "rust"],
            "{counts:?}"
        );
    }

    assert_eq!(bus.stats().bad_messages, 0, "{:?}", bus.stats());
    py.finish().await;
}

// ---------------------------------------------------------------------------
// (c) Events both ways

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cross_between_rust_and_python_both_ways() {
    bounded(events_both_ways()).await
}

async fn events_both_ways() {
    let nats = NatsServer::start();
    let bus = rust_bus(&nats).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for event_type in ["interop.py_to_rs", "agent.task.completed"] {
        let tx = tx.clone();
        bus.subscribe(event_type, move |env: Envelope| {
            let tx = tx.clone();
            async move {
                if env.from != "rust" {
                    tx.send(env).unwrap();
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    }
    let mut py = PyPeer::spawn("events.py", &nats.url());
    py.expect("ready").await;

    // Rust -> Python.
    let mut note = Envelope::new("interop.rs_to_py")
        .with_payload(json!({"text": "from rust ✓", "list": [1, 2.5, null], "deep": {"x": {}}}))
        .with_metadata("biz.key", json!("rs"))
        .with_metadata("nested", json!({"a": [true]}))
        .with_session("sess-events");
    note.conversation_id = "conv-events".into();
    note.correlation_id = "corr-rs-1".into();
    note.user_id = "user-rs".into();
    note.channel = "rust".into();
    note.seq = 7;
    let mut done = Envelope::new("agent.task.completed")
        .with_payload(json!({"task_id": "t-rs", "status": "done"}));
    done.is_final = true;
    done.seq = 3;
    done.correlation_id = "task-rs".into();
    let sent = [note.clone(), done.clone()];
    bus.publish(note).await.unwrap();
    bus.publish(done).await.unwrap();
    for _ in 0..2 {
        let got = envelope(&py.expect("event").await["env"]);
        let want = sent
            .iter()
            .find(|e| e.event_type == got.event_type)
            .unwrap_or_else(|| panic!("unexpected event {got:?}"));
        assert_eq!(got.event_id, want.event_id);
        assert_eq!(got.payload, want.payload);
        assert_eq!(got.metadata, want.metadata);
        assert_eq!(got.seq, want.seq);
        assert_eq!(got.is_final, want.is_final);
        assert_eq!(got.correlation_id, want.correlation_id);
        assert_eq!(got.session_id, want.session_id);
        assert_eq!(got.conversation_id, want.conversation_id);
        assert_eq!(got.user_id, want.user_id);
        assert_eq!(got.channel, want.channel);
        assert_eq!(got.from, "rust");
        assert!(!got.traceparent.is_empty(), "the publish carried a trace");
        // Python keeps microseconds: the instant survives to that precision.
        let skew = (got.occurred_at - want.occurred_at)
            .num_nanoseconds()
            .unwrap()
            .abs();
        assert!(skew < 1_000, "occurred_at moved by {skew} ns");
    }

    // Python -> Rust.
    py.send("publish").await;
    let mut published = Vec::new();
    for _ in 0..2 {
        published.push(envelope(&py.expect("published").await["env"]));
    }
    for _ in 0..2 {
        let got = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("a Python event within the limit")
            .expect("channel open");
        let want = published
            .iter()
            .find(|e| e.event_id == got.event_id)
            .unwrap_or_else(|| panic!("unexpected event {got:?}"));
        assert_eq!(&got, want, "every field as Python sent it");
    }
    let note = published
        .iter()
        .find(|e| e.event_type == "interop.py_to_rs")
        .unwrap();
    assert_eq!(note.seq, 5);
    assert_eq!(note.from, "py-events");
    assert_eq!(
        note.metadata,
        meta(json!({"biz.key": "py", "nested": {"a": [true]}}))
    );
    assert_eq!(
        note.payload,
        Some(json!({"text": "from python ✓", "list": [1, 2.5, null]}))
    );
    let done = published
        .iter()
        .find(|e| e.event_type == "agent.task.completed")
        .unwrap();
    assert!(done.is_final);
    assert_eq!(done.seq, 2);

    assert_eq!(bus.stats().bad_messages, 0);
    py.finish().await;
}

// ---------------------------------------------------------------------------
// (d) The `echo_agent` example, called from Python

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_caller_calls_the_echo_agent_example() {
    bounded(python_calls_echo_agent()).await
}

async fn python_calls_echo_agent() {
    let nats = NatsServer::start();
    let mut agent = tokio::process::Command::new(openagentio_testkit::example_bin("echo_agent"))
        .args(["--bus", &nats.url(), "--word-delay-ms", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(agent.stdout.take().unwrap()).lines();
    while let Some(line) = out.next_line().await.unwrap() {
        if line.contains("serving `echo` and `chat`") {
            break;
        }
    }
    // Keep reading so the agent never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });

    let mut py = PyPeer::spawn("call_echo_agent.py", &nats.url());
    let echo = py.expect("echo").await;
    let (req, reply) = (envelope(&echo["request"]), envelope(&echo["reply"]));
    assert_eq!(reply.event_type, "agent.response.final");
    assert_eq!(reply.correlation_id, req.event_id);
    assert_eq!(reply.payload, Some(json!({"msg": "from python"})));
    assert_eq!(reply.metadata.get("biz.key"), Some(&json!("py")));
    assert_eq!(reply.from, "echo-agent");

    let chat = py.expect("chat").await;
    let req = envelope(&chat["request"]);
    let frames = frames(&chat);
    assert_eq!(
        shape(&frames),
        owned(&[
            ("agent.response.started", 0, false),
            ("agent.response.delta", 1, false),
            ("agent.response.delta", 2, false),
            ("agent.response.delta", 3, false),
            ("agent.response.final", 4, true),
        ])
    );
    assert!(frames.iter().all(|f| f.correlation_id == req.event_id));
    let text: String = frames[1..4]
        .iter()
        .map(|f| f.payload_or_null()["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "one two three");
    py.expect("done").await;
}

/// A reference handler sends without flow control: a burst of 20,000 frames
/// to the CLI, whose output is not read for a while (a slow terminal), waits
/// in the CLI's buffer rather than ending the stream with `BACKPRESSURE_DROP`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_holds_a_burst_from_a_reference_handler() {
    bounded(cli_holds_a_burst()).await
}

async fn cli_holds_a_burst() {
    use tokio::io::AsyncReadExt;
    let nats = NatsServer::start();
    let mut py = PyPeer::spawn("serve_rust.py", &nats.url());
    py.expect("ready").await;
    const N: usize = 20_000;
    let mut cli = Command::new(env!("CARGO_BIN_EXE_openagentio"))
        .args([
            "stream",
            "py-burst",
            &format!("{{\"n\": {N}}}"),
            "--bus",
            &nats.url(),
        ])
        .args(["--timeout", "60s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The pipe fills (64 KiB) and the CLI's printing stops while the
    // handler goes on sending.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut out = String::new();
    cli.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let mut err = String::new();
    cli.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    let status = cli.wait().await.unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(out.trim_end().len(), N * "abcdefgh".len(), "{err}");
    py.finish().await;
}

/// The service's built-in `echo` bridge, called from Python: a reference
/// `invoke` keeps the first frame it gets, so a caller that does not ask for
/// frames gets the answer alone (from a stream target too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_caller_gets_the_answer_of_the_echo_bridge() {
    bounded(python_calls_echo_bridge()).await
}

async fn python_calls_echo_bridge() {
    use openagentio_core::Bridge;
    use openagentio_host::echo_bridge::{EchoBridge, EchoConfig};
    let nats = NatsServer::start();
    let bus = rust_bus(&nats).await;
    let mut bridges = Vec::new();
    // The script calls `echo` with `invoke` and `chat` with `stream_invoke`.
    for target in ["echo", "chat"] {
        let config = EchoConfig {
            target: target.into(),
            word_delay: Duration::from_millis(1),
        };
        let mut bridge = EchoBridge::new(target, config);
        bridge.start(&bus).await.unwrap();
        bridges.push(bridge);
    }

    let mut py = PyPeer::spawn("call_echo_agent.py", &nats.url());
    let echo = py.expect("echo").await;
    let (req, reply) = (envelope(&echo["request"]), envelope(&echo["reply"]));
    assert_eq!(reply.event_type, "agent.response.final");
    assert_eq!(reply.correlation_id, req.event_id);
    assert_eq!(reply.payload, Some(json!({"msg": "from python"})));
    assert_eq!(reply.metadata.get("biz.key"), Some(&json!("py")));

    let chat = py.expect("chat").await;
    let frames = frames(&chat);
    assert_eq!(shape(&frames), owned(&[("agent.response.final", 0, true)]));
    assert_eq!(frames[0].payload, Some(json!({"text": "one two three"})));
    py.expect("done").await;
    for mut bridge in bridges {
        bridge.stop().await.unwrap();
    }
}

// ---------------------------------------------------------------------------
// (e) A custom subject prefix and a tenant, on both sides

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_prefix_and_tenant_match_the_reference_subjects() {
    bounded(scoped_both_ways()).await
}

async fn scoped_both_ways() {
    let nats = NatsServer::start();
    let bus = nats_bus(
        &nats.url(),
        rust_builder().subject_prefix("myco.agents").tenant("acme"),
    )
    .await;
    bus.handle_invoke("rs-scoped", |req| async move {
        Ok(json!({"answered": req.payload().clone(), "tenant": req.envelope().tenant_id.as_str()}))
    })
    .await
    .unwrap();
    let (tx, mut events) = mpsc::unbounded_channel();
    bus.subscribe("scoped.to_rs", into_channel(tx))
        .await
        .unwrap();

    let mut py = PyPeer::spawn("scoped.py", &nats.url());
    py.expect("ready").await;

    // Rust calls Python: same prefix, same tenant.
    let reply = bus.invoke("scoped-echo", json!({"n": 1})).await.unwrap();
    assert_eq!(
        reply.payload,
        Some(json!({"echoed": {"n": 1}, "tenant": "acme"}))
    );
    // A bus on the default prefix, or another tenant, does not reach it.
    let plain = rust_bus(&nats).await;
    let err = plain.invoke("scoped-echo", json!(null)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoHandler, "{err}");
    let err = bus
        .invoke_with(
            "scoped-echo",
            json!(null),
            CallOptions::new().tenant("other"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoHandler, "{err}");

    // Python calls Rust.
    py.send("call").await;
    let r = py.expect("reply").await;
    let (req, reply) = (envelope(&r["request"]), envelope(&r["reply"]));
    assert_eq!(reply.correlation_id, req.event_id);
    assert_eq!(
        reply.payload,
        Some(json!({"answered": {"ask": "rust"}, "tenant": "acme"}))
    );

    // Events both ways.
    bus.emit("scoped.to_py", json!({"from": "rust"}))
        .await
        .unwrap();
    let e = py.expect("event").await;
    let env = envelope(&e["env"]);
    assert_eq!(env.payload, Some(json!({"from": "rust"})));
    py.send("publish").await;
    py.expect("published").await;
    let got = tokio::time::timeout(LIMIT, events.recv())
        .await
        .expect("the Python event did not arrive")
        .unwrap();
    assert_eq!(got.payload, Some(json!({"from": "python"})));
}

// ---------------------------------------------------------------------------
// (f) Dead letters both ways

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_cross_between_rust_and_python() {
    bounded(dead_letters_both_ways()).await
}

async fn dead_letters_both_ways() {
    let nats = NatsServer::start();
    let bus = nats_bus(
        &nats.url(),
        rust_builder().middleware(openagentio_core::middleware::DeadLetter),
    )
    .await;
    bus.handle_invoke("rs-doomed", |_req| async move {
        Err::<Value, _>(BusError::invalid("rust handler gave up"))
    })
    .await
    .unwrap();
    let (tx, mut dead) = mpsc::unbounded_channel();
    bus.subscribe_dead_letters(">", into_channel(tx))
        .await
        .unwrap();
    let mut py = PyPeer::spawn("dead_letters.py", &nats.url());
    py.expect("ready").await;

    // A Python handler's failure, dead-lettered by the reference middleware,
    // reaches the Rust dead-letter subscription with its metadata.
    let err = bus
        .invoke_with(
            "py-doomed",
            json!({"n": 1}),
            CallOptions::new().meta("biz.key", "py-dlq"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("python handler gave up"), "{err}");
    let letter = tokio::time::timeout(LIMIT, dead.recv())
        .await
        .expect("no dead letter from Python")
        .unwrap();
    assert_eq!(letter.payload, Some(json!({"n": 1})));
    assert_eq!(
        letter.metadata.get("acp.dlq.original_event_type"),
        Some(&json!("agent.message.received"))
    );
    let last_error = letter.metadata["acp.dlq.last_error"].as_str().unwrap();
    assert!(
        last_error.contains("python handler gave up"),
        "{last_error}"
    );
    assert_eq!(letter.metadata.get("biz.key"), Some(&json!("py-dlq")));
    let seen = py.expect("dead").await;
    assert_eq!(seen["subject"], "acp.v1.dlq.agent.message.received");

    // A Rust handler's dead letter is read by the Python side, on the same
    // subject and with the same keys.
    let err = bus.invoke("rs-doomed", json!({"n": 2})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
    let seen = py.expect("dead").await;
    assert_eq!(seen["subject"], "acp.v1.dlq.agent.message.received");
    let env = envelope(&seen["env"]);
    assert_eq!(env.payload, Some(json!({"n": 2})));
    assert_eq!(
        env.metadata.get("acp.dlq.original_event_type"),
        Some(&json!("agent.message.received"))
    );
    let last_error = env.metadata["acp.dlq.last_error"].as_str().unwrap();
    assert!(last_error.contains("rust handler gave up"), "{last_error}");
}
