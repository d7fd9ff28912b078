//! The bridge against `@modelcontextprotocol/server-everything` (npm), over
//! stdio and over Streamable HTTP.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{ServerProcess, eventually, everything, free_port, start};
use openagentio_core::{Bridge, Bus, ErrorCode, HealthState};
use openagentio_mcp::{McpBridge, McpConfig, McpTransport};
use serde_json::json;

async fn exercise(bus: &Bus, bridge: &McpBridge) {
    let p = |t: &str| format!("ev.{t}");
    assert_eq!(bridge.health().state, HealthState::Healthy);
    let echo = bridge
        .targets()
        .into_iter()
        .find(|t| t.name == "ev.echo")
        .unwrap();
    assert_eq!(echo.description, "Echoes back the input string");
    assert_eq!(echo.input_schema.unwrap()["required"], json!(["message"]));

    let r = bus
        .invoke(&p("echo"), json!({"message": "hi"}))
        .await
        .unwrap();
    assert_eq!(
        r.payload.unwrap(),
        json!({"content": [{"type": "text", "text": "Echo: hi"}], "text": "Echo: hi"})
    );

    let r = bus
        .invoke(&p("get-sum"), json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(r.payload.unwrap()["text"], "The sum of 2 and 3 is 5.");
    let e = bus
        .invoke(&p("get-sum"), json!({"a": "2", "b": 3}))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidRequest);
    assert!(e.message().contains("at /a"), "{}", e.message());

    let r = bus
        .invoke(&p("get-structured-content"), json!({"location": "Chicago"}))
        .await
        .unwrap();
    assert_eq!(
        r.payload.unwrap()["structuredContent"],
        json!({"temperature": 36, "conditions": "Light rain / drizzle", "humidity": 82})
    );

    let r = bus.invoke(&p("get-tiny-image"), json!({})).await.unwrap();
    let v = r.payload.unwrap();
    let types: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["text", "image", "text"]);
    assert_eq!(v["content"][1]["mimeType"], "image/png");
    assert!(v["content"][1]["data"].as_str().unwrap().len() > 100);
    assert!(v.get("text").is_none());

    let r = bus
        .invoke(&p("get-resource-links"), json!({"count": 2}))
        .await
        .unwrap();
    let v = r.payload.unwrap();
    let link = &v["content"][1];
    assert_eq!(link["type"], "resource_link");
    assert_eq!(link["data"]["type"], "resource_link");
    assert_eq!(link["data"]["name"], "Blob Resource 1");
    assert!(link["data"]["uri"].as_str().unwrap().contains("1"));
    assert!(
        link["data"].get("title").is_some(),
        "absent fields are null, as the reference dumps them"
    );

    // Progress from the long-running operation, as delta frames.
    let mut s = bus
        .stream_invoke(
            &p("trigger-long-running-operation"),
            json!({"duration": 0.8, "steps": 4}),
        )
        .await
        .unwrap();
    let mut deltas = Vec::new();
    let mut last = None;
    let mut first = None;
    while let Some(f) = s.next().await {
        let f = f.unwrap();
        first.get_or_insert_with(|| f.event_type.clone());
        if f.event_type == "agent.response.delta" {
            deltas.push(f.payload.unwrap());
        } else if f.event_type != "agent.response.started" {
            last = Some(f);
        }
    }
    assert_eq!(first.as_deref(), Some("agent.response.started"));
    assert_eq!(deltas.len(), 4, "{deltas:?}");
    for (i, d) in deltas.iter().enumerate() {
        assert_eq!(d["data"]["progress"], i as u64 + 1);
        assert_eq!(d["data"]["total"], 4);
    }
    let last = last.unwrap();
    assert_eq!(last.event_type, "agent.response.final");
    assert_eq!(
        last.payload.unwrap()["result"]["text"],
        "Long running operation completed. Duration: 0.8 seconds, Steps: 4."
    );

    // Tools registered after initialisation arrive with tools/list_changed.
    assert!(
        eventually(Duration::from_secs(5), || bridge
            .targets()
            .iter()
            .any(|t| t.name == "ev.simulate-research-query"))
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_stdio() {
    let (node, script) = everything();
    let cfg = McpConfig::new(McpTransport::stdio(node, [script, "stdio".to_owned()]));
    let (bus, mut bridge) = start("ev", cfg).await;
    assert!(
        bridge
            .server_info()
            .unwrap()
            .starts_with("mcp-servers/everything")
    );
    exercise(&bus, &bridge).await;
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_over_streamable_http() {
    let (node, script) = everything();
    let port = free_port();
    let mut cmd = Command::new(node);
    cmd.args([script.as_str(), "streamableHttp"])
        .env("PORT", port.to_string());
    let server = ServerProcess::start(cmd, port);
    let cfg = McpConfig::new(McpTransport::streamable_http(server.url()));
    let (bus, mut bridge) = start("ev", cfg).await;
    exercise(&bus, &bridge).await;
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_everything_restarted_over_http_gets_a_new_session() {
    // This server answers 400 "No valid session ID" to a session it does not
    // know (not 404): the bridge connects anew instead of failing forever.
    let (node, script) = everything();
    let port = free_port();
    let start_server = || {
        let mut cmd = Command::new(&node);
        cmd.args([script.as_str(), "streamableHttp"])
            .env("PORT", port.to_string());
        ServerProcess::start(cmd, port)
    };
    let mut first = start_server();
    let mut cfg = McpConfig::new(McpTransport::streamable_http(first.url()));
    cfg.restart.initial_backoff = Duration::from_millis(100);
    cfg.restart.max_backoff = Duration::from_millis(500);
    let (bus, mut bridge) = start("ev", cfg).await;
    bus.invoke("ev.echo", json!({"message": "one"}))
        .await
        .unwrap();
    first.kill();
    let _second = start_server();
    let mut ok = false;
    for _ in 0..100 {
        match bus.invoke("ev.echo", json!({"message": "two"})).await {
            Ok(r) => {
                assert_eq!(r.payload.unwrap()["text"], "Echo: two");
                ok = true;
                break;
            }
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::AgentUnavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    assert!(ok, "no call succeeded after the restart");
    bridge.stop().await.unwrap();
}
