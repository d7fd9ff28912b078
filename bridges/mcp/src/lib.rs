//! # openagentio-mcp
//!
//! The MCP bridge (`type: mcp_tool`): every tool of a Model Context Protocol
//! server becomes a bus target `{target_prefix}.{tool}` that answers both
//! `invoke` (the mapped result) and `stream_invoke` (progress deltas, then the
//! result). Built on the official Rust SDK, `rmcp`.
//!
//! - **Configuration**: [`McpConfig`], [`McpTransport`] (stdio child process or
//!   Streamable HTTP), checked by [`McpConfig::validate`] ([`config`]).
//! - **The bridge**: [`McpBridge`], the [`Bridge`](openagentio_core::Bridge) the
//!   service host drives: connection loop, targets, health ([`bridge`]).
//! - **Targets**: tool names to subject tokens ([`naming`]); which tools are
//!   exposed ([`ToolFilter`], [`filter`]).
//! - **Calls**: arguments checked against `inputSchema` ([`schema`]); results
//!   mapped as the reference bridge maps them ([`result`]); progress as delta
//!   frames ([`progress`]); failures as wire codes ([`errors`]); secrets kept
//!   out of every message ([`redact`]).
//! - **Our own MCP server**: the `openagentio-mcp-demo` binary (tools `echo`,
//!   `add`, `slow`, `fail`, ...) over stdio or Streamable HTTP, for the
//!   quickstart and the tests.

pub mod bridge;
pub mod config;
pub mod demo;
pub mod errors;
pub mod filter;
pub mod naming;
pub mod progress;
pub mod redact;
pub mod result;
pub mod schema;

mod call;
mod http_client;
mod line_guard;
mod stderr;
mod targets;
mod tool_list;
mod upstream;

pub use bridge::{KIND, McpBridge};
pub use config::{
    ConfigError, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, McpConfig, McpTransport, Problem,
};
pub use errors::McpError;
pub use filter::ToolFilter;
