//! Errors of loading a config file: it cannot be read, it is not YAML/JSON, or it
//! is not a valid config (then every problem is listed, each with its path).
//!
//! No message ever contains the value of a secret: values are described by their
//! kind ("found a string"); only enumerated choices, sizes, and numbers where
//! a number is expected are echoed back.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use crate::format::Format;
use crate::path::Path;

/// One problem in a config document, at one place.
///
/// Displays as `path: message`, e.g. `bridges[2].config.timeout: expected a positive number`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where the problem is, e.g. `bridges[2].config.timeout`; empty for the whole document.
    pub path: String,
    /// What is wrong, e.g. `expected a positive number`.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config document, in the order they were found:
/// `${VAR}` substitution first, then the document from top to bottom (a mapping's
/// unknown keys after its known ones, the checks across bridges, duplicate names
/// and targets, after the last bridge). Displays one per line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// The errors as `path: message` lines, in order.
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl std::ops::Deref for FieldErrors {
    type Target = [FieldError];
    fn deref(&self) -> &[FieldError] {
        &self.0
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not well-formed YAML or JSON.
    #[error("config is not valid {format}: {message}")]
    Syntax {
        /// The format the text was read as.
        format: Format,
        /// The parser's message (with line and column when known).
        message: String,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// 1-based column of the error, when known.
        column: Option<usize>,
    },
    /// The document is well-formed but not a valid config: every problem, each with its path.
    #[error("invalid config ({} error{}):\n{errors}", errors.len(), if errors.len() == 1 { "" } else { "s" })]
    Invalid {
        /// All problems found.
        errors: FieldErrors,
    },
}

impl ConfigError {
    /// The problems of an [`ConfigError::Invalid`] config; empty for the other kinds.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid { errors } => errors,
            _ => &[],
        }
    }
}

/// Collects field errors while a document is walked.
///
/// A path can be *suppressed*: when `${VAR}` substitution already failed for a
/// string, the errors that the raw `${VAR}` text would then cause (an invalid
/// URL, say) are not reported a second time.
///
/// It also remembers the strings that substitution left empty, which an
/// optional key reads as absent (see [`crate::reader::Obj::raw`]).
#[derive(Debug, Default)]
pub(crate) struct Report {
    errors: Vec<FieldError>,
    suppressed: BTreeSet<Path>,
    emptied: BTreeSet<Path>,
}

impl Report {
    /// Records `message` at `path`, unless the path is suppressed.
    pub(crate) fn error(&mut self, path: &Path, message: impl Into<String>) {
        if !self.suppressed.contains(path) {
            self.errors.push(FieldError {
                path: path.as_str().to_owned(),
                message: message.into(),
            });
        }
    }

    /// Records `message` at `path` and suppresses later errors at that path.
    pub(crate) fn error_and_suppress(&mut self, path: &Path, message: impl Into<String>) {
        self.error(path, message);
        self.suppressed.insert(path.clone());
    }

    /// Notes that `${VAR}` substitution made the string at `path` empty.
    pub(crate) fn mark_emptied(&mut self, path: &Path) {
        self.emptied.insert(path.clone());
    }

    /// Whether `${VAR}` substitution made the string at `path` empty.
    pub(crate) fn was_emptied(&self, path: &Path) -> bool {
        self.emptied.contains(path)
    }

    /// Whether nothing has been recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The recorded errors.
    pub(crate) fn into_errors(self) -> FieldErrors {
        FieldErrors(self.errors)
    }
}
