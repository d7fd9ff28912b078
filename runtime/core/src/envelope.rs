//! The acp/1.0 envelope: the one message model every transport and bridge carries.

use std::fmt;

use chrono::{DateTime, FixedOffset, Utc};
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::BusError;
use crate::event_type::{
    SCHEMA_VERSION, SPEC_VERSION, frame_type_for, is_terminal, is_terminal_frame,
};
use crate::ids::event_id_at;
use crate::payload::ErrorPayload;
use crate::text::Text;

/// One acp/1.0 message.
///
/// Optional string fields use the empty string for "absent", as the reference
/// SDKs do, and are left out of the JSON when empty; `seq` 0 and `is_final`
/// false are left out too. Fields this version does not know are kept in
/// [`Envelope::extra`] and written back when the envelope is forwarded.
///
/// ```
/// use openagentio_core::Envelope;
/// let env = Envelope::new("agent.message.received").with_payload(serde_json::json!({"text": "hi"}));
/// let bytes = serde_json::to_vec(&env).unwrap();
/// let back: Envelope = serde_json::from_slice(&bytes).unwrap();
/// assert_eq!(back, env);
/// assert_eq!(back.frame_type, "request");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// Protocol version, `"acp/1.0"`.
    pub spec_version: Text,
    /// Envelope structure version, `1`.
    pub schema_version: u64,
    /// Globally unique id (UUIDv7 for envelopes made here).
    pub event_id: Text,
    /// Logical event name, e.g. `agent.response.delta`.
    pub event_type: Text,
    /// Frame discriminator, e.g. `response.delta`; empty when absent.
    pub frame_type: Text,
    /// When the event happened (RFC 3339; the offset is kept as received).
    pub occurred_at: DateTime<FixedOffset>,
    /// W3C trace id (32 hex digits).
    pub trace_id: Text,
    /// W3C span id (16 hex digits).
    pub span_id: Text,
    /// W3C `traceparent`.
    pub traceparent: Text,
    /// Session the event belongs to.
    pub session_id: Text,
    /// Conversation the event belongs to.
    pub conversation_id: Text,
    /// The `event_id` of the request this frame answers.
    pub correlation_id: Text,
    /// Subject the answer frames go to.
    pub reply_to: Text,
    /// Sender agent (wire key `from`).
    pub from: Text,
    /// Recipient agent.
    pub to: Text,
    /// Originating channel (e.g. `matrix`, `http`).
    pub channel: Text,
    /// Tenant scope.
    pub tenant_id: Text,
    /// End user.
    pub user_id: Text,
    /// Frame number within a response, from 0; absent means 0.
    pub seq: u64,
    /// True on the last frame of a response.
    pub is_final: bool,
    /// Business payload (any JSON); `None` when absent or null.
    pub payload: Option<Value>,
    /// Free-form extension fields; keys starting with `acp.` are runtime-internal.
    pub metadata: Map<String, Value>,
    /// Top-level fields this version does not know, kept for forwarding.
    pub extra: Map<String, Value>,
}

impl Envelope {
    /// A new envelope of `event_type` with a fresh UUIDv7 id, the current UTC time
    /// and the matching `frame_type` for known event types.
    pub fn new(event_type: impl Into<Text>) -> Self {
        let event_type = event_type.into();
        let frame_type = frame_type_for(&event_type).map_or_else(Text::default, Text::new_static);
        let now = Utc::now();
        Envelope::blank(
            event_id_at(now.timestamp_millis() as u64),
            event_type,
            frame_type,
            now.fixed_offset(),
        )
    }

    /// The optional string field named `key` on the wire, for readers to
    /// fill; `None` for any other key. Both readers (serde's and the codec's
    /// own) take the list from here.
    pub(crate) fn optional_text_mut(&mut self, key: &str) -> Option<&mut Text> {
        Some(match key {
            "frame_type" => &mut self.frame_type,
            "trace_id" => &mut self.trace_id,
            "span_id" => &mut self.span_id,
            "traceparent" => &mut self.traceparent,
            "session_id" => &mut self.session_id,
            "conversation_id" => &mut self.conversation_id,
            "correlation_id" => &mut self.correlation_id,
            "reply_to" => &mut self.reply_to,
            "from" => &mut self.from,
            "to" => &mut self.to,
            "channel" => &mut self.channel,
            "tenant_id" => &mut self.tenant_id,
            "user_id" => &mut self.user_id,
            _ => return None,
        })
    }

    /// An envelope with no identity yet (empty id and type, the Unix epoch)
    /// and every optional field absent: what readers and reply frames fill in.
    pub(crate) fn empty() -> Self {
        Envelope::blank(
            Text::default(),
            Text::default(),
            Text::default(),
            DateTime::<Utc>::UNIX_EPOCH.fixed_offset(),
        )
    }

    /// An envelope with the given identity and every optional field absent.
    pub(crate) fn blank(
        event_id: Text,
        event_type: Text,
        frame_type: Text,
        occurred_at: DateTime<FixedOffset>,
    ) -> Self {
        Envelope {
            spec_version: Text::new_static(SPEC_VERSION),
            schema_version: SCHEMA_VERSION,
            event_id,
            event_type,
            frame_type,
            occurred_at,
            trace_id: Text::default(),
            span_id: Text::default(),
            traceparent: Text::default(),
            session_id: Text::default(),
            conversation_id: Text::default(),
            correlation_id: Text::default(),
            reply_to: Text::default(),
            from: Text::default(),
            to: Text::default(),
            channel: Text::default(),
            tenant_id: Text::default(),
            user_id: Text::default(),
            seq: 0,
            is_final: false,
            payload: None,
            metadata: Map::new(),
            extra: Map::new(),
        }
    }

    /// Sets the payload (`null` clears it).
    pub fn with_payload(mut self, payload: Value) -> Self {
        self.payload = (!payload.is_null()).then_some(payload);
        self
    }

    /// Sets one metadata key.
    pub fn with_metadata(mut self, key: impl Into<String>, value: Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// Sets the session id.
    pub fn with_session(mut self, session_id: impl Into<Text>) -> Self {
        self.session_id = session_id.into();
        self
    }

    /// Sets the tenant id.
    pub fn with_tenant(mut self, tenant_id: impl Into<Text>) -> Self {
        self.tenant_id = tenant_id.into();
        self
    }

    /// A copy of every field but `payload`, `metadata` and unknown fields:
    /// cheap, as the strings are shared.
    pub fn without_body(&self) -> Envelope {
        Envelope {
            spec_version: self.spec_version.clone(),
            schema_version: self.schema_version,
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            frame_type: self.frame_type.clone(),
            occurred_at: self.occurred_at,
            trace_id: self.trace_id.clone(),
            span_id: self.span_id.clone(),
            traceparent: self.traceparent.clone(),
            session_id: self.session_id.clone(),
            conversation_id: self.conversation_id.clone(),
            correlation_id: self.correlation_id.clone(),
            reply_to: self.reply_to.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            channel: self.channel.clone(),
            tenant_id: self.tenant_id.clone(),
            user_id: self.user_id.clone(),
            seq: self.seq,
            is_final: self.is_final,
            payload: None,
            metadata: Map::new(),
            extra: Map::new(),
        }
    }

    /// The frame type, falling back to the one implied by `event_type`.
    pub fn effective_frame_type(&self) -> &str {
        if self.frame_type.is_empty() {
            frame_type_for(&self.event_type).unwrap_or("")
        } else {
            &self.frame_type
        }
    }

    /// Whether this frame ends a response: `is_final`, or a terminal event or frame type.
    pub fn is_terminal(&self) -> bool {
        self.is_final || is_terminal(&self.event_type) || is_terminal_frame(&self.frame_type)
    }

    /// Whether this is an `agent.response.error` frame.
    pub fn is_error(&self) -> bool {
        self.event_type == crate::event_type::RESPONSE_ERROR || self.frame_type == "response.error"
    }

    /// The error payload of an error frame.
    pub fn error_payload(&self) -> Option<ErrorPayload> {
        if !self.is_error() {
            return None;
        }
        // Field by field, so that one field of the wrong type (a peer's
        // `"retryable": "yes"`) does not lose the code and message.
        let field = |k: &str| self.payload.as_ref().and_then(|p| p.get(k));
        let code = field("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty());
        let message = match (field("message"), &self.payload) {
            (Some(Value::String(m)), _) => m.clone(),
            (Some(other), _) if !other.is_null() => other.to_string(),
            // A bare string payload is the message.
            (_, Some(Value::String(m))) => m.clone(),
            _ if code.is_none() => "error frame without a valid error payload".into(),
            _ => String::new(),
        };
        Some(ErrorPayload {
            code: code.unwrap_or("AGENT_UNAVAILABLE").to_owned(),
            message,
            retryable: field("retryable").and_then(Value::as_bool).unwrap_or(false),
            cause: field("cause")
                .filter(|c| !c.is_null() && c.as_object().is_none_or(|o| !o.is_empty()))
                .cloned(),
        })
    }

    /// The error this frame reports, if it is an error frame.
    pub fn error(&self) -> Option<BusError> {
        self.error_payload().map(|p| BusError::from_payload(&p))
    }

    /// The payload decoded as `T` (`null` when absent); a mismatch is `INVALID_REQUEST`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, BusError> {
        match &self.payload {
            Some(v) => T::deserialize(v).map_err(BusError::from),
            None => T::deserialize(&Value::Null).map_err(BusError::from),
        }
    }

    /// The payload, or `null`.
    pub fn payload_or_null(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.payload.as_ref().unwrap_or(&NULL)
    }

    /// `occurred_at` in its wire form (RFC 3339, `Z` for UTC, only the sub-second digits needed).
    pub fn occurred_at_string(&self) -> String {
        let mut out = Vec::with_capacity(32);
        crate::json_write::write_rfc3339(&mut out, &self.occurred_at);
        String::from_utf8(out).expect("an RFC 3339 time is ASCII")
    }
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("spec_version", &self.spec_version)?;
        m.serialize_entry("schema_version", &self.schema_version)?;
        m.serialize_entry("event_id", &self.event_id)?;
        m.serialize_entry("event_type", &self.event_type)?;
        if !self.frame_type.is_empty() {
            m.serialize_entry("frame_type", &self.frame_type)?;
        }
        m.serialize_entry("occurred_at", &self.occurred_at_string())?;
        for (key, value) in [
            ("trace_id", &self.trace_id),
            ("span_id", &self.span_id),
            ("traceparent", &self.traceparent),
            ("session_id", &self.session_id),
            ("conversation_id", &self.conversation_id),
            ("correlation_id", &self.correlation_id),
            ("reply_to", &self.reply_to),
            ("from", &self.from),
            ("to", &self.to),
            ("channel", &self.channel),
            ("tenant_id", &self.tenant_id),
            ("user_id", &self.user_id),
        ] {
            if !value.is_empty() {
                m.serialize_entry(key, value)?;
            }
        }
        if self.seq != 0 {
            m.serialize_entry("seq", &self.seq)?;
        }
        if self.is_final {
            m.serialize_entry("is_final", &true)?;
        }
        if let Some(p) = &self.payload {
            m.serialize_entry("payload", p)?;
        }
        if !self.metadata.is_empty() {
            m.serialize_entry("metadata", &self.metadata)?;
        }
        for (k, v) in &self.extra {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EnvelopeVisitor)
    }
}

struct EnvelopeVisitor;

/// Reads an optional string field: `null` counts as absent.
fn opt_string<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Text, A::Error> {
    Ok(map.next_value::<Option<Text>>()?.unwrap_or_default())
}

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an acp/1.0 envelope (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope, A::Error> {
        let mut required = Required::default();
        let mut env = Envelope::empty();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "spec_version" => required.spec_version = Some(map.next_value()?),
                "schema_version" => required.schema_version = Some(map.next_value()?),
                "event_id" => required.event_id = Some(map.next_value()?),
                "event_type" => required.event_type = Some(map.next_value()?),
                "occurred_at" => {
                    let raw: std::borrow::Cow<'de, str> = map.next_value()?;
                    let t = DateTime::parse_from_rfc3339(&raw).map_err(|e| {
                        de::Error::custom(format!("occurred_at {raw:?} is not RFC 3339: {e}"))
                    })?;
                    required.occurred_at = Some(t);
                }
                "seq" => env.seq = map.next_value::<Option<u64>>()?.unwrap_or(0),
                "is_final" => env.is_final = map.next_value::<Option<bool>>()?.unwrap_or(false),
                "payload" => {
                    let v: Value = map.next_value()?;
                    env.payload = (!v.is_null()).then_some(v);
                }
                "metadata" => {
                    env.metadata = map
                        .next_value::<Option<Map<String, Value>>>()?
                        .unwrap_or_default()
                }
                other => match env.optional_text_mut(other) {
                    Some(field) => *field = opt_string(&mut map)?,
                    None => {
                        let v: Value = map.next_value()?;
                        env.extra.insert(other.to_owned(), v);
                    }
                },
            }
        }
        required.complete(env).map_err(|unfit| match unfit {
            Unfit::Missing(field) => de::Error::missing_field(field),
            Unfit::Unsupported(spec_version) => de::Error::custom(format!(
                "unsupported spec_version {spec_version:?} (this runtime speaks acp/1.x)"
            )),
            Unfit::Empty(field) => de::Error::custom(format!("{field} is empty")),
        })
    }
}

/// Readies a caller's envelope to be sent as every reader will take it: an
/// empty `event_id` gets a new one; a `spec_version` other than `acp/1.x`
/// (which no reader of this version takes) is `INVALID_REQUEST`.
pub(crate) fn fit_to_send(env: &mut Envelope) -> Result<(), crate::BusError> {
    if env.event_id.is_empty() {
        env.event_id = crate::ids::new_event_id();
    }
    if !env.spec_version.starts_with("acp/1.") {
        return Err(crate::BusError::invalid(format!(
            "unsupported spec_version {:?}: this runtime sends acp/1.x",
            env.spec_version.as_str()
        )));
    }
    Ok(())
}

/// Whether the envelope nests containers deeper than JSON readers take
/// (serde_json refuses the 128th level, the envelope itself counting as
/// one): sent anyway, it would be thrown away where it arrives.
pub(crate) fn too_deep(env: &Envelope) -> bool {
    fn deeper(v: &Value, depth: usize) -> bool {
        match v {
            Value::Array(items) => {
                depth > crate::json_read::MAX_DEPTH || items.iter().any(|i| deeper(i, depth + 1))
            }
            Value::Object(map) => {
                depth > crate::json_read::MAX_DEPTH || map.values().any(|i| deeper(i, depth + 1))
            }
            _ => false,
        }
    }
    env.payload.as_ref().is_some_and(|p| deeper(p, 2))
        || env.metadata.values().any(|v| deeper(v, 3))
        || env.extra.values().any(|v| deeper(v, 2))
}

/// The fields an envelope must have, as a reader collects them; both readers
/// (serde's and the codec's own) check them here, so they agree on what an
/// envelope is.
#[derive(Default)]
pub(crate) struct Required {
    pub spec_version: Option<Text>,
    pub schema_version: Option<u64>,
    pub event_id: Option<Text>,
    pub event_type: Option<Text>,
    pub occurred_at: Option<DateTime<FixedOffset>>,
}

/// Why [`Required::complete`] refused.
pub(crate) enum Unfit {
    /// The field is not there.
    Missing(&'static str),
    /// A `spec_version` other than `acp/1.x`.
    Unsupported(Text),
    /// The field is there but empty.
    Empty(&'static str),
}

impl Required {
    /// `env` with the required fields set, or the first that is unfit.
    pub(crate) fn complete(self, mut env: Envelope) -> Result<Envelope, Unfit> {
        let spec_version = self.spec_version.ok_or(Unfit::Missing("spec_version"))?;
        if !spec_version.starts_with("acp/1.") {
            return Err(Unfit::Unsupported(spec_version));
        }
        env.spec_version = spec_version;
        env.schema_version = self
            .schema_version
            .ok_or(Unfit::Missing("schema_version"))?;
        env.event_id = self.event_id.ok_or(Unfit::Missing("event_id"))?;
        env.event_type = self.event_type.ok_or(Unfit::Missing("event_type"))?;
        if env.event_id.is_empty() {
            return Err(Unfit::Empty("event_id"));
        }
        if env.event_type.is_empty() {
            return Err(Unfit::Empty("event_type"));
        }
        env.occurred_at = self.occurred_at.ok_or(Unfit::Missing("occurred_at"))?;
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_error_payload_with_a_field_of_the_wrong_type_keeps_the_rest() {
        let error_of = |payload: Value| {
            let mut env = Envelope::new(crate::event_type::RESPONSE_ERROR);
            env.is_final = true;
            env.payload = Some(payload);
            env.error().unwrap()
        };
        let e = error_of(json!({"code": "INVALID_REQUEST", "message": null, "retryable": "yes"}));
        assert_eq!(e.code(), crate::ErrorCode::InvalidRequest);
        assert!(!e.retryable());
        let e = error_of(json!({"code": "NO_HANDLER", "message": 42, "cause": {}}));
        assert_eq!((e.code(), e.message()), (crate::ErrorCode::NoHandler, "42"));
        assert_eq!(e.cause(), None);
        let e = error_of(json!("it broke"));
        assert_eq!(
            (e.code(), e.message()),
            (crate::ErrorCode::AgentUnavailable, "it broke")
        );
        let e = error_of(json!([1]));
        assert_eq!(e.message(), "error frame without a valid error payload");
    }

    #[test]
    fn empty_and_default_fields_are_left_out() {
        let env = Envelope::new("x.y");
        let v = serde_json::to_value(&env).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys.len(),
            5,
            "only the required fields should be written: {keys:?}"
        );
    }

    #[test]
    fn unknown_fields_survive_a_round_trip() {
        let raw = json!({
            "spec_version": "acp/1.0", "schema_version": 1,
            "event_id": "019de7eb-baab-7e67-bb77-a7a03a666140",
            "event_type": "agent.message.received",
            "occurred_at": "2026-05-02T10:00:00+02:00",
            "x_custom": {"a": [1, 2]}, "seq": 4, "metadata": {"k": "v"}
        });
        let env: Envelope = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(env.extra["x_custom"], json!({"a": [1, 2]}));
        assert_eq!(env.seq, 4);
        assert_eq!(serde_json::to_value(&env).unwrap(), raw);
    }

    #[test]
    fn missing_required_fields_are_errors() {
        for raw in [
            json!({}),
            json!({"spec_version": "acp/1.0", "schema_version": 1, "event_id": "a", "occurred_at": "2026-05-02T10:00:00Z"}),
            json!({"spec_version": "acp/2.0", "schema_version": 1, "event_id": "a", "event_type": "t", "occurred_at": "2026-05-02T10:00:00Z"}),
            json!({"spec_version": "acp/1.0", "schema_version": 1, "event_id": "a", "event_type": "t", "occurred_at": "yesterday"}),
            json!([1, 2]),
            json!("text"),
        ] {
            assert!(
                serde_json::from_value::<Envelope>(raw.clone()).is_err(),
                "{raw}"
            );
        }
    }

    #[test]
    fn null_optional_fields_mean_absent() {
        let raw = json!({
            "spec_version": "acp/1.0", "schema_version": 1, "event_id": "a", "event_type": "t",
            "occurred_at": "2026-05-02T10:00:00Z", "session_id": null, "seq": null, "payload": null,
            "metadata": null
        });
        let env: Envelope = serde_json::from_value(raw).unwrap();
        assert!(env.session_id.is_empty());
        assert_eq!(env.seq, 0);
        assert!(env.payload.is_none());
    }
}
