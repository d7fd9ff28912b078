//! The runtime configuration of one MCP bridge.
//!
//! This is plain Rust: the service host maps the config file (reference keys
//! `transport`, `command`, `args`, `env`, `http_url`, `headers`, `token`,
//! `timeout`, `mappings.target_prefix`) onto it. [`McpConfig::validate`] checks
//! what the type cannot.
//!
//! Secrets (the bearer token and every header value) never appear in `Debug`
//! output, logs or error text.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use openagentio_core::subject::check_name;
use openagentio_core::supervisor::RestartPolicy;

/// The default per-call timeout: 10 s, the reference bridge's `timeout` default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default time allowed to start the server and finish the handshake and
/// the first `tools/list`: 30 s, the config file's default too (enough for
/// `npx -y` to fetch a small server first; set more for a large one).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How the bridge reaches its MCP server.
#[derive(Clone, PartialEq, Eq)]
pub enum McpTransport {
    /// Spawn the server as a child process and speak JSON-RPC over its stdin and
    /// stdout (reference `transport: stdio`). Its stderr goes to our log.
    Stdio {
        /// The program to run (looked up on `PATH`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables added to the environment it inherits.
        env: BTreeMap<String, String>,
        /// Its working directory (default: ours).
        cwd: Option<PathBuf>,
    },
    /// Connect to a Streamable HTTP endpoint (reference `transport: streamable_http`).
    StreamableHttp {
        /// The endpoint, e.g. `http://127.0.0.1:3001/mcp` (reference `http_url`).
        url: String,
        /// Headers sent with every request. Values are treated as secrets.
        headers: BTreeMap<String, String>,
        /// Sent as `Authorization: Bearer <token>`; replaces an `Authorization` header.
        token: Option<String>,
    },
}

impl McpTransport {
    /// A stdio transport running `command` with `args`.
    pub fn stdio<I, S>(command: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        McpTransport::Stdio {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: BTreeMap::new(),
            cwd: None,
        }
    }

    /// A Streamable HTTP transport to `url`, with no headers and no token.
    pub fn streamable_http(url: impl Into<String>) -> Self {
        McpTransport::StreamableHttp {
            url: url.into(),
            headers: BTreeMap::new(),
            token: None,
        }
    }

    /// The reference name of the transport (`stdio` or `streamable_http`).
    pub fn kind(&self) -> &'static str {
        match self {
            McpTransport::Stdio { .. } => "stdio",
            McpTransport::StreamableHttp { .. } => "streamable_http",
        }
    }

    /// The secret strings of this transport (token, header values), for redaction.
    pub(crate) fn secrets(&self) -> Vec<String> {
        match self {
            McpTransport::Stdio { .. } => Vec::new(),
            McpTransport::StreamableHttp { headers, token, .. } => headers
                .values()
                .cloned()
                .chain(token.iter().cloned())
                .collect(),
        }
    }
}

impl fmt::Debug for McpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            McpTransport::Stdio {
                command,
                args,
                env,
                cwd,
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                // Environment values may hold credentials: show the names only.
                .field("env", &env.keys().collect::<Vec<_>>())
                .field("cwd", cwd)
                .finish(),
            McpTransport::StreamableHttp {
                url,
                headers,
                token,
            } => f
                .debug_struct("StreamableHttp")
                .field("url", url)
                .field(
                    "headers",
                    &headers
                        .keys()
                        .map(|k| (k.as_str(), "[REDACTED]"))
                        .collect::<BTreeMap<_, _>>(),
                )
                .field("token", &token.as_ref().map(|_| "[REDACTED]"))
                .finish(),
        }
    }
}

/// The configuration of one MCP bridge.
///
/// ```
/// use std::time::Duration;
/// use openagentio_mcp::{McpConfig, McpTransport};
/// let mut cfg = McpConfig::new(McpTransport::stdio("npx", ["-y", "@modelcontextprotocol/server-everything"]));
/// cfg.timeout = Duration::from_secs(5);
/// cfg.exclude = vec!["trigger-*".into()];
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct McpConfig {
    /// How to reach the server.
    pub transport: McpTransport,
    /// Targets are `{target_prefix}.{tool}`; empty means the bridge name
    /// (reference `mappings.target_prefix`).
    pub target_prefix: String,
    /// Time allowed for one tool call (reference `timeout`, seconds; default 10 s).
    pub timeout: Duration,
    /// Per-tool overrides of `timeout`, by the tool's MCP name.
    pub tool_timeouts: BTreeMap<String, Duration>,
    /// Time allowed to connect: spawn or reach the server, the handshake and
    /// the first full `tools/list` (default 30 s).
    pub connect_timeout: Duration,
    /// Glob patterns of MCP tool names to expose; empty exposes every tool.
    pub include: Vec<String>,
    /// Glob patterns of MCP tool names to hide (applied after `include`).
    pub exclude: Vec<String>,
    /// How to reconnect (or respawn) after the connection is lost.
    pub restart: RestartPolicy,
}

impl McpConfig {
    /// A configuration with `transport` and every other field at its default.
    pub fn new(transport: McpTransport) -> Self {
        McpConfig {
            transport,
            target_prefix: String::new(),
            timeout: DEFAULT_TIMEOUT,
            tool_timeouts: BTreeMap::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            include: Vec::new(),
            exclude: Vec::new(),
            // Rides out outages and crashes: the backoff (1 s to 30 s)
            // never makes 10 restarts a minute.
            restart: RestartPolicy {
                max_restarts: 10,
                window: Duration::from_secs(60),
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(30),
            },
        }
    }

    /// The timeout of a call to `tool` (its MCP name).
    pub fn timeout_for(&self, tool: &str) -> Duration {
        self.tool_timeouts
            .get(tool)
            .copied()
            .unwrap_or(self.timeout)
    }

    /// The target prefix in force for a bridge named `bridge`.
    pub fn prefix_for<'a>(&'a self, bridge: &'a str) -> &'a str {
        if self.target_prefix.is_empty() {
            bridge
        } else {
            &self.target_prefix
        }
    }

    /// Checks what the types cannot: non-empty command or URL, an `http(s)`
    /// URL, header names and values, positive timeouts, a prefix usable in a
    /// subject, and the globs. Returns every problem found, each naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        match &self.transport {
            McpTransport::Stdio { command, .. } => {
                if command.trim().is_empty() {
                    problems.push(Problem::new("command", "is required for transport stdio"));
                }
            }
            McpTransport::StreamableHttp {
                url,
                headers,
                token,
            } => {
                if url.trim().is_empty() {
                    problems.push(Problem::new(
                        "http_url",
                        "is required for transport streamable_http",
                    ));
                } else if !(url.starts_with("http://") || url.starts_with("https://")) {
                    problems.push(Problem::new(
                        "http_url",
                        "must be an http:// or https:// URL",
                    ));
                }
                for (name, value) in headers {
                    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                        problems.push(Problem::new(
                            format!("headers.{name}"),
                            "is not a valid header name",
                        ));
                    }
                    if http::HeaderValue::from_str(value).is_err() {
                        // Never echo the value: it may be a credential.
                        problems.push(Problem::new(
                            format!("headers.{name}"),
                            "value is not a valid header value",
                        ));
                    }
                }
                if let Some(t) = token {
                    if t.is_empty() {
                        problems.push(Problem::new("token", "must be a non-empty string"));
                    } else if http::HeaderValue::from_str(t).is_err() {
                        problems.push(Problem::new("token", "is not a valid header value"));
                    }
                }
            }
        }
        if self.timeout.is_zero() {
            problems.push(Problem::new("timeout", "must be positive"));
        }
        if self.connect_timeout.is_zero() {
            problems.push(Problem::new("connect_timeout", "must be positive"));
        }
        for (tool, d) in &self.tool_timeouts {
            if d.is_zero() {
                problems.push(Problem::new(
                    format!("tool_timeouts.{tool}"),
                    "must be positive",
                ));
            }
        }
        if !self.target_prefix.is_empty()
            && let Err(e) = check_name("target prefix", &self.target_prefix, false)
        {
            problems.push(Problem::new("mappings.target_prefix", e.to_string()));
        }
        for (key, globs) in [("include", &self.include), ("exclude", &self.exclude)] {
            for (i, g) in globs.iter().enumerate() {
                if let Err(e) = globset::Glob::new(g) {
                    problems.push(Problem::new(format!("{key}[{i}]"), e.kind().to_string()));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// One problem in a configuration: the key and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The config key (reference spelling, e.g. `http_url`, `headers.X-Api-Key`).
    pub key: String,
    /// What is wrong (never holds a secret value).
    pub message: String,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in an MCP bridge configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid mcp_tool config: {}", self.problems.iter().map(|p| format!("{}: {}", p.key, p.message)).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// The problems, in the order found.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    pub(crate) fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem::new(key, message)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(token: Option<&str>) -> McpConfig {
        let mut headers = BTreeMap::new();
        headers.insert("X-Api-Key".to_owned(), "hunter2-key".to_owned());
        McpConfig::new(McpTransport::StreamableHttp {
            url: "http://127.0.0.1:1/mcp".into(),
            headers,
            token: token.map(str::to_owned),
        })
    }

    #[test]
    fn debug_hides_token_and_header_values() {
        let cfg = http(Some("s3cret-token"));
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cret-token"), "{dbg}");
        assert!(!dbg.contains("hunter2-key"), "{dbg}");
        assert!(dbg.contains("X-Api-Key"));
    }

    #[test]
    fn validate_collects_every_problem() {
        let mut cfg = McpConfig::new(McpTransport::StreamableHttp {
            url: "ftp://x".into(),
            headers: BTreeMap::from([("bad name".to_owned(), "v".to_owned())]),
            token: Some(String::new()),
        });
        cfg.timeout = Duration::ZERO;
        cfg.target_prefix = "has space".into();
        cfg.include = vec!["[".into()];
        let err = cfg.validate().unwrap_err();
        let keys: Vec<_> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "http_url",
                "headers.bad name",
                "token",
                "timeout",
                "mappings.target_prefix",
                "include[0]"
            ]
        );
    }

    #[test]
    fn defaults_follow_the_reference() {
        let cfg = McpConfig::new(McpTransport::stdio("x", Vec::<String>::new()));
        assert_eq!(cfg.timeout, Duration::from_secs(10));
        assert_eq!(cfg.prefix_for("mcp-fs"), "mcp-fs");
        assert!(cfg.validate().is_ok());
        let empty = McpConfig::new(McpTransport::stdio(" ", Vec::<String>::new()));
        assert_eq!(empty.validate().unwrap_err().problems[0].key, "command");
    }
}
