//! # openagentio-host
//!
//! Builds a running service: the [transport and bus](Service), the bridges in
//! start order with their [health](status), the HTTP gateway, [metrics],
//! [logs and traces](telemetry) with [spans] that cross processes, and an orderly [shutdown](Service::shutdown) on
//! [signals].

pub mod echo_bridge;
pub mod from_config;
pub mod metrics;
pub mod registry;
pub mod signals;
pub mod spans;
pub mod spec;
pub mod status;
pub mod telemetry;

mod service;

pub use service::{CATALOG_TARGET, Service, ServiceError, ShutdownReport};
pub use spec::{ServiceSpec, TransportSpec};
