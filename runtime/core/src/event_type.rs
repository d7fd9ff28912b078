//! Event-type and frame-type names of acp/1.0.

/// Protocol version string carried in `spec_version`.
pub const SPEC_VERSION: &str = "acp/1.0";
/// Envelope structure version carried in `schema_version`.
pub const SCHEMA_VERSION: u64 = 1;

/// A request: `agent.message.received`.
pub const MESSAGE_RECEIVED: &str = "agent.message.received";
/// First frame of a streamed response.
pub const RESPONSE_STARTED: &str = "agent.response.started";
/// An increment of a streamed response.
pub const RESPONSE_DELTA: &str = "agent.response.delta";
/// The terminal success frame.
pub const RESPONSE_FINAL: &str = "agent.response.final";
/// The terminal failure frame.
pub const RESPONSE_ERROR: &str = "agent.response.error";
/// A tool call.
pub const TOOL_CALL: &str = "agent.tool.call";
/// A tool result (terminal).
pub const TOOL_RESULT: &str = "agent.tool.result";
/// An asynchronous task was created.
pub const TASK_CREATED: &str = "agent.task.created";
/// An asynchronous task completed (terminal).
pub const TASK_COMPLETED: &str = "agent.task.completed";

/// The `frame_type` that belongs to a known `event_type`.
///
/// ```
/// assert_eq!(openagentio_core::frame_type_for("agent.response.delta"), Some("response.delta"));
/// assert_eq!(openagentio_core::frame_type_for("matrix.message.received"), None);
/// ```
pub fn frame_type_for(event_type: &str) -> Option<&'static str> {
    Some(match event_type {
        MESSAGE_RECEIVED => "request",
        RESPONSE_STARTED => "response.started",
        RESPONSE_DELTA => "response.delta",
        RESPONSE_FINAL => "response.final",
        RESPONSE_ERROR => "response.error",
        TOOL_CALL => "tool.call",
        TOOL_RESULT => "tool.result",
        _ => return None,
    })
}

/// Whether an event type closes a response (final, error, tool result, task completed).
pub fn is_terminal(event_type: &str) -> bool {
    matches!(
        event_type,
        RESPONSE_FINAL | RESPONSE_ERROR | TOOL_RESULT | TASK_COMPLETED
    )
}

/// Whether a frame type closes a response.
pub fn is_terminal_frame(frame_type: &str) -> bool {
    matches!(
        frame_type,
        "response.final" | "response.error" | "tool.result"
    )
}
