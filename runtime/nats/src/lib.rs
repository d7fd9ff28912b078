//! # openagentio-nats
//!
//! The NATS Core transport of the OpenAgentIO bus: [`NatsTransport`] connects
//! with [`NatsOptions`] and implements [`openagentio_core::Transport`]. This is
//! the only crate of the project that uses `async-nats`.

mod options;
mod tls_files;
mod transport;
mod url_credentials;

pub use options::{NatsAuth, NatsOptions, NatsTls, OptionNames};
pub use transport::{ConnectError, NatsTransport};
pub use url_credentials::{has_url_credentials, redact_urls};
