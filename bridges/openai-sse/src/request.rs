//! Request mapping: a bus request envelope becomes a chat-completions body.
//!
//! - `{"<text_field>": "..."}` becomes one user message (after the system
//!   prompt, if configured); the payload's other keys pass through as body
//!   parameters, as in the reference bridge.
//! - `{"messages": [...], "tools": ..., "temperature": ...}` passes through as
//!   a chat request; the system prompt is put first when no message has the
//!   `system` or `developer` role.
//! - Body parameters, lowest precedence first: the config's `params`, then
//!   metadata keys under `metadata_prefix` (prefix stripped; `acp.*` keys
//!   never), then payload keys.
//! - Always set by the bridge: `model`, `stream: true`,
//!   `stream_options.include_usage: true`; `user` is the envelope's
//!   `session_id` when it has one.

use openagentio_core::Envelope;
use serde_json::{Map, Value, json};

use crate::config::SseConfig;
use crate::errors::SseError;

/// Body keys the bridge controls; payload and metadata cannot set them.
const RESERVED: [&str; 4] = ["model", "stream", "stream_options", "messages"];

/// A mapped request.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// The JSON body for `POST /chat/completions`.
    pub body: Map<String, Value>,
    /// The session id, for the session header.
    pub session: Option<String>,
}

/// Maps `env` to a chat request, or `INVALID_REQUEST` when the payload is not
/// an object with the text field or `messages`.
///
/// ```
/// use openagentio_core::Envelope;
/// use openagentio_openai_sse::{SseConfig, request::map_request};
/// use serde_json::json;
/// let cfg = SseConfig::new("http://h/v1".parse().unwrap(), "m");
/// let env = Envelope::new("agent.request").with_payload(json!({"text": "hi"}));
/// let req = map_request(&cfg, &env).unwrap();
/// assert_eq!(req.body["messages"], json!([{"role": "user", "content": "hi"}]));
/// assert_eq!(req.body["stream"], json!(true));
/// ```
pub fn map_request(cfg: &SseConfig, env: &Envelope) -> Result<ChatRequest, SseError> {
    let payload = match env.payload_or_null() {
        Value::Object(p) => p,
        Value::Null => {
            return Err(SseError::InvalidRequest(format!(
                "the payload is empty; send {{\"{}\": \"...\"}} or {{\"messages\": [...]}}",
                cfg.text_field
            )));
        }
        _ => {
            return Err(SseError::InvalidRequest(
                "the payload must be a JSON object".to_owned(),
            ));
        }
    };
    let text = payload.get(&cfg.text_field).filter(|t| !t.is_null());
    let mut messages = match (text, payload.get("messages")) {
        (Some(_), Some(m)) if !m.is_null() => {
            // Which one the caller meant is not ours to guess.
            return Err(SseError::InvalidRequest(format!(
                "the payload has both {:?} and \"messages\"; send one: the text as the \
                 user's message, or the whole conversation in `messages`",
                cfg.text_field
            )));
        }
        (Some(text), _) => {
            let text = match text {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![json!({ "role": "user", "content": text })]
        }
        (_, Some(Value::Array(messages))) => messages.clone(),
        (_, Some(_)) => {
            return Err(SseError::InvalidRequest(
                "`messages` must be an array".to_owned(),
            ));
        }
        _ => {
            return Err(SseError::InvalidRequest(format!(
                "the payload has neither {:?} nor \"messages\"",
                cfg.text_field
            )));
        }
    };
    if let Some(prompt) = &cfg.system_prompt {
        let has_system = messages.iter().any(|m| {
            matches!(
                m.get("role").and_then(Value::as_str),
                Some("system" | "developer")
            )
        });
        if !has_system {
            messages.insert(0, json!({ "role": "system", "content": prompt }));
        }
    }

    let mut body = Map::new();
    for (k, v) in &cfg.params {
        if !RESERVED.contains(&k.as_str()) {
            body.insert(k.clone(), v.clone());
        }
    }
    if let Some(prefix) = cfg.metadata_prefix.as_deref().filter(|p| !p.is_empty()) {
        for (k, v) in &env.metadata {
            if k.starts_with("acp.") {
                continue;
            }
            if let Some(key) = k.strip_prefix(prefix)
                && !key.is_empty()
                && !RESERVED.contains(&key)
            {
                body.insert(key.to_owned(), v.clone());
            }
        }
    }
    for (k, v) in payload {
        if k != &cfg.text_field && !RESERVED.contains(&k.as_str()) {
            body.insert(k.clone(), v.clone());
        }
    }
    let session = (!env.session_id.is_empty()).then(|| env.session_id.to_string());
    if let Some(s) = &session {
        body.insert("user".into(), Value::from(s.as_str()));
    }
    body.insert("model".into(), Value::from(cfg.model.as_str()));
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), Value::Bool(true));
    body.insert("stream_options".into(), json!({ "include_usage": true }));
    Ok(ChatRequest { body, session })
}

/// A JSON Schema of the payloads [`map_request`] accepts, for target catalogs.
pub fn input_schema(cfg: &SseConfig) -> Value {
    json!({
        "type": "object",
        "properties": {
            cfg.text_field.as_str(): { "type": "string", "description": "The user's message." },
            "messages": { "type": "array", "items": { "type": "object" },
                          "description": "A chat conversation (OpenAI format)." },
        },
        "anyOf": [ { "required": [cfg.text_field.as_str()] }, { "required": ["messages"] } ],
    })
}

#[cfg(test)]
mod tests {
    use openagentio_core::ErrorCode;

    use super::*;

    fn cfg() -> SseConfig {
        let mut c = SseConfig::new("http://h/v1".parse().unwrap(), "the-model");
        c.params.insert("temperature".into(), json!(0.1));
        c.params.insert("max_tokens".into(), json!(10));
        c.params.insert("model".into(), json!("not-this"));
        c.metadata_prefix = Some("openclaw.".into());
        c
    }

    #[test]
    fn text_payload_with_session_metadata_and_precedence() {
        let mut c = cfg();
        c.system_prompt = Some("be brief".into());
        let env = Envelope::new("agent.request")
            .with_payload(json!({"text": 42, "max_tokens": 5, "model": "x", "stream": false}))
            .with_session("s-1")
            .with_metadata("openclaw.channel_type", json!("dm"))
            .with_metadata("openclaw.temperature", json!(0.7))
            .with_metadata("openclaw.messages", json!([]))
            .with_metadata("openclaw.", json!(1))
            .with_metadata("other.key", json!(1));
        let req = map_request(&c, &env).unwrap();
        assert_eq!(req.session.as_deref(), Some("s-1"));
        assert_eq!(
            Value::Object(req.body),
            json!({
                "model": "the-model",
                "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "42"}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "user": "s-1",
                "temperature": 0.7,
                "max_tokens": 5,
                "channel_type": "dm",
            })
        );
    }

    #[test]
    fn messages_pass_through_with_tools() {
        let mut c = cfg();
        c.system_prompt = Some("ignored: the caller has one".into());
        let msgs = json!([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]);
        let env = Envelope::new("agent.request").with_payload(json!({
            "messages": msgs, "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "auto", "stream_options": {"include_usage": false}
        }));
        let req = map_request(&c, &env).unwrap();
        assert_eq!(req.body["messages"], msgs);
        assert_eq!(req.body["tool_choice"], "auto");
        assert_eq!(req.body["tools"][0]["function"]["name"], "f");
        assert_eq!(req.body["stream_options"], json!({"include_usage": true}));
        assert_eq!(req.body.get("user"), None);
        assert_eq!(req.session, None);
    }

    #[test]
    fn bad_payloads_are_invalid_requests() {
        for p in [
            json!(null),
            json!("hi"),
            json!({"prompt": "x"}),
            json!({"messages": "x"}),
            json!({"text": "hi", "messages": [{"role": "user", "content": "hello"}]}),
        ] {
            let env = Envelope::new("agent.request").with_payload(p.clone());
            let err = map_request(&cfg(), &env).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidRequest, "{p}");
        }
    }
}
