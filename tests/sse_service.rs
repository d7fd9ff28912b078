//! The OpenAI-compatible SSE bridge end to end, as a user runs it: mock-llm
//! (npm `@dwmkerr/mock-llm@0.1.29`, an OpenAI-compatible server we did not
//! write) as a real process, `openagentio run` on a config with the NATS
//! transport and the gateway on a free port, then a streamed chat through the
//! gateway's `/v1/agents/{target}/stream` route and through `openagentio
//! stream` as another process.
//!
//! Needs nats-server and mock-llm: `./scripts/test` installs both, or
//! `npm install --prefix ~/.cache/openagentio/npm @dwmkerr/mock-llm@0.1.29`
//! (or set `MOCK_LLM_BIN`). Missing, the tests fail with that hint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openagentio_testkit::{ChildGuard, NatsServer, free_port, run_service};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_openagentio");

use openagentio_testkit::{MOCK_LLM_INSTALL_HINT as INSTALL_HINT, mock_llm_bin};

/// Echoes `<user>|<last message>` (the bridge puts the session into `user`),
/// 4 characters per chunk, one chunk every 20 ms.
const MOCK_CONFIG: &str = r#"
streaming:
  chunkSize: 4
  chunkIntervalMs: 20
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
"#;

/// A running mock-llm on a free loopback port.
struct MockLlm {
    _proc: ChildGuard,
    port: u16,
    _dir: tempfile::TempDir,
}

impl MockLlm {
    fn start() -> MockLlm {
        let bin = mock_llm_bin();
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("mock-llm.yaml");
        std::fs::write(&cfg, MOCK_CONFIG).unwrap();
        let port = free_port();
        let log_path = dir.path().join("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {INSTALL_HINT}", bin.display()));
        let mut proc = ChildGuard(child);
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        for _ in 0..300 {
            if let Some(status) = proc.0.try_wait().unwrap() {
                panic!(
                    "mock-llm exited with {status}: {}\n{INSTALL_HINT}",
                    read_log()
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return MockLlm {
                    _proc: proc,
                    port,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "mock-llm did not listen on {port} within 15 s: {}",
            read_log()
        );
    }
}

/// `openagentio run` on NATS with the gateway on `http_port` and the bridge
/// `llm` pointed at mock-llm; returns once it has started everything.
fn start_service(dir: &Path, nats_url: &str, http_port: u16, llm_port: u16) -> ChildGuard {
    let cfg = dir.join("service.yaml");
    std::fs::write(
        &cfg,
        format!(
            r#"version: "openagentio.bridge/v1"
bus:
  transport: nats
  nats: {{ url: "{nats_url}" }}
http:
  listen: "127.0.0.1:{http_port}"
shutdown:
  drain_timeout: 1s
bridges:
  - name: llm
    type: openai_chat_sse
    config:
      base_url: "http://127.0.0.1:{llm_port}/v1"
      model: mock-model
      connect_timeout: 2s
      first_token_timeout: 10s
      idle_timeout: 10s
"#
        ),
    )
    .unwrap();
    let (service, summary) = run_service(BIN, &cfg, &[], Path::new("."));
    assert!(
        summary.contains("bridge llm (openai_chat_sse): llm"),
        "{summary}"
    );
    service
}

/// A raw HTTP/1.1 POST; returns the status line, the headers (names
/// lowercased) and the body (chunked encoding decoded), read to the end.
fn post(
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (String, Vec<(String, String)>, String) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    sock.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    sock.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let mut rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("a chunk size line");
            let size_line = std::str::from_utf8(&rest[..eol]).unwrap();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
                .expect("a hex chunk size");
            rest = &rest[eol + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
        out
    } else {
        rest.to_vec()
    };
    (status, headers, String::from_utf8(body).unwrap())
}

/// One SSE frame of the gateway: its `event:`, `id:` and parsed `data:`.
struct SseFrame {
    event: String,
    id: String,
    data: Value,
}

fn parse_sse(body: &str) -> Vec<SseFrame> {
    body.split("\n\n")
        .filter(|block| block.lines().any(|l| l.starts_with("data:")))
        .map(|block| {
            let mut f = SseFrame {
                event: String::new(),
                id: String::new(),
                data: Value::Null,
            };
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    f.event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("id: ") {
                    f.id = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    f.data = serde_json::from_str(v).unwrap();
                }
            }
            f
        })
        .collect()
}

#[test]
fn streams_a_chat_from_mock_llm_through_the_gateway_and_the_cli() {
    let mock = MockLlm::start();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let _service = start_service(dir.path(), &nats.url(), http_port, mock.port);

    // (a) Through the gateway's stream route.
    let text = "Streamed by a real OpenAI-compatible server.";
    let expected = format!("sess-http|{text}");
    let (status, headers, body) = post(
        http_port,
        "/v1/agents/llm/stream",
        &[("X-Session-Id", "sess-http")],
        &json!({"text": text}).to_string(),
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}\n{body}");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some("text/event-stream"));
    assert_eq!(header("cache-control"), Some("no-cache"));

    let frames = parse_sse(&body);
    assert!(frames.len() >= 3, "{body}");
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.data["seq"].as_u64().unwrap_or(0), i as u64, "seq order");
        assert_eq!(f.data["event_type"], f.event.as_str());
        assert_eq!(f.data["event_id"], f.id.as_str());
        assert_eq!(f.data["session_id"], "sess-http");
    }
    let started = &frames[0];
    assert_eq!(started.event, "agent.response.started");
    assert_eq!(started.data["payload"]["meta"]["model"], "mock-model");
    let id = started.data["payload"]["meta"]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"), "{id}");

    let (last, deltas) = frames[1..].split_last().unwrap();
    assert!(
        deltas.len() >= 2,
        "the answer arrives in several deltas: {body}"
    );
    let mut streamed = String::new();
    for d in deltas {
        assert_eq!(d.event, "agent.response.delta");
        let piece = d.data["payload"]["delta"].as_str().unwrap();
        assert!(!piece.is_empty() && piece.chars().count() <= 4, "{piece:?}");
        streamed.push_str(piece);
    }
    assert_eq!(streamed, expected);
    assert_eq!(last.event, "agent.response.final");
    assert_eq!(last.data["is_final"], true);
    assert_eq!(
        last.data["payload"]["result"],
        json!({"text": expected, "reasoning": null, "tool_calls": [], "finish_reason": "stop",
               "usage": null, "model": "mock-model", "id": id})
    );

    // The invoke route gives the final result alone.
    let (status, _, body) = post(
        http_port,
        "/v1/agents/llm/invoke",
        &[("X-Session-Id", "sess-invoke")],
        r#"{"messages": [{"role": "user", "content": "one shot"}]}"#,
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}\n{body}");
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["result"]["text"], "sess-invoke|one shot");

    // (b) Through `openagentio stream` as another process: its stdout is the
    // text, printed as the chunks arrive (not all at the end).
    let text = "Tokens print one by one as mock-llm streams them.";
    let expected = format!("sess-cli|{text}\n");
    let mut child = Command::new(BIN)
        .args([
            "stream",
            "llm",
            "--text",
            text,
            "--session",
            "sess-cli",
            "--bus",
            &nats.url(),
            "--timeout",
            "20s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut out = Vec::new();
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        arrivals.push(Instant::now());
        out.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(String::from_utf8(out).unwrap(), expected);
    // ~15 chunks, 20 ms apart: the text arrives over about 300 ms.
    let spread = arrivals.last().unwrap().duration_since(arrivals[0]);
    assert!(
        arrivals.len() >= 3 && spread >= Duration::from_millis(100),
        "stdout came in {} reads over {spread:?}: not streamed",
        arrivals.len()
    );
}
