//! # openagentio-openai-sse
//!
//! The OpenAI-compatible SSE bridge: one bus target backed by
//! `POST {base_url}/chat/completions` with `stream: true`. A
//! `stream_invoke` sees `started → delta* → final | error`; an `invoke` on the
//! same target gets only the final result.
//!
//! - [`config`]: [`SseConfig`], the runtime config the service host fills
//!   from the config file (`openai_chat_sse` or the reference
//!   `openclaw_chat_sse`).
//! - [`request`]: payload and envelope → chat request body (text or
//!   `messages`, session, metadata parameters).
//! - [`sse`]: the incremental SSE parser (CR/LF/CRLF, multi-line data,
//!   comments, an event-size cap) and why it replaces `eventsource-stream`.
//! - [`response`]: chunks → `started`/`delta` frames and the assembled
//!   `final` result (text, reasoning, tool calls, usage).
//! - [`errors`]: [`SseError`] and its mapping to wire error codes.
//! - [`bridge`]: [`SseBridge`], the [`Bridge`](openagentio_core::Bridge)
//!   implementation, and the serving of one call (timeouts, retries before
//!   the first byte, cancellation).
//!
//! Internal: `upstream` (the HTTP client, headers and retries).

pub mod bridge;
pub mod config;
pub mod errors;
pub mod request;
pub mod response;
pub mod sse;

mod upstream;

pub use bridge::{KIND, OPENCLAW_KIND, SseBridge};
pub use config::{ConfigError, SseConfig};
pub use errors::{SseError, TimeoutKind};
