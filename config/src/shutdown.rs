//! `shutdown`: how the service stops.

use std::time::Duration;

use schemars::JsonSchema;
use serde_json::Value;

use crate::error::Report;
use crate::path::Path;
use crate::reader::Obj;
use crate::values::{Sign, duration};

/// `shutdown`: how the service stops on SIGINT/SIGTERM. Every key is optional.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long calls in flight may finish after intake stops (`0` cancels them at once).
    #[schemars(with = "crate::schema::NonNegativeDuration")]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl ShutdownConfig {
    pub(crate) fn read(v: &Value, p: &Path, r: &mut Report) -> Option<Self> {
        let d = ShutdownConfig::default();
        let mut o = Obj::new(v, p, r)?;
        let config = ShutdownConfig {
            drain_timeout: o.or(
                "drain_timeout",
                d.drain_timeout,
                duration(Sign::NonNegative),
            ),
        };
        o.finish();
        Some(config)
    }
}
