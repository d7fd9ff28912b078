//! The typed payloads of the response lifecycle frames.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Payload of `agent.response.started`: `{"meta": {...}}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StartedPayload {
    /// Upstream facts such as the model name.
    #[serde(default)]
    pub meta: Map<String, Value>,
}

/// Payload of `agent.response.delta`: `{"delta": "text", "data": {...}}`.
///
/// ```
/// use openagentio_core::DeltaPayload;
/// let v = serde_json::to_value(DeltaPayload::text("hi")).unwrap();
/// assert_eq!(v, serde_json::json!({"delta": "hi"}));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeltaPayload {
    /// The text increment; empty when the delta carries only data.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub delta: String,
    /// Structured increments (reasoning, tool-call fragments, progress).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub data: Map<String, Value>,
}

impl DeltaPayload {
    /// The payload as JSON, moving the text and data instead of copying them
    /// (what `serde_json::to_value` would do).
    ///
    /// ```
    /// use openagentio_core::DeltaPayload;
    /// let d = DeltaPayload::text("hi");
    /// assert_eq!(d.clone().into_value(), serde_json::to_value(d).unwrap());
    /// ```
    pub fn into_value(self) -> Value {
        let mut out = Map::new();
        if !self.delta.is_empty() {
            out.insert("delta".to_owned(), Value::String(self.delta));
        }
        if !self.data.is_empty() {
            out.insert("data".to_owned(), Value::Object(self.data));
        }
        Value::Object(out)
    }

    /// A delta with text only.
    pub fn text(text: impl Into<String>) -> Self {
        DeltaPayload {
            delta: text.into(),
            data: Map::new(),
        }
    }
}

/// Payload of `agent.response.final` on streams: `{"result": ...}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FinalPayload {
    /// The consolidated result.
    #[serde(default)]
    pub result: Value,
}

/// Payload of `agent.response.error`: `{"code", "message", "retryable", "cause"?}`.
///
/// `code` is kept as the wire string so that a code from a newer peer survives
/// forwarding; [`crate::BusError::from_payload`] gives the typed form.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorPayload {
    /// One of the eight wire codes.
    pub code: String,
    /// Human-readable description.
    #[serde(default)]
    pub message: String,
    /// Whether retrying may succeed.
    #[serde(default)]
    pub retryable: bool,
    /// Optional structured cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Value>,
}
