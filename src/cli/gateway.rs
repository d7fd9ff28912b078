//! Client commands over a service's HTTP gateway (`--bus http://HOST:PORT`):
//! how another process reaches a service whose bus is in memory.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use openagentio_core::{BusError, Envelope, ErrorCode, codec};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use super::{BusArgs, Exit};

/// How long past a call's deadline the client waits for the gateway's own
/// answer (its typed `AGENT_TIMEOUT`) before giving up on the connection.
const ANSWER_GRACE: Duration = Duration::from_secs(2);

/// Envelopes read from an SSE answer of the gateway (a stream's frames, or
/// an event feed).
pub type Envelopes = Pin<Box<dyn Stream<Item = Result<Envelope, BusError>> + Send>>;

/// The gateway of a running service, with the caller's tenant, session and token.
pub struct Gateway {
    base: String,
    /// `base` with its password masked, for messages.
    shown: String,
    http: reqwest::Client,
    tenant: Option<String>,
    session: Option<String>,
    token: Option<String>,
}

/// How long `subscribe` without `--timeout` waits for the gateway to open
/// its event feed.
pub const OPENING_LIMIT: Duration = Duration::from_secs(10);

/// The longest deadline the gateway takes (`X-Timeout-Ms`): one day.
const MAX_GATEWAY_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// `timeout` as the gateway's `X-Timeout-Ms`; past its limit, an error that
/// names the option rather than the header.
fn deadline_header(timeout: Duration) -> Result<String, BusError> {
    if timeout > MAX_GATEWAY_TIMEOUT {
        return Err(BusError::invalid(format!(
            "--timeout {timeout:?} is more than the gateway takes (24h); over NATS there is no such limit"
        )));
    }
    Ok(timeout.as_millis().max(1).to_string())
}

/// Whether `--bus` names a gateway rather than a bus.
pub fn is_gateway_url(bus: &str) -> bool {
    bus.starts_with("http://") || bus.starts_with("https://")
}

impl Gateway {
    /// The gateway at `args.bus`; `--meta` has no header to travel in, so it
    /// is refused rather than dropped.
    pub fn new(args: &BusArgs) -> Result<Self, Exit> {
        if !args.meta.is_empty() {
            return Err(Exit::usage(
                "--meta needs a NATS bus: the HTTP gateway has no header for metadata",
            ));
        }
        if let Some(flag) = args.nats_only_option() {
            return Err(Exit::usage(format!(
                "{flag} is for a NATS --bus, not for a service's HTTP gateway"
            )));
        }
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Exit::Service(format!("cannot make an HTTP client: {e}")))?;
        let base = args.bus.trim_end_matches('/').to_owned();
        Ok(Gateway {
            shown: openagentio_nats::redact_urls(&base),
            base,
            http,
            tenant: args.tenant.clone(),
            session: args.session.clone(),
            token: args.token.clone(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.tenant {
            r = r.header("X-Tenant-Id", t);
        }
        if let Some(s) = &self.session {
            r = r.header("X-Session-Id", s);
        }
        if let Some(t) = &self.token {
            r = r.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        r
    }

    fn post_json(&self, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::POST, path)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string())
    }

    /// Sends `req`; a failure to connect, a timeout and an error status become
    /// the [`BusError`] the gateway (or the network) gave.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, BusError> {
        let resp = req.send().await.map_err(|e| self.network_error(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        Err(error_of(status, &body))
    }

    fn network_error(&self, e: reqwest::Error) -> BusError {
        // The URL would show its password; `shown` is the masked one.
        let e = e.without_url();
        if e.is_timeout() {
            BusError::timeout(format!(
                "no answer from the gateway at {} in time",
                self.shown
            ))
        } else if e.is_connect() {
            BusError::unavailable(format!(
                "cannot reach the gateway at {}: {}",
                self.shown,
                source_chain(&e)
            ))
        } else {
            BusError::transport(format!("gateway at {}: {}", self.shown, source_chain(&e)))
        }
    }

    /// `POST /v1/agents/{target}/invoke`: the answer's payload (`null` for 204).
    /// The gateway is given `timeout` as the call's deadline (`X-Timeout-Ms`).
    pub async fn invoke(
        &self,
        target: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<Value, BusError> {
        let path = format!("/v1/agents/{}/invoke", path_segment(target));
        let req = self
            .post_json(&path, payload)
            .header("X-Timeout-Ms", deadline_header(timeout)?)
            .timeout(timeout + ANSWER_GRACE);
        let resp = self.send(req).await?;
        if resp.status() != reqwest::StatusCode::NO_CONTENT && !is_json(&resp) {
            return Err(self.not_a_gateway("POST", &path, &resp));
        }
        let body = resp.bytes().await.map_err(|e| self.network_error(e))?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body)
            .map_err(|e| BusError::codec(format!("the gateway's answer is not JSON: {e}")))
    }

    /// `POST /v1/agents/{target}/stream`: its frames as they arrive. `timeout`
    /// bounds the whole stream.
    pub async fn stream(
        &self,
        target: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<Envelopes, BusError> {
        let path = format!("/v1/agents/{}/stream", path_segment(target));
        let req = self
            .post_json(&path, payload)
            .header("Accept", "text/event-stream")
            .header("X-Timeout-Ms", deadline_header(timeout)?)
            .timeout(timeout + ANSWER_GRACE);
        let resp = self.send(req).await?;
        self.sse("POST", &path, resp)
    }

    /// The envelopes of an SSE answer.
    fn envelopes(&self, resp: reqwest::Response) -> Envelopes {
        let base = self.shown.clone();
        let frames = resp.bytes_stream().eventsource().map(move |event| {
            let event = event.map_err(|e| match e {
                eventsource_stream::EventStreamError::Transport(e) if e.is_timeout() => {
                    BusError::timeout(format!("the stream from {base} did not end in time"))
                }
                eventsource_stream::EventStreamError::Transport(e) => BusError::transport(format!(
                    "the stream from {base} broke: {}",
                    e.without_url()
                )),
                e => BusError::transport(format!("the stream from {base} broke: {e}")),
            })?;
            codec::decode(event.data.as_bytes())
                .map_err(|e| BusError::codec(format!("a frame from the gateway: {e}")))
        });
        Box::pin(frames)
    }

    /// `GET /v1/events/{pattern}`: the events as they arrive, until the
    /// feed ends.
    pub async fn subscribe(&self, pattern: &str) -> Result<Envelopes, BusError> {
        let path = format!("/v1/events/{}", path_segment(pattern));
        let req = self
            .request(reqwest::Method::GET, &path)
            .header("Accept", "text/event-stream");
        let resp = self.send(req).await?;
        self.sse("GET", &path, resp)
    }

    /// `POST /v1/events/{event_type}`: taken when the gateway answers 202.
    pub async fn publish(
        &self,
        event_type: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<(), BusError> {
        let path = format!("/v1/events/{}", path_segment(event_type));
        let req = self.post_json(&path, payload).timeout(timeout);
        let resp = self.send(req).await?;
        if resp.status() != reqwest::StatusCode::ACCEPTED {
            return Err(self.not_a_gateway("POST", &path, &resp));
        }
        Ok(())
    }

    /// The error for a success answer that no gateway gives (a web server
    /// at the URL, say).
    fn not_a_gateway(&self, method: &str, path: &str, resp: &reqwest::Response) -> BusError {
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_else(|| "no content type".into());
        BusError::transport(format!(
            "{} answered {method} {path} with {} ({content_type}), which an OpenAgentIO \
             gateway does not: is --bus the gateway's URL?",
            self.shown,
            resp.status()
        ))
    }

    /// An SSE answer's frames, or the error when it is not SSE.
    fn sse(
        &self,
        method: &str,
        path: &str,
        resp: reqwest::Response,
    ) -> Result<Envelopes, BusError> {
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if !is_sse {
            return Err(self.not_a_gateway(method, path, &resp));
        }
        Ok(self.envelopes(resp))
    }

    /// `GET /v1/agents`: the catalog.
    pub async fn targets(&self, timeout: Duration) -> Result<Value, BusError> {
        let req = self
            .request(reqwest::Method::GET, "/v1/agents")
            .header("X-Timeout-Ms", deadline_header(timeout)?)
            .timeout(timeout + ANSWER_GRACE);
        let resp = self.send(req).await?;
        if !is_json(&resp) {
            return Err(self.not_a_gateway("GET", "/v1/agents", &resp));
        }
        let body = resp.bytes().await.map_err(|e| self.network_error(e))?;
        serde_json::from_slice(&body)
            .map_err(|e| BusError::codec(format!("the gateway's catalog is not JSON: {e}")))
    }
}

/// The error an error answer carries (`{"code", "message", "retryable"}`), or
/// one made of its status and body when it carries none.
fn error_of(status: reqwest::StatusCode, body: &[u8]) -> BusError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
    };
    match (field("code").and_then(ErrorCode::parse), field("message")) {
        (Some(code), Some(message)) => {
            let e = BusError::new(code, message);
            match parsed
                .as_ref()
                .and_then(|v| v.get("retryable"))
                .and_then(Value::as_bool)
            {
                Some(r) => e.with_retryable(r),
                None => e,
            }
        }
        _ => {
            // Every answer of a gateway carries the error shape: this one
            // came from something else (a proxy, or not a gateway at all).
            let text = String::from_utf8_lossy(body);
            let text: String = text.trim().chars().take(200).collect();
            let message = if text.is_empty() {
                format!("the server answered {status} without an OpenAgentIO error")
            } else {
                format!("the server answered {status} without an OpenAgentIO error: {text}")
            };
            let code = match status.as_u16() {
                401 | 403 => ErrorCode::AuthFailure,
                // Not "no handler": no gateway said so.
                404 => ErrorCode::TransportFailure,
                400 | 405 | 413 | 415 | 422 => ErrorCode::InvalidRequest,
                429 => ErrorCode::BackpressureDrop,
                504 => ErrorCode::AgentTimeout,
                _ => ErrorCode::TransportFailure,
            };
            BusError::new(code, message)
        }
    }
}

/// Whether an answer says it is JSON, as every answer of the gateway with a
/// body does.
fn is_json(resp: &reqwest::Response) -> bool {
    resp.headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// `s` as one URL path segment: target and event type names are subject
/// tokens joined by dots, but a name with other bytes must reach the gateway
/// as it is (and be refused there with a clear message), not as a new path.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An error with its causes, which reqwest keeps apart ("error sending
/// request" alone does not say the connection was refused).
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_past_the_gateways_limit_names_the_option() {
        assert_eq!(deadline_header(Duration::from_secs(30)).unwrap(), "30000");
        assert_eq!(deadline_header(MAX_GATEWAY_TIMEOUT).unwrap(), "86400000");
        let e = deadline_header(Duration::from_secs(25 * 3600)).unwrap_err();
        assert!(
            e.message().contains("--timeout") && e.message().contains("24h"),
            "{e}"
        );
    }

    #[test]
    fn error_answers_keep_their_code_and_others_get_one_from_the_status() {
        let e = error_of(
            reqwest::StatusCode::NOT_FOUND,
            br#"{"code":"NO_HANDLER","message":"no handler for target \"x\"","retryable":false}"#,
        );
        assert_eq!(e.code(), ErrorCode::NoHandler);
        assert_eq!(e.message(), "no handler for target \"x\"");
        let e = error_of(reqwest::StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(e.code(), ErrorCode::TransportFailure);
        assert!(e.message().contains("upstream down"), "{}", e.message());
        let e = error_of(reqwest::StatusCode::UNAUTHORIZED, b"");
        assert_eq!(e.code(), ErrorCode::AuthFailure);
    }

    #[test]
    fn names_stay_one_path_segment() {
        assert_eq!(path_segment("tools.add"), "tools.add");
        assert_eq!(path_segment("a b/../c"), "a%20b%2F..%2Fc");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
