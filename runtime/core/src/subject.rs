//! Subject layout and NATS-style subject matching.
//!
//! ```text
//! {prefix}.events.{event_type}            broadcast events
//! {prefix}.invoke.{target}                request entry
//! {prefix}.{tenant}.events.{event_type}   tenant-scoped events
//! {prefix}.{tenant}.invoke.{target}       tenant-scoped requests
//! {prefix}.dlq.{event_type}               dead letters
//! {prefix}.control.cancel                 cancellation notices (this runtime's extension)
//! ```

use crate::text::{Text, concat_text};

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "acp.v1";

/// Words that cannot be a tenant because they would collide with the untenanted layout.
const RESERVED_TENANTS: [&str; 4] = ["events", "invoke", "dlq", "control"];

/// Builds the subjects of one prefix.
///
/// ```
/// use openagentio_core::Subjects;
/// let s = Subjects::new("acp.v1");
/// assert_eq!(s.invoke("echo", ""), "acp.v1.invoke.echo");
/// assert_eq!(s.invoke("echo", "t1"), "acp.v1.t1.invoke.echo");
/// assert_eq!(s.event("matrix.message.received", ""), "acp.v1.events.matrix.message.received");
/// assert_eq!(s.dlq("x.y"), "acp.v1.dlq.x.y");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Subjects::new(DEFAULT_PREFIX)
    }
}

impl Subjects {
    /// Subjects under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Subjects {
            prefix: prefix.into(),
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Subject of events of `event_type` (which may hold `*`/`>` when subscribing).
    pub fn event(&self, event_type: &str, tenant: &str) -> String {
        self.scoped("events", event_type, tenant)
    }

    /// Subject of requests for `target`.
    pub fn invoke(&self, target: &str, tenant: &str) -> String {
        self.scoped("invoke", target, tenant)
    }

    /// Dead-letter subject of `event_type`.
    pub fn dlq(&self, event_type: &str) -> String {
        format!("{}.dlq.{event_type}", self.prefix)
    }

    /// Subject of cancellation notices.
    pub fn cancel(&self) -> String {
        format!("{}.control.cancel", self.prefix)
    }

    fn scoped(&self, kind: &str, name: &str, tenant: &str) -> String {
        self.scoped_text(kind, name, tenant).into()
    }

    /// [`Subjects::invoke`] as the bus uses it on every call: no `String`.
    pub(crate) fn invoke_text(&self, target: &str, tenant: &str) -> Text {
        self.scoped_text("invoke", target, tenant)
    }

    fn scoped_text(&self, kind: &str, name: &str, tenant: &str) -> Text {
        if tenant.is_empty() {
            concat_text(&[&self.prefix, ".", kind, ".", name])
        } else {
            concat_text(&[&self.prefix, ".", tenant, ".", kind, ".", name])
        }
    }
}

/// Why a name cannot be used in a subject.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// The name is empty.
    #[error("{what} is empty")]
    Empty {
        /// What was checked.
        what: &'static str,
    },
    /// A token between dots is empty (`a..b`, a leading or trailing dot).
    #[error("{what} {name:?} has an empty token")]
    EmptyToken {
        /// What was checked.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The name holds whitespace, a control character or a wildcard where none is allowed.
    #[error("{what} {name:?} holds {found:?}, which cannot be part of a subject")]
    BadChar {
        /// What was checked.
        what: &'static str,
        /// The name.
        name: String,
        /// The offending character.
        found: char,
    },
    /// `>` appears before the last token.
    #[error("{what} {name:?}: '>' may only be the last token")]
    TailWildcard {
        /// What was checked.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("{what} {shown:?}... is {len} bytes long; at most {max} are allowed", max = MAX_NAME_BYTES)]
    TooLong {
        /// What was checked.
        what: &'static str,
        /// The name's first characters.
        shown: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A tenant collides with the untenanted layout.
    #[error("tenant {0:?} is a reserved word")]
    ReservedTenant(String),
}

/// Longest name (target, event type, tenant, queue group) in bytes. A
/// subject holds a name and a tenant, and NATS reads subjects from command
/// lines of at most 4,096 bytes: a few names this long still fit.
pub const MAX_NAME_BYTES: usize = 256;

/// Longest reply subject a request may name, in bytes (see [`MAX_NAME_BYTES`]).
pub const MAX_REPLY_SUBJECT_BYTES: usize = 1_024;

/// Checks a dotted name (target, event type) for use in a subject. With
/// `wildcards`, `*` and a final `>` are allowed as whole tokens.
///
/// ```
/// use openagentio_core::subject::check_name;
/// assert!(check_name("target", "mcp-fs.read_file", false).is_ok());
/// assert!(check_name("target", "has space", false).is_err());
/// assert!(check_name("event type", "matrix.>", true).is_ok());
/// ```
pub fn check_name(what: &'static str, name: &str, wildcards: bool) -> Result<(), SubjectError> {
    if name.is_empty() {
        return Err(SubjectError::Empty { what });
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(SubjectError::TooLong {
            what,
            shown: name.chars().take(48).collect(),
            len: name.len(),
        });
    }
    let mut tokens = name.split('.').peekable();
    while let Some(tok) = tokens.next() {
        let is_last = tokens.peek().is_none();
        if tok.is_empty() {
            return Err(SubjectError::EmptyToken {
                what,
                name: name.to_owned(),
            });
        }
        if wildcards && tok == "*" {
            continue;
        }
        if wildcards && tok == ">" {
            if !is_last {
                return Err(SubjectError::TailWildcard {
                    what,
                    name: name.to_owned(),
                });
            }
            continue;
        }
        let bad = |c: char| c.is_whitespace() || c.is_control() || c == '*' || c == '>';
        if let Some(found) = tok.chars().find(|c| bad(*c)) {
            return Err(SubjectError::BadChar {
                what,
                name: name.to_owned(),
                found,
            });
        }
    }
    Ok(())
}

/// Checks a tenant id: one token, no wildcards, not a reserved word.
pub fn check_tenant(tenant: &str) -> Result<(), SubjectError> {
    if tenant.is_empty() {
        return Ok(());
    }
    check_name("tenant", tenant, false)?;
    if tenant.contains('.') {
        return Err(SubjectError::BadChar {
            what: "tenant",
            name: tenant.to_owned(),
            found: '.',
        });
    }
    if RESERVED_TENANTS.contains(&tenant) {
        return Err(SubjectError::ReservedTenant(tenant.to_owned()));
    }
    Ok(())
}

/// NATS subject matching: `*` matches one token, a final `>` one or more.
///
/// ```
/// use openagentio_core::subject::matches;
/// assert!(matches("a.*.c", "a.b.c"));
/// assert!(matches("a.>", "a.b.c"));
/// assert!(!matches("a.>", "a"));
/// assert!(!matches("a.*", "a.b.c"));
/// ```
pub fn matches(pattern: &str, subject: &str) -> bool {
    // Byte slices split by a plain scan: subjects are matched on every
    // message, and `str::split` goes through its general pattern searcher.
    let mut p = pattern.as_bytes().split(|&b| b == b'.');
    let mut s = subject.as_bytes().split(|&b| b == b'.');
    loop {
        match (p.next(), s.next()) {
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a subject pattern holds a wildcard token.
pub fn has_wildcard(pattern: &str) -> bool {
    pattern.split('.').any(|t| t == "*" || t == ">")
}

/// Whether replies can be published to `subject`: not empty, no empty
/// token, no wildcard token, no whitespace or control byte. Checked on every
/// request, so a byte scan rather than [`check_name`]'s error-building pass.
pub(crate) fn is_reply_subject(subject: &str) -> bool {
    fn token_ok(t: &[u8]) -> bool {
        !t.is_empty() && t != b"*" && t != b">"
    }
    let bytes = subject.as_bytes();
    if bytes.len() > MAX_REPLY_SUBJECT_BYTES {
        return false;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b <= b' ' || b == 0x7f {
            return false;
        }
        if b == b'.' {
            if !token_ok(&bytes[start..i]) {
                return false;
            }
            start = i + 1;
        }
    }
    token_ok(&bytes[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_subjects_are_publishable_subjects() {
        for ok in ["_INBOX.abc.1", "a", "reply-to_x.y", "é.ü"] {
            assert!(is_reply_subject(ok), "{ok:?}");
        }
        for bad in [
            "", ".", "a.", ".a", "a..b", "a.*", "*", "a.>", "a b", "a\tb", "a\r\n", "a\u{7f}",
        ] {
            assert!(!is_reply_subject(bad), "{bad:?}");
        }
        let long = format!("_INBOX.{}", "x".repeat(MAX_REPLY_SUBJECT_BYTES));
        assert!(!is_reply_subject(&long));
    }

    #[test]
    fn wildcards_match_as_nats_does() {
        for (pattern, subject, want) in [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*", "a", false),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            ("*.b.>", "x.b.y", true),
            ("*.b.>", "x.c.y", false),
            (">", "a", true),
            ("a.b", "a.b.c", false),
        ] {
            assert_eq!(matches(pattern, subject), want, "{pattern} ~ {subject}");
        }
    }

    #[test]
    fn tenants_are_checked() {
        assert!(check_tenant("acme").is_ok());
        assert!(check_tenant("").is_ok());
        assert!(check_tenant("a.b").is_err());
        assert!(check_tenant("events").is_err());
        assert!(check_tenant("*").is_err());
    }

    #[test]
    fn names_reject_bad_tokens() {
        assert!(check_name("t", "a..b", false).is_err());
        assert!(check_name("t", ".a", false).is_err());
        assert!(check_name("t", "a.>.b", true).is_err());
        assert!(check_name("t", "a.*", false).is_err());
        assert!(check_name("t", "a\tb", false).is_err());
        assert!(check_name("t", &"a".repeat(MAX_NAME_BYTES), false).is_ok());
        let e = check_name("target", &"a".repeat(MAX_NAME_BYTES + 1), false).unwrap_err();
        assert!(e.to_string().contains("257 bytes long; at most 256"), "{e}");
    }
}
