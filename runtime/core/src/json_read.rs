//! The envelope's JSON reader: the fast path of [`crate::codec::decode`].
//!
//! It reads envelopes of the usual shape (and any JSON inside `payload`,
//! `metadata` and unknown fields) straight into an [`Envelope`], without the
//! generic deserializer, and checks strings eight bytes at a time. Anything
//! it is not sure of (a syntax error, a missing field, a number it does not
//! read itself, a lone surrogate) makes it give up and return `None`: the
//! caller then decodes with `serde_json`, which produces the envelope or the
//! error. A property test holds it to that: whatever it returns is what
//! `serde_json` returns for the same text.

use std::borrow::Cow;

use chrono::DateTime;
use serde_json::{Map, Number, Value};

use crate::envelope::{Envelope, Required};
use crate::json_write::first_to_escape;
use crate::text::Text;

/// How deep containers may nest, the envelope itself counting as one:
/// serde_json refuses the 128th level, and so does this reader.
pub(crate) const MAX_DEPTH: usize = 127;

/// Reads `text` as an envelope, or `None` when serde_json should decide.
pub(crate) fn read_envelope(text: &str) -> Option<Envelope> {
    let mut r = Reader {
        bytes: text.as_bytes(),
        text,
        at: 0,
    };
    let env = r.envelope()?;
    r.skip_ws();
    (r.at == r.bytes.len()).then_some(env)
}

struct Reader<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
}

/// Every step returns `None` when it is not sure: serde_json decides then.
impl<'a> Reader<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    fn envelope(&mut self) -> Option<Envelope> {
        let mut required = Required::default();
        let mut env = Envelope::empty();
        self.expect(b'{')?;
        let mut more = self.peek()? != b'}';
        if !more {
            self.at += 1;
        }
        while more {
            self.expect(b'"')?;
            let key = self.string_body()?;
            self.expect(b':')?;
            match key.as_ref() {
                "spec_version" => required.spec_version = Some(self.text()?),
                "schema_version" => required.schema_version = Some(self.u64()?),
                "event_id" => required.event_id = Some(self.text()?),
                "event_type" => required.event_type = Some(self.text()?),
                "occurred_at" => {
                    self.expect(b'"')?;
                    let raw = self.string_body()?;
                    required.occurred_at = Some(DateTime::parse_from_rfc3339(&raw).ok()?);
                }
                "seq" => {
                    env.seq = match self.peek()? {
                        b'n' => self.literal(b"null").map(|()| 0)?,
                        _ => self.u64()?,
                    }
                }
                "is_final" => {
                    env.is_final = match self.peek()? {
                        b'n' => self.literal(b"null").map(|()| false)?,
                        b't' => self.literal(b"true").map(|()| true)?,
                        _ => self.literal(b"false").map(|()| false)?,
                    }
                }
                "payload" => {
                    let v = self.value(2)?;
                    env.payload = (!v.is_null()).then_some(v);
                }
                "metadata" => {
                    env.metadata = match self.peek()? {
                        b'n' => self.literal(b"null").map(|()| Map::new())?,
                        b'{' => {
                            self.at += 1;
                            self.object(2)?
                        }
                        _ => return None,
                    }
                }
                other => match env.optional_text_mut(other) {
                    Some(field) => *field = self.opt_text()?,
                    None => {
                        let v = self.value(2)?;
                        env.extra.insert(key.into_owned(), v);
                    }
                },
            }
            more = match self.peek()? {
                b',' => true,
                b'}' => false,
                _ => return None,
            };
            self.at += 1;
        }
        required.complete(env).ok()
    }

    /// A string field (not null).
    fn text(&mut self) -> Option<Text> {
        self.expect(b'"')?;
        Some(match self.string_body()? {
            Cow::Borrowed(s) => Text::new(s),
            Cow::Owned(s) => Text::from(s),
        })
    }

    /// A string field where `null` means absent.
    fn opt_text(&mut self) -> Option<Text> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| Text::default()),
            _ => self.text(),
        }
    }

    /// A non-negative integer that fits `u64`, as serde_json reads one.
    fn u64(&mut self) -> Option<u64> {
        self.skip_ws();
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(&b) = self.bytes.get(self.at).filter(|b| b.is_ascii_digit()) {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        // A leading zero, a fraction or an exponent: serde_json's to judge.
        let plain = digits == 1 || (digits > 1 && self.bytes[start] != b'0');
        let ends = !matches!(self.bytes.get(self.at), Some(b'.' | b'e' | b'E'));
        (plain && ends).then_some(n)
    }

    /// Any JSON value; `depth` is the nesting level a container here would have.
    fn value(&mut self, depth: usize) -> Option<Value> {
        Some(match self.peek()? {
            b'"' => {
                self.at += 1;
                Value::String(self.string_body()?.into_owned())
            }
            b'{' => {
                if depth > MAX_DEPTH {
                    return None;
                }
                self.at += 1;
                Value::Object(self.object(depth)?)
            }
            b'[' => {
                if depth > MAX_DEPTH {
                    return None;
                }
                self.at += 1;
                self.array(depth)?
            }
            b'n' => self.literal(b"null").map(|()| Value::Null)?,
            b't' => self.literal(b"true").map(|()| Value::Bool(true))?,
            b'f' => self.literal(b"false").map(|()| Value::Bool(false))?,
            _ => Value::Number(self.number()?),
        })
    }

    /// The members of an object whose `{` has been read.
    fn object(&mut self, depth: usize) -> Option<Map<String, Value>> {
        let mut map = Map::new();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(map);
        }
        loop {
            self.expect(b'"')?;
            let key = self.string_body()?.into_owned();
            self.expect(b':')?;
            let value = self.value(depth + 1)?;
            map.insert(key, value);
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(map);
                }
                _ => return None,
            }
        }
    }

    /// The items of an array whose `[` has been read.
    fn array(&mut self, depth: usize) -> Option<Value> {
        let mut items = Vec::new();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(Value::Array(items));
                }
                _ => return None,
            }
        }
    }

    /// A number: plain non-negative integers read here, anything else by
    /// serde_json itself, so floats round exactly as it rounds them.
    fn number(&mut self) -> Option<Number> {
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
        }
        let span = &self.text[start..self.at];
        let digits = span.bytes().all(|b| b.is_ascii_digit());
        if digits
            && (span.len() == 1 || (!span.is_empty() && !span.starts_with('0')))
            && let Ok(n) = span.parse::<u64>()
        {
            return Some(Number::from(n));
        }
        serde_json::from_str::<Number>(span).ok()
    }

    /// The rest of a string whose opening quote has been read, unescaped.
    fn string_body(&mut self) -> Option<Cow<'a, str>> {
        let start = self.at;
        let mut owned: Option<String> = None;
        let mut clean_from = start;
        loop {
            while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
                match first_to_escape(u64::from_le_bytes(chunk.try_into().expect("eight bytes"))) {
                    None => self.at += 8,
                    Some(at) => {
                        self.at += at;
                        break;
                    }
                }
            }
            let b = *self.bytes.get(self.at)?;
            match b {
                b'"' => {
                    let tail = &self.text[clean_from..self.at];
                    self.at += 1;
                    return Some(match owned {
                        None => Cow::Borrowed(tail),
                        Some(mut s) => {
                            s.push_str(tail);
                            Cow::Owned(s)
                        }
                    });
                }
                b'\\' => {
                    let s = owned.get_or_insert_with(String::new);
                    s.push_str(&self.text[clean_from..self.at]);
                    self.at += 1;
                    self.escape(s)?;
                    clean_from = self.at;
                }
                // A raw control character: serde_json refuses it.
                0..=0x1F => return None,
                _ => self.at += 1,
            }
        }
    }

    /// One escape after its backslash, appended to `out`.
    fn escape(&mut self, out: &mut String) -> Option<()> {
        let c = *self.bytes.get(self.at)?;
        self.at += 1;
        out.push(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                match first {
                    0xD800..=0xDBFF => {
                        // A surrogate pair; a lone half is serde_json's to judge.
                        self.literal(b"\\u")?;
                        let second = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&second) {
                            return None;
                        }
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code)?
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => char::from_u32(first)?,
                }
            }
            _ => return None,
        });
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + char::from(d).to_digit(16)?;
        }
        self.at += 4;
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// What the codec writes, this reader reads itself (no fallback),
        /// and reads as serde_json does.
        #[test]
        fn reads_every_envelope_the_codec_writes(
            texts in proptest::collection::vec(any::<String>(), 4),
            seq in any::<u64>(),
            is_final in any::<bool>(),
            payload in json(),
            meta in json(),
            extra in json(),
        ) {
            let mut env = Envelope::new("agent.response.delta").with_payload(payload);
            env.session_id = texts[0].as_str().into();
            env.reply_to = texts[1].as_str().into();
            env.from = texts[2].as_str().into();
            env.user_id = texts[3].as_str().into();
            env.seq = seq;
            env.is_final = is_final;
            env.metadata.insert(texts[0].clone(), meta);
            env.extra.insert(format!("x-{}", texts[1]), extra);
            let bytes = crate::codec::encode(&env).unwrap();
            let text = std::str::from_utf8(&bytes).unwrap();
            let fast = read_envelope(text);
            prop_assert!(fast.is_some(), "gave up on {}", text);
            prop_assert_eq!(&fast, &serde_json::from_str::<Envelope>(text).ok());
            prop_assert_eq!(fast.unwrap(), env);
        }
    }

    fn both(text: &str) -> (Option<Envelope>, Option<Envelope>) {
        (read_envelope(text), serde_json::from_str(text).ok())
    }

    const BASE: &str = r#""spec_version":"acp/1.0","schema_version":1,"event_id":"e","event_type":"t","occurred_at":"2026-05-02T10:00:00.5+02:00""#;

    #[test]
    fn reads_what_serde_json_reads() {
        for rest in [
            "",
            r#","payload":{"text":"a\"b\\c\/d\u00e9\ud83d\ude00\n","n":[1,-2,3.5,1e3,0,null,true,false,{}]}"#,
            r#","metadata":null,"seq":null,"is_final":null,"frame_type":null"#,
            r#","metadata":{"k":"v","acp.x":7},"seq":18446744073709551615,"is_final":true"#,
            r#","x_unknown":{"a":[]},"payload":null,"to":"\u0041gent""#,
            r#" , "trace_id" : "abc" , "seq" : 0 "#,
        ] {
            let text = format!("{{{BASE}{rest}}}");
            let (fast, serde) = both(&text);
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, serde, "{text}");
        }
    }

    #[test]
    fn leaves_to_serde_json_what_it_is_not_sure_of() {
        for rest in [
            r#","seq":01"#,
            r#","seq":1.0"#,
            r#","seq":-1"#,
            r#","seq":18446744073709551616"#,
            r#","payload":"\ud800""#,
            r#","payload":"\udc00x""#,
            "\t,\"payload\":\"raw\u{1}control\"",
            r#","payload":[1,]"#,
            r#","payload":{"a":1,}"#,
            r#","metadata":[]"#,
            r#","is_final":"yes""#,
            r#","event_id":"""#,
            r#","spec_version":"acp/2.0""#,
            r#","payload":"\x""#,
            r#",}"#,
        ] {
            let text = format!("{{{BASE}{rest}}}");
            assert_eq!(read_envelope(&text), None, "{text}");
        }
        assert_eq!(read_envelope(&format!("{{{BASE}}} x")), None);
        assert_eq!(read_envelope("{}"), None);
        assert_eq!(read_envelope(""), None);
    }

    #[test]
    fn nesting_stops_where_serde_json_stops() {
        for depth in [125, 126, 127, 128] {
            let payload = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let text = format!("{{{BASE},\"payload\":{payload}}}");
            let (fast, serde) = both(&text);
            assert_eq!(fast, serde, "depth {depth}");
        }
    }
}
