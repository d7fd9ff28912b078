//! `telemetry`: logs, traces and metrics.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use crate::error::Report;
use crate::path::Path;
use crate::reader::Obj;
use crate::values::{Choice, boolean, choice, non_empty, url};

/// `telemetry`: logs, traces and metrics. Every key is optional.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The log filter: a level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or
    /// `tracing` directives such as `info,openagentio=debug`.
    pub log_level: String,
    /// How log lines are written: `text` (coloured on a terminal only, never
    /// with `NO_COLOR` set) or `json`.
    pub log_format: LogFormat,
    /// Where OpenTelemetry traces are exported over OTLP/HTTP (`http` or `https`);
    /// no export when absent.
    pub otlp_endpoint: Option<Url>,
    /// Whether call metrics are kept and served at `/metrics`.
    pub metrics: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_level: "info".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            metrics: true,
        }
    }
}

/// The format of log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = crate::schema::any_case)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Choice for LogFormat {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("text", LogFormat::Text), ("json", LogFormat::Json)];
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl TelemetryConfig {
    pub(crate) fn read(v: &Value, p: &Path, r: &mut Report) -> Option<Self> {
        let d = TelemetryConfig::default();
        let mut o = Obj::new(v, p, r)?;
        let config = TelemetryConfig {
            log_level: o.or("log_level", d.log_level, log_filter),
            log_format: o.or("log_format", d.log_format, choice::<LogFormat>),
            otlp_endpoint: o.opt("otlp_endpoint", url(&["http", "https"])),
            metrics: o.or("metrics", d.metrics, boolean),
        };
        o.finish();
        Some(config)
    }
}

/// A level, or `tracing` filter directives (`target=level`, comma-separated).
fn log_filter(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    let s = non_empty(v, p, r)?;
    let level_ok = |l: &str| LEVELS.iter().any(|x| x.eq_ignore_ascii_case(l.trim()));
    let ok = s.split(',').all(|d| match d.rsplit_once('=') {
        Some((target, level)) => !target.trim().is_empty() && level_ok(level),
        None => level_ok(d) || (!d.trim().is_empty() && !d.contains(char::is_whitespace)),
    });
    // A single word must be a level: `inf` is a typo, not a target.
    let single_word_ok = s.contains(['=', ',']) || level_ok(&s);
    if ok && single_word_ok {
        Some(s)
    } else {
        r.error(
            p,
            format!(
                "expected a level ({}) or directives like \"info,openagentio=debug\"",
                LEVELS.join(", ")
            ),
        );
        None
    }
}
