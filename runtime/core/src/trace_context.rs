//! W3C trace context (`traceparent`) parsing and formatting.

use crate::ids::{hex_into, new_span_id, new_trace_id};
use crate::text::{Text, concat_text};

/// A parsed W3C `traceparent`: version 00, trace id, parent span id, flags.
///
/// ```
/// use openagentio_core::TraceContext;
/// let t = TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
/// let child = t.child();
/// assert_eq!(child.trace_id, t.trace_id);
/// assert_ne!(child.span_id, t.span_id);
/// assert!(child.traceparent().starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: Text,
    /// 16 lower-case hex digits.
    pub span_id: Text,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// A new root trace, sampled.
    pub fn new_root() -> Self {
        TraceContext {
            trace_id: new_trace_id(),
            span_id: new_span_id(),
            flags: 1,
        }
    }

    /// A new root trace and its `traceparent`, made in one pass (every
    /// top-level call makes one).
    pub(crate) fn new_root_with_traceparent() -> (Self, Text) {
        let mut tp = *b"00-00000000000000000000000000000000-0000000000000000-01";
        hex_into(&fastrand::u128(1..).to_be_bytes(), &mut tp[3..35]);
        hex_into(&fastrand::u64(1..).to_be_bytes(), &mut tp[36..52]);
        let tp = std::str::from_utf8(&tp).expect("hex digits are ASCII");
        let trace = TraceContext {
            trace_id: Text::new(&tp[3..35]),
            span_id: Text::new(&tp[36..52]),
            flags: 1,
        };
        (trace, Text::new(tp))
    }

    /// The same trace with a new span id.
    pub fn child(&self) -> Self {
        TraceContext {
            trace_id: self.trace_id.clone(),
            span_id: new_span_id(),
            flags: self.flags,
        }
    }

    /// Parses a `traceparent` header value; `None` when it is not valid W3C.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let mut parts = s.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || !is_hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace_id.len() != 32 || !is_hex(trace_id) || trace_id.bytes().all(|b| b == b'0') {
            return None;
        }
        if span_id.len() != 16 || !is_hex(span_id) || span_id.bytes().all(|b| b == b'0') {
            return None;
        }
        if flags.len() != 2 || !is_hex(flags) {
            return None;
        }
        Some(TraceContext {
            trace_id: lower(trace_id),
            span_id: lower(span_id),
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// Builds a context from separate `trace_id` and `span_id` fields when they are valid.
    pub fn from_ids(trace_id: &str, span_id: &str) -> Option<Self> {
        Self::parse(&format!("00-{trace_id}-{span_id}-01"))
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> Text {
        use crate::ids::HEX;
        let flags = [
            HEX[usize::from(self.flags >> 4)],
            HEX[usize::from(self.flags & 0xF)],
        ];
        let flags = std::str::from_utf8(&flags).expect("hex digits are ASCII");
        concat_text(&["00-", &self.trace_id, "-", &self.span_id, "-", flags])
    }
}

/// `s` in lower case, without allocating when it already is.
fn lower(s: &str) -> Text {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Text::from(s.to_ascii_lowercase())
    } else {
        Text::new(s)
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_values() {
        for bad in [
            "",
            "00-abc-def-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn root_is_valid_and_round_trips() {
        let t = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&t.traceparent()), Some(t));
        let (t, tp) = TraceContext::new_root_with_traceparent();
        assert_eq!(tp, t.traceparent());
        assert_eq!(TraceContext::parse(&tp), Some(t));
    }
}
