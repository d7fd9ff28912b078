//! Where a value sits in the config document, written as error messages print it:
//! `bridges[2].config.timeout`, `bridges[0].config.headers["X-Api-Key"]`.

use std::fmt;

/// A path from the document root to one value.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Path(String);

impl Path {
    /// The document itself.
    pub(crate) fn root() -> Self {
        Path(String::new())
    }

    /// The value under `key` of the mapping at this path. Keys made of letters,
    /// digits, `_` and `-` print as `.key`; any other key prints quoted, `["a.b"]`,
    /// so a key with a dot in it cannot be mistaken for two levels.
    pub(crate) fn key(&self, key: &str) -> Path {
        let plain = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        let mut s = self.0.clone();
        if plain {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(key);
        } else {
            s.push('[');
            s.push_str(&serde_json::Value::from(key).to_string());
            s.push(']');
        }
        Path(s)
    }

    /// The item at `index` of the list at this path.
    pub(crate) fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }

    /// The path as text (empty for the root).
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::Path;

    #[test]
    fn prints_keys_and_indexes() {
        let p = Path::root()
            .key("bridges")
            .index(2)
            .key("config")
            .key("timeout");
        assert_eq!(p.as_str(), "bridges[2].config.timeout");
        let h = Path::root().key("headers").key("X-Api-Key");
        assert_eq!(h.as_str(), "headers.X-Api-Key");
        let t = Path::root().key("tool_timeouts").key("fs.read");
        assert_eq!(t.as_str(), "tool_timeouts[\"fs.read\"]");
        assert_eq!(Path::root().key("").as_str(), "[\"\"]");
    }
}
