//! The bridge against our own rmcp demo server over stdio.

mod common;

use std::time::{Duration, Instant};

use common::{demo_bin, eventually, kill_pid, start};
use futures::future::join_all;
use openagentio_core::{Bridge, CallOptions, ErrorCode, HealthState};
use openagentio_mcp::{McpBridge, McpConfig, McpTransport};
use serde_json::{Value, json};

fn demo() -> McpConfig {
    McpConfig::new(McpTransport::stdio(demo_bin(), Vec::<String>::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_tools_becomes_a_target() {
    let (_bus, mut bridge) = start("demo", demo()).await;
    let mut names: Vec<String> = bridge.targets().into_iter().map(|t| t.name).collect();
    names.sort();
    // Eleven tools in pages of four: all three pages were read.
    assert_eq!(names.len(), 11, "{names:?}");
    for t in [
        "demo.echo",
        "demo.add",
        "demo.slow",
        "demo.fail",
        "demo.stats",
    ] {
        assert!(names.contains(&t.to_owned()), "{t} missing from {names:?}");
    }
    // A name that is not a subject token is mapped, stably.
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("demo.dotted_name_tool-")),
        "{names:?}"
    );
    let echo = bridge
        .targets()
        .into_iter()
        .find(|t| t.name == "demo.echo")
        .unwrap();
    assert!(echo.streaming);
    assert_eq!(echo.bridge, "demo");
    assert_eq!(echo.description, "Returns its text.");
    assert_eq!(echo.input_schema.unwrap()["required"], json!(["text"]));
    assert_eq!(bridge.health().state, HealthState::Healthy);
    assert_eq!(bridge.kind(), "mcp_tool");
    bridge.stop().await.unwrap();
    assert!(bridge.targets().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_answers_with_the_mapped_result() {
    let (bus, mut bridge) = start("demo", demo()).await;
    let r = bus
        .invoke("demo.echo", json!({"text": "hello"}))
        .await
        .unwrap();
    assert_eq!(
        r.payload.unwrap(),
        json!({"content": [{"type": "text", "text": "hello"}], "text": "hello"})
    );
    let r = bus
        .invoke("demo.add", json!({"a": 2, "b": 2.5}))
        .await
        .unwrap();
    assert_eq!(
        r.payload.unwrap(),
        json!({"content": [{"type": "text", "text": "4.5"}], "structuredContent": {"sum": 4.5}, "text": "4.5"})
    );
    let r = bus.invoke("demo.image", Value::Null).await.unwrap();
    let p = r.payload.unwrap();
    assert_eq!(p["content"][1]["type"], "image");
    assert_eq!(p["content"][1]["mimeType"], "image/png");
    assert!(
        p["content"][1]["data"]
            .as_str()
            .unwrap()
            .starts_with("iVBOR")
    );
    assert!(p.get("text").is_none());
    let dotted = bridge
        .targets()
        .into_iter()
        .find(|t| t.name.starts_with("demo.dotted_name_tool-"))
        .unwrap();
    let r = bus.invoke(&dotted.name, json!({})).await.unwrap();
    assert_eq!(r.payload.unwrap()["text"], "dotted");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_and_trace_travel_in_meta() {
    let (bus, mut bridge) = start("demo", demo()).await;
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let r = bus
        .invoke_with(
            "demo.meta",
            json!({}),
            CallOptions::new().session("sess-42").traceparent(tp),
        )
        .await
        .unwrap();
    let meta = &r.payload.unwrap()["structuredContent"];
    assert_eq!(meta["session_id"], "sess-42");
    // The request's own span: same trace as the caller's.
    let sent = meta["traceparent"].as_str().unwrap();
    assert!(
        sent.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
        "{sent}"
    );
    assert!(meta.get("progressToken").is_some());
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_checked_before_the_call() {
    let (bus, mut bridge) = start("demo", demo()).await;
    let e = bus.invoke("demo.add", json!({"a": 1})).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert_eq!(
        e.message(),
        "mcp bridge 'demo': tool 'add' missing required argument(s): b"
    );
    let e = bus
        .invoke("demo.add", json!({"a": 1, "b": "two"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(e.message().contains("at /b"), "{}", e.message());
    let e = bus
        .invoke("demo.add", json!({"a": 1, "b": 2, "c": 3}))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("'c'") || e.message().contains("\"c\""),
        "{}",
        e.message()
    );
    let e = bus.invoke("demo.echo", json!(["text"])).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert_eq!(
        e.message(),
        "mcp bridge 'demo': tool arguments must be a JSON object"
    );
    // None of those reached the server.
    let stats = bus.invoke("demo.stats", Value::Null).await.unwrap();
    assert_eq!(stats.payload.unwrap()["structuredContent"]["calls"], 1);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_and_protocol_errors_map_to_wire_codes() {
    let (bus, mut bridge) = start("demo", demo()).await;
    let e = bus
        .invoke("demo.fail", json!({"message": "disk full"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert_eq!(e.message(), "mcp bridge 'demo': tool error: disk full");
    let e = bus
        .invoke(
            "demo.fail",
            json!({"mode": "invalid_params", "message": "nope"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(
        e.message().contains("invalid tool arguments: nope"),
        "{}",
        e.message()
    );
    let e = bus
        .invoke("demo.fail", json!({"mode": "method_not_found"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AgentUnavailable);
    let e = bus
        .invoke("demo.fail", json!({"mode": "internal"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::TransportFailure);
    // The connection survives tool and protocol errors.
    assert!(bridge.is_connected());
    assert_eq!(bridge.restarts(), 0);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_callers_get_progress_then_the_result() {
    let (bus, mut bridge) = start("demo", demo()).await;
    let mut s = bus
        .stream_invoke("demo.slow", json!({"seconds": 0.3, "steps": 3}))
        .await
        .unwrap();
    let mut frames = Vec::new();
    while let Some(f) = s.next().await {
        frames.push(f.unwrap());
    }
    let types: Vec<&str> = frames.iter().map(|f| f.event_type.as_str()).collect();
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
    let started = frames[0].payload.as_ref().unwrap();
    assert_eq!(started["meta"]["tool"], "slow", "{started}");
    assert!(started["meta"]["server"].is_string(), "{started}");
    assert_eq!(
        frames[2].payload,
        Some(json!({"data": {"progress": 2, "total": 3, "message": "step 2 of 3"}}))
    );
    assert_eq!(
        frames[4].payload.as_ref().unwrap()["result"]["text"],
        "slept 0.3 s in 3 steps"
    );
    // An invoking caller of the same tool gets only the answer.
    let r = bus
        .invoke("demo.slow", json!({"seconds": 0.1, "steps": 2}))
        .await
        .unwrap();
    assert_eq!(r.seq, 0);
    assert_eq!(r.payload.unwrap()["text"], "slept 0.1 s in 2 steps");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_cancel_the_mcp_request() {
    let mut cfg = demo();
    cfg.timeout = Duration::from_millis(300);
    cfg.tool_timeouts
        .insert("echo".into(), Duration::from_secs(5));
    let (bus, mut bridge) = start("demo", cfg).await;
    let t0 = Instant::now();
    let e = bus
        .invoke("demo.slow", json!({"seconds": 5, "steps": 50}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AgentTimeout);
    assert_eq!(e.message(), "mcp bridge 'demo': tool call timed out");
    assert!(t0.elapsed() < Duration::from_secs(2));
    // The server saw notifications/cancelled.
    let cancelled = eventually_cancelled(&bus, 1).await;
    assert!(cancelled, "the server did not see the cancellation");
    // A caller with a shorter deadline than the tool's: its deadline wins, and it cancels too.
    let e = bus
        .invoke_with(
            "demo.slow",
            json!({"seconds": 5, "steps": 50}),
            CallOptions::new().timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AgentTimeout);
    assert!(eventually_cancelled(&bus, 2).await);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_cancels_the_mcp_request() {
    let (bus, mut bridge) = start("demo", demo()).await;
    let mut s = bus
        .stream_invoke("demo.slow", json!({"seconds": 10, "steps": 100}))
        .await
        .unwrap();
    // Wait for the first progress frame, then walk away.
    let started = s.next().await.unwrap().unwrap();
    assert_eq!(started.event_type, "agent.response.started");
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(first.event_type, "agent.response.delta");
    drop(s);
    assert!(
        eventually_cancelled(&bus, 1).await,
        "the server did not see the cancellation"
    );
    bridge.stop().await.unwrap();
}

async fn eventually_cancelled(bus: &openagentio_core::Bus, n: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let stats = bus.invoke("demo.stats", Value::Null).await.unwrap();
        if stats.payload.unwrap()["structuredContent"]["cancelled"].as_u64() >= Some(n) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_list_changes_add_and_remove_targets() {
    let (bus, mut bridge) = start("demo", demo()).await;
    bus.invoke("demo.register_tool", json!({"name": "late one"}))
        .await
        .unwrap();
    let has = |b: &McpBridge| {
        b.targets()
            .iter()
            .any(|t| t.name.starts_with("demo.late_one-"))
    };
    assert!(eventually(Duration::from_secs(5), || has(&bridge)).await);
    let target = bridge
        .targets()
        .into_iter()
        .find(|t| t.name.starts_with("demo.late_one-"))
        .unwrap()
        .name;
    let r = bus.invoke(&target, json!({"x": 1})).await.unwrap();
    assert_eq!(r.payload.unwrap()["structuredContent"], json!({"x": 1}));
    bus.invoke("demo.unregister_tool", json!({"name": "late one"}))
        .await
        .unwrap();
    assert!(eventually(Duration::from_secs(5), || !has(&bridge)).await);
    let e = bus.invoke(&target, json!({})).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NoHandler);
    assert_eq!(bridge.restarts(), 0);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_pick_the_tools() {
    let mut cfg = demo();
    cfg.target_prefix = "tools.demo".into();
    cfg.include = vec!["e*".into(), "a?d".into(), "slow".into()];
    cfg.exclude = vec!["slow".into()];
    let (bus, mut bridge) = start("demo", cfg).await;
    let mut names: Vec<String> = bridge.targets().into_iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(names, ["tools.demo.add", "tools.demo.echo"]);
    let r = bus
        .invoke("tools.demo.echo", json!({"text": "x"}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "x");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_child_fails_calls_at_once_and_is_respawned() {
    let mut cfg = demo();
    cfg.timeout = Duration::from_secs(30);
    cfg.restart.initial_backoff = Duration::from_millis(100);
    let (bus, mut bridge) = start("demo", cfg).await;
    let pid = bridge.server_pid().expect("a child pid");
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let r = bus
                    .invoke("demo.slow", json!({"seconds": 20, "steps": 20}))
                    .await;
                (r, Instant::now())
            })
        })
        .collect();
    // Let the calls reach the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    kill_pid(pid);
    for r in join_all(calls).await {
        let (r, at) = r.unwrap();
        let e = r.unwrap_err();
        assert_eq!(e.code(), ErrorCode::AgentUnavailable, "{e}");
        assert!(
            at - killed < Duration::from_secs(1),
            "failed after {:?}",
            at - killed
        );
    }
    // Degraded while it respawns, then serving again with a new child.
    assert!(
        eventually(Duration::from_secs(30), || bridge.is_connected()
            && bridge.server_pid() != Some(pid))
        .await
    );
    let r = bus
        .invoke("demo.echo", json!({"text": "back"}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "back");
    assert_eq!(bridge.restarts(), 1);
    assert_eq!(bridge.health().state, HealthState::Healthy);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_during_a_respawn_fail_fast_as_unavailable() {
    let mut cfg = demo();
    cfg.restart.initial_backoff = Duration::from_secs(2);
    cfg.restart.max_backoff = Duration::from_secs(2);
    let (bus, mut bridge) = start("demo", cfg).await;
    kill_pid(bridge.server_pid().unwrap());
    assert!(eventually(Duration::from_secs(2), || !bridge.is_connected()).await);
    assert_eq!(bridge.health().state, HealthState::Degraded);
    let t0 = Instant::now();
    let e = bus
        .invoke("demo.echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AgentUnavailable);
    assert!(e.retryable());
    assert!(t0.elapsed() < Duration::from_millis(500));
    bridge.stop().await.unwrap();
    assert_eq!(bridge.health().state, HealthState::Unhealthy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_fails_start_for_good() {
    common::init_tracing();
    let bus = openagentio_core::Bus::memory();
    let cfg = McpConfig::new(McpTransport::stdio("/nonexistent/mcp-server", ["x"]));
    let mut bridge = McpBridge::new("ghost", cfg).unwrap();
    let e = bridge.start(&bus).await.unwrap_err();
    assert!(e.permanent, "{e}");
    assert!(e.message.contains("cannot start MCP server command"), "{e}");
    let h = bridge.health();
    assert_eq!(h.state, HealthState::Unhealthy);
    assert!(h.reason.unwrap().starts_with("start failed: cannot start"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_exits_at_once_is_retried_in_the_background() {
    common::init_tracing();
    let bus = openagentio_core::Bus::memory();
    let mut cfg = McpConfig::new(McpTransport::stdio("sh", ["-c", "echo broken >&2; exit 3"]));
    cfg.restart.initial_backoff = Duration::from_millis(50);
    let mut bridge = McpBridge::new("flaky", cfg).unwrap();
    bridge.start(&bus).await.unwrap();
    assert_ne!(bridge.health().state, HealthState::Healthy);
    assert!(eventually(Duration::from_secs(5), || bridge.restarts() >= 2).await);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_that_stopped_reconnecting_says_so_and_lists_no_tools() {
    let mut cfg = demo();
    // One restart allowed: the second crash stops it for good.
    cfg.restart = openagentio_core::supervisor::RestartPolicy {
        max_restarts: 1,
        window: Duration::from_secs(60),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(50),
    };
    let (bus, mut bridge) = start("demo", cfg).await;
    assert!(!bridge.targets().is_empty());
    let first = bridge.server_pid().unwrap();
    kill_pid(first);
    assert!(
        eventually(Duration::from_secs(10), || bridge.is_connected()
            && bridge.server_pid() != Some(first))
        .await
    );
    kill_pid(bridge.server_pid().unwrap());
    assert!(
        eventually(Duration::from_secs(10), || bridge.health().state
            == HealthState::Unhealthy)
        .await,
        "{:?}",
        bridge.health()
    );
    let e = bus
        .invoke("demo.echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::AgentUnavailable, "{e}");
    assert!(!e.retryable(), "{e}");
    assert!(e.message().contains("stopped reconnecting"), "{e}");
    assert!(bridge.targets().is_empty(), "{:?}", bridge.targets());
    bridge.stop().await.unwrap();
}

/// What the server starts (here a helper a launcher leaves behind) goes with
/// it: when the server dies and when the bridge stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_own_children_go_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("helpers");
    let script = format!(
        "sleep 600 & echo $! >> '{}'; exec '{}'",
        pids.display(),
        demo_bin()
    );
    let mut cfg = McpConfig::new(McpTransport::stdio("sh", ["-c", script.as_str()]));
    cfg.restart.initial_backoff = Duration::from_millis(100);
    let (_bus, mut bridge) = start("demo", cfg).await;
    let helper = |n: usize| -> u32 {
        let text = std::fs::read_to_string(&pids).unwrap();
        text.lines()
            .nth(n)
            .expect("a helper pid")
            .trim()
            .parse()
            .unwrap()
    };
    let alive = |pid: u32| {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z ")
    };
    let first = helper(0);
    assert!(alive(first));

    // The server dies: its helper too, and the new server has its own.
    let pid = bridge.server_pid().unwrap();
    kill_pid(pid);
    assert!(
        eventually(Duration::from_secs(5), || !alive(first)).await,
        "helper {first} left running"
    );
    assert!(
        eventually(Duration::from_secs(10), || bridge.is_connected()
            && bridge.server_pid() != Some(pid))
        .await
    );
    let second = helper(1);
    assert!(alive(second));

    // The bridge stops: the helper of the server it had goes too.
    bridge.stop().await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !alive(second)).await,
        "helper {second} left running"
    );
}
