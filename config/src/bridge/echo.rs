//! `type: echo`: a built-in demo target that answers with its payload and streams
//! the payload's `text` back word by word. Needs nothing installed.

use std::time::Duration;

use schemars::JsonSchema;
use serde_json::Value;

use super::{Claim, TargetClaim, ignore_reference_mappings};
use crate::error::Report;
use crate::path::Path;
use crate::reader::Obj;
use crate::values::{Sign, duration, subject_name};

/// The default `config.word_delay`: 50 ms.
pub const DEFAULT_WORD_DELAY: Duration = Duration::from_millis(50);

/// An `echo` bridge.
#[derive(Clone, Debug, PartialEq)]
pub struct EchoConfig {
    /// Its `config`.
    pub config: EchoSettings,
    /// Its `mappings`.
    pub mappings: EchoMappings,
}

/// `config` of an `echo` bridge. Every key is optional.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct EchoSettings {
    /// The pause between streamed words (`0` streams at once).
    #[schemars(
        default = "default_word_delay",
        with = "crate::schema::NonNegativeDuration"
    )]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub word_delay: Duration,
}

fn default_word_delay() -> Duration {
    DEFAULT_WORD_DELAY
}

/// `mappings` of an `echo` bridge. Every key is optional; the reference's
/// generic keys (`tool`, `text_field`, ...) are accepted and ignored.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields, transform = crate::schema::add_reference_mapping_keys)]
pub struct EchoMappings {
    /// The target it serves; the bridge's name when absent.
    #[schemars(with = "Option<String>")]
    pub target: String,
}

impl EchoMappings {
    pub(crate) fn targets(&self) -> Vec<TargetClaim> {
        vec![TargetClaim::Exact(self.target.clone())]
    }
}

impl EchoConfig {
    /// Reads `config` and `mappings` of the bridge at `path`.
    pub(crate) fn read(
        name: Option<&str>,
        config: &Value,
        mappings: &Value,
        path: &Path,
        r: &mut Report,
    ) -> (Option<Self>, Vec<Claim>) {
        let mut claims = Vec::new();
        let mappings = Obj::new(mappings, &path.key("mappings"), r).and_then(|mut o| {
            let given = o.has("target");
            let at = if given {
                o.path_of("target")
            } else {
                path.key("name")
            };
            let target = o.opt("target", subject_name);
            ignore_reference_mappings(&mut o, &[]);
            o.finish();
            let target = if given { target? } else { name?.to_owned() };
            let m = EchoMappings { target };
            claims = m
                .targets()
                .into_iter()
                .map(|t| Claim::new(t, &at))
                .collect();
            Some(m)
        });
        let config = Obj::new(config, &path.key("config"), r).map(|mut o| {
            let word_delay = o.or(
                "word_delay",
                DEFAULT_WORD_DELAY,
                duration(Sign::NonNegative),
            );
            o.finish();
            EchoSettings { word_delay }
        });
        let out = match (config, mappings) {
            (Some(config), Some(mappings)) => Some(EchoConfig { config, mappings }),
            _ => None,
        };
        (out, claims)
    }
}
