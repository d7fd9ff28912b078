//! NATS over WebSocket (`ws://`), which the config and the CLI accept: a real
//! nats-server with its WebSocket listener on, a bus connected through it as
//! a user configures it (`bus.nats.url: ws://...`) and one connected over
//! plain NATS to the same server, calling each other; and the CLI's
//! `--bus ws://...`.

use std::process::Command;

use openagentio_config::{Format, load_with_env};
use openagentio_core::Bus;
use openagentio_nats::NatsTransport;
use openagentio_testkit::{NatsServer, free_port, nats_bus};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_over_websocket_talks_with_one_over_plain_nats() {
    let dir = tempfile::tempdir().unwrap();
    let ws_port = free_port();
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        format!("websocket {{\n  listen: \"127.0.0.1:{ws_port}\"\n  no_tls: true\n}}\n"),
    )
    .unwrap();
    let nats = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]);
    let ws_url = format!("ws://127.0.0.1:{ws_port}");

    let text = format!(
        "version: \"openagentio.bridge/v1\"\nbus:\n  transport: nats\n  nats:\n    url: {ws_url}\n"
    );
    let cfg = load_with_env(&text, Format::Yaml, &|_| None).expect("a valid config");
    let opts = openagentio_host::from_config::nats_options(&cfg);
    let transport = NatsTransport::connect(opts)
        .await
        .expect("connects over WebSocket");
    let over_ws = Bus::builder().agent_id("ws").transport(transport).build();
    let plain = nats_bus(&nats.url(), Bus::builder().agent_id("plain")).await;

    over_ws
        .handle_invoke("ws.echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    plain
        .handle_stream("plain.count", |_req, w| async move {
            for i in 0..3 {
                w.delta_text(i.to_string()).await?;
            }
            w.finish(json!("done")).await
        })
        .await
        .unwrap();

    let reply = plain.invoke("ws.echo", json!({"via": "ws"})).await.unwrap();
    assert_eq!(reply.payload, Some(json!({"via": "ws"})));
    let mut stream = over_ws
        .stream_invoke("plain.count", json!(null))
        .await
        .unwrap();
    let mut seqs = vec![];
    while let Some(frame) = stream.next().await {
        seqs.push(frame.unwrap().seq);
    }
    assert_eq!(seqs, [0, 1, 2, 3]);

    // The CLI too.
    let out = Command::new(env!("CARGO_BIN_EXE_openagentio"))
        .args(["invoke", "ws.echo", r#""cli""#, "--bus", &ws_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#""cli""#);
}
