//! Glob patterns (`*`, `?`) for sender allowlists and allowed inviters.

/// Whether `text` matches `pattern`, where `*` matches any run of characters
/// (also none) and `?` exactly one. Matching is case-sensitive, as Matrix ids are.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether `text` matches any of `patterns`.
pub(crate) fn any_match(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(glob_match("@*:example.org", "@alice:example.org"));
        assert!(!glob_match("@*:example.org", "@alice:example.com"));
        assert!(glob_match("@bo?:x", "@bob:x"));
        assert!(!glob_match("@bo?:x", "@bobb:x"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("@alice:x", "@alice:x"));
        assert!(!glob_match("@Alice:x", "@alice:x"));
    }
}
