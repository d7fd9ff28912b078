//! Durations as the config file writes them: a number of seconds (`10`, `0.5`) or a
//! string with units (`"500ms"`, `"10s"`, `"2m"`, `"1h"`, `"1m30s"`). A string
//! holding a bare number (`"10"`, as `${VAR}` substitution gives) is seconds too.

use std::time::Duration;

/// Why a duration could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

const UNITS: [(&str, f64); 4] = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];

/// Parses `"500ms"`, `"10s"`, `"2m"`, `"1h"`, `"1m30s"`, `"1.5s"` or a bare number of seconds.
///
/// ```
/// use std::time::Duration;
/// use openagentio_config::parse_duration;
/// assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
/// assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
/// assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
/// assert!(parse_duration("ten seconds").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let bad = || {
        DurationError(
            "expected a duration: seconds as a number, or a string like \"500ms\", \"10s\", \"2m\", \"1h\""
                .into(),
        )
    };
    let s = text.trim();
    if s.starts_with('-') {
        return Err(DurationError("expected a positive duration".into()));
    }
    if let Some(secs) = plain_number(s) {
        return seconds(secs);
    }
    let mut total = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number = plain_number(&rest[..num_len]).ok_or_else(bad)?;
        let after = rest[num_len..].trim_start();
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let unit = &after[..unit_len];
        let (_, scale) = UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?;
        total += number * scale;
        rest = after[unit_len..].trim_start();
    }
    seconds(total)
}

/// `digits` or `digits.digits`, the only numbers a duration is written
/// with (as the schema says): no sign, exponent, `inf` or bare dot.
fn plain_number(s: &str) -> Option<f64> {
    let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
    let plain = match s.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(s),
    };
    if plain { s.parse().ok() } else { None }
}

fn seconds(secs: f64) -> Result<Duration, DurationError> {
    if secs.is_nan() || secs < 0.0 {
        return Err(DurationError("expected a positive duration".into()));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| DurationError("duration is too large".into()))
}

/// Writes a duration the way the config file would: `"500ms"`, `"10s"`, `"2m"`, `"1h"`,
/// or seconds with a fraction (`"1.5s"`).
///
/// ```
/// use std::time::Duration;
/// use openagentio_config::format_duration;
/// assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
/// assert_eq!(format_duration(Duration::from_secs(120)), "2m");
/// assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
/// ```
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.is_zero() {
        "0s".into()
    } else if !d.subsec_nanos().is_multiple_of(1_000_000) || (!ms.is_multiple_of(1000) && ms > 1000)
    {
        format!("{}s", d.as_secs_f64())
    } else if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Serializes a duration as [`format_duration`] writes it (for the defaults shown in
/// the JSON Schema).
pub(crate) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_numbers() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok(" 10 s "), Duration::from_secs(10));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1h2m3s4ms"), Duration::from_millis(3_723_004));
        assert_eq!(ok("0.25s"), Duration::from_millis(250));
        assert_eq!(ok("10"), Duration::from_secs(10));
        assert_eq!(ok("0"), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "", "s", "10x", "ten", "10 sec", "1..2s", "-5s", "-1", "NaN", "inf", "1e2", "+5", ".5",
            "5.", ".5s", "5.s", "1e2s",
        ] {
            assert!(parse_duration(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn formats_round_trip() {
        for ms in [
            1, 250, 999, 1000, 1500, 10_000, 60_000, 90_000, 3_600_000, 5_400_000,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{ms}ms");
        }
    }
}
