//! JSON encoding of envelopes, and the lenient read of broken ones.

use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::envelope::Envelope;
use crate::text::Text;
use crate::transport::Body;
use crate::{json_read, json_write};

/// Why bytes are not an envelope.
#[derive(Debug, thiserror::Error)]
#[error("not an acp envelope: {0}")]
pub struct DecodeError(#[from] Invalid);

/// The fault [`DecodeError`] found.
#[derive(Debug, thiserror::Error)]
enum Invalid {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("the bytes are not UTF-8 ({0})")]
    Utf8(#[from] std::str::Utf8Error),
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        DecodeError(Invalid::Json(e))
    }
}

/// Encodes an envelope as compact JSON: the bytes `serde_json::to_vec` gives,
/// made without the generic serializer.
///
/// ```
/// use openagentio_core::{Envelope, codec};
/// let env = Envelope::new("agent.message.received");
/// assert_eq!(codec::encode(&env).unwrap(), serde_json::to_vec(&env).unwrap());
/// ```
pub fn encode(env: &Envelope) -> Result<Bytes, serde_json::Error> {
    if crate::envelope::too_deep(env) {
        return Err(serde::ser::Error::custom(
            "the envelope nests JSON deeper than 128 levels, which no reader takes",
        ));
    }
    // One allocation for a typical envelope instead of a string of regrowths.
    let mut buf = Vec::with_capacity(1024);
    json_write::write_envelope(&mut buf, env);
    Ok(Bytes::from(buf))
}

/// Decodes an envelope from JSON bytes.
///
/// ```
/// let err = openagentio_core::codec::decode(b"not json").unwrap_err();
/// assert!(err.to_string().starts_with("not an acp envelope"));
/// ```
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    // One UTF-8 check of the whole message: `from_slice` checks each string
    // on its own, which cost more than the rest of the string parsing.
    let text = std::str::from_utf8(bytes).map_err(Invalid::from)?;
    match json_read::read_envelope(text) {
        Some(env) => Ok(env),
        // Broken or unusual: serde_json decides, and names what is wrong.
        None => Ok(from_json_str(text)?),
    }
}

/// `serde_json::from_str`, except that a lone UTF-16 surrogate escape
/// (`"\ud83d"`, half an emoji cut by a sender that counts UTF-16 units,
/// which serde_json refuses) reads as U+FFFD, as Go's `encoding/json` reads
/// it (Python keeps it). Every other fault is serde_json's error.
///
/// ```
/// let v: serde_json::Value = openagentio_core::codec::from_json_str(r#"{"t":"cut \ud83d"}"#).unwrap();
/// assert_eq!(v["t"], "cut \u{FFFD}");
/// ```
pub fn from_json_str<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_str(text).or_else(|e| match mend_lone_surrogates(text) {
        Some(mended) => serde_json::from_str(&mended),
        None => Err(e),
    })
}

/// `text` with every `\u` escape of a lone UTF-16 surrogate replaced by
/// `\ufffd`, or `None` when it has none. A backslash cannot stand outside a
/// string in JSON, so the text is scanned as a whole, escape by escape (an
/// escaped backslash followed by `u` is not an escape of `u`).
fn mend_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let hex4 = |at: usize| -> Option<u32> {
        let digits = bytes.get(at..at + 4)?;
        digits
            .iter()
            .try_fold(0, |n, &d| Some(n * 16 + char::from(d).to_digit(16)?))
    };
    let mut mended: Option<String> = None;
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        let Some(unit) = bytes.get(at + 1).filter(|&&c| c == b'u').and(hex4(at + 2)) else {
            at += 2;
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => {
                let low = bytes.get(at + 6..at + 8) == Some(b"\\u")
                    && hex4(at + 8).is_some_and(|u| (0xDC00..=0xDFFF).contains(&u));
                if low {
                    at += 12;
                    continue;
                }
                true
            }
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            let out = mended.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..at]);
            out.push_str("\\ufffd");
            copied = at + 6;
        }
        at += 6;
    }
    let mut out = mended?;
    out.push_str(&text[copied..]);
    Some(out)
}

/// Takes the envelope out of a body, decoding bytes.
pub fn decode_body(body: Body) -> Result<Envelope, DecodeError> {
    match body {
        Body::Envelope(env) => Ok(Arc::unwrap_or_clone(env)),
        Body::Bytes(b) => decode(&b),
    }
}

/// [`decode_body`] for a receiver that may share the envelope.
pub(crate) fn decode_body_shared(body: Body) -> Result<Arc<Envelope>, DecodeError> {
    match body {
        Body::Envelope(env) => Ok(env),
        Body::Bytes(b) => decode(&b).map(Arc::new),
    }
}

/// From bytes that failed to decode as an envelope, what can still be read to
/// answer the sender: `(reply_to, event_id)` when the bytes are a JSON object
/// that names them.
pub fn salvage_reply_fields(bytes: &[u8]) -> (Option<Text>, Option<Text>) {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(bytes) else {
        return (None, None);
    };
    let get = |k: &str| {
        map.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(Text::new)
    };
    (get("reply_to"), get("event_id"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes_and_names_what_is_wrong() {
        let env = Envelope::new("agent.message.received")
            .with_payload(serde_json::json!({"text": "grüße \u{1F600}"}));
        assert_eq!(decode(&encode(&env).unwrap()).unwrap(), env);
        let mut bytes = encode(&env).unwrap().to_vec();
        let at = bytes.windows(2).position(|w| w == "ü".as_bytes()).unwrap();
        bytes[at] = 0xFF;
        let err = decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        let err = decode(b"{\"spec_version\": 1}").unwrap_err().to_string();
        assert!(
            err.starts_with("not an acp envelope: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn lone_surrogates_read_as_the_replacement_character_as_go_reads_them() {
        let base = r#"{"spec_version":"acp/1.0","schema_version":1,"event_id":"e","event_type":"t","occurred_at":"2026-05-02T10:00:00Z","payload":"#;
        for (json, want) in [
            (r#""\ud83d""#, "\u{FFFD}"),
            (r#""a\udc00b""#, "a\u{FFFD}b"),
            (r#""\ud83d\u0041""#, "\u{FFFD}A"),
            (r#""\ud83d\ud83d\ude00""#, "\u{FFFD}\u{1F600}"),
            (r#""\ud83d\ude00""#, "\u{1F600}"),
            (r#""\\ud800""#, "\\ud800"),
            (r#""\\\ud800""#, "\\\u{FFFD}"),
        ] {
            let env = decode(format!("{base}{json}}}").as_bytes()).unwrap();
            assert_eq!(env.payload, Some(Value::from(want)), "{json}");
        }
        // Only lone surrogates are mended: other faults are still named.
        let err = decode(format!("{base}\"\\ud800\\x\"}}").as_bytes()).unwrap_err();
        assert!(err.to_string().contains("escape"), "{err}");
        assert_eq!(
            mend_lone_surrogates(r#"{"a":"\ud83d\ude00 \\ud800"}"#),
            None
        );
    }
}
