//! Test support: a replay server for recorded chat-completion streams, and a
//! bus harness that collects the exact frames a caller receives.
//!
//! A fixture (`tests/fixtures/NAME.jsonl`) is one JSON object per line. The
//! first line is the response head: `{"status": 200, "headers": {...},
//! "body": "..."}` (`body` gives a fixed, `Content-Length` response; without
//! it the response is `Transfer-Encoding: chunked` and the next lines say
//! what to send, one HTTP chunk each):
//!
//! - `{"chunk": {...}}`: `data: <compact JSON>\n\n`
//! - `{"raw": "...", "repeat": N}`: the string as is (N times, default 1)
//! - `{"done": true}`: `data: [DONE]\n\n`
//! - `{"sleep_ms": N}`: pause
//! - `{"cut": true}`: drop the connection without ending the body
//! - `{"hold_ms": N}`: wait up to N ms for the client to close the connection
//!
//! After the last line the body is ended properly and the connection closed.
//! Lines starting with `//` are comments.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openagentio_core::{Bridge, Bus, CallOptions, Envelope};
use openagentio_openai_sse::{SseBridge, SseConfig};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A request the replay server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method and path, e.g. `POST /v1/chat/completions`.
    pub line: String,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Serves fixtures to successive connections (the last one repeats).
pub struct Replay {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    /// When the client closed a connection held by `hold_ms`.
    pub closed_at: Arc<Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Replay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{name}.jsonl"))
}

fn load(name: &str) -> Vec<Value> {
    let path = fixture_path(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{name}: {e}: {l}")))
        .collect()
}

impl Replay {
    pub async fn start(fixtures: &[&str]) -> Replay {
        let scripts: Vec<Vec<Value>> = fixtures.iter().map(|f| load(f)).collect();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let closed_at = Arc::new(Mutex::new(Vec::new()));
        let (reqs, closes) = (requests.clone(), closed_at.clone());
        let task = tokio::spawn(async move {
            let mut n = 0;
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let script = scripts[n.min(scripts.len() - 1)].clone();
                n += 1;
                let (reqs, closes) = (reqs.clone(), closes.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, script, reqs, closes).await;
                });
            }
        });
        Replay {
            addr,
            requests,
            closed_at,
            task,
        }
    }

    pub fn base_url(&self) -> url::Url {
        format!("http://{}/v1", self.addr).parse().unwrap()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().clone()
    }
}

async fn read_request(sock: &mut TcpStream) -> std::io::Result<Recorded> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let line = lines
        .next()
        .unwrap_or_default()
        .trim_end_matches(" HTTP/1.1")
        .to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Ok(Recorded {
        line,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

async fn serve(
    mut sock: TcpStream,
    script: Vec<Value>,
    reqs: Arc<Mutex<Vec<Recorded>>>,
    closes: Arc<Mutex<Vec<Instant>>>,
) -> std::io::Result<()> {
    sock.set_nodelay(true)?;
    let req = read_request(&mut sock).await?;
    reqs.lock().push(req);
    let head = &script[0];
    let status = head["status"].as_u64().unwrap_or(200);
    let mut out = format!("HTTP/1.1 {status} X\r\nconnection: close\r\n");
    let headers = head["headers"].as_object().cloned().unwrap_or_default();
    if !headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        out.push_str("content-type: text/event-stream\r\n");
    }
    for (k, v) in &headers {
        out.push_str(&format!("{k}: {}\r\n", v.as_str().unwrap()));
    }
    if let Some(body) = head["body"].as_str() {
        out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
        sock.write_all(out.as_bytes()).await?;
        return sock.shutdown().await;
    }
    out.push_str("transfer-encoding: chunked\r\n\r\n");
    sock.write_all(out.as_bytes()).await?;
    for step in &script[1..] {
        let bytes: Vec<u8> = if let Some(c) = step.get("chunk") {
            format!("data: {c}\n\n").into_bytes()
        } else if let Some(r) = step["raw"].as_str() {
            r.repeat(step["repeat"].as_u64().unwrap_or(1) as usize)
                .into_bytes()
        } else if step.get("done").is_some() {
            b"data: [DONE]\n\n".to_vec()
        } else if let Some(ms) = step["sleep_ms"].as_u64() {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            continue;
        } else if step.get("cut").is_some() {
            return Ok(()); // dropped: no final chunk
        } else if let Some(ms) = step["hold_ms"].as_u64() {
            let mut tmp = [0u8; 64];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(ms), sock.read(&mut tmp)).await
            {
                closes.lock().push(Instant::now());
                return Ok(());
            }
            continue;
        } else {
            panic!("unknown fixture step {step}");
        };
        let mut chunk = format!("{:x}\r\n", bytes.len()).into_bytes();
        chunk.extend_from_slice(&bytes);
        chunk.extend_from_slice(b"\r\n");
        sock.write_all(&chunk).await?;
    }
    sock.write_all(b"0\r\n\r\n").await?;
    sock.shutdown().await
}

/// A frame as the caller sees it: its kind (`started`, `delta`, `final`,
/// `error`) and payload; a local failure of the call is `("local", error)`.
pub type Frame = (String, Value);

/// The test config: tight timeouts, small event cap, a token and a session header.
pub fn config(base: url::Url) -> SseConfig {
    let mut cfg = SseConfig::new(base, "test-model");
    cfg.token = Some("sk-test".into());
    cfg.first_token_timeout = Duration::from_millis(400);
    cfg.idle_timeout = Duration::from_millis(400);
    cfg.total_timeout = Duration::from_secs(10);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.max_event_bytes = 1024;
    cfg
}

/// A bus with the bridge serving `chat`.
pub async fn bus_with(cfg: SseConfig) -> (Bus, SseBridge) {
    let bus = Bus::memory();
    let mut bridge = SseBridge::new("chat", cfg);
    bridge.start(&bus).await.expect("bridge starts");
    (bus, bridge)
}

/// Streams `payload` through `chat` and returns every frame, checking the
/// lifecycle on the way: seq from 0, exactly one terminal frame, last.
pub async fn stream_frames(bus: &Bus, payload: Value, opts: CallOptions) -> Vec<Frame> {
    let mut stream = bus
        .stream_invoke_with("chat", payload, opts)
        .await
        .expect("stream_invoke");
    let mut frames = Vec::new();
    let mut seq = 0;
    let deadline = Duration::from_secs(15);
    while let Some(item) = tokio::time::timeout(deadline, stream.next())
        .await
        .expect("the stream must end")
    {
        match item {
            Ok(env) => {
                assert_eq!(env.seq, seq, "frames in seq order");
                seq += 1;
                assert!(
                    frames
                        .iter()
                        .all(|(k, _): &Frame| k != "final" && k != "error")
                );
                frames.push(frame(&env));
            }
            Err(e) => frames.push((
                "local".into(),
                json!({"code": e.code().as_str(), "message": e.message()}),
            )),
        }
    }
    frames
}

pub fn frame(env: &Envelope) -> Frame {
    let kind = env
        .effective_frame_type()
        .trim_start_matches("response.")
        .to_owned();
    if env.is_terminal() {
        assert!(env.is_final, "terminal frames are final");
    }
    (kind, env.payload.clone().unwrap_or(Value::Null))
}

/// Shorthand for an expected frame.
pub fn f(kind: &str, payload: Value) -> Frame {
    (kind.to_owned(), payload)
}

/// Shorthand for an expected error frame.
pub fn error(code: &str, message: &str, retryable: bool) -> Frame {
    f(
        "error",
        json!({"code": code, "message": message, "retryable": retryable}),
    )
}
