//! Names that become parts of NATS subjects (targets, prefixes, event types,
//! tenants) must be valid there: `*` and `>` are wildcards, whitespace ends a
//! subject, and `.` separates tokens, so an empty token (a leading, trailing or
//! doubled `.`) is invalid.

/// Checks a dotted name such as `mcp-fs`, `openclaw.wechat` or `acp.v1`.
pub(crate) fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("must not be empty");
    }
    if name.split('.').any(str::is_empty) {
        return Err("has an empty subject token (a leading, trailing or doubled `.`)");
    }
    check_chars(name)
}

/// Checks a single subject token (no `.`), such as a tenant.
pub(crate) fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("must not be empty");
    }
    if token.contains('.') {
        return Err("must be a single subject token (no `.`)");
    }
    check_chars(token)
}

fn check_chars(s: &str) -> Result<(), &'static str> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("must not contain spaces or control characters")
    } else if s.contains('*') || s.contains('>') {
        Err("must not contain the NATS wildcards `*` or `>`")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_tokens() {
        assert!(check_name("mcp-fs").is_ok());
        assert!(check_name("openclaw.wechat").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name(".a").is_err());
        assert!(check_name("a.").is_err());
        assert!(check_name("a..b").is_err());
        assert!(check_name("a b").is_err());
        assert!(check_name("a.*").is_err());
        assert!(check_name("a.>").is_err());
        assert!(check_name("a\tb").is_err());
        assert!(check_token("acme").is_ok());
        assert!(check_token("ac.me").is_err());
    }
}
