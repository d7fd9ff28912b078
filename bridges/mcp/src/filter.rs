//! Which tools a bridge exposes: `include` and `exclude` glob lists.
//!
//! Patterns are matched against the tool's MCP name (not the target name),
//! with `globset` syntax: `*`, `?`, `[abc]`, `{a,b}`. A tool is exposed when
//! `include` is empty or one of its patterns matches, and no `exclude`
//! pattern matches.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::config::ConfigError;

/// A compiled include/exclude pair.
///
/// ```
/// use openagentio_mcp::ToolFilter;
/// let f = ToolFilter::new(&["get-*".into(), "echo".into()], &["get-env".into()]).unwrap();
/// assert!(f.allows("echo"));
/// assert!(f.allows("get-sum"));
/// assert!(!f.allows("get-env"));
/// assert!(!f.allows("toggle-simulated-logging"));
/// ```
#[derive(Clone, Debug)]
pub struct ToolFilter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl ToolFilter {
    /// Compiles the two lists; a bad pattern is a [`ConfigError`] naming it.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, ConfigError> {
        Ok(ToolFilter {
            include: build("include", include)?,
            exclude: build("exclude", exclude)?,
        })
    }

    /// A filter that exposes every tool.
    pub fn all() -> Self {
        ToolFilter {
            include: None,
            exclude: None,
        }
    }

    /// Whether the tool named `name` is exposed.
    pub fn allows(&self, name: &str) -> bool {
        let included = self.include.as_ref().is_none_or(|s| s.is_match(name));
        let excluded = self.exclude.as_ref().is_some_and(|s| s.is_match(name));
        included && !excluded
    }
}

fn build(key: &str, patterns: &[String]) -> Result<Option<GlobSet>, ConfigError> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        let glob = Glob::new(p)
            .map_err(|e| ConfigError::single(format!("{key}[{i}]"), e.kind().to_string()))?;
        b.add(glob);
    }
    b.build()
        .map(Some)
        .map_err(|e| ConfigError::single(key, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lists_expose_everything() {
        let f = ToolFilter::new(&[], &[]).unwrap();
        assert!(f.allows("anything at all"));
        assert!(ToolFilter::all().allows("x"));
    }

    #[test]
    fn exclude_wins_over_include() {
        let f = ToolFilter::new(&["*".into()], &["trigger-*".into(), "{a,b}".into()]).unwrap();
        assert!(f.allows("echo"));
        assert!(!f.allows("trigger-long-running-operation"));
        assert!(!f.allows("a"));
        assert!(f.allows("c"));
    }

    #[test]
    fn bad_pattern_names_its_key() {
        let e = ToolFilter::new(&[], &["ok".into(), "[".into()]).unwrap_err();
        assert_eq!(e.problems[0].key, "exclude[1]");
    }
}
