//! One tool call, from a bus request to `tools/call` and back.
//!
//! 1. The payload becomes the arguments (an object; null means `{}`), checked
//!    against the tool's `inputSchema` before anything is sent.
//! 2. The envelope's `session_id` and `traceparent` travel in the request's `_meta`.
//! 3. The request goes out with a progress token. While it runs, the call
//!    waits on, first come first served: the answer; the connection being
//!    lost (fails at once with `AGENT_UNAVAILABLE`); a progress notification
//!    (a delta frame, when the caller streams); the deadline (the tool's
//!    timeout, or the caller's own deadline if sooner: `AGENT_TIMEOUT`); the
//!    caller giving up. On the last two the server is sent
//!    `notifications/cancelled` for the request, as it is when the handler is
//!    dropped mid-call.
//! 4. The answer maps as [`crate::result`] describes. A streaming caller gets
//!    it as the final frame's `result`; an invoking caller gets it as the final
//!    payload itself, as from the reference bridge.

use std::sync::Arc;
use std::time::Duration;

use openagentio_core::{BusError, FrameKind, Request, StreamWriter};
use rmcp::Peer;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CancelledNotificationParam, ClientRequest, MetaObject,
    RequestId, RequestMetaObject, ServerResult,
};
use rmcp::service::{PeerRequestOptions, RoleClient};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::errors::{self, McpError};
use crate::progress::delta_of;
use crate::redact::Redactor;
use crate::result;
use crate::schema::{ArgumentError, ArgumentValidator};
use crate::upstream::Upstream;

/// What the bridge knows of one exposed tool.
#[derive(Debug)]
pub(crate) struct ToolSpec {
    /// The tool's MCP name, used for `tools/call`.
    pub name: String,
    /// The bus target serving it.
    pub target: String,
    /// Its description (or title).
    pub description: String,
    /// Its `inputSchema`.
    pub input_schema: Value,
    /// The compiled schema.
    pub validator: ArgumentValidator,
    /// Its call timeout.
    pub timeout: Duration,
}

/// Serves one request for `spec` on `conn` (none while reconnecting).
pub(crate) async fn serve(
    bridge: &str,
    redactor: &Redactor,
    spec: &ToolSpec,
    conn: Option<Arc<Upstream>>,
    req: &Request,
    writer: &StreamWriter,
) -> Result<(), BusError> {
    let fail = |e: McpError| e.to_bus(bridge, redactor);
    // Null means no arguments; anything else is checked as it is, then copied once.
    let empty = Value::Object(Map::new());
    let payload = match req.payload() {
        Value::Null => &empty,
        p => p,
    };
    spec.validator
        .check(payload)
        .map_err(|e| fail(argument_error(spec, e)))?;
    let args = ArgumentValidator::arguments(payload).map_err(|e| fail(argument_error(spec, e)))?;
    let conn = match conn {
        Some(c) if !c.is_lost() => c,
        _ => {
            return Err(fail(McpError::unavailable(
                "the MCP server is not connected (reconnecting)",
            )));
        }
    };
    // A caller that asked for every frame is told the call has started
    // (which tool, on which server), as the SSE bridge tells its model.
    if req.stream_requested() == Some(true) {
        writer
            .started(serde_json::json!({"tool": spec.name, "server": conn.server()}))
            .await?;
    }
    let answer = match call(spec, &conn, args, req, writer).await {
        Ok(v) => v,
        Err(e) => {
            if e.connection_lost() {
                conn.lose(e.to_string());
            }
            return Err(fail(e));
        }
    };
    if result::is_error(&answer) {
        return Err(fail(McpError::InvalidRequest(format!(
            "tool error: {}",
            result::error_text(&answer)
        ))));
    }
    let mapped = result::map_result(&answer);
    // Frames (progress, then `{"result": ...}`) only for a caller that asked for
    // a stream; anyone else, reference-SDK callers included, gets the tool's
    // result as the one final payload, as the reference bridge answers.
    if req.stream_requested() == Some(true) {
        writer.finish(mapped).await
    } else {
        writer.send(FrameKind::Final, Some(mapped)).await
    }
}

fn argument_error(spec: &ToolSpec, e: ArgumentError) -> McpError {
    match e {
        ArgumentError::NotAnObject => McpError::InvalidRequest(e.to_string()),
        other => McpError::InvalidRequest(format!("tool '{}' {other}", spec.name)),
    }
}

/// Sends `tools/call` and waits (see the module docs); the answer as JSON.
async fn call(
    spec: &ToolSpec,
    conn: &Upstream,
    args: Map<String, Value>,
    req: &Request,
    writer: &StreamWriter,
) -> Result<Value, McpError> {
    let env = req.envelope();
    let mut meta = Map::new();
    if !env.session_id.is_empty() {
        meta.insert(
            "session_id".to_owned(),
            Value::from(env.session_id.as_str()),
        );
    }
    if !env.traceparent.is_empty() {
        meta.insert(
            "traceparent".to_owned(),
            Value::from(env.traceparent.as_str()),
        );
    }
    let mut options = PeerRequestOptions::no_options();
    if !meta.is_empty() {
        options = options.with_meta(RequestMetaObject(MetaObject(meta)));
    }
    let params = CallToolRequestParams::new(spec.name.clone()).with_arguments(args);
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));

    let mut deadline = Instant::now() + spec.timeout;
    if let Some(caller) = openagentio_core::context::current().and_then(|c| c.deadline()) {
        deadline = deadline.min(caller);
    }
    let mut handle = conn
        .peer()
        .send_request_with_option(request, options)
        .await
        .map_err(|e| errors::from_service(&e))?;
    let mut progress = conn.progress().subscribe(handle.progress_token.clone());
    let mut guard = CancelOnDrop {
        peer: conn.peer().clone(),
        id: Some(handle.id.clone()),
    };
    let streaming = req.stream_requested() == Some(true);
    loop {
        tokio::select! {
            biased;
            answer = &mut handle.rx => {
                guard.disarm();
                if streaming {
                    // Progress the server sent before its answer is already queued.
                    while let Some(p) = progress.try_recv() {
                        let _ = writer.delta(delta_of(&p)).await;
                    }
                }
                return match answer {
                    Err(_) => Err(McpError::lost(conn.lost_reason())),
                    Ok(Err(e)) => Err(errors::from_service(&e)),
                    Ok(Ok(r)) => answer_json(r),
                };
            }
            _ = conn.lost() => {
                guard.disarm();
                return Err(McpError::lost(conn.lost_reason()));
            }
            Some(p) = progress.recv(), if streaming => {
                if let Err(e) = writer.delta(delta_of(&p)).await {
                    tracing::debug!(target = %spec.target, error = %e, "progress frame not sent");
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                guard.cancel("request timeout");
                return Err(McpError::Timeout("tool call timed out".to_owned()));
            }
            _ = req.cancelled() => {
                if req.bus().is_draining() {
                    guard.cancel("the service is shutting down");
                    return Err(McpError::unavailable("the service is shutting down"));
                }
                guard.cancel("the caller cancelled the request");
                return Err(McpError::unavailable("the caller cancelled the call"));
            }
        }
    }
}

/// The `tools/call` answer as JSON (MCP spelling).
fn answer_json(r: ServerResult) -> Result<Value, McpError> {
    let v = match r {
        ServerResult::CallToolResult(r) => serde_json::to_value(r),
        ServerResult::CreateTaskResult(_) | ServerResult::InputRequiredResult(_) => {
            return Err(McpError::Transport(
                "the server answered tools/call with a task or an input request, which this bridge does not support"
                    .to_owned(),
            ));
        }
        other => serde_json::to_value(other),
    };
    v.map_err(|e| McpError::Transport(format!("cannot read the tools/call answer: {e}")))
}

/// Sends `notifications/cancelled` for a request unless disarmed.
struct CancelOnDrop {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl CancelOnDrop {
    fn disarm(&mut self) {
        self.id = None;
    }

    fn cancel(&mut self, reason: &str) {
        if let Some(id) = self.id.take() {
            send_cancel(self.peer.clone(), id, reason);
        }
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.cancel("the request was abandoned");
    }
}

fn send_cancel(peer: Peer<RoleClient>, id: RequestId, reason: &str) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let param = CancelledNotificationParam::new(Some(id), Some(reason.to_owned()));
    rt.spawn(async move {
        if let Err(e) = peer.notify_cancelled(param).await {
            tracing::debug!(error = %e, "could not send notifications/cancelled");
        }
    });
}
