//! # openagentio-http-gateway
//!
//! The HTTP/SSE gateway: browsers and HTTP clients drive the bus, with the
//! routes, headers, SSE framing and error JSON of the reference OpenAgentIO
//! HTTP adapter.
//!
//! - **Settings**: [`GatewayConfig`], [`ApiToken`] (module [`config`]).
//! - **Serving**: [`router`] builds the axum router over a [`Bus`](openagentio_core::Bus);
//!   [`serve`] runs it on a listener with graceful shutdown and `TCP_NODELAY`.
//! - **Routes** (one file each under `routes/`): invoke, stream (SSE), events,
//!   health (`/healthz`, `/readyz`, `/metrics`), catalog (`/v1/agents`).
//! - **Request mapping**: [`headers`] that fill the envelope
//!   ([`RequestContext`]), the body (`body.rs`: JSON, size limit, content
//!   types), [bearer auth](auth) with tenant binding ([`Principal`]).
//! - **Answers**: [errors](error) ([`ApiError`], [`status_for_code`]) and the
//!   SSE framing (`sse.rs`: `event:`, `id:`, `retry:`, `data:` per frame).
//! - **Counters**: the gateway's own counters (`metrics.rs`) after the
//!   service's metrics on `/metrics`.

pub mod auth;
mod body;
pub mod config;
pub mod error;
pub mod headers;
mod metrics;
mod origin;
mod router;
mod routes;
mod serve;
mod sse;
mod state;

pub use auth::Principal;
pub use config::{ApiToken, GatewayConfig};
pub use error::{ApiError, status_for_code};
pub use headers::RequestContext;
pub use router::router;
pub use serve::serve;
