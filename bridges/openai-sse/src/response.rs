//! Response mapping: chat-completion chunks become `started`/`delta` frames,
//! and are assembled into the `final` result (text, reasoning, tool calls,
//! finish reason, usage).

use std::collections::HashMap;

use openagentio_core::DeltaPayload;
use serde_json::{Map, Value, json};

/// What one chunk asks the bridge to send.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChunkFrames {
    /// `{"model", "id"}` for the `started` frame (first chunk only).
    pub started: Option<Value>,
    /// The `delta` frame: content as `delta`; reasoning and tool-call
    /// fragments under `data` (`reasoning`, `tool_calls`).
    pub delta: Option<DeltaPayload>,
}

/// Folds a stream of chat-completion chunks into frames and a final result.
///
/// ```
/// use openagentio_openai_sse::response::ResponseAssembler;
/// use serde_json::json;
/// let mut a = ResponseAssembler::new("m");
/// let f = a.absorb(&json!({"id": "c1", "choices": [{"delta": {"content": "Hi"}}]}), true);
/// assert_eq!(f.started, Some(json!({"model": "m", "id": "c1"})));
/// assert_eq!(f.delta.unwrap().delta, "Hi");
/// a.absorb(&json!({"choices": [{"delta": {}, "finish_reason": "stop"}]}), true);
/// assert!(a.is_finished());
/// assert_eq!(a.result()["text"], "Hi");
/// ```
#[derive(Debug)]
pub struct ResponseAssembler {
    default_model: String,
    started: bool,
    id: Option<String>,
    model: Option<String>,
    text: String,
    reasoning: Option<String>,
    tools: ToolCalls,
    finish_reason: Option<String>,
    usage: Option<Value>,
}

impl ResponseAssembler {
    /// An assembler whose `model` is `default_model` until a chunk names one.
    pub fn new(default_model: impl Into<String>) -> Self {
        ResponseAssembler {
            default_model: default_model.into(),
            started: false,
            id: None,
            model: None,
            text: String::new(),
            reasoning: None,
            tools: ToolCalls::default(),
            finish_reason: None,
            usage: None,
        }
    }

    /// Takes one chunk (a JSON object without `error`). With `frames` false
    /// (the caller wants only the final result) no delta payload is built.
    pub fn absorb(&mut self, chunk: &Value, frames: bool) -> ChunkFrames {
        let mut out = ChunkFrames::default();
        if self.id.is_none() {
            self.id = non_empty_str(chunk.get("id"));
        }
        if self.model.is_none() {
            self.model = non_empty_str(chunk.get("model"));
        }
        if !self.started {
            self.started = true;
            out.started = Some(self.meta());
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(usage.clone());
        }
        let Some(choice) = first_choice(chunk) else {
            return out; // usage-only or empty chunk
        };
        if let Some(reason) = non_empty_str(choice.get("finish_reason")) {
            self.finish_reason = Some(reason);
        }
        let Some(delta) = choice.get("delta").filter(|d| d.is_object()) else {
            return out;
        };
        let mut payload = DeltaPayload::default();
        if let Some(content) = delta.get("content").and_then(content_text)
            && !content.is_empty()
        {
            self.text.push_str(&content);
            if frames {
                payload.delta = content;
            }
        }
        let reasoning = ["reasoning_content", "reasoning"].iter().find_map(|k| {
            delta
                .get(*k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        });
        if let Some(r) = reasoning {
            self.reasoning.get_or_insert_with(String::new).push_str(r);
            if frames {
                payload.data.insert("reasoning".into(), Value::from(r));
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array)
            && !calls.is_empty()
        {
            for frag in calls {
                self.tools.add(frag);
            }
            if frames {
                payload
                    .data
                    .insert("tool_calls".into(), Value::from(calls.clone()));
            }
        }
        if frames && (!payload.delta.is_empty() || !payload.data.is_empty()) {
            out.delta = Some(payload);
        }
        out
    }

    /// Whether a chunk carried a `finish_reason`.
    pub fn is_finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// Whether any chunk was absorbed.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Whether the answer has begun: text, reasoning, a tool call or a
    /// `finish_reason` (a chunk that only names the role or the model has
    /// not begun it).
    pub fn has_output(&self) -> bool {
        !self.text.is_empty()
            || self.reasoning.is_some()
            || !self.tools.calls.is_empty()
            || self.finish_reason.is_some()
    }

    /// The `meta` of the `started` frame: `{"model", "id"}`.
    pub fn meta(&self) -> Value {
        json!({ "model": self.model(), "id": self.id })
    }

    fn model(&self) -> &str {
        self.model.as_deref().unwrap_or(&self.default_model)
    }

    /// The final result: `{"text", "reasoning", "tool_calls", "finish_reason",
    /// "usage", "model", "id"}` (`reasoning`, `finish_reason`, `usage` and `id`
    /// are `null` when the upstream sent none).
    pub fn result(&self) -> Value {
        json!({
            "text": self.text,
            "reasoning": self.reasoning,
            "tool_calls": self.tools.to_json(),
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "model": self.model(),
            "id": self.id,
        })
    }
}

/// A non-streaming `chat.completion` (some servers ignore `stream: true`) as
/// one equivalent chunk: every `choices[].message` becomes a `delta`.
pub fn completion_as_chunk(completion: &Value) -> Value {
    let mut chunk = completion.clone();
    if let Some(choices) = chunk.get_mut("choices").and_then(Value::as_array_mut) {
        for choice in choices.iter_mut().filter_map(Value::as_object_mut) {
            if let Some(mut message) = choice.remove("message") {
                if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for (i, call) in calls.iter_mut().enumerate() {
                        if let Some(c) = call.as_object_mut() {
                            c.entry("index").or_insert(Value::from(i));
                        }
                    }
                }
                choice.insert("delta".into(), message);
            }
        }
    }
    chunk
}

/// The choice with `index` 0, or one without an index (servers that leave
/// it out send one choice). With `n > 1` the other choices' chunks come on
/// their own, and are not this answer's.
fn first_choice(chunk: &Value) -> Option<&Value> {
    chunk
        .get("choices")?
        .as_array()?
        .iter()
        .find(|c| c.get("index").is_none_or(|ix| ix.as_u64() == Some(0)))
}

/// The text of a delta's `content`: a string, or a list of parts whose
/// `text` parts are joined (Mistral's reasoning models stream it so); other
/// parts carry no text.
fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p.get("type").is_none_or(|t| t == "text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Tool calls assembled from streamed fragments.
///
/// A fragment joins the call with its `id`; else, the latest call at its
/// `index` (a fragment with a new `id` at an index already taken by another
/// id starts a new call: servers that number every call 0 do that); else,
/// without `index`, the latest call. `arguments` strings are concatenated
/// (objects are serialized first).
#[derive(Debug, Default)]
struct ToolCalls {
    calls: Vec<ToolCall>,
    by_index: HashMap<u64, usize>,
    by_id: HashMap<String, usize>,
}

#[derive(Debug, Default)]
struct ToolCall {
    id: String,
    kind: String,
    name: String,
    arguments: String,
}

impl ToolCalls {
    fn add(&mut self, frag: &Value) {
        let index = frag.get("index").and_then(Value::as_u64);
        let id = frag
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let found = match (id, index) {
            (Some(id), _) if self.by_id.contains_key(id) => self.by_id.get(id).copied(),
            (Some(_), Some(ix)) => self
                .by_index
                .get(&ix)
                .copied()
                .filter(|&p| self.calls[p].id.is_empty()),
            (Some(_), None) => None,
            (None, Some(ix)) => self.by_index.get(&ix).copied(),
            (None, None) => self.calls.len().checked_sub(1),
        };
        let pos = found.unwrap_or_else(|| {
            self.calls.push(ToolCall::default());
            self.calls.len() - 1
        });
        if let Some(ix) = index {
            self.by_index.insert(ix, pos);
        }
        let call = &mut self.calls[pos];
        if let Some(id) = id
            && call.id.is_empty()
        {
            id.clone_into(&mut call.id);
            self.by_id.insert(id.to_owned(), pos);
        }
        if let Some(kind) = frag.get("type").and_then(Value::as_str) {
            kind.clone_into(&mut call.kind);
        }
        let Some(function) = frag.get("function") else {
            return;
        };
        if let Some(name) = function.get("name").and_then(Value::as_str) {
            // Names come whole (some servers repeat them); pieces are joined.
            if call.name != name {
                call.name.push_str(name);
            }
        }
        match function.get("arguments") {
            Some(Value::String(s)) => call.arguments.push_str(s),
            Some(Value::Null) | None => {}
            Some(other) => call.arguments.push_str(&other.to_string()),
        }
    }

    fn to_json(&self) -> Value {
        Value::Array(
            self.calls
                .iter()
                .map(|c| {
                    let mut function = Map::new();
                    function.insert("name".into(), Value::from(c.name.as_str()));
                    function.insert("arguments".into(), Value::from(c.arguments.as_str()));
                    json!({
                        "id": c.id,
                        "type": if c.kind.is_empty() { "function" } else { c.kind.as_str() },
                        "function": function,
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(chunks: &[Value]) -> Value {
        let mut a = ResponseAssembler::new("default-model");
        for c in chunks {
            a.absorb(c, true);
        }
        a.result()
    }

    fn tc(frags: Value) -> Value {
        json!({"choices": [{"index": 0, "delta": {"tool_calls": frags}}]})
    }

    #[test]
    fn tool_calls_by_index_interleaved() {
        let r = assemble(&[
            tc(
                json!([{"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}}]),
            ),
            tc(json!([{"index": 1, "id": "b", "function": {"name": "g", "arguments": "{\"y\""}}])),
            tc(json!([{"index": 0, "function": {"arguments": "{\"x\":1}"}}])),
            tc(json!([{"index": 1, "function": {"arguments": ":2}"}}])),
        ]);
        assert_eq!(
            r["tool_calls"],
            json!([
                {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
                {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{\"y\":2}"}},
            ])
        );
    }

    #[test]
    fn tool_calls_with_repeated_index_split_by_id() {
        let r = assemble(&[
            tc(json!([{"index": 0, "id": "a", "function": {"name": "f", "arguments": "{}"}}])),
            tc(json!([{"index": 0, "id": "b", "function": {"name": "g", "arguments": "{\"q\":"}}])),
            tc(json!([{"index": 0, "function": {"arguments": "1}"}}])),
        ]);
        assert_eq!(
            r["tool_calls"][0]["function"],
            json!({"name": "f", "arguments": "{}"})
        );
        assert_eq!(r["tool_calls"][1]["id"], "b");
        assert_eq!(r["tool_calls"][1]["function"]["arguments"], "{\"q\":1}");
    }

    #[test]
    fn tool_calls_without_index_by_id_then_continuation() {
        let r = assemble(&[
            tc(json!([{"id": "a", "function": {"name": "f", "arguments": "{\"a\""}}])),
            tc(json!([{"id": "a", "function": {"arguments": ":1}"}}])),
            tc(json!([{"id": "b", "function": {"name": "g", "arguments": {"k": true}}}])),
            tc(json!([{"function": {"arguments": ""}}])),
        ]);
        assert_eq!(r["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(
            r["tool_calls"][1]["function"],
            json!({"name": "g", "arguments": "{\"k\":true}"})
        );
        assert_eq!(r["tool_calls"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn reasoning_in_either_field_usage_and_empty_choices() {
        let mut a = ResponseAssembler::new("m");
        let f = a.absorb(&json!({"id": "x", "model": "up", "choices": []}), true);
        assert_eq!(f.started, Some(json!({"model": "up", "id": "x"})));
        assert_eq!(f.delta, None);
        let f = a.absorb(
            &json!({"choices": [{"delta": {"reasoning_content": "r1", "reasoning": "r1"}}]}),
            true,
        );
        assert_eq!(
            f.delta.unwrap().data,
            json!({"reasoning": "r1"}).as_object().unwrap().clone()
        );
        a.absorb(
            &json!({"choices": [{"delta": {"reasoning": "r2", "content": ""}}]}),
            true,
        );
        a.absorb(
            &json!({"choices": [{"delta": {"content": "t"}, "finish_reason": "stop"}]}),
            true,
        );
        a.absorb(&json!({"choices": [], "usage": {"total_tokens": 3}}), true);
        a.absorb(&json!({"usage": null}), true);
        assert_eq!(
            a.result(),
            json!({"text": "t", "reasoning": "r1r2", "tool_calls": [], "finish_reason": "stop",
                   "usage": {"total_tokens": 3}, "model": "up", "id": "x"})
        );
    }

    #[test]
    fn without_frames_nothing_is_built_but_all_is_assembled() {
        let mut a = ResponseAssembler::new("m");
        let f = a.absorb(&json!({"choices": [{"delta": {"content": "a"}}]}), false);
        assert_eq!(f.delta, None);
        assert_eq!(a.result()["text"], "a");
    }

    #[test]
    fn only_choice_zero_is_the_answer_and_content_parts_are_text() {
        let chunks = [
            json!({"choices": [{"index": 0, "delta": {"content": "zero "}}]}),
            json!({"choices": [{"index": 1, "delta": {"content": "ONE"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": [
                {"type": "text", "text": "part"}, {"type": "thinking", "thinking": "hm"}]}}]}),
            json!({"choices": [{"delta": {"content": "!"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": 5}}]}),
        ];
        let mut a = ResponseAssembler::new("m");
        let texts: Vec<_> = chunks
            .iter()
            .map(|c| a.absorb(c, true).delta.map(|d| d.delta))
            .collect();
        assert_eq!(
            texts,
            [
                Some("zero ".into()),
                None,
                Some("part".into()),
                Some("!".into()),
                None
            ]
        );
        assert_eq!(a.result()["text"], "zero part!");
    }

    #[test]
    fn a_whole_completion_reads_as_one_chunk() {
        let c = json!({"id": "c", "model": "m2", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "hi", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}],
            "usage": {"total_tokens": 1}});
        let r = assemble(&[completion_as_chunk(&c)]);
        assert_eq!(r["text"], "hi");
        assert_eq!(r["finish_reason"], "tool_calls");
        assert_eq!(r["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(r["usage"]["total_tokens"], 1);
    }
}
