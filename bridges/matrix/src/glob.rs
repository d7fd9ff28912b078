//! Glob patterns (`*`, `?`, see [`openagentio_core::glob`]) for sender
//! allowlists and allowed inviters.

use openagentio_core::glob::glob_match;

/// Whether `text` matches any of `patterns`.
pub(crate) fn any_match(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| glob_match(p, text))
}
