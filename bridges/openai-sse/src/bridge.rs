//! [`SseBridge`]: one bus target served by an OpenAI-compatible
//! `POST /chat/completions` stream, and the serving of one call.
//!
//! Each call: map the request, open the upstream stream (retrying only before
//! its first byte), then turn SSE events into frames as they arrive. The
//! handler never writes a terminal frame except `final` on success; every
//! failure is returned, and the bus sends it as the one `error` frame. A
//! caller that gives up (or a stop) drops the upstream response at once,
//! which closes its connection.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use openagentio_core::codec::from_json_str;
use openagentio_core::{
    Bridge, BridgeError, BridgeHealth, Bus, BusError, ErrorCode, Registration, Request,
    StreamWriter, TargetInfo,
};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::SseConfig;
use crate::errors::{SseError, TimeoutKind};
use crate::request::{input_schema, map_request};
use crate::response::{ResponseAssembler, completion_as_chunk};
use crate::sse::{SseEvent, SseParser};
use crate::upstream::Upstream;

/// The bridge type name in config files.
pub const KIND: &str = "openai_chat_sse";
/// The reference bridge type name, served by the same bridge.
pub const OPENCLAW_KIND: &str = "openclaw_chat_sse";

/// Serves one stream target from an OpenAI-compatible chat-completions API.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use openagentio_core::{Bridge, Bus};
/// use openagentio_openai_sse::{SseBridge, SseConfig};
/// let bus = Bus::memory();
/// let cfg = SseConfig::new("http://127.0.0.1:8000/v1".parse()?, "my-model");
/// let mut bridge = SseBridge::new("chat", cfg);
/// bridge.start(&bus).await?;
/// let mut stream = bus.stream_invoke("chat", serde_json::json!({"text": "hi"})).await?;
/// while let Some(frame) = stream.next().await {
///     println!("{:?}", frame?.payload);
/// }
/// # Ok(()) }
/// ```
pub struct SseBridge {
    name: String,
    target: String,
    config: Arc<SseConfig>,
    health: Arc<Mutex<BridgeHealth>>,
    running: Option<Running>,
}

struct Running {
    registration: Registration,
    stop: CancellationToken,
}

impl SseBridge {
    /// A bridge named `name` (its target is `config.target`, or `name` when
    /// that is empty). Nothing is opened until [`Bridge::start`].
    pub fn new(name: impl Into<String>, config: SseConfig) -> Self {
        let name = name.into();
        let target = if config.target.is_empty() {
            name.clone()
        } else {
            config.target.clone()
        };
        SseBridge {
            name,
            target,
            config: Arc::new(config),
            health: Arc::new(Mutex::new(BridgeHealth::unhealthy("not started"))),
            running: None,
        }
    }

    /// The target it serves.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Its config.
    pub fn config(&self) -> &SseConfig {
        &self.config
    }
}

#[async_trait]
impl Bridge for SseBridge {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    async fn start(&mut self, bus: &Bus) -> Result<(), BridgeError> {
        if self.running.is_some() {
            return Ok(());
        }
        let upstream = Upstream::new(&self.config)
            .map_err(|e| BridgeError::permanent(&self.name, e.to_string()))?;
        tracing::info!(
            bridge = %self.name, target = %self.target, url = %upstream.endpoint_for_logs(),
            model = %self.config.model, "openai sse bridge ready"
        );
        let stop = CancellationToken::new();
        let server = Arc::new(CallServer {
            upstream,
            config: self.config.clone(),
            health: self.health.clone(),
            stop: stop.clone(),
            target: self.target.clone(),
        });
        let registration = bus
            .handle_stream(&self.target, move |req, writer| {
                let server = server.clone();
                async move { server.serve(req, writer).await }
            })
            .await
            .map_err(|e| {
                if e.code() == ErrorCode::InvalidRequest {
                    BridgeError::permanent(&self.name, e.to_string())
                } else {
                    BridgeError::transient(&self.name, e.to_string())
                }
            })?;
        *self.health.lock() = BridgeHealth::healthy();
        self.running = Some(Running { registration, stop });
        Ok(())
    }

    async fn stop(&mut self) -> Result<(), BridgeError> {
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        running.stop.cancel();
        *self.health.lock() = BridgeHealth::unhealthy("stopped");
        running
            .registration
            .unsubscribe()
            .await
            .map_err(|e| BridgeError::transient(&self.name, e.to_string()))
    }

    fn health(&self) -> BridgeHealth {
        self.health.lock().clone()
    }

    fn targets(&self) -> Vec<TargetInfo> {
        vec![TargetInfo {
            name: self.target.clone(),
            description: format!(
                "OpenAI-compatible chat completions (model {})",
                self.config.model
            ),
            streaming: true,
            input_schema: Some(input_schema(&self.config)),
            bridge: self.name.clone(),
            upstream_name: None,
        }]
    }
}

/// What the handler of the target shares across calls.
struct CallServer {
    upstream: Upstream,
    config: Arc<SseConfig>,
    health: Arc<Mutex<BridgeHealth>>,
    stop: CancellationToken,
    target: String,
}

/// Whether to keep reading after an event.
#[derive(PartialEq)]
enum Flow {
    Continue,
    Done,
}

impl CallServer {
    async fn serve(&self, req: Request, writer: StreamWriter) -> Result<(), BusError> {
        let outcome = tokio::select! {
            biased;
            _ = req.cancelled() => Err(if req.bus().is_draining() {
                SseError::Stopped
            } else {
                SseError::Cancelled
            }),
            _ = self.stop.cancelled() => Err(SseError::Stopped),
            r = self.run(&req, &writer) => r,
        };
        match outcome {
            Ok(result) => {
                *self.health.lock() = BridgeHealth::healthy();
                writer.finish(result).await
            }
            Err(e) => {
                self.note_failure(&e);
                Err(e.to_bus_error())
            }
        }
    }

    fn note_failure(&self, e: &SseError) {
        match e {
            SseError::InvalidRequest(_)
            | SseError::Cancelled
            | SseError::Stopped
            | SseError::Bus(_) => {
                tracing::debug!(target = %self.target, error = %e, "call ended");
            }
            SseError::Http { status, .. } if (400..500).contains(status) && *status != 429 => {
                tracing::debug!(target = %self.target, error = %e, "upstream rejected the call");
            }
            _ => {
                tracing::warn!(target = %self.target, code = %e.code(), error = %e, "upstream call failed");
                *self.health.lock() = BridgeHealth::degraded(format!("last call: {e}"));
            }
        }
    }

    async fn run(&self, req: &Request, writer: &StreamWriter) -> Result<Value, SseError> {
        let chat = map_request(&self.config, req.envelope())?;
        let total_deadline = Instant::now() + self.config.total_timeout;
        let opened = self.upstream.open(&chat, total_deadline).await?;
        let frames = writer.is_streaming();
        let mut call = Call {
            writer,
            frames,
            assembler: ResponseAssembler::new(self.config.model.as_str()),
        };
        // Media types are case-insensitive (RFC 9110).
        let content_type = opened
            .response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if matches!(
            content_type.as_str(),
            "text/html" | "application/xhtml+xml" | "text/xml" | "application/xml"
        ) {
            // A web page (a wrong base_url, a proxy's notice): no stream will
            // come, and asking again will not change that.
            return Err(SseError::Codec(format!(
                "the upstream answered with {content_type}, not an event stream \
                 (text/event-stream): is base_url the API's address, such as http://host/v1?"
            )));
        }
        if content_type == "application/json" {
            return call
                .read_completion(opened.response, &self.config, total_deadline)
                .await;
        }
        call.pump(
            opened.response,
            &self.config,
            opened.first_token_deadline,
            total_deadline,
        )
        .await
    }
}

/// One call being served.
struct Call<'a> {
    writer: &'a StreamWriter,
    frames: bool,
    assembler: ResponseAssembler,
}

impl Call<'_> {
    /// Reads the SSE stream to its end, sending frames as chunks arrive.
    async fn pump(
        &mut self,
        response: reqwest::Response,
        cfg: &SseConfig,
        first_token_deadline: Instant,
        total_deadline: Instant,
    ) -> Result<Value, SseError> {
        let mut body = response.bytes_stream();
        let mut parser = SseParser::new(cfg.max_event_bytes);
        let mut events: Vec<SseEvent> = Vec::new();
        // The first-token limit holds until the answer begins, not until
        // the first chunk (which may carry only the role).
        let mut got_token = false;
        let (mut until, mut kind) = limit(
            first_token_deadline,
            TimeoutKind::FirstToken,
            total_deadline,
        );
        let timer = tokio::time::sleep_until(until);
        tokio::pin!(timer);
        loop {
            let item = tokio::select! {
                biased;
                item = body.next() => item,
                _ = &mut timer => {
                    // A server that sent its `finish_reason` and then
                    // neither `[DONE]` nor the end of the body has answered.
                    if kind == TimeoutKind::Idle && self.assembler.is_finished() {
                        return Ok(self.assembler.result());
                    }
                    return Err(SseError::Timeout(kind));
                }
            };
            match item {
                Some(Ok(bytes)) => {
                    parser.feed(&bytes, &mut events)?;
                    for event in events.drain(..) {
                        if self.on_event(event).await? == Flow::Done {
                            return Ok(self.assembler.result());
                        }
                    }
                    got_token = got_token || self.assembler.has_output();
                    (until, kind) = if got_token {
                        limit(
                            Instant::now() + cfg.idle_timeout,
                            TimeoutKind::Idle,
                            total_deadline,
                        )
                    } else {
                        limit(
                            first_token_deadline,
                            TimeoutKind::FirstToken,
                            total_deadline,
                        )
                    };
                    timer.as_mut().reset(until);
                }
                Some(Err(e)) => {
                    let e = e.without_url();
                    return Err(SseError::Transport(format!(
                        "the connection failed mid-stream: {e}"
                    )));
                }
                None => return self.on_end(&mut parser).await,
            }
        }
    }

    /// The connection ended: flush the parser, then finish or fail.
    async fn on_end(&mut self, parser: &mut SseParser) -> Result<Value, SseError> {
        let truncated =
            || SseError::Transport("the upstream closed the connection inside an event".into());
        if let Some(event) = parser.finish().map_err(|_| truncated())? {
            match self.on_event(event).await {
                Ok(Flow::Done) => return Ok(self.assembler.result()),
                Ok(Flow::Continue) => {}
                Err(SseError::Codec(_)) => return Err(truncated()),
                Err(e) => return Err(e),
            }
        }
        if self.assembler.is_finished() {
            Ok(self.assembler.result())
        } else {
            Err(SseError::Transport(
                "the upstream closed the stream before it finished".into(),
            ))
        }
    }

    /// Handles one SSE event.
    async fn on_event(&mut self, event: SseEvent) -> Result<Flow, SseError> {
        if event.event == "error" {
            let payload = from_json_str(&event.data).unwrap_or(Value::String(event.data));
            return Err(SseError::from_upstream(&payload));
        }
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(Flow::Continue);
        }
        if data == "[DONE]" {
            // Even an answer with no chunk at all begins with `started`.
            if !self.assembler.is_started() {
                self.on_chunk(&Value::Object(serde_json::Map::new()))
                    .await?;
            }
            return Ok(Flow::Done);
        }
        // Lenient where serde_json is not: half an emoji as U+FFFD (see
        // `from_json_str`), rather than the end of the stream.
        let chunk: Value = from_json_str(data).map_err(|e| {
            SseError::Codec(format!("a data line is not JSON ({e}): {}", snippet(data)))
        })?;
        self.on_chunk(&chunk).await?;
        Ok(Flow::Continue)
    }

    async fn on_chunk(&mut self, chunk: &Value) -> Result<(), SseError> {
        if !chunk.is_object() {
            return Err(SseError::Codec(format!(
                "a data line is not a JSON object: {}",
                snippet(&chunk.to_string())
            )));
        }
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return Err(SseError::from_upstream(chunk));
        }
        let out = self.assembler.absorb(chunk, self.frames);
        if let Some(meta) = out.started.filter(|_| self.frames) {
            self.writer.started(meta).await.map_err(SseError::Bus)?;
        }
        if let Some(delta) = out.delta {
            self.writer.delta(delta).await.map_err(SseError::Bus)?;
        }
        Ok(())
    }

    /// A server that answered `stream: true` with one JSON completion.
    async fn read_completion(
        &mut self,
        mut response: reqwest::Response,
        cfg: &SseConfig,
        total_deadline: Instant,
    ) -> Result<Value, SseError> {
        let cap = cfg.max_event_bytes;
        let mut body = Vec::new();
        loop {
            // A body that stalls is held to the idle limit, as a stream is.
            let (until, kind) = limit(
                Instant::now() + cfg.idle_timeout,
                TimeoutKind::Idle,
                total_deadline,
            );
            match tokio::time::timeout_at(until, response.chunk()).await {
                Err(_) => return Err(SseError::Timeout(kind)),
                Ok(Err(e)) => return Err(SseError::Transport(e.without_url().to_string())),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => {
                    if body.len() + chunk.len() > cap {
                        return Err(SseError::Codec(format!("the response exceeds {cap} bytes")));
                    }
                    body.extend_from_slice(&chunk);
                }
            }
        }
        let completion: Value = serde_json::from_slice(&body)
            .map_err(|e| SseError::Codec(format!("the JSON response does not parse ({e})")))?;
        if completion.get("error").is_some_and(|e| !e.is_null()) {
            return Err(SseError::from_upstream(&completion));
        }
        if !completion.get("choices").is_some_and(Value::is_array) {
            return Err(SseError::Codec(format!(
                "the JSON response is not a chat completion (no `choices`): {}",
                snippet(&completion.to_string())
            )));
        }
        self.on_chunk(&completion_as_chunk(&completion)).await?;
        Ok(self.assembler.result())
    }
}

/// The earlier of `at` (of `kind`) and the total deadline.
fn limit(at: Instant, kind: TimeoutKind, total: Instant) -> (Instant, TimeoutKind) {
    if total <= at {
        (total, TimeoutKind::Total)
    } else {
        (at, kind)
    }
}

/// At most 120 characters of `s`, for error messages.
fn snippet(s: &str) -> String {
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
