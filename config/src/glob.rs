//! [`Glob`]: a name pattern with `*` (any run of characters, including none) and
//! `?` (any one character). Everything else matches itself; there are no classes.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, SchemaGenerator, json_schema};

/// A glob pattern, as used by tool `include`/`exclude` lists and Matrix sender and
/// inviter allowlists.
///
/// ```
/// use openagentio_config::Glob;
/// let g = Glob::new("@*:example.org");
/// assert!(g.matches("@alice:example.org"));
/// assert!(!g.matches("@alice:example.com"));
/// assert!(Glob::new("read_?ile").matches("read_file"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Glob(String);

impl Glob {
    /// A pattern.
    pub fn new(pattern: impl Into<String>) -> Self {
        Glob(pattern.into())
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        openagentio_core::glob::glob_match(&self.0, text)
    }

    /// Whether any of `globs` matches `text`.
    pub fn any_matches(globs: &[Glob], text: &str) -> bool {
        globs.iter().any(|g| g.matches(text))
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.0)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl JsonSchema for Glob {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Glob".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> schemars::Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "description": "A glob: `*` matches any run of characters, `?` any one character.",
        })
    }
}
