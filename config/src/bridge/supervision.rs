//! `config.supervision` of a bridge with background work (MCP upstreams, Matrix
//! sync): how the host restarts it. The keys are the reference SDK's.

use std::time::Duration;

use schemars::JsonSchema;
use serde_json::Value;

use crate::error::Report;
use crate::path::Path;
use crate::reader::Obj;
use crate::values::{Parser, Sign, boolean, duration, whole};

/// How a bridge's background work is restarted after it fails. Every key is optional.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct SupervisionConfig {
    /// Restarts allowed within `restart_window_seconds`; one more marks the bridge unhealthy.
    pub max_restarts: u32,
    /// The window in which restarts are counted.
    #[schemars(
        rename = "restart_window_seconds",
        with = "crate::schema::PositiveDuration"
    )]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub restart_window: Duration,
    /// The first backoff delay, doubled on each restart (Matrix: `reconnect_delay` by default).
    #[schemars(
        rename = "base_delay_seconds",
        with = "crate::schema::PositiveDuration"
    )]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub base_delay: Duration,
    /// The longest backoff delay (Matrix: 5 minutes).
    #[schemars(rename = "max_delay_seconds", with = "crate::schema::PositiveDuration")]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub max_delay: Duration,
    /// Whether delays are randomised so that many bridges do not retry in step.
    #[schemars(rename = "jitter_enabled")]
    pub jitter: bool,
    /// Consecutive failures after which the bridge reports itself degraded.
    pub health_failure_threshold: u32,
}

/// The defaults ride out outages and crashes: at most 10 restarts a minute,
/// backing off from 1 s to 30 s, which never reaches that; a server that
/// comes back is served again within 30 s (MCP connections; Matrix changes
/// the delays: from `reconnect_delay` up to 5 minutes).
impl Default for SupervisionConfig {
    fn default() -> Self {
        SupervisionConfig {
            max_restarts: 10,
            restart_window: Duration::from_secs(60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            jitter: true,
            health_failure_threshold: 3,
        }
    }
}

impl SupervisionConfig {
    /// The defaults of a Matrix bridge's sync loop: it rides out homeserver
    /// outages (at most 10 restarts a minute, backing off from
    /// `reconnect_delay` to 5 minutes, which its backoff never reaches).
    pub(crate) fn for_matrix(reconnect_delay: Duration) -> Self {
        SupervisionConfig {
            base_delay: reconnect_delay,
            max_delay: reconnect_delay.max(Duration::from_secs(300)),
            ..SupervisionConfig::default()
        }
    }

    /// A reader whose keys default to those of `d`.
    pub(crate) fn reader_with(d: SupervisionConfig) -> impl Parser<Self> {
        move |v: &Value, p: &Path, r: &mut Report| {
            let d = d.clone();
            let mut o = Obj::new(v, p, r)?;
            let pos = duration(Sign::Positive);
            let config = SupervisionConfig {
                max_restarts: o.or("max_restarts", d.max_restarts, whole(0)),
                restart_window: o.or("restart_window_seconds", d.restart_window, &pos),
                base_delay: o.or("base_delay_seconds", d.base_delay, &pos),
                max_delay: o.or("max_delay_seconds", d.max_delay, &pos),
                jitter: o.or("jitter_enabled", d.jitter, boolean),
                health_failure_threshold: o.or(
                    "health_failure_threshold",
                    d.health_failure_threshold,
                    whole(1),
                ),
            };
            if config.max_delay < config.base_delay {
                o.error(
                    "max_delay_seconds",
                    "must not be less than `base_delay_seconds`",
                );
            }
            o.finish();
            Some(config)
        }
    }
}
