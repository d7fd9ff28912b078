//! [`Config`]: the whole file, and how its top level is read.

use schemars::JsonSchema;
use serde_json::Value;

use crate::bridge::{BridgeConfig, read_bridge};
use crate::bus::BusConfig;
use crate::error::Report;
use crate::http::HttpConfig;
use crate::path::Path;
use crate::reader::Obj;
use crate::shutdown::ShutdownConfig;
use crate::telemetry::TelemetryConfig;
use crate::validate;
use crate::values::expected;

/// The one `version` this crate reads: `openagentio.bridge/v1`, as the reference.
pub const CONFIG_VERSION: &str = "openagentio.bridge/v1";

/// A whole config file: the reference's `version` and `bridges`, plus this
/// service's own optional sections.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields, title = "OpenAgentIO config")]
pub struct Config {
    /// The format version; must be `openagentio.bridge/v1`.
    #[schemars(extend("const" = CONFIG_VERSION))]
    pub version: String,
    /// The runtime bus and its transport.
    #[schemars(default)]
    pub bus: BusConfig,
    /// The HTTP/SSE gateway.
    #[schemars(default)]
    pub http: HttpConfig,
    /// Logs, traces and metrics.
    #[schemars(default)]
    pub telemetry: TelemetryConfig,
    /// How the service stops.
    #[schemars(default)]
    pub shutdown: ShutdownConfig,
    /// The bridges, started in this order.
    #[schemars(default)]
    pub bridges: Vec<BridgeConfig>,
}

impl Config {
    /// Reads a document (after `${VAR}` substitution); every problem goes to `r`.
    pub(crate) fn read(root: &Value, r: &mut Report) -> Option<Config> {
        let mut o = Obj::new(root, &Path::root(), r)?;
        let version = o.req("version", version);
        let bus = o.opt("bus", BusConfig::read).unwrap_or_default();
        let http = o.opt("http", HttpConfig::read).unwrap_or_default();
        let telemetry = o
            .opt("telemetry", TelemetryConfig::read)
            .unwrap_or_default();
        let shutdown = o.opt("shutdown", ShutdownConfig::read).unwrap_or_default();
        let bridges = if o.has("bridges") {
            o.opt("bridges", read_bridges)
        } else {
            Some(Vec::new())
        };
        o.finish();
        Some(Config {
            version: version?,
            bus,
            http,
            telemetry,
            shutdown,
            bridges: bridges?,
        })
    }
}

fn version(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    match v.as_str() {
        Some(s) if s == CONFIG_VERSION => Some(s.to_owned()),
        // `version: 1` and the like: say what to write, not only the type.
        _ => {
            let found = match v {
                Value::String(s) => format!("{s:?}"),
                other => other.to_string(),
            };
            r.error(
                p,
                format!("unsupported version {found}; expected {CONFIG_VERSION:?}"),
            );
            None
        }
    }
}

/// Reads every entry, then checks names and targets across them.
fn read_bridges(v: &Value, p: &Path, r: &mut Report) -> Option<Vec<BridgeConfig>> {
    let Value::Array(items) = v else {
        return expected(v, p, r, "a list of bridges");
    };
    let reads: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(i, item)| read_bridge(item, &p.index(i), r))
        .collect();
    validate::check_bridges(&reads, r);
    reads.into_iter().map(|b| b.bridge).collect()
}
