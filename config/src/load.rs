//! Entry points: a file, a string or a parsed value becomes a [`Config`], or a
//! [`ConfigError`] that lists every problem.
//!
//! The steps: parse (YAML or JSON) into one value tree; substitute `${VAR}` in
//! string values; read and validate the tree, collecting every error with its
//! path. Nothing here does network I/O; files named in the config (TLS keys,
//! credentials) are not opened.

use std::path::Path as FsPath;

use serde_json::Value;

use crate::config::Config;
use crate::env_subst::{EnvLookup, substitute_tree};
use crate::error::{ConfigError, Report};
use crate::format::Format;
use crate::path::Path;

/// The process environment, as an [`EnvLookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads a config file; `.json` is read as JSON, anything else as YAML. `${VAR}`
/// reads the process environment.
pub fn load_file(path: impl AsRef<FsPath>) -> Result<Config, ConfigError> {
    load_file_with_env(path, &process_env)
}

/// [`load_file`] with another environment.
pub fn load_file_with_env(
    path: impl AsRef<FsPath>,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    load_with_env(&text, Format::from_path(path), env)
}

/// Loads a config from text. `${VAR}` reads the process environment.
///
/// ```
/// use openagentio_config::{Format, from_str};
/// let cfg = from_str(r#"
/// version: "openagentio.bridge/v1"
/// bridges:
///   - name: "mcp-fs"
///     type: "mcp_tool"
///     config: { transport: stdio, command: npx, args: ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], timeout: 10 }
///     mappings: { target_prefix: "mcp-fs" }
/// "#, Format::Yaml).unwrap();
/// assert_eq!(cfg.bridges[0].name, "mcp-fs");
/// ```
pub fn from_str(text: &str, format: Format) -> Result<Config, ConfigError> {
    load_with_env(text, format, &process_env)
}

/// Loads a config from text, looking variables up with `env`.
///
/// ```
/// use openagentio_config::{BridgeKind, Format, load_with_env};
/// let env = |name: &str| (name == "BASE").then(|| "http://127.0.0.1:8000/v1".to_string());
/// let cfg = load_with_env(r#"
/// version: "openagentio.bridge/v1"
/// bridges:
///   - name: chat
///     type: openai_chat_sse
///     config: { base_url: "${BASE}", model: "${MODEL:-qwen}", timeout: "2m" }
/// "#, Format::Yaml, &env).unwrap();
/// let BridgeKind::OpenAiChatSse(sse) = &cfg.bridges[0].kind else { unreachable!() };
/// assert_eq!(sse.config.base_url.as_str(), "http://127.0.0.1:8000/v1");
/// assert_eq!(sse.config.model, "qwen");
/// ```
pub fn load_with_env(
    text: &str,
    format: Format,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    from_value(format.parse(text)?, env)
}

/// Loads a config from an already parsed value tree, looking variables up with `env`.
pub fn from_value(mut value: Value, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    let mut report = Report::default();
    substitute_tree(&mut value, &Path::root(), env, &mut report);
    let config = Config::read(&value, &mut report);
    match config {
        Some(config) if report.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid {
            errors: report.into_errors(),
        }),
    }
}
