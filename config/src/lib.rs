//! The config file of OpenAgentIO: its format, `${VAR}` substitution, validation
//! that reports every error with its exact path, and its JSON Schema.
//!
//! The reference bridge format (`version: "openagentio.bridge/v1"`, `bridges:
//! [{name, type, config, mappings}]`) loads unchanged, from YAML or JSON; the
//! service's own sections (`bus`, `http`, `telemetry`, `shutdown`) are optional.
//!
//! ```
//! let cfg = openagentio_config::from_str(
//!     "version: openagentio.bridge/v1\nbus: {transport: nats}\n",
//!     openagentio_config::Format::Yaml,
//! ).unwrap();
//! assert_eq!(cfg.bus.nats.url_list(), "nats://127.0.0.1:4222");
//!
//! let err = openagentio_config::from_str(
//!     "version: openagentio.bridge/v1\nhttp: {listen: nowhere, body_limit: 0}\n",
//!     openagentio_config::Format::Yaml,
//! ).unwrap_err();
//! assert_eq!(err.field_errors().len(), 2);
//! ```
//!
//! Contents:
//! - loading: [`load_file`], [`from_str`], [`load_with_env`], [`from_value`] (`load`),
//!   the two [`Format`]s (`format`), [`ConfigError`] with its [`FieldError`]s (`error`),
//!   `${VAR}` substitution (`env_subst`);
//! - the typed config: [`Config`] (`config`), [`BusConfig`] (`bus`), [`HttpConfig`]
//!   (`http`), [`TelemetryConfig`] (`telemetry`), [`ShutdownConfig`] (`shutdown`),
//!   [`BridgeConfig`] and the bridge kinds (`bridge` and its modules);
//! - value types: [`Secret`], [`Glob`], durations ([`parse_duration`]);
//! - checks across bridges (`validate`); the JSON Schema, [`json_schema`] (`schema`).
//!
//! Internals: `reader` reads one mapping key by key and reports unknown keys;
//! `values` holds the parsers of single values; `path` prints error paths;
//! `subject` checks NATS subject names; `byte_size` parses sizes.

pub mod bridge;
mod bus;
mod byte_size;
mod config;
mod duration;
mod env_subst;
mod error;
mod format;
mod glob;
mod http;
mod load;
mod path;
mod reader;
mod schema;
mod secret;
mod shutdown;
mod strict_json;
mod subject;
mod telemetry;
mod validate;
mod values;

pub use bridge::echo::{EchoConfig, EchoMappings, EchoSettings};
pub use bridge::matrix::{
    InitialSyncBehavior, MatrixConfig, MatrixMappings, MatrixSettings, OutboundMsgtype,
    ResponderConfig, SessionStrategy,
};
pub use bridge::mcp::{McpToolConfig, McpToolMappings, McpToolSettings, McpTransport, McpUpstream};
pub use bridge::openai_sse::{OpenAiSseConfig, OpenAiSseMappings, OpenAiSseSettings};
pub use bridge::supervision::SupervisionConfig;
pub use bridge::{BRIDGE_TYPES, BridgeConfig, BridgeKind, TargetClaim};
pub use bus::{
    BusConfig, DEFAULT_NATS_URL, DEFAULT_SUBJECT_PREFIX, NatsConfig, NatsTlsConfig, Transport,
};
pub use config::{CONFIG_VERSION, Config};
pub use duration::{DurationError, format_duration, parse_duration};
pub use env_subst::EnvLookup;
pub use error::{ConfigError, FieldError, FieldErrors};
pub use format::Format;
pub use glob::Glob;
pub use http::{DEFAULT_BODY_LIMIT, DEFAULT_LISTEN, HttpConfig, HttpToken};
pub use load::{from_str, from_value, load_file, load_file_with_env, load_with_env, process_env};
pub use schema::json_schema;
pub use secret::Secret;
pub use shutdown::ShutdownConfig;
pub use telemetry::{LogFormat, TelemetryConfig};

/// The `url` crate, whose `Url` the config types use.
pub use url;
