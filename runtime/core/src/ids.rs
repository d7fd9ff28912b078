//! Identifiers: event ids (UUIDv7) and W3C trace/span ids.

use std::fmt::Write;

/// A fresh UUIDv7 event id, hyphenated and lower case.
///
/// ```
/// let id = openagentio_core::new_event_id();
/// assert_eq!(id.len(), 36);
/// assert_eq!(&id[14..15], "7");
/// ```
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().hyphenated().to_string()
}

/// A random, non-zero 16-byte W3C trace id as 32 lower-case hex digits.
pub fn new_trace_id() -> String {
    let mut v = fastrand::u128(..);
    if v == 0 {
        v = 1;
    }
    hex32(v)
}

/// A random, non-zero 8-byte W3C span id as 16 lower-case hex digits.
pub fn new_span_id() -> String {
    let v = fastrand::u64(1..);
    let mut s = String::with_capacity(16);
    let _ = write!(s, "{v:016x}");
    s
}

fn hex32(v: u128) -> String {
    let mut s = String::with_capacity(32);
    let _ = write!(s, "{v:032x}");
    s
}
