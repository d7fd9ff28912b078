//! The bridge against a server written with the Python `mcp` SDK
//! (tests/python/mcp_test_server.py).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ServerProcess, eventually, free_port, python, python_server, start, test_script};
use openagentio_core::{Bridge, ErrorCode};
use openagentio_mcp::{McpConfig, McpTransport};
use serde_json::json;

fn stdio(record: &std::path::Path) -> McpConfig {
    let mut t = McpTransport::stdio(python(), [python_server()]);
    if let McpTransport::Stdio { env, .. } = &mut t {
        env.insert(
            "OPENAGENTIO_TEST_RECORD".into(),
            record.to_string_lossy().into_owned(),
        );
    }
    McpConfig::new(t)
}

fn recorded(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_is_cancelled_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.txt");
    let mut cfg = stdio(&record);
    cfg.tool_timeouts
        .insert("slow".into(), Duration::from_millis(500));
    let (bus, mut bridge) = start("py", cfg).await;
    let t0 = Instant::now();
    let e = bus
        .invoke("py.slow", json!({"seconds": 10, "steps": 10}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AgentTimeout);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // The server saw notifications/cancelled and stopped the tool.
    assert!(
        eventually(Duration::from_secs(5), || recorded(&record)
            == ["started", "cancelled"])
        .await,
        "record: {:?}",
        recorded(&record)
    );
    // The session is still good.
    let r = bus
        .invoke("py.echo", json!({"text": "still here"}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "still here");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_cancels_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record.txt");
    let (bus, mut bridge) = start("py", stdio(&record)).await;
    let mut s = bus
        .stream_invoke("py.slow", json!({"seconds": 10, "steps": 20}))
        .await
        .unwrap();
    let started = s.next().await.unwrap().unwrap();
    assert_eq!(
        started.payload,
        Some(json!({"meta": {"tool": "slow", "server": "openagentio-python-test"}}))
    );
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(
        first.payload,
        Some(json!({"data": {"progress": 1, "total": 20, "message": "step 1"}}))
    );
    drop(s);
    assert!(
        eventually(Duration::from_secs(5), || recorded(&record)
            == ["started", "cancelled"])
        .await,
        "record: {:?}",
        recorded(&record)
    );
    bridge.stop().await.unwrap();
}

/// An answer over the 16 MiB a message may have cannot be read: the call
/// fails at once saying so, not at its timeout, and the server is served
/// again after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_too_large_to_read_fails_at_once_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = stdio(&dir.path().join("r"));
    cfg.timeout = Duration::from_secs(60);
    let (bus, mut bridge) = start("py", cfg).await;
    let started = Instant::now();
    let e = bus
        .invoke("py.big", json!({"megabytes": 17}))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.code(), ErrorCode::AgentUnavailable, "{e}");
    assert!(e.message().contains("over 16 MiB"), "{e}");
    let mut served = false;
    for _ in 0..200 {
        if bus
            .invoke("py.echo", json!({"text": "after"}))
            .await
            .is_ok()
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "not served again");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tool_is_an_invalid_request_with_its_text() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, mut bridge) = start("py", stdio(&dir.path().join("r"))).await;
    let e = bus
        .invoke("py.fail", json!({"message": "the disk is full"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(
        e.message().starts_with("mcp bridge 'py': tool error: "),
        "{}",
        e.message()
    );
    assert!(e.message().contains("the disk is full"), "{}", e.message());
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_schema_is_enforced_before_the_call() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, mut bridge) = start("py", stdio(&dir.path().join("r"))).await;
    let schema = bridge
        .targets()
        .into_iter()
        .find(|t| t.name == "py.strict")
        .unwrap()
        .input_schema
        .unwrap();
    assert_eq!(schema["properties"]["count"]["maximum"], 10);
    for (args, field) in [
        (json!({"count": 11, "mode": "fast", "tag": "a"}), "/count"),
        (json!({"count": 1, "mode": "slow", "tag": "a"}), "/mode"),
        (json!({"count": 1, "mode": "fast", "tag": "A1"}), "/tag"),
        (json!({"count": "1", "mode": "fast", "tag": "a"}), "/count"),
    ] {
        let e = bus.invoke("py.strict", args.clone()).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidRequest, "{args}");
        assert!(
            e.message().contains(&format!("at {field}:")),
            "{args}: {}",
            e.message()
        );
    }
    let e = bus
        .invoke("py.strict", json!({"count": 1}))
        .await
        .unwrap_err();
    assert!(
        e.message()
            .ends_with("missing required argument(s): mode, tag"),
        "{}",
        e.message()
    );
    let r = bus
        .invoke(
            "py.strict",
            json!({"count": 3, "mode": "safe", "tag": "ok"}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.payload.unwrap()["structuredContent"],
        json!({"count": 3, "mode": "safe", "tag": "ok"})
    );
    bridge.stop().await.unwrap();
}

/// Over Streamable HTTP, an answer too large to read arrives on its own
/// request's stream: that call fails at once saying why, and the calls beside
/// it on the same server are answered (the connection is not dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_answer_too_large_fails_only_its_own_call() {
    let port = free_port();
    let mut cmd = Command::new(python());
    cmd.args([python_server(), "--http".into(), port.to_string()]);
    let server = ServerProcess::start(cmd, port);
    let mut cfg = McpConfig::new(McpTransport::streamable_http(server.url()));
    cfg.timeout = Duration::from_secs(60);
    let (bus, mut bridge) = start("pyhttp", cfg).await;
    let slow = {
        let bus = bus.clone();
        tokio::spawn(async move {
            bus.invoke("pyhttp.slow", json!({"seconds": 3, "steps": 3}))
                .await
        })
    };
    let started = Instant::now();
    let e = bus
        .invoke("pyhttp.big", json!({"megabytes": 17}))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.code(), ErrorCode::TransportFailure, "{e}");
    assert!(e.message().contains("too large"), "{e}");
    let slow = slow.await.unwrap().expect("the call beside it is answered");
    assert_eq!(slow.payload.unwrap()["text"], "slept 3.0");
    let r = bus
        .invoke("pyhttp.echo", json!({"text": "after"}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "after");
    assert_eq!(bridge.restarts(), 0, "the connection was dropped");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_http_server_gets_a_new_session() {
    let port = free_port();
    let server = || {
        let mut cmd = Command::new(python());
        cmd.args([python_server(), "--http".into(), port.to_string()]);
        ServerProcess::start(cmd, port)
    };
    let mut first = server();
    let mut cfg = McpConfig::new(McpTransport::streamable_http(first.url()));
    cfg.restart.initial_backoff = Duration::from_millis(100);
    cfg.restart.max_backoff = Duration::from_millis(500);
    // Fast retries while the new process starts (slowly on a loaded machine):
    // this test is about the new session, not about giving up.
    cfg.restart.max_restarts = 1000;
    let (bus, mut bridge) = start("pyhttp", cfg).await;
    let r = bus
        .invoke("pyhttp.echo", json!({"text": "one"}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "one");
    // The new process knows nothing of the old session.
    first.kill();
    let _second = server();
    assert!(
        eventually(Duration::from_secs(30), || bridge.is_connected()
            && bridge.health().state == openagentio_core::HealthState::Healthy)
        .await
    );
    let mut answer = None;
    for _ in 0..50 {
        match bus.invoke("pyhttp.echo", json!({"text": "two"})).await {
            Ok(r) => {
                answer = r.payload;
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::AgentUnavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert_eq!(answer.unwrap()["text"], "two");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_without_an_input_schema_is_served_not_fatal() {
    let script = test_script("sloppy_server.py");
    let cfg = McpConfig::new(McpTransport::stdio(python(), [script]));
    let (bus, mut bridge) = start("sloppy", cfg).await;
    // Both tools are served: the one without a schema takes any object.
    let loose = bus
        .invoke("sloppy.loose", json!({"anything": [1, 2]}))
        .await
        .unwrap();
    assert_eq!(
        loose.payload_or_null()["text"],
        r#"{"anything": [1, 2]}"#,
        "{loose:?}"
    );
    let strict = bus.invoke("sloppy.strict", json!({"a": 2})).await.unwrap();
    assert_eq!(strict.payload_or_null()["text"], r#"{"a": 2}"#);
    let e = bus
        .invoke("sloppy.strict", json!({"a": "two"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert_eq!(
        bridge.health().state,
        openagentio_core::HealthState::Healthy
    );
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_handshake_is_reported_with_the_servers_reason() {
    refused_handshake(false).await;
    // A server that exits after refusing is reported by its words too, not
    // as a process that exited.
    refused_handshake(true).await;
}

async fn refused_handshake(then_exit: bool) {
    let script = test_script("sloppy_server.py");
    let mut t = McpTransport::stdio(python(), [script]);
    if let McpTransport::Stdio { env, .. } = &mut t {
        env.insert(
            "SLOPPY_REFUSE_INIT".into(),
            "protocol version not supported".into(),
        );
        if then_exit {
            env.insert("SLOPPY_EXIT_AFTER_REFUSING".into(), "1".into());
        }
    }
    let mut cfg = McpConfig::new(t);
    cfg.connect_timeout = Duration::from_secs(5);
    let bus = openagentio_core::Bus::memory();
    let mut bridge = openagentio_mcp::McpBridge::new("refusing", cfg).unwrap();
    // The start may fail, or go on retrying in the background: either way
    // the server's own words are what the user reads.
    let reason = match bridge.start(&bus).await {
        Err(e) => e.to_string(),
        Ok(()) => {
            let mut reason = String::new();
            eventually(Duration::from_secs(4), || {
                reason = bridge.health().reason.unwrap_or_default();
                reason.contains("protocol version not supported")
            })
            .await;
            let _ = bridge.stop().await;
            reason
        }
    };
    assert!(
        reason.contains("protocol version not supported"),
        "{reason}"
    );
}
