//! # openagentio-nats
//!
//! The NATS Core transport of the OpenAgentIO bus: [`NatsTransport`] connects
//! with [`NatsOptions`] and implements [`openagentio_core::Transport`]. This is
//! the only crate of the project that uses `async-nats`.

mod options;
mod transport;

pub use options::{NatsAuth, NatsOptions, NatsTls};
pub use transport::{ConnectError, NatsTransport};
