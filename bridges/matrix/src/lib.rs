//! # openagentio-matrix
//!
//! The `matrix_event` bridge: messages in Matrix rooms become bus events, and
//! bus events addressed to a room become Matrix messages.
//!
//! - **Configuration**: [`MatrixConfig`], [`MatrixAuth`], [`Responder`] and the
//!   option enums in [`config`]; secrets are [`Secret`]s, redacted in `Debug`.
//! - **The bridge**: [`MatrixBridge`] implements [`openagentio_core::Bridge`].
//! - **Inbound** (`inbound`): `m.room.message` → `matrix.message.received`
//!   with the reference payload (`text`, `html`, `room_id`, `sender`,
//!   `event_id`, `origin_server_ts`, `msgtype`) and `matrix.*` metadata
//!   (the keys are the `META_*` constants); edits → `matrix.message.edited`.
//! - **Outbound** (`outbound`): `matrix.message.send` events and the
//!   `{name}.send` invoke target post messages; the transaction id comes from
//!   the envelope's `event_id`, so a redelivered event posts once.
//! - **Sync** (`sync`): a supervised long-poll loop that persists its token
//!   after every batch and back-fills gaps, so nothing is lost across restarts.
//! - **Responder** (`responder`): a room wired to a stream target, answering
//!   with one message edited as deltas arrive.
//! - **Errors**: [`MatrixError`], mapped to `BridgeError` (permanent or
//!   transient) and `BusError` at the edges.
//!
//! ## Why a lean client instead of `matrix-sdk`
//!
//! The bridge speaks the client-server API through a small `reqwest` client
//! (`client`) of about a dozen endpoints (login, whoami, sync, messages, send,
//! join, alias, state, typing) rather than `matrix-sdk`, because the bridge's
//! guarantees need control that the SDK keeps to itself:
//!
//! - the sync token must be saved *after* our handlers have published a batch
//!   (the SDK advances its token in its own store, before or independently of
//!   our processing; without its sqlite store the token is in memory only);
//! - a `limited` timeline must be back-filled with `/messages` down to the
//!   saved token on each sync (the SDK's sync loop hands out the limited slice
//!   and leaves gap filling to the event-cache/timeline machinery);
//! - transaction ids must be ours (derived from envelope ids) for sends,
//!   edits and responder answers, and `M_LIMIT_EXCEEDED` must be waited out
//!   in order for ordered bursts;
//! - a revoked token must end the loop at once as a permanent error with a
//!   clear reason, instead of the SDK's internal retry and session callbacks;
//! - and the build stays lean: `matrix-sdk` pulls in ruma and several hundred
//!   crates (minutes of compile time on a 2-core machine) for features this
//!   bridge does not use (no E2EE, no sqlite, no media).
//!
//! What we lose: E2EE (out of scope, encrypted rooms get a warning and make the bridge degraded), and the
//! SDK's typed events (we read the few fields we need from JSON).

pub mod config;

mod api;
mod bridge;
mod client;
mod error;
mod glob;
mod inbound;
mod outbound;
mod responder;
mod rooms;
mod secret;
mod session;
mod shared;
mod state;
mod sync;

pub use bridge::{KIND, MatrixBridge};
pub use config::{
    ConfigError, InitialSyncBehavior, MatrixAuth, MatrixConfig, OutboundMsgType, Responder,
    SessionStrategy,
};
pub use error::MatrixError;
pub use inbound::{
    META_EVENT_ID, META_IN_REPLY_TO, META_REPLACES, META_REPLY_TO, META_ROOM_ID, META_SENDER,
    META_THREAD_ROOT,
};
pub use secret::Secret;
