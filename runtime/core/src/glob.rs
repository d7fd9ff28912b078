//! Glob patterns: `*` matches any run of characters (also none), `?` exactly
//! one; everything else matches itself, case-sensitively. Used for sender and
//! inviter allowlists and by the config's `Glob`.

/// Whether `text` matches the whole of `pattern`.
///
/// ```
/// use openagentio_core::glob::glob_match;
/// assert!(glob_match("@*:example.org", "@alice:example.org"));
/// assert!(!glob_match("@*:example.org", "@alice:example.com"));
/// assert!(glob_match("read_?ile", "read_file"));
/// ```
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
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

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    #[test]
    fn stars_and_question_marks() {
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("a*c", "abbbc"));
        assert!(m("a*c", "ac"));
        assert!(!m("a*c", "acb"));
        assert!(m("*.txt", "notes.txt"));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("exact", "exactly"));
        assert!(m("héllo*", "héllo wörld"));
        assert!(m("a*", "a*b"));
        assert!(m("@*:example.org", "@alice:example.org"));
        assert!(!m("@*:example.org", "@alice:example.com"));
        assert!(m("@bo?:x", "@bob:x"));
        assert!(!m("@bo?:x", "@bobb:x"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(!m("@Alice:x", "@alice:x"));
    }
}
