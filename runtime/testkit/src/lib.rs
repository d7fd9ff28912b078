//! # openagentio-testkit
//!
//! Dev-only harnesses shared by the test suites: real peers started on free
//! loopback ports and stopped on drop, and bus pairs for suites that run on
//! every transport; and the measuring loop and tables of the bench binaries
//! ([`mod@bench`]).

pub mod bench;
mod buses;
mod nats_server;
mod npm;
mod ports;
mod process;
mod python;
mod suite;

pub use buses::{BusPair, TransportKind, nats_bus};
pub use nats_server::{NatsServer, nats_server_bin};
pub use npm::{MOCK_LLM_INSTALL_HINT, mock_llm_bin};
pub use ports::{free_port, wait_for_port};
pub use process::{ChildGuard, example_bin, run_service};
pub use python::reference_python;
pub use suite::bounded;
