//! From an MCP tool name to a bus target name.
//!
//! A target is `{prefix}.{tool}`, and the tool part must be one subject token.
//! Tool names made only of ASCII letters, digits, `-` and `_` are used as they
//! are. Any other name is mapped to a safe, stable form:
//!
//! 1. every character outside `[A-Za-z0-9_-]` (a dot, a space, `*`, `>`, `/`,
//!    any non-ASCII character, ...) becomes `_`;
//! 2. `-` and 8 lowercase hex digits are appended: the first 32 bits of the
//!    64-bit FNV-1a hash of the original name's UTF-8 bytes, so two names that
//!    map to the same characters still get different targets, and the same
//!    name always gets the same target.
//!
//! A name longer than [`MAX_TOOL_TOKEN`] bytes keeps its first characters
//! (mapped as above) and the hash, so that its target fits in a subject.
//!
//! ```
//! use openagentio_mcp::naming::tool_token;
//! assert_eq!(tool_token("read_file"), "read_file");
//! assert_eq!(tool_token("get-sum"), "get-sum");
//! assert_eq!(tool_token("fs.read file"), "fs_read_file-1ad6696a");
//! assert_eq!(tool_token("météo"), "m_t_o-0e2f6dfd");
//! ```
//!
//! The original name is kept and used for `tools/call`.

/// Whether `c` may appear in a tool token as it is.
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Longest tool token in bytes: with a target prefix, well within the bus's
/// 256-byte limit on target names.
pub const MAX_TOOL_TOKEN: usize = 128;

/// The subject token for MCP tool `name` (see the module docs).
pub fn tool_token(name: &str) -> String {
    if !name.is_empty() && name.len() <= MAX_TOOL_TOKEN && name.chars().all(is_safe) {
        return name.to_owned();
    }
    // Room for `-` and the hash.
    let mut token: String = name
        .chars()
        .map(|c| if is_safe(c) { c } else { '_' })
        .take(MAX_TOOL_TOKEN - 9)
        .collect();
    let hash = fnv1a64(name.as_bytes());
    if !token.is_empty() {
        token.push('-');
    }
    token.push_str(&format!("{:08x}", (hash >> 32) as u32));
    token
}

/// The target serving MCP tool `name` under `prefix`.
pub fn target_name(prefix: &str, name: &str) -> String {
    format!("{prefix}.{}", tool_token(name))
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use openagentio_core::subject::check_name;

    use super::*;

    #[test]
    fn every_mapped_name_is_one_valid_token() {
        for name in [
            "a b",
            "a.b",
            "*",
            ">",
            "a>b",
            "",
            "ünï",
            "tab\there",
            "x/y",
            "...",
        ] {
            let t = tool_token(name);
            assert!(check_name("t", &t, false).is_ok(), "{name:?} -> {t:?}");
            assert!(!t.contains('.'), "{t}");
            assert_eq!(t, tool_token(name), "stable");
        }
    }

    #[test]
    fn long_names_are_cut_and_keep_their_hash() {
        let long = "x".repeat(5000);
        let t = tool_token(&long);
        assert_eq!(t.len(), MAX_TOOL_TOKEN);
        assert!(check_name("t", &t, false).is_ok());
        assert_ne!(t, tool_token(&"x".repeat(5001)));
        let exact = "y".repeat(MAX_TOOL_TOKEN);
        assert_eq!(tool_token(&exact), exact);
    }

    #[test]
    fn names_that_collide_after_replacement_stay_distinct() {
        assert_ne!(tool_token("a b"), tool_token("a.b"));
        assert_ne!(tool_token("a b"), tool_token("a_b"));
        assert_eq!(tool_token("a_b"), "a_b");
    }

    #[test]
    fn targets_join_prefix_and_token() {
        assert_eq!(target_name("mcp-fs", "read_file"), "mcp-fs.read_file");
        assert_eq!(target_name("a.b", "x"), "a.b.x");
    }
}
