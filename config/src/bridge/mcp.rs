//! `type: mcp_tool`: the tools of an MCP server (a stdio child process or a
//! Streamable HTTP endpoint) become invoke targets `{target_prefix}.{tool}`.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::{Claim, TargetClaim, ignore_reference_mappings, supervision::SupervisionConfig};
use crate::error::Report;
use crate::glob::Glob;
use crate::path::Path;
use crate::reader::Obj;
use crate::secret::Secret;
use crate::values::{
    Choice, Sign, any_name, choice, duration, env_name, env_value, file_path, glob, header_name,
    header_secret, header_value, list, map, non_empty, string, subject_name, url,
};

/// The default `config.timeout` of a tool call: 10 s, as the reference.
pub const DEFAULT_MCP_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `config.connect_timeout` of an `mcp_tool` bridge.
pub const DEFAULT_MCP_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An `mcp_tool` bridge.
#[derive(Clone, Debug, PartialEq)]
pub struct McpToolConfig {
    /// Its `config`.
    pub config: McpToolSettings,
    /// Its `mappings`.
    pub mappings: McpToolMappings,
}

/// `config` of an `mcp_tool` bridge.
///
/// `transport: stdio` needs `command` (and may set `args`, `env`, `cwd`);
/// `transport: streamable_http` needs `http_url` (and may set `headers`, `token`).
/// The other transport's keys are ignored, as the reference ignores them
/// (they are left `None` or empty here), except `cwd`, which is not the
/// reference's: it is refused with `streamable_http`.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    extend("allOf" = [{
        "if": { "properties": { "transport": { "const": "streamable_http" } }, "required": ["transport"] },
        "then": { "required": ["http_url"] },
        "else": { "required": ["command"] }
    }])
)]
pub struct McpToolSettings {
    /// How to reach the server: `stdio` (a child process) or `streamable_http`.
    #[schemars(default = "McpTransport::default")]
    pub transport: McpTransport,
    /// stdio: the program to run.
    pub command: Option<String>,
    /// stdio: its arguments.
    #[schemars(default)]
    pub args: Vec<String>,
    /// stdio: extra environment variables of the child process (values kept secret).
    #[schemars(default)]
    pub env: BTreeMap<String, Secret>,
    /// stdio: the working directory of the child process; the service's when absent.
    pub cwd: Option<PathBuf>,
    /// streamable_http: the endpoint, e.g. `http://localhost:8000/mcp`.
    pub http_url: Option<Url>,
    /// streamable_http: extra request headers (values kept secret).
    #[schemars(default)]
    pub headers: BTreeMap<String, Secret>,
    /// streamable_http: a bearer token sent as `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// The deadline of one tool call.
    #[schemars(default = "default_timeout", with = "crate::schema::PositiveDuration")]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub timeout: Duration,
    /// How long starting the server, its handshake and listing its tools may
    /// take before the attempt fails (and is retried under `supervision`).
    #[schemars(
        default = "default_connect_timeout",
        with = "crate::schema::PositiveDuration"
    )]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub connect_timeout: Duration,
    /// Per-tool deadlines that override `timeout`, by the tool's name as the server gives it.
    #[schemars(default, with = "BTreeMap<String, crate::schema::PositiveDuration>")]
    pub tool_timeouts: BTreeMap<String, Duration>,
    /// Globs of tool names to expose; all tools when empty.
    #[schemars(default)]
    pub include: Vec<Glob>,
    /// Globs of tool names not to expose (applied after `include`).
    #[schemars(default)]
    pub exclude: Vec<Glob>,
    /// How a dead upstream is reconnected or respawned.
    #[schemars(default)]
    pub supervision: SupervisionConfig,
}

fn default_connect_timeout() -> Duration {
    DEFAULT_MCP_CONNECT_TIMEOUT
}

fn default_timeout() -> Duration {
    DEFAULT_MCP_TIMEOUT
}

/// The transport of an MCP upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = crate::schema::any_case)]
pub enum McpTransport {
    /// A child process speaking JSON-RPC on stdin/stdout.
    #[default]
    Stdio,
    /// MCP Streamable HTTP.
    StreamableHttp,
}

impl McpTransport {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            McpTransport::Stdio => "stdio",
            McpTransport::StreamableHttp => "streamable_http",
        }
    }
}

impl Choice for McpTransport {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("stdio", McpTransport::Stdio),
        ("streamable_http", McpTransport::StreamableHttp),
    ];
}

/// The upstream of an `mcp_tool` bridge, with what its transport needs.
#[derive(Clone, Copy, Debug)]
pub enum McpUpstream<'a> {
    /// A child process.
    Stdio {
        /// The program.
        command: &'a str,
        /// Its arguments.
        args: &'a [String],
        /// Extra environment variables.
        env: &'a BTreeMap<String, Secret>,
        /// The working directory, when set.
        cwd: Option<&'a FsPath>,
    },
    /// A Streamable HTTP endpoint.
    StreamableHttp {
        /// The endpoint.
        url: &'a Url,
        /// Extra headers.
        headers: &'a BTreeMap<String, Secret>,
        /// The bearer token, when set.
        token: Option<&'a Secret>,
    },
}

impl McpToolSettings {
    /// The upstream to connect to. `None` only for settings built by hand without
    /// the key their transport needs (a loaded config always has it).
    pub fn upstream(&self) -> Option<McpUpstream<'_>> {
        Some(match self.transport {
            McpTransport::Stdio => McpUpstream::Stdio {
                command: self.command.as_deref()?,
                args: &self.args,
                env: &self.env,
                cwd: self.cwd.as_deref(),
            },
            McpTransport::StreamableHttp => McpUpstream::StreamableHttp {
                url: self.http_url.as_ref()?,
                headers: &self.headers,
                token: self.token.as_ref(),
            },
        })
    }

    /// The deadline of a call to `tool`: its `tool_timeouts` entry, else `timeout`.
    pub fn timeout_for(&self, tool: &str) -> Duration {
        self.tool_timeouts
            .get(tool)
            .copied()
            .unwrap_or(self.timeout)
    }

    /// Whether `tool` is exposed: it matches `include` (or `include` is empty) and no `exclude`.
    pub fn exposes(&self, tool: &str) -> bool {
        (self.include.is_empty() || Glob::any_matches(&self.include, tool))
            && !Glob::any_matches(&self.exclude, tool)
    }
}

/// `mappings` of an `mcp_tool` bridge. The reference's generic keys are
/// accepted too: `text_field` only as `text`, the others ignored.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    transform = crate::schema::add_mcp_text_field,
    transform = crate::schema::add_reference_mapping_keys
)]
pub struct McpToolMappings {
    /// The prefix of the targets: tool `read_file` becomes `{target_prefix}.read_file`.
    /// The bridge's name when absent. Tool names are mapped to one subject token each,
    /// so the targets of a prefix are exactly `{target_prefix}.<one token>`.
    #[schemars(with = "Option<String>")]
    pub target_prefix: String,
}

impl McpToolMappings {
    /// What the bridge serves: every `{target_prefix}.{tool}`.
    pub(crate) fn targets(&self) -> Vec<TargetClaim> {
        vec![TargetClaim::Prefix(self.target_prefix.clone())]
    }
}

impl McpToolConfig {
    /// Reads `config` and `mappings` of the bridge at `path`.
    pub(crate) fn read(
        name: Option<&str>,
        config: &Value,
        mappings: &Value,
        path: &Path,
        r: &mut Report,
    ) -> (Option<Self>, Vec<Claim>) {
        let (mappings, claims) = read_mappings(name, mappings, path, r);
        let config = read_settings(config, &path.key("config"), r);
        let out = match (config, mappings) {
            (Some(config), Some(mappings)) => Some(McpToolConfig { config, mappings }),
            _ => None,
        };
        (out, claims)
    }
}

fn read_mappings(
    name: Option<&str>,
    v: &Value,
    bridge: &Path,
    r: &mut Report,
) -> (Option<McpToolMappings>, Vec<Claim>) {
    let Some(mut o) = Obj::new(v, &bridge.key("mappings"), r) else {
        return (None, Vec::new());
    };
    let given = o.has("target_prefix");
    let prefix = o.opt("target_prefix", subject_name);
    let at = if given {
        o.path_of("target_prefix")
    } else {
        bridge.key("name")
    };
    let _ = o.opt("text_field", reference_text_field);
    ignore_reference_mappings(&mut o, &["text_field"]);
    o.finish();
    let prefix = match (given, prefix, name) {
        (true, Some(p), _) => p,
        (false, _, Some(n)) => n.to_owned(),
        _ => return (None, Vec::new()),
    };
    let m = McpToolMappings {
        target_prefix: prefix,
    };
    let claims = m
        .targets()
        .into_iter()
        .map(|t| Claim::new(t, &at))
        .collect();
    (Some(m), claims)
}

/// `mappings.text_field`: the reference gives a tool's answer its top-level
/// `text` (the one text item) only when this is `text`, its default, and this
/// bridge always does; another value, which would leave it out, is refused
/// rather than ignored.
fn reference_text_field(v: &Value, p: &Path, r: &mut Report) -> Option<()> {
    let s = string(v, p, r)?;
    if s.is_empty() || s == "text" {
        return Some(());
    }
    r.error(
        p,
        format!(
            "{s:?} is not supported: an `mcp_tool` answer always has its top-level `text` \
             (as the reference's default \"text\" does); leave `text_field` out"
        ),
    );
    None
}

fn read_settings(v: &Value, p: &Path, r: &mut Report) -> Option<McpToolSettings> {
    let mut o = Obj::new(v, p, r)?;
    let transport = o.opt("transport", choice::<McpTransport>);
    let transport_bad = o.has("transport") && transport.is_none();
    let transport = transport.unwrap_or_default();
    // The reference reads only its transport's keys and ignores the other
    // transport's (a leftover `http_url` under stdio, say): so do we, leaving
    // them unread. `cwd` is ours, not the reference's: given with
    // `streamable_http`, it is refused below.
    let ignored: &[&'static str] = match (transport_bad, transport) {
        (true, _) => &[],
        (false, McpTransport::Stdio) => &["http_url", "headers", "token"],
        (false, McpTransport::StreamableHttp) => &["command", "args", "env"],
    };
    for key in ignored {
        o.ignore(key);
    }
    let read = |key: &str| !ignored.contains(&key);
    let pos = duration(Sign::Positive);
    let s = McpToolSettings {
        transport,
        command: read("command")
            .then(|| o.opt("command", non_empty))
            .flatten(),
        args: if read("args") {
            o.or("args", Vec::new(), list(string))
        } else {
            Vec::new()
        },
        env: if read("env") {
            o.or("env", BTreeMap::new(), map(env_name, env_value))
        } else {
            BTreeMap::new()
        },
        cwd: o.opt("cwd", file_path),
        http_url: read("http_url")
            .then(|| o.opt("http_url", url(&["http", "https"])))
            .flatten(),
        headers: if read("headers") {
            o.or("headers", BTreeMap::new(), map(header_name, header_value))
        } else {
            BTreeMap::new()
        },
        token: read("token")
            .then(|| o.opt("token", header_secret))
            .flatten(),
        timeout: o.or("timeout", DEFAULT_MCP_TIMEOUT, &pos),
        connect_timeout: o.or("connect_timeout", DEFAULT_MCP_CONNECT_TIMEOUT, &pos),
        tool_timeouts: o.or("tool_timeouts", BTreeMap::new(), map(any_name, &pos)),
        include: o.or("include", Vec::new(), list(glob)),
        exclude: o.or("exclude", Vec::new(), list(glob)),
        supervision: o
            .opt(
                "supervision",
                SupervisionConfig::reader_with(SupervisionConfig::default()),
            )
            .unwrap_or_default(),
    };
    if !transport_bad {
        let (needed, other, foreign): (&'static str, McpTransport, &[&'static str]) =
            match transport {
                McpTransport::Stdio => ("command", McpTransport::StreamableHttp, &[]),
                McpTransport::StreamableHttp => ("http_url", McpTransport::Stdio, &["cwd"]),
            };
        if !o.has(needed) {
            o.error(
                needed,
                format!(
                    "missing required key (transport `{}` needs it)",
                    transport.as_str()
                ),
            );
        }
        for key in foreign {
            if o.has(key) {
                o.error(
                    key,
                    format!("only used with transport `{}`", other.as_str()),
                );
            }
        }
    }
    o.finish();
    Some(s)
}
