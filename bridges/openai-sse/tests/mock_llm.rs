//! The bridge against a real OpenAI-compatible server we did not write:
//! `mock-llm` (npm `@dwmkerr/mock-llm@0.1.29`), run as a process on a free
//! loopback port. It streams `chat.completion.chunk`s and `[DONE]` with
//! Express, and sends errors inside the stream as OpenAI does.
//!
//! Needs the package: `./scripts/test` installs it, or
//! `npm install --prefix ~/.cache/openagentio/npm @dwmkerr/mock-llm@0.1.29`,
//! or set `MOCK_LLM_BIN` to its `mock-llm` script. Missing, the tests fail.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{bus_with, config, error, f, stream_frames};
use openagentio_core::CallOptions;
use serde_json::json;

use openagentio_testkit::{MOCK_LLM_INSTALL_HINT as INSTALL_HINT, mock_llm_bin};

/// Echoes `<user>|<last message>`; a message containing `rate-limit-me`
/// gets a 429 error, and a wrong bearer token a 401 error (both sent inside
/// the stream, as mock-llm streams errors). The last matching rule wins.
const MOCK_CONFIG: &str = r#"
streaming:
  chunkSize: 4
  chunkIntervalMs: 2
rules:
  - path: "/v1/chat/completions"
    method: "POST"
    match: "@"
    response:
      status: 200
      content: |
        {
          "id": "chatcmpl-{{timestamp}}",
          "object": "chat.completion",
          "model": "{{jmes request body.model}}",
          "choices": [{
            "message": {"role": "assistant", "content": "{{jmes request body.user}}|{{jmes request body.messages[-1].content}}"},
            "finish_reason": "stop"
          }]
        }
  - path: "/v1/chat/completions"
    method: "POST"
    match: "contains(body.messages[-1].content, 'rate-limit-me')"
    response:
      status: 429
      content: |
        {"error": {"message": "Rate limit exceeded", "type": "rate_limit_error"}}
  - path: "/v1/chat/completions"
    method: "POST"
    match: "headers.authorization != 'Bearer sk-mock'"
    response:
      status: 401
      content: |
        {"error": {"message": "Invalid API key", "type": "authentication_error"}}
"#;

/// A running mock-llm, killed on drop.
struct MockLlm {
    child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl MockLlm {
    async fn start() -> MockLlm {
        let bin = mock_llm_bin();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("mock-llm.yaml");
        std::fs::write(&cfg, MOCK_CONFIG).unwrap();
        let port = openagentio_testkit::free_port();
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let mut child = tokio::process::Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", bin.display()));
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
                panic!("mock-llm exited with {status}: {log}\n{INSTALL_HINT}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return MockLlm { child, port, dir };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        panic!("mock-llm did not listen on {port} within 15 s: {log}");
    }

    fn base_url(&self) -> url::Url {
        format!("http://127.0.0.1:{}/v1", self.port)
            .parse()
            .unwrap()
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = &self.dir;
    }
}

async fn bridge_to(
    mock: &MockLlm,
    token: &str,
) -> (openagentio_core::Bus, openagentio_openai_sse::SseBridge) {
    let mut cfg = config(mock.base_url());
    cfg.token = Some(token.into());
    cfg.first_token_timeout = Duration::from_secs(5);
    cfg.idle_timeout = Duration::from_secs(5);
    bus_with(cfg).await
}

#[tokio::test]
async fn streams_a_chat_through_the_bridge() {
    let mock = MockLlm::start().await;
    let (bus, _bridge) = bridge_to(&mock, "sk-mock").await;
    let text = "Hello from the bridge, streamed by a real server.";
    let expected = format!("sess-42|{text}");
    let frames = stream_frames(
        &bus,
        json!({"text": text}),
        CallOptions::new().session("sess-42"),
    )
    .await;

    let (kind, started) = &frames[0];
    assert_eq!(kind, "started");
    let id = started["meta"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chatcmpl-"), "{id}");
    assert_eq!(started["meta"]["model"], "test-model");

    // mock-llm cuts the answer into 4-character chunks.
    let pieces: Vec<String> = expected
        .chars()
        .collect::<Vec<_>>()
        .chunks(4)
        .map(|c| c.iter().collect())
        .collect();
    let mut want = vec![f(
        "started",
        json!({"meta": {"model": "test-model", "id": id}}),
    )];
    want.extend(pieces.iter().map(|p| f("delta", json!({"delta": p}))));
    want.push(f(
        "final",
        json!({"result": {"text": expected, "reasoning": null, "tool_calls": [], "finish_reason": "stop",
                          "usage": null, "model": "test-model", "id": id}}),
    ));
    assert_eq!(frames, want);
}

#[tokio::test]
async fn invoke_returns_the_final_result() {
    let mock = MockLlm::start().await;
    let (bus, _bridge) = bridge_to(&mock, "sk-mock").await;
    let reply = bus
        .invoke_with(
            "chat",
            json!({"messages": [{"role": "user", "content": "one shot"}]}),
            CallOptions::new().session("s"),
        )
        .await
        .unwrap();
    assert_eq!(reply.effective_frame_type(), "response.final");
    let result = &reply.payload.unwrap()["result"];
    assert_eq!(result["text"], "s|one shot");
    assert_eq!(result["finish_reason"], "stop");
}

#[tokio::test]
async fn errors_inside_the_stream_become_error_frames() {
    let mock = MockLlm::start().await;
    let (bus, _bridge) = bridge_to(&mock, "sk-mock").await;
    let frames = stream_frames(
        &bus,
        json!({"text": "please rate-limit-me"}),
        CallOptions::new(),
    )
    .await;
    assert_eq!(
        frames,
        vec![error(
            "BACKPRESSURE_DROP",
            "upstream error: Rate limit exceeded",
            true
        )]
    );

    let (bus, _bridge) = bridge_to(&mock, "sk-wrong").await;
    let frames = stream_frames(&bus, json!({"text": "hi"}), CallOptions::new()).await;
    assert_eq!(
        frames,
        vec![error(
            "AUTH_FAILURE",
            "upstream error: Invalid API key",
            false
        )]
    );
}
