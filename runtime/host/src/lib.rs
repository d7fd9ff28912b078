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

/// The config file's types and loader ([`from_config::spec_from_config`]
/// takes its [`Config`](openagentio_config::Config)), so that a program
/// embedding the service needs no other dependency to start one from a
/// config.
///
/// ```
/// use openagentio_host::config::{Format, load_with_env};
/// let cfg = load_with_env("version: openagentio.bridge/v1\n", Format::Yaml, &|_| None).unwrap();
/// let spec = openagentio_host::from_config::spec_from_config(&cfg).unwrap();
/// # let _ = spec;
/// ```
pub use openagentio_config as config;
