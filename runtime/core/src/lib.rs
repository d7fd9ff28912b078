//! # openagentio-core
//!
//! The runtime bus of OpenAgentIO and the acp/1.0 envelope it carries. Bridges
//! depend on this crate alone; it holds no network client.
//!
//! - **Message model**: [`Envelope`] (its strings are [`Text`]), its [event types](event_type), typed
//!   [payloads](payload), [`ErrorCode`] and [`BusError`], the [`codec`].
//! - **Bus API**: [`Bus`] (publish/subscribe, invoke/handle_invoke,
//!   stream_invoke/handle_stream), [`StreamWriter`], [`Stream`], [options],
//!   [context propagation](context), [middleware].
//! - **Transports**: the [`Transport`] contract and the in-memory [`MemoryTransport`].
//! - **Bridges**: the [`Bridge`] contract the service host drives, the
//!   [supervisor] that restarts their background work, and the bus-wide
//!   [catalog] of their targets.
//! - **Subjects**: the [subject layout](subject) shared with the reference SDKs.

pub mod bridge;
pub mod catalog;
pub mod codec;
pub mod context;
pub mod event_type;
pub mod glob;
pub mod middleware;
pub mod options;
pub mod payload;
pub mod subject;
pub mod supervisor;
pub mod transport;

mod bus;
mod call;
mod cancel;
mod dispatch;
mod envelope;
mod error;
mod ids;
mod inline;
mod json_read;
mod json_write;
mod memory;
mod registration;
mod reply_router;
mod request;
mod shards;
mod stats;
mod stream;
mod text;
mod trace_context;
mod window_budget;
mod writer;

pub use bridge::{
    Bridge, BridgeError, BridgeHealth, HealthState, OpenServiceStarted, ServiceStarted,
    ServiceStatus, TargetInfo,
};
pub use bus::{Bus, BusBuilder, BusSettings, EnvelopePreparer, WeakBus};
pub use cancel::CANCEL_EVENT;
pub use envelope::Envelope;
pub use error::{BusError, ErrorCode};
pub use event_type::{frame_type_for, is_terminal};
pub use ids::{new_event_id, new_span_id, new_trace_id};
pub use memory::MemoryTransport;
pub use options::{CallOptions, HandleOptions, SubscribeOptions};
pub use payload::{DeltaPayload, ErrorPayload, FinalPayload, StartedPayload};
pub use registration::Registration;
pub use request::{Call, CallKind, Request};
pub use stats::BusStats;
pub use stream::{Stream, StreamLimits};
pub use subject::Subjects;
pub use text::Text;
pub use trace_context::TraceContext;
pub use transport::{Transport, TransportError};
pub use writer::{FrameKind, StreamWriter};

/// The README's Rust example, compiled and run as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExample;
