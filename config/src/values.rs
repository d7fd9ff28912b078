//! Parsers of single values: each reads one [`Value`] at a path, records what is
//! wrong in the [`Report`] and gives `None`, or gives the typed value. Sections
//! combine them through [`crate::reader::Obj`].
//!
//! Strings that only `${VAR}` substitution could have produced are accepted where
//! a number, boolean or duration is expected (`"10"`, `"true"`), so that
//! `timeout: ${TIMEOUT:-10}` works.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use url::Url;

use crate::byte_size::parse_byte_size;
use crate::duration::parse_duration;
use crate::error::Report;
use crate::glob::Glob;
use crate::path::Path;
use crate::secret::Secret;
use crate::subject;

/// Reads one value. Implemented by every `Fn(&Value, &Path, &mut Report) -> Option<T>`.
pub(crate) trait Parser<T>: Fn(&Value, &Path, &mut Report) -> Option<T> {}
impl<T, F: Fn(&Value, &Path, &mut Report) -> Option<T>> Parser<T> for F {}

/// How a value is described in messages (never the value itself).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Records "expected X, found Y" and gives `None`.
pub(crate) fn expected<T>(v: &Value, path: &Path, r: &mut Report, what: &str) -> Option<T> {
    let tag_hint = match v {
        Value::Object(m) if m.len() == 1 && m.keys().all(|k| k.starts_with('!')) => {
            " (YAML reads a bare value starting with `!` as a tag: quote it)"
        }
        _ => "",
    };
    r.error(
        path,
        format!("expected {what}, found {}{tag_hint}", kind(v)),
    );
    None
}

/// A string.
pub(crate) fn string(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        _ => expected(v, p, r, "a string"),
    }
}

/// A string with something besides whitespace in it.
pub(crate) fn non_empty(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    let s = string(v, p, r)?;
    if s.trim().is_empty() {
        r.error(p, "must not be empty");
        return None;
    }
    Some(s)
}

/// A non-empty secret string. Messages never show it.
pub(crate) fn secret(v: &Value, p: &Path, r: &mut Report) -> Option<Secret> {
    non_empty(v, p, r).map(Secret::from)
}

/// A secret sent in an HTTP header (a bearer token): not empty, and without
/// line breaks or control characters, which a header cannot carry (a
/// `${VAR}` read from a file often ends with a newline).
pub(crate) fn header_secret(v: &Value, p: &Path, r: &mut Report) -> Option<Secret> {
    let s = non_empty(v, p, r)?;
    if s.chars().any(|c| c.is_control() && c != '\t') {
        r.error(
            p,
            "must not contain line breaks or control characters (it goes in an HTTP header; \
             a value read from a file may end with a newline)",
        );
        return None;
    }
    // A header's value is trimmed on the way, and bytes beyond ASCII are
    // not text to most clients: such a token could never match.
    if s.trim() != s {
        r.error(
            p,
            "must not begin or end with whitespace (an HTTP header's value is trimmed, so it \
             could never match)",
        );
        return None;
    }
    if !s.is_ascii() {
        r.error(
            p,
            "must be ASCII (it goes in an HTTP header, where other characters are not text)",
        );
        return None;
    }
    Some(Secret::from(s))
}

/// `true` or `false` (also the strings `"true"`/`"false"`).
pub(crate) fn boolean(v: &Value, p: &Path, r: &mut Report) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Some(false),
        _ => expected(v, p, r, "true or false"),
    }
}

/// A whole number at least `min` that fits `T`.
pub(crate) fn whole<T: TryFrom<u64>>(min: u64) -> impl Parser<T> {
    move |v, p, r| {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        let negative = matches!(v, Value::Number(n) if n.as_i64().is_some_and(|i| i < 0));
        let what = if min == 0 {
            "a whole number"
        } else {
            "a positive whole number"
        };
        match n {
            Some(n) if n >= min => match T::try_from(n) {
                Ok(t) => Some(t),
                Err(_) => {
                    r.error(p, "number is too large");
                    None
                }
            },
            Some(_) => {
                r.error(p, format!("expected {what}"));
                None
            }
            None if negative => {
                r.error(p, format!("expected {what}"));
                None
            }
            // A number is no secret, and "found a number" would puzzle
            // whoever wrote `3.0`.
            None => match v {
                Value::Number(n) => {
                    r.error(p, format!("expected {what}, found {n}"));
                    None
                }
                _ => expected(v, p, r, what),
            },
        }
    }
}

/// Whether a duration may be zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sign {
    /// Greater than zero.
    Positive,
    /// Zero or more.
    NonNegative,
}

/// The longest duration a config may give.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// A duration: seconds as a number, or a string like `"500ms"`, `"10s"`, `"2m"`.
pub(crate) fn duration(sign: Sign) -> impl Parser<Duration> {
    move |v, p, r| {
        let d = match v {
            Value::Number(n) => {
                let secs = n.as_f64().unwrap_or(f64::NAN);
                if secs < 0.0 || (secs == 0.0 && sign == Sign::Positive) {
                    let what = match sign {
                        Sign::Positive => "a positive number",
                        Sign::NonNegative => "a number of seconds that is not negative",
                    };
                    r.error(p, format!("expected {what}"));
                    return None;
                }
                match Duration::try_from_secs_f64(secs) {
                    Ok(d) => d,
                    Err(_) => {
                        r.error(p, "duration is too large");
                        return None;
                    }
                }
            }
            Value::String(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(_) if sign == Sign::NonNegative && s.trim().starts_with('-') => {
                    // Zero is allowed here: "positive" would mislead.
                    r.error(p, "expected a duration that is not negative");
                    return None;
                }
                Err(e) => {
                    r.error(p, e.to_string());
                    return None;
                }
            },
            _ => {
                return expected(
                    v,
                    p,
                    r,
                    "a duration (seconds as a number, or a string like \"500ms\", \"10s\", \"2m\")",
                );
            }
        };
        if d.is_zero() && sign == Sign::Positive {
            r.error(p, "expected a positive duration");
            return None;
        }
        // Deadlines are the clock plus a duration: past years, that
        // addition would not fit, and no wait is meant that long.
        if d > MAX_DURATION {
            r.error(p, "duration is too large (at most 10 years)");
            return None;
        }
        Some(d)
    }
}

/// A positive byte size: a whole number of bytes or a string like `"4MiB"`.
pub(crate) fn byte_size(v: &Value, p: &Path, r: &mut Report) -> Option<usize> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => parse_byte_size(s),
        _ => None,
    };
    match n.filter(|n| *n > 0).map(usize::try_from) {
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            r.error(p, "size is too large");
            None
        }
        None => {
            const WHAT: &str =
                "a positive size in bytes (a number, or a string like \"4MiB\", \"512KiB\")";
            match v {
                // A size is no secret: the text shows what was not understood.
                Value::String(s) => {
                    r.error(p, format!("expected {WHAT}, found {s:?}"));
                    None
                }
                Value::Number(n) => {
                    r.error(p, format!("expected {WHAT}, found {n}"));
                    None
                }
                _ => expected(v, p, r, WHAT),
            }
        }
    }
}

/// A URL with one of `schemes` and a host, without a password in it (credentials
/// belong in the keys meant for them, which are kept secret).
pub(crate) fn url(schemes: &'static [&'static str]) -> impl Parser<Url> {
    move |v, p, r| {
        let s = string(v, p, r)?;
        check_url(s.trim(), schemes, p, r)
    }
}

/// The checks of [`url`] on text already read.
pub(crate) fn check_url(s: &str, schemes: &[&str], p: &Path, r: &mut Report) -> Option<Url> {
    let u = match Url::parse(s) {
        Ok(u) => u,
        Err(e) => {
            r.error(p, format!("invalid URL: {e}"));
            return None;
        }
    };
    if !schemes.contains(&u.scheme()) {
        r.error(
            p,
            format!(
                "expected a URL with scheme {}, found `{}`",
                schemes.join(" or "),
                u.scheme()
            ),
        );
        None
    } else if u.password().is_some() || !u.username().is_empty() {
        // A user alone is a token to NATS: a secret all the same.
        r.error(
            p,
            "must not contain credentials (a password or a token before `@`): use the keys \
             meant for them",
        );
        None
    } else if u.host_str().is_none_or(str::is_empty) {
        r.error(p, "invalid URL: it has no host");
        None
    } else {
        Some(u)
    }
}

/// A socket address such as `127.0.0.1:8080` or `[::]:8080`; `localhost:PORT`
/// means `127.0.0.1:PORT` (no name is resolved).
pub(crate) fn socket_addr(v: &Value, p: &Path, r: &mut Report) -> Option<SocketAddr> {
    let s = string(v, p, r)?;
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    if let Some(port) = s
        .strip_prefix("localhost:")
        .and_then(|p| p.parse::<u16>().ok())
    {
        return Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    let host_and_port = s
        .rsplit_once(':')
        .filter(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    let message = match host_and_port {
        Some((host, port)) => format!(
            "expected an IP address and port; host names other than `localhost` are not \
             looked up here (`{host}`): write \"0.0.0.0:{port}\" to listen on every \
             interface, or the interface's IP address"
        ),
        None => {
            "expected an address with a port, like \"127.0.0.1:8080\" or \"[::]:8080\"".to_owned()
        }
    };
    r.error(p, message);
    None
}

/// A file or directory path (not checked on disk).
pub(crate) fn file_path(v: &Value, p: &Path, r: &mut Report) -> Option<PathBuf> {
    non_empty(v, p, r).map(PathBuf::from)
}

/// A dotted name usable in a NATS subject: a target, prefix or event type.
pub(crate) fn subject_name(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    let s = string(v, p, r)?;
    match subject::check_name(&s) {
        Ok(()) => Some(s),
        Err(why) => {
            r.error(p, format!("invalid subject name: {why}"));
            None
        }
    }
}

/// A single NATS subject token, such as a tenant.
pub(crate) fn subject_token(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    let s = string(v, p, r)?;
    match subject::check_token(&s) {
        Ok(()) => Some(s),
        Err(why) => {
            r.error(p, format!("invalid subject token: {why}"));
            None
        }
    }
}

/// A glob pattern.
pub(crate) fn glob(v: &Value, p: &Path, r: &mut Report) -> Option<Glob> {
    let s = non_empty(v, p, r)?;
    // Shell-style classes and alternatives would match nothing here (they
    // are taken literally), which is never what was meant.
    if s.contains(['[', ']', '{', '}']) {
        r.error(
            p,
            format!(
                "{s:?}: only `*` (any run of characters) and `?` (one character) are \
                 special in these patterns; `[...]` and `{{...}}` are not supported \
                 (list several patterns instead)"
            ),
        );
        return None;
    }
    Some(Glob::new(s))
}

/// Any JSON object, kept as it is.
pub(crate) fn json_object(v: &Value, p: &Path, r: &mut Report) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m.clone()),
        _ => expected(v, p, r, "a mapping"),
    }
}

/// A list whose items all parse; every bad item is reported.
pub(crate) fn list<T>(item: impl Parser<T>) -> impl Parser<Vec<T>> {
    move |v, p, r| {
        let Value::Array(items) = v else {
            return expected(v, p, r, "a list");
        };
        let parsed: Vec<Option<T>> = items
            .iter()
            .enumerate()
            .map(|(i, x)| item(x, &p.index(i), r))
            .collect();
        parsed.into_iter().collect()
    }
}

/// A mapping from names (checked by `key`) to values; every bad entry is reported,
/// in key order.
pub(crate) fn map<T>(
    key: fn(&str) -> Result<(), &'static str>,
    item: impl Parser<T>,
) -> impl Parser<BTreeMap<String, T>> {
    move |v, p, r| {
        let Value::Object(entries) = v else {
            return expected(v, p, r, "a mapping");
        };
        let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Some(BTreeMap::new());
        for (k, x) in sorted {
            let kp = p.key(k);
            if let Err(why) = key(k) {
                r.error(&kp, format!("invalid name: {why}"));
                out = None;
                continue;
            }
            match (item(x, &kp, r), out.as_mut()) {
                (Some(t), Some(m)) => {
                    m.insert(k.clone(), t);
                }
                (None, _) => out = None,
                (Some(_), None) => {}
            }
        }
        out
    }
}

/// Key check for maps keyed by any non-empty name.
pub(crate) fn any_name(k: &str) -> Result<(), &'static str> {
    if k.is_empty() {
        Err("must not be empty")
    } else {
        Ok(())
    }
}

/// Key check for HTTP header names (RFC 9110 tokens).
pub(crate) fn header_name(k: &str) -> Result<(), &'static str> {
    const SPECIAL: &str = "!#$%&'*+-.^_`|~";
    if k.is_empty() {
        Err("must not be empty")
    } else if k
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || SPECIAL.contains(c))
    {
        Ok(())
    } else {
        Err("not a valid HTTP header name")
    }
}

/// Key check for environment variable names.
pub(crate) fn env_name(k: &str) -> Result<(), &'static str> {
    if k.is_empty() || k.contains('=') || k.contains('\0') {
        Err("not a valid environment variable name")
    } else {
        Ok(())
    }
}

/// An HTTP header value: a secret without line breaks or other control characters.
pub(crate) fn header_value(v: &Value, p: &Path, r: &mut Report) -> Option<Secret> {
    let s = string(v, p, r)?;
    if s.chars().any(|c| c.is_control() && c != '\t') {
        r.error(
            p,
            "header values must not contain line breaks or control characters",
        );
        return None;
    }
    Some(Secret::from(s))
}

/// An environment variable's value, kept secret: a string (may be empty), or a
/// number or boolean written as text.
pub(crate) fn env_value(v: &Value, p: &Path, r: &mut Report) -> Option<Secret> {
    match v {
        Value::String(s) => Some(Secret::from(s.as_str())),
        Value::Number(n) => Some(Secret::from(n.to_string())),
        Value::Bool(b) => Some(Secret::from(b.to_string())),
        _ => expected(v, p, r, "a string"),
    }
}

/// An enumeration whose values are written as fixed names.
pub(crate) trait Choice: Copy + 'static {
    /// Every accepted name with its value, in the order messages list them.
    const CHOICES: &'static [(&'static str, Self)];
}

/// One of the names of `E` (read without regard to case or surrounding spaces).
pub(crate) fn choice<E: Choice>(v: &Value, p: &Path, r: &mut Report) -> Option<E> {
    let s = string(v, p, r)?;
    let t = s.trim();
    if let Some((_, e)) = E::CHOICES.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
        return Some(*e);
    }
    let names: Vec<&str> = E::CHOICES.iter().map(|(n, _)| *n).collect();
    r.error(
        p,
        format!("unknown value {t:?}; expected one of: {}", names.join(", ")),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run<T>(parse: impl Parser<T>, v: Value) -> Result<T, Vec<String>> {
        let mut r = Report::default();
        let out = parse(&v, &Path::root().key("k"), &mut r);
        match out {
            Some(t) if r.is_empty() => Ok(t),
            _ => Err(r.into_errors().lines()),
        }
    }

    #[test]
    fn durations_in_both_forms() {
        let pos = duration(Sign::Positive);
        assert_eq!(run(&pos, json!(10)), Ok(Duration::from_secs(10)));
        assert_eq!(run(&pos, json!(0.5)), Ok(Duration::from_millis(500)));
        assert_eq!(run(&pos, json!("500ms")), Ok(Duration::from_millis(500)));
        assert_eq!(run(&pos, json!("2m")), Ok(Duration::from_secs(120)));
        assert_eq!(
            run(&pos, json!(0)),
            Err(vec!["k: expected a positive number".into()])
        );
        assert_eq!(
            run(&pos, json!(-3)),
            Err(vec!["k: expected a positive number".into()])
        );
        assert_eq!(
            run(&pos, json!("0s")),
            Err(vec!["k: expected a positive duration".into()])
        );
        assert_eq!(
            run(&pos, json!("-1s")),
            Err(vec!["k: expected a positive duration".into()])
        );
        assert!(run(&pos, json!(true)).unwrap_err()[0].contains("found a boolean"));
        assert_eq!(
            run(&pos, json!(1e15)),
            Err(vec!["k: duration is too large (at most 10 years)".into()])
        );
        let non_neg = duration(Sign::NonNegative);
        assert_eq!(run(&non_neg, json!(0)), Ok(Duration::ZERO));
        assert_eq!(
            run(&non_neg, json!("-1s")),
            Err(vec!["k: expected a duration that is not negative".into()])
        );
        assert!(run(&non_neg, json!(-1)).is_err());
    }

    #[test]
    fn whole_numbers() {
        let w = whole::<u32>(1);
        assert_eq!(run(&w, json!(3)), Ok(3));
        assert_eq!(run(&w, json!("3")), Ok(3));
        assert_eq!(
            run(&w, json!(0)),
            Err(vec!["k: expected a positive whole number".into()])
        );
        assert_eq!(
            run(&w, json!(-2)),
            Err(vec!["k: expected a positive whole number".into()])
        );
        assert_eq!(
            run(&w, json!(1.5)),
            Err(vec![
                "k: expected a positive whole number, found 1.5".into()
            ])
        );
        assert_eq!(
            run(&w, json!(3.0)),
            Err(vec![
                "k: expected a positive whole number, found 3.0".into()
            ])
        );
        assert_eq!(
            run(byte_size, json!(1e3)),
            Err(vec![
                "k: expected a positive size in bytes (a number, or a string like \"4MiB\", \"512KiB\"), found 1000.0".into()
            ])
        );
        assert_eq!(
            run(&w, json!(u64::MAX)),
            Err(vec!["k: number is too large".into()])
        );
    }

    #[test]
    fn globs_refuse_shell_classes_and_alternatives() {
        assert!(run(glob, json!("read_*")).is_ok());
        for bad in ["read_[a-z]*", "{read,write}_file"] {
            let e = run(glob, json!(bad)).unwrap_err();
            assert!(e[0].contains("not supported"), "{e:?}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            run(socket_addr, json!("localhost:9")),
            Ok("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(
            run(socket_addr, json!("[::]:9")),
            Ok("[::]:9".parse().unwrap())
        );
        let e = run(socket_addr, json!("myhost:8080")).unwrap_err();
        assert!(
            e[0].contains("`myhost`") && e[0].contains("\"0.0.0.0:8080\""),
            "{e:?}"
        );
        let e = run(socket_addr, json!("127.0.0.1")).unwrap_err();
        assert!(e[0].contains("with a port"), "{e:?}");
    }

    #[test]
    fn urls() {
        let u = url(&["http", "https"]);
        assert!(run(&u, json!("https://example.org/v1")).is_ok());
        assert_eq!(
            run(&u, json!("ftp://example.org")),
            Err(vec![
                "k: expected a URL with scheme http or https, found `ftp`".into()
            ])
        );
        assert_eq!(
            run(&u, json!("not a url")),
            Err(vec!["k: invalid URL: relative URL without a base".into()])
        );
        let e = run(&u, json!("https://bob:hunter2@example.org")).unwrap_err();
        assert!(!e[0].contains("hunter2"), "{e:?}");
    }

    #[test]
    fn choices_list_the_accepted_names() {
        #[derive(Clone, Copy, Debug, PartialEq)]
        enum Abc {
            A,
            B,
        }
        impl Choice for Abc {
            const CHOICES: &'static [(&'static str, Self)] = &[("a", Abc::A), ("b", Abc::B)];
        }
        assert_eq!(run(choice::<Abc>, json!(" B ")), Ok(Abc::B));
        assert_eq!(
            run(choice::<Abc>, json!("c")),
            Err(vec!["k: unknown value \"c\"; expected one of: a, b".into()])
        );
        let _ = Abc::A;
    }

    #[test]
    fn lists_and_maps_report_every_bad_item() {
        let l = list(subject_name);
        assert_eq!(
            run(&l, json!(["ok", "a b", "x.*"])),
            Err(vec![
                "k[1]: invalid subject name: must not contain spaces or control characters".into(),
                "k[2]: invalid subject name: must not contain the NATS wildcards `*` or `>`".into(),
            ])
        );
        let m = map(header_name, header_value);
        assert_eq!(
            run(&m, json!({"Bad Header": "x", "X-Ok": "line\nbreak"})),
            Err(vec![
                "k[\"Bad Header\"]: invalid name: not a valid HTTP header name".into(),
                "k.X-Ok: header values must not contain line breaks or control characters".into(),
            ])
        );
    }

    #[test]
    fn yaml_tags_get_a_hint() {
        let e = run(string, json!({"!room:example.org": null})).unwrap_err();
        assert!(e[0].contains("quote it"), "{e:?}");
    }
}
