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
    /// Hands the bridge, before [`Bridge::start`], the moment its whole
    /// service will have started (every bridge, and the gateway listening).
    /// A bridge that replays what it missed while the service was down (the
    /// Matrix bridge) holds that back until then, so that the targets it
    /// calls and the subscribers it feeds, started after it, are there. A
    /// bridge never handed one does not wait. The default ignores it.
    fn until_service_started(&mut self, started: ServiceStarted) {
        let _ = started;
    }
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

/// The moment a service has started: every bridge, and the gateway listening
/// (see [`Bridge::until_service_started`]). Cheap to clone; open for good once
/// opened.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use openagentio_core::ServiceStarted;
/// let (open, started) = ServiceStarted::new();
/// assert!(!started.is_open());
/// open.open();
/// started.wait().await;
/// assert!(ServiceStarted::open_now().is_open());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ServiceStarted(tokio::sync::watch::Receiver<bool>);

/// Opens a [`ServiceStarted`] (the host holds it; dropping it opens it too,
/// so nothing waits for a start that was given up).
#[derive(Debug)]
pub struct OpenServiceStarted(tokio::sync::watch::Sender<bool>);

impl ServiceStarted {
    /// A closed moment and what opens it.
    pub fn new() -> (OpenServiceStarted, ServiceStarted) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (OpenServiceStarted(tx), ServiceStarted(rx))
    }

    /// One already open: for a bridge started on its own.
    pub fn open_now() -> ServiceStarted {
        let (open, started) = ServiceStarted::new();
        open.open();
        started
    }

    /// Whether the service has started.
    pub fn is_open(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until the service has started.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        // An error means the opener is gone: nothing to wait for any more.
        let _ = rx.wait_for(|open| *open).await;
    }
}

impl OpenServiceStarted {
    /// Opens it.
    pub fn open(&self) {
        self.0.send_replace(true);
    }
}

impl Drop for OpenServiceStarted {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}
