//! The contract between the service host and its bridges.
//!
//! A bridge maps an outside protocol onto the bus. The host builds bridges from
//! the config file, starts them in order, asks for their health and stops them
//! in reverse. Bridges see the bus only through this crate's public API.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bus::Bus;

/// How well a bridge is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// Working.
    Healthy,
    /// Working in part, or recovering (reconnecting, restarting).
    Degraded,
    /// Not working.
    Unhealthy,
}

impl fmt::Display for HealthState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthState::Healthy => "healthy",
            HealthState::Degraded => "degraded",
            HealthState::Unhealthy => "unhealthy",
        })
    }
}

/// A bridge's health with the reason when it is not healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeHealth {
    /// The state.
    pub state: HealthState,
    /// Why, when not healthy (never holds secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl BridgeHealth {
    /// Healthy.
    pub fn healthy() -> Self {
        BridgeHealth {
            state: HealthState::Healthy,
            reason: None,
        }
    }
    /// Degraded, because of `reason`.
    pub fn degraded(reason: impl Into<String>) -> Self {
        BridgeHealth {
            state: HealthState::Degraded,
            reason: Some(reason.into()),
        }
    }
    /// Unhealthy, because of `reason`.
    pub fn unhealthy(reason: impl Into<String>) -> Self {
        BridgeHealth {
            state: HealthState::Unhealthy,
            reason: Some(reason.into()),
        }
    }
}

/// A target a bridge serves, for catalogs (`GET /v1/agents`, `openagentio targets`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetInfo {
    /// The invoke target name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Whether it answers `stream_invoke` with frames (it always answers `invoke`).
    pub streaming: bool,
    /// JSON Schema of the payload, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// The bridge that serves it.
    pub bridge: String,
    /// The name of what it serves where it comes from, e.g. an MCP tool's
    /// own name (which a target name may have had to change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_name: Option<String>,
}

/// Why a bridge could not start or stop.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("bridge {bridge}: {message}")]
pub struct BridgeError {
    /// The bridge name.
    pub bridge: String,
    /// What went wrong (never holds secrets).
    pub message: String,
    /// Permanent errors (bad credentials, bad config) are not retried.
    pub permanent: bool,
}

impl BridgeError {
    /// A transient failure (worth retrying).
    pub fn transient(bridge: impl Into<String>, message: impl Into<String>) -> Self {
        BridgeError {
            bridge: bridge.into(),
            message: message.into(),
            permanent: false,
        }
    }
    /// A permanent failure (retrying will not help).
    pub fn permanent(bridge: impl Into<String>, message: impl Into<String>) -> Self {
        BridgeError {
            bridge: bridge.into(),
            message: message.into(),
            permanent: true,
        }
    }
}

/// A pluggable bridge between an outside protocol and the bus.
///
/// `start` registers handlers and subscriptions and spawns background work;
/// `stop` removes them and releases everything. `stop` is idempotent and safe
/// after a failed or partial `start`.
#[async_trait]
pub trait Bridge: Send + Sync {
    /// The bridge's name from config.
    fn name(&self) -> &str;
    /// The bridge type, e.g. `mcp_tool`.
    fn kind(&self) -> &'static str;
    /// Starts serving on `bus`.
    async fn start(&mut self, bus: &Bus) -> Result<(), BridgeError>;
    /// Stops serving and releases everything.
    async fn stop(&mut self) -> Result<(), BridgeError>;
    /// The current health.
    fn health(&self) -> BridgeHealth;
    /// The targets it serves now.
    fn targets(&self) -> Vec<TargetInfo> {
        Vec::new()
    }
    /// How often its background work has been restarted.
    fn restarts(&self) -> u64 {
        0
    }
}

/// What a front end (the HTTP gateway) needs to know about the running service.
pub trait ServiceStatus: Send + Sync {
    /// Health of each bridge by name, in start order.
    fn bridges(&self) -> Vec<(String, BridgeHealth)>;
    /// Every target served, across bridges.
    fn targets(&self) -> Vec<TargetInfo>;
    /// Metrics in the Prometheus text format (empty when metrics are off).
    fn metrics(&self) -> String {
        String::new()
    }
}
