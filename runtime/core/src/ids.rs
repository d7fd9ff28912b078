//! Identifiers: event ids (UUIDv7) and W3C trace/span ids.
//!
//! Made by hand from a thread-local generator: ids are made several times per
//! call, and the shared, locked generators of general-purpose crates showed in
//! profiles.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::text::Text;

pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// A fresh UUIDv7 event id (RFC 9562: 48-bit Unix milliseconds, version 7,
/// variant 10, 74 random bits), hyphenated and lower case.
///
/// ```
/// let id = openagentio_core::new_event_id();
/// assert_eq!(id.len(), 36);
/// assert_eq!(&id[14..15], "7");
/// assert!(uuid::Uuid::parse_str(&id).is_ok());
/// ```
pub fn new_event_id() -> Text {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    event_id_at(ms)
}

/// A UUIDv7 for Unix time `ms` (milliseconds), for callers that already read the clock.
pub(crate) fn event_id_at(ms: u64) -> Text {
    let ms = ms & 0xFFFF_FFFF_FFFF;
    let rand = fastrand::u128(..);
    let mut b = rand.to_be_bytes();
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70 | (b[6] & 0x0F);
    b[8] = 0x80 | (b[8] & 0x3F);
    let mut digits = [0u8; 32];
    hex_into(&b, &mut digits);
    let mut out = [b'-'; 36];
    out[..8].copy_from_slice(&digits[..8]);
    out[9..13].copy_from_slice(&digits[8..12]);
    out[14..18].copy_from_slice(&digits[12..16]);
    out[19..23].copy_from_slice(&digits[16..20]);
    out[24..].copy_from_slice(&digits[20..]);
    Text::new(std::str::from_utf8(&out).expect("hex digits are ASCII"))
}

/// Writes the lower-case hex digits of `bytes` to the start of `out`.
pub(crate) fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xF)];
    }
}

/// Lower-case hex of `bytes` (at most 16), made on the stack.
fn hex(bytes: &[u8]) -> Text {
    let mut out = [0u8; 32];
    hex_into(bytes, &mut out);
    Text::new(std::str::from_utf8(&out[..bytes.len() * 2]).expect("hex digits are ASCII"))
}

/// A random, non-zero 16-byte W3C trace id as 32 lower-case hex digits.
pub fn new_trace_id() -> Text {
    hex(&fastrand::u128(1..).to_be_bytes())
}

/// A random, non-zero 8-byte W3C span id as 16 lower-case hex digits.
pub fn new_span_id() -> Text {
    hex(&fastrand::u64(1..).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_v7_and_time_ordered() {
        let a = new_event_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_event_id();
        assert!(a < b, "{a} !< {b}");
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 7);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn trace_ids_have_the_w3c_shape() {
        assert_eq!(new_trace_id().len(), 32);
        assert_eq!(new_span_id().len(), 16);
        assert_ne!(new_span_id(), new_span_id());
    }
}
