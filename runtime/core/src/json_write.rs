//! The envelope's JSON writer: the bytes `serde_json` makes, made faster.
//!
//! Encoding is on every network hop, and `serde_json` checks strings byte by
//! byte through the generic serializer; this writer knows the envelope's keys
//! and checks eight bytes at a time. Its output is byte for byte what
//! `serde_json::to_vec(&envelope)` gives (a property test holds it to that).

use chrono::{DateTime, Datelike, FixedOffset, SecondsFormat, Timelike};
use serde_json::{Map, Value};

use crate::envelope::Envelope;
use crate::ids::HEX;

/// Appends `env` as compact JSON.
pub(crate) fn write_envelope(out: &mut Vec<u8>, env: &Envelope) {
    out.extend_from_slice(b"{\"spec_version\":");
    write_str(out, &env.spec_version);
    out.extend_from_slice(b",\"schema_version\":");
    write_u64(out, env.schema_version);
    out.extend_from_slice(b",\"event_id\":");
    write_str(out, &env.event_id);
    out.extend_from_slice(b",\"event_type\":");
    write_str(out, &env.event_type);
    if !env.frame_type.is_empty() {
        out.extend_from_slice(b",\"frame_type\":");
        write_str(out, &env.frame_type);
    }
    out.extend_from_slice(b",\"occurred_at\":\"");
    write_rfc3339(out, &env.occurred_at);
    out.push(b'"');
    for (key, value) in [
        (&b",\"trace_id\":"[..], &env.trace_id),
        (b",\"span_id\":", &env.span_id),
        (b",\"traceparent\":", &env.traceparent),
        (b",\"session_id\":", &env.session_id),
        (b",\"conversation_id\":", &env.conversation_id),
        (b",\"correlation_id\":", &env.correlation_id),
        (b",\"reply_to\":", &env.reply_to),
        (b",\"from\":", &env.from),
        (b",\"to\":", &env.to),
        (b",\"channel\":", &env.channel),
        (b",\"tenant_id\":", &env.tenant_id),
        (b",\"user_id\":", &env.user_id),
    ] {
        if !value.is_empty() {
            out.extend_from_slice(key);
            write_str(out, value);
        }
    }
    if env.seq != 0 {
        out.extend_from_slice(b",\"seq\":");
        write_u64(out, env.seq);
    }
    if env.is_final {
        out.extend_from_slice(b",\"is_final\":true");
    }
    if let Some(payload) = &env.payload {
        out.extend_from_slice(b",\"payload\":");
        write_value(out, payload);
    }
    if !env.metadata.is_empty() {
        out.extend_from_slice(b",\"metadata\":");
        write_object(out, &env.metadata);
    }
    for (key, value) in &env.extra {
        out.push(b',');
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// Appends any JSON value, as `serde_json` writes it compactly.
fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Numbers are rare in envelopes; serde_json's own formatting keeps them exact.
        Value::Number(n) => {
            serde_json::to_writer(&mut *out, n).expect("writing to a Vec cannot fail")
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(out, map),
    }
}

fn write_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// What follows a backslash for each byte that must be escaped (0: none).
/// `u` means `\u00XX`. The same escapes as `serde_json`.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0A] = b'n';
    table[0x0C] = b'f';
    table[0x0D] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Where the first of the eight bytes in `w` (read little-endian) that is a
/// control byte, `"` or `\` is, if any (the reader uses it too).
///
/// Each test flags a byte's high bit. Bits above a match may be flagged
/// falsely (a borrow runs on), but the lowest flag is always a true match,
/// which is all the callers need.
#[inline]
pub(crate) fn first_to_escape(w: u64) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v;
    // Below 0x20: subtracting 0x20 sets the high bit (bytes of 0x80 and up,
    // UTF-8 continuations among them, are excluded by `!w`).
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = zero_byte(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(w ^ (ONES * u64::from(b'\\')));
    let mask = (control | quote | backslash) & HIGH;
    (mask != 0).then(|| mask.trailing_zeros() as usize / 8)
}

/// Where the first byte of `bytes` that must be escaped is, if any.
fn find_to_escape(bytes: &[u8]) -> Option<usize> {
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        if let Some(at) = first_to_escape(word(chunk)) {
            return Some(i + at);
        }
        i += 8;
    }
    if i == bytes.len() {
        return None;
    }
    if bytes.len() >= 8 {
        // The last eight bytes, overlapping ones known to be clean.
        let from = bytes.len() - 8;
        return first_to_escape(word(&bytes[from..])).map(|at| from + at);
    }
    // Shorter than eight: padded with spaces, which need no escape.
    let mut padded = [b' '; 8];
    padded[..bytes.len()].copy_from_slice(bytes);
    first_to_escape(word(&padded))
}

/// Appends `s` as a JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let Some(first) = find_to_escape(bytes) else {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    };
    // Escapes are rare: from the first one on, byte by byte.
    let mut clean_from = 0;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[clean_from..i]);
        clean_from = i + 1;
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xF) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
    }
    out.extend_from_slice(&bytes[clean_from..]);
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(crate::text::decimal(n, &mut buf).as_bytes());
}

/// Appends `n` in decimal, zero-padded to `width` digits (`n` must fit).
fn write_padded(out: &mut Vec<u8>, n: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        out.push(b'0' + (n / div % 10) as u8);
        div /= 10;
    }
}

/// Appends `t` as chrono's `to_rfc3339_opts(SecondsFormat::AutoSi, true)`
/// does: `Z` for UTC, and only the sub-second digits needed (3, 6 or 9).
pub(crate) fn write_rfc3339(out: &mut Vec<u8>, t: &DateTime<FixedOffset>) {
    let offset = t.offset().local_minus_utc();
    let local = t.naive_local();
    let (year, nanos) = (local.year(), local.nanosecond());
    // Leap seconds, years RFC 3339 cannot write in four digits and offsets
    // with seconds are left to chrono.
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 || offset % 60 != 0 {
        let text = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        out.extend_from_slice(text.as_bytes());
        return;
    }
    write_padded(out, year as u32, 4);
    out.push(b'-');
    write_padded(out, local.month(), 2);
    out.push(b'-');
    write_padded(out, local.day(), 2);
    out.push(b'T');
    write_padded(out, local.hour(), 2);
    out.push(b':');
    write_padded(out, local.minute(), 2);
    out.push(b':');
    write_padded(out, local.second(), 2);
    if nanos != 0 {
        out.push(b'.');
        if nanos % 1_000_000 == 0 {
            write_padded(out, nanos / 1_000_000, 3);
        } else if nanos % 1_000 == 0 {
            write_padded(out, nanos / 1_000, 6);
        } else {
            write_padded(out, nanos, 9);
        }
    }
    if offset == 0 {
        out.push(b'Z');
    } else {
        out.push(if offset < 0 { b'-' } else { b'+' });
        let minutes = offset.unsigned_abs() / 60;
        write_padded(out, minutes / 60, 2);
        out.push(b':');
        write_padded(out, minutes % 60, 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone, Utc};

    fn string(s: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every_byte: String = (0u8..=0x7F).map(char::from).collect();
        every_byte.push_str("grüße \u{1F600} \u{2028}");
        for s in [
            "",
            "plain",
            "exactly8",
            "eight+1b",
            "\"quoted\" \\ back",
            "tab\there\nnewline\r\u{0}\u{1f}\u{7f}",
            &"x".repeat(361),
            &every_byte,
            &every_byte[3..],
        ] {
            assert_eq!(string(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
        // One byte to escape at every place of strings of every length
        // around the eight-byte chunks.
        for len in 1..=25 {
            for at in 0..len {
                for special in ['"', '\\', '\n', '\u{1}'] {
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'é' })
                        .collect();
                    assert_eq!(string(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                    let s: String = (0..len)
                        .map(|i| if i == at { special } else { 'a' })
                        .collect();
                    assert_eq!(string(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    #[test]
    fn the_first_byte_to_escape_is_found_exactly() {
        for at in 0..8 {
            for b in (0u8..0x20).chain([b'"', b'\\']) {
                let mut chunk = *b"abcdefgh";
                chunk[at] = b;
                // Bytes after the match that are matches or near misses.
                for later in at + 1..8 {
                    chunk[later] = [b'"', 0x21, 0x1F, 0xFF, b'\\', 0x5D][later % 6];
                }
                assert_eq!(
                    first_to_escape(u64::from_le_bytes(chunk)),
                    Some(at),
                    "{chunk:?}"
                );
            }
        }
        for clean in [
            *b"abcdefgh",
            [0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7F, 0x80, 0xFF],
        ] {
            assert_eq!(first_to_escape(u64::from_le_bytes(clean)), None);
        }
        assert_eq!(
            first_to_escape(u64::from_le_bytes(
                *"é\\xxxxx".as_bytes().first_chunk().unwrap()
            )),
            Some(2)
        );
    }

    #[test]
    fn times_are_written_as_chrono_writes_them() {
        let utc = |nanos| {
            Utc.from_utc_datetime(
                &NaiveDate::from_ymd_opt(2026, 3, 7)
                    .unwrap()
                    .and_hms_nano_opt(4, 5, 59, nanos)
                    .unwrap(),
            )
        };
        let mut times: Vec<DateTime<FixedOffset>> = [0, 1, 120_000_000, 123_456_000, 123_456_789]
            .into_iter()
            .map(|n| utc(n).fixed_offset())
            .collect();
        for offset in [3600 * 5 + 1800, -(3600 * 9 + 60), 59, -3601] {
            times.push(utc(5_000_000).with_timezone(&FixedOffset::east_opt(offset).unwrap()));
        }
        // A leap second, year 0 and years past 9999.
        times.push(utc(1_500_000_000).fixed_offset());
        times.push(DateTime::parse_from_rfc3339("0000-01-01T00:00:00Z").unwrap());
        times.push(
            Utc.from_utc_datetime(
                &NaiveDate::from_ymd_opt(12345, 1, 1)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap(),
            )
            .fixed_offset(),
        );
        for t in times {
            let mut out = Vec::new();
            write_rfc3339(&mut out, &t);
            let want = t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}
