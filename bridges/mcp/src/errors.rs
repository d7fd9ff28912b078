//! The errors of the MCP bridge and their wire codes.
//!
//! | failure                                                     | wire code           |
//! |-------------------------------------------------------------|---------------------|
//! | call or connect deadline passed                             | `AGENT_TIMEOUT`     |
//! | HTTP 401 / 403                                              | `AUTH_FAILURE`      |
//! | JSON-RPC -32602, schema violation, non-object payload, `isError` result, other HTTP 4xx | `INVALID_REQUEST` |
//! | JSON-RPC -32601 / -32600, server down or not started, connection lost, child exited | `AGENT_UNAVAILABLE` |
//! | HTTP 5xx, other JSON-RPC errors, malformed answers          | `TRANSPORT_FAILURE` |
//!
//! Messages follow the reference bridge (`mcp bridge '<name>': ...`) and pass
//! through the [`Redactor`] first: they never hold the token or an
//! `Authorization` value.

use std::error::Error as StdError;

use openagentio_core::{BridgeError, BusError, ErrorCode};
use rmcp::ServiceError;
use rmcp::model::ErrorCode as RpcCode;
use rmcp::service::ClientInitializeError;
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, StreamableHttpError,
};

use crate::redact::Redactor;

type HttpError = StreamableHttpError<reqwest::Error>;

/// A failure of the MCP bridge, before it is given a wire code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum McpError {
    /// A deadline passed.
    #[error("{0}")]
    Timeout(String),
    /// The server is down, not started, or the connection to it was lost.
    #[error("{message}")]
    Unavailable {
        /// What happened.
        message: String,
        /// Whether the connection is gone (calls in flight fail, the bridge reconnects).
        connection_lost: bool,
    },
    /// The server refused our credentials (HTTP 401/403).
    #[error("{0}")]
    Auth(String),
    /// The request cannot be served as sent (bad arguments, a tool error, HTTP 4xx).
    #[error("{0}")]
    InvalidRequest(String),
    /// The transport or the protocol failed (HTTP 5xx, malformed answers, other JSON-RPC errors).
    #[error("{0}")]
    Transport(String),
    /// The server process could not be started at all (missing program, no permission).
    #[error("{0}")]
    Spawn(String),
}

impl McpError {
    /// An `Unavailable` error that does not mean the connection is gone.
    pub fn unavailable(message: impl Into<String>) -> Self {
        McpError::Unavailable {
            message: message.into(),
            connection_lost: false,
        }
    }

    /// An `Unavailable` error meaning the connection is gone.
    pub fn lost(message: impl Into<String>) -> Self {
        McpError::Unavailable {
            message: message.into(),
            connection_lost: true,
        }
    }

    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            McpError::Timeout(_) => ErrorCode::AgentTimeout,
            McpError::Unavailable { .. } | McpError::Spawn(_) => ErrorCode::AgentUnavailable,
            McpError::Auth(_) => ErrorCode::AuthFailure,
            McpError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            McpError::Transport(_) => ErrorCode::TransportFailure,
        }
    }

    /// Whether the connection to the server is gone.
    pub fn connection_lost(&self) -> bool {
        matches!(
            self,
            McpError::Unavailable {
                connection_lost: true,
                ..
            }
        )
    }

    /// Whether retrying the connection cannot help (bad credentials, a missing program).
    pub fn is_permanent(&self) -> bool {
        matches!(self, McpError::Auth(_) | McpError::Spawn(_))
    }

    /// The bus error for bridge `bridge`: `mcp bridge '<bridge>': <message>`, redacted.
    pub fn to_bus(&self, bridge: &str, redactor: &Redactor) -> BusError {
        let message = redactor.clean(&format!("mcp bridge '{bridge}': {self}"));
        let err = BusError::new(self.code(), message);
        match self {
            // The server is down or restarting: worth trying again shortly.
            McpError::Unavailable { .. } => err.with_retryable(true),
            _ => err,
        }
    }

    /// The start/stop error for bridge `bridge`, redacted.
    pub fn to_bridge(&self, bridge: &str, redactor: &Redactor) -> BridgeError {
        let message = redactor.clean(&self.to_string());
        if self.is_permanent() {
            BridgeError::permanent(bridge, message)
        } else {
            BridgeError::transient(bridge, message)
        }
    }
}

/// Classifies a JSON-RPC error answer.
///
/// Besides the codes of the table above: a server-defined error (-32000 or
/// -32001) whose message speaks of the session (as some servers answer a
/// request on a session they no longer know, with HTTP 400) means the session
/// is gone: `AGENT_UNAVAILABLE`, and the bridge connects anew.
pub fn from_rpc(code: RpcCode, message: &str) -> McpError {
    if matches!(code.0, -32001 | -32000) && message.to_ascii_lowercase().contains("session") {
        return McpError::lost(format!("the server no longer knows our session: {message}"));
    }
    match code {
        RpcCode::INVALID_PARAMS => {
            McpError::InvalidRequest(format!("invalid tool arguments: {message}"))
        }
        RpcCode::METHOD_NOT_FOUND | RpcCode::INVALID_REQUEST => {
            McpError::unavailable(format!("server error: {message}"))
        }
        _ => McpError::Transport(format!("protocol error: {message}")),
    }
}

/// Classifies an error of a request sent on an established connection.
pub fn from_service(e: &ServiceError) -> McpError {
    match e {
        ServiceError::McpError(data) => from_rpc(data.code, &data.message),
        ServiceError::TransportClosed => McpError::lost("connection to the MCP server closed"),
        ServiceError::TransportSend(dynamic) => from_transport(dynamic.error.as_ref()),
        ServiceError::Timeout { .. } => McpError::Timeout("operation timed out".to_owned()),
        ServiceError::Cancelled { reason } => McpError::unavailable(format!(
            "request cancelled: {}",
            reason.as_deref().unwrap_or("no reason given")
        )),
        other => McpError::Transport(format!("unexpected failure: {other}")),
    }
}

/// Classifies an error of the connection handshake.
pub fn from_init(e: &ClientInitializeError) -> McpError {
    match e {
        ClientInitializeError::TransportError { error, .. } => from_transport(error.error.as_ref()),
        ClientInitializeError::JsonRpcError(data) => from_rpc(data.code, &data.message),
        ClientInitializeError::ConnectionClosed(when) => {
            McpError::lost(format!("connection closed during {when}"))
        }
        ClientInitializeError::LegacyFallbackFailed { fallback, .. } => from_init(fallback),
        ClientInitializeError::Cancelled => McpError::unavailable("connection attempt cancelled"),
        other => McpError::Transport(format!("initialization failed: {other}")),
    }
}

/// Classifies a transport error, looking through its chain of sources for the
/// HTTP, reqwest or I/O error underneath.
pub fn from_transport(e: &(dyn StdError + Send + Sync + 'static)) -> McpError {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(m) = classify_one(err) {
            return m;
        }
        current = err.source();
    }
    McpError::Transport(format!("unexpected failure: {e}"))
}

fn classify_one(err: &(dyn StdError + 'static)) -> Option<McpError> {
    if let Some(h) = err.downcast_ref::<HttpError>() {
        return classify_http(h);
    }
    if err.is::<AuthRequiredError>() {
        return Some(McpError::Auth("authentication failed: 401".to_owned()));
    }
    if err.is::<InsufficientScopeError>() {
        return Some(McpError::Auth("authentication failed: 403".to_owned()));
    }
    if let Some(s) = err.downcast_ref::<HttpStatusError>() {
        return Some(from_status(s.status));
    }
    if let Some(r) = err.downcast_ref::<reqwest::Error>() {
        return Some(classify_reqwest(r));
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return Some(McpError::lost(format!("transport unavailable: {io}")));
    }
    None
}

fn classify_http(h: &HttpError) -> Option<McpError> {
    Some(match h {
        StreamableHttpError::AuthRequired(_) => {
            McpError::Auth("authentication failed: 401".to_owned())
        }
        StreamableHttpError::InsufficientScope(_) => {
            McpError::Auth("authentication failed: 403".to_owned())
        }
        StreamableHttpError::HttpStatus(s) => from_status(s.status),
        StreamableHttpError::Client(r) => classify_reqwest(r),
        StreamableHttpError::Io(io) => McpError::lost(format!("HTTP transport unavailable: {io}")),
        StreamableHttpError::UnexpectedServerResponse(text) => match leading_status(text) {
            Some(status) => from_status(status),
            None => McpError::Transport(format!("unexpected server response: {text}")),
        },
        StreamableHttpError::SessionExpired
        | StreamableHttpError::SessionRecoveryTimeout
        | StreamableHttpError::ReinitializationFailed(_) => McpError::lost(format!(
            "MCP session expired and could not be re-initialised: {h}"
        )),
        StreamableHttpError::TransportChannelClosed => {
            McpError::lost("HTTP transport closed".to_owned())
        }
        StreamableHttpError::TokioJoinError(_) => {
            McpError::lost(format!("HTTP transport failed: {h}"))
        }
        other => McpError::Transport(format!("protocol error: {other}")),
    })
}

fn classify_reqwest(r: &reqwest::Error) -> McpError {
    if r.is_timeout() {
        return McpError::Timeout("HTTP request timed out".to_owned());
    }
    if let Some(status) = r.status() {
        return from_status(status.as_u16());
    }
    if r.is_connect() || r.is_request() || r.is_body() {
        // Show the kind only: reqwest's text names the URL, which may carry a credential.
        return McpError::lost(format!(
            "HTTP transport unavailable: {}",
            if r.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            }
        ));
    }
    McpError::Transport("HTTP transport failed".to_owned())
}

/// Classifies an HTTP status of a failed request, as the reference does.
pub fn from_status(status: u16) -> McpError {
    match status {
        401 | 403 => McpError::Auth(format!("authentication failed: {status}")),
        500.. => McpError::Transport(format!("server error: {status}")),
        _ => McpError::InvalidRequest(format!("HTTP error: {status}")),
    }
}

/// The status of a text that starts `HTTP nnn`.
fn leading_status(text: &str) -> Option<u16> {
    let rest = text.strip_prefix("HTTP ")?;
    rest.get(..3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_codes_map_as_the_issue_says() {
        assert_eq!(
            from_rpc(RpcCode::INVALID_PARAMS, "x").code(),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            from_rpc(RpcCode::METHOD_NOT_FOUND, "x").code(),
            ErrorCode::AgentUnavailable
        );
        assert_eq!(
            from_rpc(RpcCode::INVALID_REQUEST, "x").code(),
            ErrorCode::AgentUnavailable
        );
        assert_eq!(
            from_rpc(RpcCode::INTERNAL_ERROR, "x").code(),
            ErrorCode::TransportFailure
        );
        let gone = from_rpc(RpcCode(-32000), "Bad Request: No valid session ID provided");
        assert!(gone.connection_lost());
        assert_eq!(
            from_rpc(RpcCode(-32000), "other").code(),
            ErrorCode::TransportFailure
        );
    }

    #[test]
    fn http_statuses_map_as_the_issue_says() {
        assert_eq!(from_status(401).code(), ErrorCode::AuthFailure);
        assert_eq!(from_status(403).code(), ErrorCode::AuthFailure);
        assert_eq!(from_status(502).code(), ErrorCode::TransportFailure);
        assert_eq!(from_status(400).code(), ErrorCode::InvalidRequest);
        let text: HttpError =
            StreamableHttpError::UnexpectedServerResponse("HTTP 401 Unauthorized: nope".into());
        assert_eq!(from_transport(&text).code(), ErrorCode::AuthFailure);
        let five: HttpError = StreamableHttpError::HttpStatus(HttpStatusError::new(503, None));
        assert_eq!(from_transport(&five).code(), ErrorCode::TransportFailure);
    }

    #[test]
    fn closed_and_io_mean_the_connection_is_lost() {
        assert!(from_service(&ServiceError::TransportClosed).connection_lost());
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe");
        let m = from_transport(&io);
        assert!(m.connection_lost());
        assert_eq!(m.code(), ErrorCode::AgentUnavailable);
    }

    #[test]
    fn bus_errors_are_prefixed_and_redacted() {
        let r = Redactor::new(["tok".to_owned()]);
        let e = McpError::Transport("server said Bearer tok".into()).to_bus("fs", &r);
        assert_eq!(e.code(), ErrorCode::TransportFailure);
        assert_eq!(
            e.message(),
            "mcp bridge 'fs': server said Bearer [REDACTED]"
        );
        assert!(McpError::lost("x").to_bus("fs", &r).retryable());
    }
}
