//! Sizes in bytes as the config file writes them: a whole number of bytes
//! (`4194304`) or a string with a unit (`"4MiB"`, `"512 KiB"`, `"1MB"`, `"100B"`).
//! `KB`/`MB`/`GB` are powers of 1000, `KiB`/`MiB`/`GiB` powers of 1024; units are
//! read without regard to case.

const UNITS: [(&str, u64); 7] = [
    ("b", 1),
    ("kb", 1000),
    ("mb", 1000 * 1000),
    ("gb", 1000 * 1000 * 1000),
    ("kib", 1024),
    ("mib", 1024 * 1024),
    ("gib", 1024 * 1024 * 1024),
];

/// Parses a byte size: `"4MiB"`, `"512 KiB"`, `"1MB"`, `"100"`; `None` when it is not one.
pub(crate) fn parse_byte_size(text: &str) -> Option<u64> {
    let s = text.trim();
    let num_len = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let number: u64 = s[..num_len].parse().ok()?;
    let unit = s[num_len..].trim().to_ascii_lowercase();
    if unit.is_empty() {
        return Some(number);
    }
    let (_, scale) = UNITS.iter().find(|(u, _)| *u == unit)?;
    number.checked_mul(*scale)
}

#[cfg(test)]
mod tests {
    use super::parse_byte_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_byte_size("4MiB"), Some(4 * 1024 * 1024));
        assert_eq!(parse_byte_size("512 kib"), Some(512 * 1024));
        assert_eq!(parse_byte_size("1MB"), Some(1_000_000));
        assert_eq!(parse_byte_size("100"), Some(100));
        assert_eq!(parse_byte_size("7B"), Some(7));
        assert_eq!(parse_byte_size("1.5MiB"), None);
        assert_eq!(parse_byte_size("MiB"), None);
        assert_eq!(parse_byte_size("4 parsecs"), None);
        assert_eq!(parse_byte_size("99999999999999GiB"), None);
    }
}
