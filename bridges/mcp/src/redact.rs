//! Scrubbing secrets out of text before it reaches an error or a log line.
//!
//! Two layers: every configured secret (the token, every header value) is
//! replaced wherever it appears, and, as the reference bridge does, whatever
//! follows `Bearer `, `Authorization:`/`=`, `token:`/`=` or `api_key:`/`=` is
//! replaced too (catching credentials a server echoes back). Text is also cut
//! to 500 characters, as the reference cuts tool error text.

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The longest text kept (in characters), as the reference keeps.
const MAX_LEN: usize = 500;

/// Replaces known secrets and credential-looking words in text.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor for `secrets` (empty strings are ignored; longer ones are
    /// replaced first so that a secret holding another is replaced whole).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    /// `text` with secrets replaced, cut to 500 characters.
    pub fn clean(&self, text: &str) -> String {
        let mut out = truncate(text);
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        redact_patterns(&out)
    }
}

fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_LEN {
        return text.to_owned();
    }
    let mut s: String = text.chars().take(MAX_LEN - 3).collect();
    s.push_str("...");
    s
}

/// Replaces the word after `bearer `, and the value after `authorization`,
/// `token` or `api_key`/`api-key`/`apikey` followed by `:` or `=`
/// (case-insensitive). For `authorization`, a scheme word and the credential
/// after it are both replaced.
fn redact_patterns(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if let Some((key_end, words)) = match_key(&lower, i) {
            out.push_str(&text[i..key_end]);
            let mut j = key_end;
            for w in 0..words {
                // Skip the spaces between a scheme and its credential.
                let ws = skip_spaces(bytes, j);
                if w > 0 && ws == j {
                    break;
                }
                let end = word_end(bytes, ws);
                if end == ws {
                    break;
                }
                out.push_str(&text[j..ws]);
                out.push_str(REDACTED);
                j = end;
            }
            i = j;
            continue;
        }
        let ch = text[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// If a credential key starts at `i` (on a word boundary), the byte offset
/// where its value starts and how many words the value has.
fn match_key(lower: &str, i: usize) -> Option<(usize, usize)> {
    let b = lower.as_bytes();
    if i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_') {
        return None;
    }
    let rest = &lower[i..];
    if let Some(r) = rest.strip_prefix("bearer") {
        let spaces = r.len() - r.trim_start_matches(' ').len();
        if spaces > 0 {
            return Some((i + "bearer".len() + spaces, 1));
        }
        return None;
    }
    for (key, words) in [
        ("authorization", 2),
        ("token", 1),
        ("api_key", 1),
        ("api-key", 1),
        ("apikey", 1),
    ] {
        if let Some(r) = rest.strip_prefix(key) {
            let trimmed = r.trim_start_matches(' ');
            if let Some(after) = trimmed.strip_prefix([':', '=']) {
                let value = after.trim_start_matches(' ');
                let start = i + (rest.len() - value.len());
                return Some((start, words));
            }
        }
    }
    None
}

fn skip_spaces(b: &[u8], mut j: usize) -> usize {
    while j < b.len() && b[j] == b' ' {
        j += 1;
    }
    j
}

fn word_end(b: &[u8], mut j: usize) -> usize {
    while j < b.len()
        && !b[j].is_ascii_whitespace()
        && b[j] != b'&'
        && b[j] != b'"'
        && b[j] != b'\''
        && b[j] != b','
    {
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_replaced() {
        let r = Redactor::new(["tok-123".to_owned(), String::new()]);
        assert_eq!(
            r.clean("sent tok-123 twice: tok-123"),
            "sent [REDACTED] twice: [REDACTED]"
        );
    }

    #[test]
    fn credential_patterns_are_replaced() {
        let r = Redactor::default();
        assert_eq!(
            r.clean("got Bearer abc.def back"),
            "got Bearer [REDACTED] back"
        );
        assert_eq!(
            r.clean("Authorization: Basic dXNlcjpwYXNz end"),
            "Authorization: [REDACTED] [REDACTED] end"
        );
        assert_eq!(
            r.clean("authorization=xyz&a=b"),
            "authorization=[REDACTED]&a=b"
        );
        assert_eq!(r.clean("url?token=zzz&x=1"), "url?token=[REDACTED]&x=1");
        assert_eq!(r.clean("API_KEY: k1"), "API_KEY: [REDACTED]");
        assert_eq!(
            r.clean("tokens are fine, bearers too"),
            "tokens are fine, bearers too"
        );
        assert_eq!(r.clean("héllo wörld"), "héllo wörld");
    }

    #[test]
    fn long_text_is_cut() {
        let r = Redactor::default();
        let s = "x".repeat(600);
        let c = r.clean(&s);
        assert_eq!(c.chars().count(), 500);
        assert!(c.ends_with("..."));
    }
}
