//! Wire error codes and the bus error type.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::payload::ErrorPayload;

/// The eight error codes of acp/1.0, as they travel in an `agent.response.error` payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The handler or the call exceeded its deadline.
    AgentTimeout,
    /// The handler failed, or the agent behind it is down.
    AgentUnavailable,
    /// Frames or requests were dropped because a buffer or limit was full.
    BackpressureDrop,
    /// The transport failed: connection lost, publish failed.
    TransportFailure,
    /// Bytes could not be encoded or decoded.
    CodecFailure,
    /// Credentials were missing or wrong.
    AuthFailure,
    /// The request was malformed or not acceptable.
    InvalidRequest,
    /// Nobody serves the target.
    NoHandler,
}

impl ErrorCode {
    /// Every code, in the order of the spec.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::AgentTimeout,
        ErrorCode::AgentUnavailable,
        ErrorCode::BackpressureDrop,
        ErrorCode::TransportFailure,
        ErrorCode::CodecFailure,
        ErrorCode::AuthFailure,
        ErrorCode::InvalidRequest,
        ErrorCode::NoHandler,
    ];

    /// The wire spelling, e.g. `"AGENT_TIMEOUT"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AgentTimeout => "AGENT_TIMEOUT",
            ErrorCode::AgentUnavailable => "AGENT_UNAVAILABLE",
            ErrorCode::BackpressureDrop => "BACKPRESSURE_DROP",
            ErrorCode::TransportFailure => "TRANSPORT_FAILURE",
            ErrorCode::CodecFailure => "CODEC_FAILURE",
            ErrorCode::AuthFailure => "AUTH_FAILURE",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::NoHandler => "NO_HANDLER",
        }
    }

    /// Parses the wire spelling; `None` for a code this version does not know.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether a failure with this code is worth retrying, as the reference SDKs decide.
    pub fn default_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::AgentTimeout | ErrorCode::TransportFailure | ErrorCode::BackpressureDrop
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed bus operation, or a failure a handler reports: a wire code, a message,
/// whether retrying may help, and an optional structured cause.
///
/// ```
/// use openagentio_core::{BusError, ErrorCode};
/// let e = BusError::new(ErrorCode::AgentTimeout, "deadline exceeded");
/// assert!(e.retryable());
/// assert_eq!(e.code(), ErrorCode::AgentTimeout);
/// ```
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct BusError {
    code: ErrorCode,
    message: String,
    retryable: bool,
    cause: Option<Value>,
    /// The code a peer sent that this version does not know.
    unknown_code: Option<String>,
}

impl BusError {
    /// An error with `code`, `message` and the code's default `retryable` flag.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        BusError {
            code,
            message: message.into(),
            retryable: code.default_retryable(),
            cause: None,
            unknown_code: None,
        }
    }

    /// The error of a call on a closed bus: `TRANSPORT_FAILURE`, not
    /// retryable (the bus stays closed).
    pub(crate) fn closed_bus() -> Self {
        Self::transport("bus is closed").with_retryable(false)
    }
    /// `AGENT_TIMEOUT`.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AgentTimeout, message)
    }
    /// `AGENT_UNAVAILABLE`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AgentUnavailable, message)
    }
    /// `BACKPRESSURE_DROP`.
    pub fn backpressure(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BackpressureDrop, message)
    }
    /// `TRANSPORT_FAILURE`.
    pub fn transport(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TransportFailure, message)
    }
    /// `CODEC_FAILURE`.
    pub fn codec(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::CodecFailure, message)
    }
    /// `AUTH_FAILURE`.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::AuthFailure, message)
    }
    /// `INVALID_REQUEST`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    /// `NO_HANDLER`.
    pub fn no_handler(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NoHandler, message)
    }

    /// Overrides the retryable flag.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Attaches a structured cause (sent as `cause` in the error payload). The
    /// wire wants an object: any other value is wrapped as `{"detail": value}`.
    pub fn with_cause(mut self, cause: Value) -> Self {
        self.cause = Some(match cause {
            Value::Object(_) => cause,
            other => serde_json::json!({ "detail": other }),
        });
        self
    }

    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Whether retrying may succeed.
    pub fn retryable(&self) -> bool {
        self.retryable
    }
    /// The structured cause, if any.
    pub fn cause(&self) -> Option<&Value> {
        self.cause.as_ref()
    }
    /// The code the sender wrote, when it is none of the eight this version
    /// knows ([`BusError::code`] is then `AGENT_UNAVAILABLE`). Forwarded
    /// error frames carry it on, and the gateway answers it with 500.
    pub fn unknown_code(&self) -> Option<&str> {
        self.unknown_code.as_deref()
    }

    /// The payload of an `agent.response.error` frame for this error.
    pub fn to_payload(&self) -> ErrorPayload {
        ErrorPayload {
            code: self
                .unknown_code
                .clone()
                .unwrap_or_else(|| self.code.as_str().to_owned()),
            message: self.message.clone(),
            retryable: self.retryable,
            cause: self.cause.clone(),
        }
    }

    /// The error an `agent.response.error` payload describes. A code this version
    /// does not know becomes `AGENT_UNAVAILABLE`, with the original code kept in
    /// the message.
    pub fn from_payload(p: &ErrorPayload) -> Self {
        let (code, message, unknown_code) = match ErrorCode::parse(&p.code) {
            Some(code) => (code, p.message.clone(), None),
            None => (
                ErrorCode::AgentUnavailable,
                format!("{}: {}", p.code, p.message),
                Some(p.code.clone()),
            ),
        };
        BusError {
            code,
            message,
            retryable: p.retryable,
            cause: p.cause.clone(),
            unknown_code,
        }
    }
}

impl From<ErrorPayload> for BusError {
    fn from(p: ErrorPayload) -> Self {
        BusError::from_payload(&p)
    }
}

impl From<serde_json::Error> for BusError {
    fn from(e: serde_json::Error) -> Self {
        BusError::invalid(format!("payload does not fit: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_their_wire_spelling() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.as_str()));
        }
        assert_eq!(ErrorCode::parse("NOPE"), None);
        let weird = BusError::from_payload(&ErrorPayload {
            code: "WEIRD_CODE".into(),
            message: "m".into(),
            retryable: false,
            cause: None,
        });
        assert_eq!(weird.code(), ErrorCode::AgentUnavailable);
        assert_eq!(weird.unknown_code(), Some("WEIRD_CODE"));
        assert_eq!(weird.to_payload().code, "WEIRD_CODE");
    }

    #[test]
    fn payload_round_trip_keeps_code_and_flags() {
        let e = BusError::invalid("bad field").with_cause(serde_json::json!({"field": "x"}));
        let back = BusError::from_payload(&e.to_payload());
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_code_is_kept_in_the_message() {
        let p = ErrorPayload {
            code: "WEIRD".into(),
            message: "m".into(),
            retryable: true,
            cause: None,
        };
        let e = BusError::from_payload(&p);
        assert_eq!(e.code(), ErrorCode::AgentUnavailable);
        assert_eq!(e.message(), "WEIRD: m");
        assert!(e.retryable());
    }
}
