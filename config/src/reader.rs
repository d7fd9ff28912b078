//! [`Obj`]: reads one mapping of the document key by key, so that every problem
//! is recorded (not only the first), and finally reports the keys nobody asked
//! for as unknown, listing the accepted ones.
//!
//! ```text
//! let mut o = Obj::new(value, path, report)?;
//! let url = o.req("homeserver_url", url(&["http", "https"]));
//! let timeout = o.or("sync_timeout", DEFAULT, duration(Sign::Positive));
//! o.finish();
//! Some(Settings { homeserver_url: url?, sync_timeout: timeout })
//! ```
//! Read every key before the first `?`, so all errors are collected.

use serde_json::{Map, Value};

use crate::error::Report;
use crate::path::Path;
use crate::values::{Parser, kind};

/// A mapping being read.
pub(crate) struct Obj<'v, 'r> {
    map: &'v Map<String, Value>,
    path: Path,
    report: &'r mut Report,
    accepted: Vec<&'static str>,
}

impl<'v, 'r> Obj<'v, 'r> {
    /// Starts reading `value`; records an error and gives `None` when it is not a mapping.
    pub(crate) fn new(value: &'v Value, path: &Path, report: &'r mut Report) -> Option<Self> {
        match value {
            Value::Object(map) => Some(Obj {
                map,
                path: path.clone(),
                report,
                accepted: Vec::new(),
            }),
            other => {
                report.error(path, format!("expected a mapping, found {}", kind(other)));
                None
            }
        }
    }

    /// The report, for checks that span several keys.
    pub(crate) fn report(&mut self) -> &mut Report {
        self.report
    }

    /// The path of `key` in this mapping.
    pub(crate) fn path_of(&self, key: &str) -> Path {
        self.path.key(key)
    }

    /// Records `message` at `key`; when `key` is absent only because its
    /// `${VAR}` gave an empty string, the message says so.
    pub(crate) fn error(&mut self, key: &str, message: impl Into<String>) {
        let p = self.path.key(key);
        let mut message = message.into();
        if self.report.was_emptied(&p) {
            message.push_str("; its `${...}` gave an empty string");
        }
        self.report.error(&p, message);
    }

    /// Marks `key` as accepted and gives its value; `None` when absent, null, or
    /// a string that `${VAR}` substitution left empty (`${OTLP:-}`), so that
    /// the environment can leave any optional key unset.
    pub(crate) fn raw(&mut self, key: &'static str) -> Option<&'v Value> {
        if !self.accepted.contains(&key) {
            self.accepted.push(key);
        }
        let v = self.map.get(key).filter(|v| !v.is_null())?;
        (!self.report.was_emptied(&self.path.key(key))).then_some(v)
    }

    /// Accepts `key` without reading it: a key the reference format allows
    /// that changes nothing here.
    pub(crate) fn ignore(&mut self, key: &'static str) {
        let _ = self.raw(key);
    }

    /// Whether `key` is given (and not null).
    pub(crate) fn has(&mut self, key: &'static str) -> bool {
        self.raw(key).is_some()
    }

    /// An optional key: `None` when absent or invalid (then the error is recorded).
    pub(crate) fn opt<T>(&mut self, key: &'static str, parse: impl Parser<T>) -> Option<T> {
        let v = self.raw(key)?;
        let p = self.path.key(key);
        parse(v, &p, self.report)
    }

    /// A required key: records `missing required key` when absent.
    pub(crate) fn req<T>(&mut self, key: &'static str, parse: impl Parser<T>) -> Option<T> {
        if self.raw(key).is_none() {
            self.error(key, "missing required key");
            return None;
        }
        self.opt(key, parse)
    }

    /// A key with a default, used when it is absent (or invalid: the error is recorded).
    pub(crate) fn or<T>(&mut self, key: &'static str, default: T, parse: impl Parser<T>) -> T {
        self.opt(key, parse).unwrap_or(default)
    }

    /// Reports every key that was not read as unknown, in sorted order.
    pub(crate) fn finish(self) {
        let mut unknown: Vec<&String> = self
            .map
            .keys()
            .filter(|k| !self.accepted.contains(&k.as_str()))
            .collect();
        unknown.sort();
        let mut sorted = self.accepted.clone();
        sorted.sort_unstable();
        for key in unknown {
            let hint = suggest(key, &self.accepted)
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            self.report.error(
                &self.path.key(key),
                format!("unknown key{hint}; accepted keys: {}", sorted.join(", ")),
            );
        }
    }
}

/// The accepted key closest to `key`, when it is close enough to be a typo.
fn suggest<'a>(key: &str, accepted: &[&'a str]) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).clamp(1, 3);
    accepted
        .iter()
        .map(|a| (edit_distance(key, a), *a))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, a)| a)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{Sign, duration, string};
    use serde_json::json;

    #[test]
    fn collects_every_error_and_unknown_keys() {
        let v = json!({"name": 3, "timeout": 0, "comand": "x", "zzz": 1});
        let mut r = Report::default();
        let mut o = Obj::new(&v, &Path::root().key("b"), &mut r).unwrap();
        assert_eq!(o.opt("name", string), None);
        assert_eq!(o.req("command", string), None);
        let _ = o.or(
            "timeout",
            std::time::Duration::ZERO,
            duration(Sign::Positive),
        );
        o.finish();
        assert_eq!(
            r.into_errors().lines(),
            [
                "b.name: expected a string, found a number",
                "b.command: missing required key",
                "b.timeout: expected a positive number",
                "b.comand: unknown key (did you mean `command`?); accepted keys: command, name, timeout",
                "b.zzz: unknown key; accepted keys: command, name, timeout",
            ]
        );
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("comand", "command"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            suggest("target_prefx", &["target_prefix", "target"]),
            Some("target_prefix")
        );
        assert_eq!(suggest("xyz", &["command"]), None);
    }
}
