//! The gateway's settings.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Where the gateway listens unless told otherwise: `127.0.0.1:8080`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// Largest request body accepted unless told otherwise: 4 MiB, as the reference adapter.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;

/// The `retry:` hint written into every SSE frame unless told otherwise: 3 s, as
/// the reference adapter.
pub const DEFAULT_SSE_RETRY: Duration = Duration::from_secs(3);

/// One bearer token the gateway accepts, optionally bound to a tenant.
///
/// Its `Debug` form never shows the token.
///
/// ```
/// use openagentio_http_gateway::ApiToken;
/// let t = ApiToken::for_tenant("s3cret", "acme");
/// assert!(!format!("{t:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken {
    /// The secret a client sends as `Authorization: Bearer <token>`.
    pub token: String,
    /// When set, requests with this token act for this tenant only.
    pub tenant: Option<String>,
}

impl ApiToken {
    /// A token that may act for any tenant (or none).
    pub fn new(token: impl Into<String>) -> Self {
        ApiToken {
            token: token.into(),
            tenant: None,
        }
    }

    /// A token bound to `tenant`.
    pub fn for_tenant(token: impl Into<String>, tenant: impl Into<String>) -> Self {
        ApiToken {
            token: token.into(),
            tenant: Some(tenant.into()),
        }
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"<redacted>")
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// Settings of the HTTP/SSE gateway. `Default` gives the documented defaults.
///
/// ```
/// use openagentio_http_gateway::{ApiToken, GatewayConfig};
/// let cfg = GatewayConfig {
///     tokens: vec![ApiToken::new("t0ken")],
///     ..GatewayConfig::default()
/// };
/// assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
/// assert_eq!(cfg.body_limit, 4 * 1024 * 1024);
/// assert!(!format!("{cfg:?}").contains("t0ken"));
/// ```
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Address to listen on (default `127.0.0.1:8080`). Used by the service
    /// host; [`crate::serve`] takes a listener already bound.
    pub listen: SocketAddr,
    /// Accepted bearer tokens; empty means no authentication.
    pub tokens: Vec<ApiToken>,
    /// Largest request body in bytes (default 4 MiB).
    pub body_limit: usize,
    /// Origins allowed by CORS (`*` allows any); empty means no CORS headers.
    pub cors_origins: Vec<String>,
    /// Deadline of invoke and stream calls; `None` uses the bus default.
    pub default_timeout: Option<Duration>,
    /// Longest silence allowed between two frames of a stream; `None` for no limit.
    pub idle_timeout: Option<Duration>,
    /// The `retry:` reconnect hint in each SSE frame (default 3 s, as the
    /// reference adapter); `None` leaves it out.
    pub sse_retry: Option<Duration>,
    /// Interval of SSE keep-alive comments (`:` lines) while a stream is quiet
    /// (default 15 s); `None` sends none.
    pub sse_keep_alive: Option<Duration>,
    /// How long the stream route waits for the first frame before it answers
    /// with the SSE headers (default 250 ms). A failure within this time (such
    /// as `NO_HANDLER`) answers with a JSON error and its status; a later one
    /// arrives as an `agent.response.error` frame.
    pub stream_start_wait: Duration,
    /// Whether `GET /metrics` is served (default true); off, it is 404.
    pub metrics: bool,
    /// How long a client has to send a request's headers, and then its body
    /// (default 30 s): one that stalls (a "slowloris" client) has its
    /// connection closed (headers) or is answered 408 (body), rather than
    /// holding the connection for ever. The wait for the next request on a
    /// kept-alive connection counts as a wait for headers.
    pub read_timeout: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: DEFAULT_LISTEN,
            tokens: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            cors_origins: Vec::new(),
            default_timeout: None,
            idle_timeout: None,
            sse_retry: Some(DEFAULT_SSE_RETRY),
            sse_keep_alive: Some(Duration::from_secs(15)),
            stream_start_wait: Duration::from_millis(250),
            metrics: true,
            read_timeout: Duration::from_secs(30),
        }
    }
}
