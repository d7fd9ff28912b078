//! `bridges[]`: one entry per bridge, `{name, type, config, mappings}` as the
//! reference format has it. `type` picks what `config` and `mappings` may hold.

pub mod echo;
pub mod matrix;
pub mod mcp;
pub mod openai_sse;
pub mod supervision;

use serde_json::{Map, Value};

use crate::error::Report;
use crate::path::Path;
use crate::reader::Obj;
use crate::subject;
use crate::values::{non_empty, string};

use self::echo::EchoConfig;
use self::matrix::MatrixConfig;
use self::mcp::McpToolConfig;
use self::openai_sse::OpenAiSseConfig;

/// Every bridge `type` this build accepts, as written in the file.
pub const BRIDGE_TYPES: [&str; 5] = [
    "echo",
    "mcp_tool",
    "matrix_event",
    "openai_chat_sse",
    "openclaw_chat_sse",
];

/// The `mappings` keys the reference parser (`BridgeMappings`) reads for every
/// bridge, whatever its type.
pub(crate) const REFERENCE_MAPPING_KEYS: [&str; 4] =
    ["tool", "text_field", "session_field", "metadata_prefix"];

/// Accepts the keys of [`REFERENCE_MAPPING_KEYS`] that a bridge type does not
/// read (`used`): the reference takes them for every bridge, so a reference
/// config may hold them, and they change nothing.
pub(crate) fn ignore_reference_mappings(o: &mut Obj<'_, '_>, used: &[&str]) {
    for key in REFERENCE_MAPPING_KEYS {
        if !used.contains(&key) {
            o.ignore(key);
        }
    }
}

/// One entry of `bridges`.
#[derive(Clone, Debug, PartialEq)]
pub struct BridgeConfig {
    /// `name`: unique in the file; also the default target (or target prefix), so it
    /// must be a valid subject name.
    pub name: String,
    /// `type` as written, e.g. `openclaw_chat_sse` (which shares [`BridgeKind::OpenAiChatSse`]).
    pub type_name: String,
    /// `config` and `mappings`, typed by `type`.
    pub kind: BridgeKind,
}

/// What a bridge is, with its typed `config` and `mappings`.
#[derive(Clone, Debug, PartialEq)]
pub enum BridgeKind {
    /// `echo` (built in, for demos and tests).
    Echo(EchoConfig),
    /// `mcp_tool`.
    McpTool(McpToolConfig),
    /// `matrix_event`.
    MatrixEvent(MatrixConfig),
    /// `openai_chat_sse` or `openclaw_chat_sse`.
    OpenAiChatSse(OpenAiSseConfig),
}

/// A name a bridge serves on the bus.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TargetClaim {
    /// Exactly this invoke/stream target.
    Exact(String),
    /// Every target `{prefix}.{token}` with exactly one more subject token (the tools
    /// of an MCP server, whose names are each mapped to one token).
    Prefix(String),
}

impl TargetClaim {
    /// Why two claims cannot both be served, if they cannot.
    ///
    /// Two exact targets clash when equal; two prefixes when equal; an exact target
    /// clashes with a prefix when it is `{prefix}.{one token}`, since a tool of that
    /// name may appear. Nested prefixes (`tools` and `tools.fs`) do not clash: a tool
    /// name never contains a `.`.
    pub fn conflicts_with(&self, other: &TargetClaim) -> bool {
        use TargetClaim::{Exact, Prefix};
        let in_namespace = |t: &str, p: &str| {
            t.strip_prefix(p)
                .and_then(|rest| rest.strip_prefix('.'))
                .is_some_and(|tool| !tool.is_empty() && !tool.contains('.'))
        };
        match (self, other) {
            (Exact(a), Exact(b)) | (Prefix(a), Prefix(b)) => a == b,
            (Exact(t), Prefix(p)) | (Prefix(p), Exact(t)) => in_namespace(t, p),
        }
    }
}

impl BridgeConfig {
    /// The targets this bridge serves: `{target_prefix}.*` for `mcp_tool`, `{name}.send`
    /// for `matrix_event`, `mappings.target` for the SSE bridges.
    pub fn targets(&self) -> Vec<TargetClaim> {
        match &self.kind {
            BridgeKind::Echo(c) => c.mappings.targets(),
            BridgeKind::McpTool(c) => c.mappings.targets(),
            BridgeKind::MatrixEvent(_) => matrix::MatrixMappings::targets(&self.name),
            BridgeKind::OpenAiChatSse(c) => c.mappings.targets(),
        }
    }
}

/// A target claim and where in the file it comes from.
#[derive(Clone, Debug)]
pub(crate) struct Claim {
    pub(crate) target: TargetClaim,
    pub(crate) path: Path,
}

impl Claim {
    pub(crate) fn new(target: TargetClaim, path: &Path) -> Self {
        Claim {
            target,
            path: path.clone(),
        }
    }
}

/// What reading one entry gave: the bridge when it is valid, and what the checks
/// across bridges need even when it is not.
#[derive(Debug)]
pub(crate) struct BridgeRead {
    pub(crate) bridge: Option<BridgeConfig>,
    pub(crate) name: Option<String>,
    pub(crate) path: Path,
    pub(crate) claims: Vec<Claim>,
}

/// Reads one entry of `bridges`.
pub(crate) fn read_bridge(v: &Value, path: &Path, r: &mut Report) -> BridgeRead {
    let mut out = BridgeRead {
        bridge: None,
        name: None,
        path: path.clone(),
        claims: Vec::new(),
    };
    let Some(mut o) = Obj::new(v, path, r) else {
        return out;
    };
    let name = o.req("name", bridge_name);
    let type_name = o.req("type", non_empty);
    let empty = Value::Object(Map::new());
    let config = o.raw("config").unwrap_or(&empty);
    let mappings = o.raw("mappings").unwrap_or(&empty);
    if let Some(t) = type_name.as_deref().filter(|t| !BRIDGE_TYPES.contains(t)) {
        o.error(
            "type",
            format!(
                "unknown bridge type {t:?}; known types: {}",
                BRIDGE_TYPES.join(", ")
            ),
        );
    }
    o.finish();

    let n = name.as_deref();
    let (kind, claims) = match type_name.as_deref() {
        Some("echo") => {
            let (c, claims) = EchoConfig::read(n, config, mappings, path, r);
            (c.map(BridgeKind::Echo), claims)
        }
        Some("mcp_tool") => {
            let (c, claims) = McpToolConfig::read(n, config, mappings, path, r);
            (c.map(BridgeKind::McpTool), claims)
        }
        Some("matrix_event") => {
            let (c, claims) = MatrixConfig::read(n, config, mappings, path, r);
            (c.map(BridgeKind::MatrixEvent), claims)
        }
        Some(t @ ("openai_chat_sse" | "openclaw_chat_sse")) => {
            let openclaw = t == "openclaw_chat_sse";
            let (c, claims) = OpenAiSseConfig::read(n, openclaw, config, mappings, path, r);
            (c.map(BridgeKind::OpenAiChatSse), claims)
        }
        _ => (None, Vec::new()),
    };
    out.claims = claims;
    out.bridge = match (name.clone(), type_name, kind) {
        (Some(name), Some(type_name), Some(kind)) => Some(BridgeConfig {
            name,
            type_name,
            kind,
        }),
        _ => None,
    };
    out.name = name;
    out
}

/// A bridge name: a valid subject name, since it names targets.
fn bridge_name(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    let s = string(v, p, r)?;
    match subject::check_name(&s) {
        Ok(()) => Some(s),
        Err(why) => {
            r.error(
                p,
                format!("invalid bridge name: {why} (a bridge's name is part of its target names)"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TargetClaim::{Exact, Prefix};

    #[test]
    fn claims_conflict_only_where_a_target_could_clash() {
        let e = |s: &str| Exact(s.into());
        let p = |s: &str| Prefix(s.into());
        assert!(e("a.chat").conflicts_with(&e("a.chat")));
        assert!(!e("a.chat").conflicts_with(&e("a.chat2")));
        assert!(p("fs").conflicts_with(&p("fs")));
        assert!(!p("fs").conflicts_with(&p("fs.extra")));
        assert!(p("fs").conflicts_with(&e("fs.read")));
        assert!(e("fs.read").conflicts_with(&p("fs")));
        assert!(!e("fs").conflicts_with(&p("fs")));
        assert!(!e("fs.a.b").conflicts_with(&p("fs")));
        assert!(!e("fsx.read").conflicts_with(&p("fs")));
    }
}
