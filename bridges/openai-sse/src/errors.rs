//! The bridge's errors and their mapping to wire [`ErrorCode`]s.

use std::time::Duration;

use openagentio_core::{BusError, ErrorCode};
use serde_json::{Value, json};

use crate::sse::SseParseError;

/// Which time limit ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Opening the connection.
    Connect,
    /// Waiting for the first event.
    FirstToken,
    /// Silence between chunks.
    Idle,
    /// The whole call.
    Total,
}

impl TimeoutKind {
    fn describe(self) -> &'static str {
        match self {
            TimeoutKind::Connect => "connecting to the upstream timed out",
            TimeoutKind::FirstToken => "no first token from the upstream in time",
            TimeoutKind::Idle => "the upstream stalled between chunks",
            TimeoutKind::Total => "the upstream call ran past its total timeout",
        }
    }
}

/// Why a call through the bridge failed. Messages never hold the token.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SseError {
    /// The payload cannot be mapped to a chat request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The upstream could not be reached (connection refused, DNS, TLS).
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// A time limit ran out.
    #[error("{}", .0.describe())]
    Timeout(TimeoutKind),
    /// The upstream answered with an HTTP error status.
    #[error("upstream answered HTTP {status}: {message}")]
    Http {
        /// The status code.
        status: u16,
        /// The upstream's message (from its JSON error, or its text).
        message: String,
        /// Its `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// The connection failed or ended before the stream finished.
    #[error("upstream transport failure: {0}")]
    Transport(String),
    /// The stream held something that is not SSE or not a JSON chunk.
    #[error("upstream stream is not decodable: {0}")]
    Codec(String),
    /// The upstream reported an error inside the stream.
    #[error("upstream error: {message}")]
    Upstream {
        /// The wire code it maps to.
        code: ErrorCode,
        /// The upstream's message.
        message: String,
        /// Whether retrying may help.
        retryable: bool,
    },
    /// The caller gave up (dropped its stream or passed its deadline).
    #[error("the caller cancelled the request")]
    Cancelled,
    /// The bridge is not running.
    #[error("the bridge is stopped")]
    Stopped,
    /// Writing a frame to the bus failed.
    #[error("{0}")]
    Bus(BusError),
}

impl SseError {
    /// The wire code this error maps to.
    pub fn code(&self) -> ErrorCode {
        match self {
            SseError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            SseError::Unavailable(_) | SseError::Stopped => ErrorCode::AgentUnavailable,
            SseError::Timeout(_) | SseError::Cancelled => ErrorCode::AgentTimeout,
            SseError::Http { status, .. } => match status {
                401 | 403 => ErrorCode::AuthFailure,
                408 => ErrorCode::AgentTimeout,
                429 => ErrorCode::BackpressureDrop,
                400..=499 => ErrorCode::InvalidRequest,
                _ => ErrorCode::AgentUnavailable,
            },
            SseError::Transport(_) => ErrorCode::TransportFailure,
            SseError::Codec(_) => ErrorCode::CodecFailure,
            SseError::Upstream { code, .. } => *code,
            SseError::Bus(e) => e.code(),
        }
    }

    /// Whether retrying the call may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            SseError::Unavailable(_) | SseError::Transport(_) | SseError::Timeout(_) => true,
            SseError::Http { status, .. } => matches!(status, 408 | 429 | 500..=599),
            SseError::Upstream { retryable, .. } => *retryable,
            SseError::Bus(e) => e.retryable(),
            SseError::Cancelled => true,
            _ => false,
        }
    }

    /// Whether the bridge may retry it itself: a failure before any byte of
    /// a stream was read (connection refused, 429, 5xx).
    pub(crate) fn retry_before_stream(&self) -> bool {
        match self {
            SseError::Unavailable(_) => true,
            SseError::Http { status, .. } => matches!(status, 429 | 500..=599),
            _ => false,
        }
    }

    /// The `Retry-After` the upstream asked for.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SseError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The bus error sent in the `agent.response.error` frame.
    pub fn to_bus_error(&self) -> BusError {
        if let SseError::Bus(e) = self {
            return e.clone();
        }
        let err = BusError::new(self.code(), self.to_string()).with_retryable(self.retryable());
        match self {
            SseError::Http {
                status,
                retry_after,
                ..
            } => {
                let mut cause = json!({ "status": status });
                if let Some(d) = retry_after {
                    cause["retry_after_ms"] = Value::from(d.as_millis() as u64);
                }
                err.with_cause(cause)
            }
            _ => err,
        }
    }

    /// The error an upstream error payload inside the stream describes:
    /// `{"error": {"message", "type", "code"}}`, a bare error object, or
    /// text. Classified like the reference bridge: auth words →
    /// `AUTH_FAILURE`, validation words → `INVALID_REQUEST`, rate limits →
    /// `BACKPRESSURE_DROP`, anything else `AGENT_UNAVAILABLE`.
    pub(crate) fn from_upstream(payload: &Value) -> SseError {
        let error = match payload.get("error") {
            Some(e) if !e.is_null() => e,
            _ => payload,
        };
        let (message, words) = match error {
            Value::Object(o) => {
                let field = |k: &str| match o.get(k) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Null) | None => String::new(),
                    Some(v) => v.to_string(),
                };
                let (message, kind, code) = (field("message"), field("type"), field("code"));
                let message = match (code.is_empty(), message.is_empty()) {
                    (_, true) => error.to_string(),
                    (true, false) => message,
                    (false, false) => format!("[{code}] {message}"),
                };
                let words = format!("{kind} {code} {message}").to_lowercase();
                (message, words)
            }
            Value::String(s) => (s.clone(), s.to_lowercase()),
            other => (other.to_string(), other.to_string().to_lowercase()),
        };
        let has = |keys: &[&str]| keys.iter().any(|k| words.contains(k));
        let (code, retryable) = if has(&["auth", "permission", "unauthorized", "forbidden"]) {
            (ErrorCode::AuthFailure, false)
        } else if has(&["rate_limit", "rate limit", "429", "quota"]) {
            (ErrorCode::BackpressureDrop, true)
        } else if has(&["invalid", "validation", "bad_request", "context_length"]) {
            (ErrorCode::InvalidRequest, false)
        } else {
            let transient = has(&[
                "overloaded",
                "server_error",
                "unavailable",
                "timeout",
                "503",
                "500",
            ]);
            (ErrorCode::AgentUnavailable, transient)
        };
        SseError::Upstream {
            code,
            message,
            retryable,
        }
    }

    /// A reqwest failure, without its URL (which may hold credentials).
    pub(crate) fn from_reqwest(e: reqwest::Error, connecting: bool) -> SseError {
        let timeout = e.is_timeout();
        let connect = e.is_connect();
        let e = e.without_url();
        let text = error_chain(&e);
        if timeout {
            SseError::Timeout(if connect || connecting {
                TimeoutKind::Connect
            } else {
                TimeoutKind::Idle
            })
        } else if connect {
            SseError::Unavailable(text)
        } else {
            SseError::Transport(text)
        }
    }
}

impl From<SseParseError> for SseError {
    fn from(e: SseParseError) -> Self {
        SseError::Codec(e.to_string())
    }
}

impl From<SseError> for BusError {
    fn from(e: SseError) -> Self {
        e.to_bus_error()
    }
}

/// `e` and its sources, joined by `: ` ("connection refused" sits deep in it).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The message of an HTTP error body: its JSON `error.message`, `error`,
/// `message` or `detail`, else its text, at most 500 characters.
pub(crate) fn http_error_message(body: &[u8]) -> String {
    let from_json = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let pick = |v: &Value| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Null => None,
            Value::String(_) => None,
            other => Some(other.to_string()),
        };
        v.pointer("/error/message")
            .and_then(pick)
            .or_else(|| v.get("error").and_then(pick))
            .or_else(|| v.get("message").and_then(pick))
            .or_else(|| v.get("detail").and_then(pick))
    });
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text,
    }
}

/// A `Retry-After` value: seconds, or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> SseError {
        SseError::Http {
            status,
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn http_statuses_map_to_codes() {
        for (s, code, retry) in [
            (401, ErrorCode::AuthFailure, false),
            (403, ErrorCode::AuthFailure, false),
            (400, ErrorCode::InvalidRequest, false),
            (404, ErrorCode::InvalidRequest, false),
            (422, ErrorCode::InvalidRequest, false),
            (429, ErrorCode::BackpressureDrop, true),
            (500, ErrorCode::AgentUnavailable, true),
            (503, ErrorCode::AgentUnavailable, true),
        ] {
            let e = http(s).to_bus_error();
            assert_eq!((e.code(), e.retryable()), (code, retry), "{s}");
            assert_eq!(http(s).retry_before_stream(), s == 429 || s >= 500);
        }
    }

    #[test]
    fn upstream_errors_are_classified() {
        let c = |v: Value| SseError::from_upstream(&v).code();
        assert_eq!(
            c(json!({"error": {"message": "Invalid API key", "type": "authentication_error"}})),
            ErrorCode::AuthFailure
        );
        assert_eq!(
            c(json!({"error": {"message": "too long", "code": "context_length_exceeded"}})),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            c(json!({"error": {"message": "slow down", "type": "rate_limit_error"}})),
            ErrorCode::BackpressureDrop
        );
        assert_eq!(c(json!({"error": "boom"})), ErrorCode::AgentUnavailable);
        let e = SseError::from_upstream(&json!({"error": {"message": "Overloaded", "code": 529}}));
        assert_eq!(e.to_string(), "upstream error: [529] Overloaded");
        assert!(e.retryable());
    }

    #[test]
    fn http_error_bodies_give_their_message() {
        assert_eq!(
            http_error_message(br#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(
            http_error_message(br#"{"detail":"Not Found"}"#),
            "Not Found"
        );
        assert_eq!(
            http_error_message(b"Internal\n  Server Error"),
            "Internal Server Error"
        );
        assert_eq!(http_error_message(b""), "(empty body)");
        assert_eq!(
            http_error_message("x".repeat(600).as_bytes())
                .chars()
                .count(),
            501
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
