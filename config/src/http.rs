//! `http`: the HTTP/SSE gateway.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use schemars::JsonSchema;
use serde_json::Value;

use crate::error::Report;
use crate::path::Path;
use crate::reader::Obj;
use crate::secret::Secret;
use crate::values::{
    Sign, boolean, byte_size, duration, header_secret, list, socket_addr, string, subject_token,
};

/// Where the gateway listens unless told otherwise: `127.0.0.1:8080`.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// The largest request body unless told otherwise: 4 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 4 * 1024 * 1024;
/// How long a client has to send a request unless told otherwise: 30 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `http`: the HTTP/SSE gateway. Every key is optional.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether the gateway runs.
    pub enabled: bool,
    /// The address to listen on (`localhost:PORT` means `127.0.0.1:PORT`).
    pub listen: SocketAddr,
    /// Accepted bearer tokens, each optionally bound to a tenant; none means no authentication.
    pub tokens: Vec<HttpToken>,
    /// The largest request body: bytes as a number, or a string like `"4MiB"`.
    #[schemars(with = "crate::schema::ByteSize")]
    pub body_limit: usize,
    /// Origins allowed by CORS (`*` for any, or `scheme://host[:port]`); none sends no CORS headers.
    pub cors_origins: Vec<String>,
    /// The deadline of invoke and stream calls through the gateway; the bus default when absent.
    #[schemars(with = "Option<crate::schema::PositiveDuration>")]
    pub default_timeout: Option<Duration>,
    /// The longest silence allowed between two frames of a stream; no limit when absent.
    #[schemars(with = "Option<crate::schema::PositiveDuration>")]
    pub idle_timeout: Option<Duration>,
    /// How long a client has to send a request's headers, and then its body
    /// (default 30 s): one that stalls is cut off (headers) or answered 408 (body).
    #[schemars(with = "crate::schema::PositiveDuration")]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub read_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: DEFAULT_LISTEN,
            tokens: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            cors_origins: Vec::new(),
            default_timeout: None,
            idle_timeout: None,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// One bearer token of `http.tokens`.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct HttpToken {
    /// The secret a client sends as `Authorization: Bearer <token>`.
    pub token: Secret,
    /// When set, requests with this token act for this tenant only (a single subject token).
    pub tenant: Option<String>,
}

impl HttpConfig {
    pub(crate) fn read(v: &Value, p: &Path, r: &mut Report) -> Option<Self> {
        let d = HttpConfig::default();
        let mut o = Obj::new(v, p, r)?;
        let config = HttpConfig {
            enabled: o.or("enabled", d.enabled, boolean),
            listen: o.or("listen", d.listen, socket_addr),
            tokens: o.or("tokens", d.tokens, list(HttpToken::read)),
            body_limit: o.or("body_limit", d.body_limit, byte_size),
            cors_origins: o.or("cors_origins", d.cors_origins, list(cors_origin)),
            default_timeout: o.opt("default_timeout", duration(Sign::Positive)),
            idle_timeout: o.opt("idle_timeout", duration(Sign::Positive)),
            read_timeout: o.or("read_timeout", d.read_timeout, duration(Sign::Positive)),
        };
        // The same token twice would make its tenant binding ambiguous.
        for (i, t) in config.tokens.iter().enumerate() {
            if let Some(first) = config.tokens[..i].iter().position(|u| u.token == t.token) {
                let at = o.path_of("tokens").index(i).key("token");
                o.report().error(
                    &at,
                    format!("duplicate token (the same as tokens[{first}])"),
                );
            }
        }
        o.finish();
        Some(config)
    }
}

impl HttpToken {
    fn read(v: &Value, p: &Path, r: &mut Report) -> Option<Self> {
        let mut o = Obj::new(v, p, r)?;
        let token = o.req("token", header_secret);
        let tenant = o.opt("tenant", subject_token);
        o.finish();
        Some(HttpToken {
            token: token?,
            tenant,
        })
    }
}

/// A CORS origin: `*`, or `scheme://host[:port]` with no path.
fn cors_origin(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    let s = string(v, p, r)?;
    let s = s.trim();
    if s == "*" {
        return Some(s.to_owned());
    }
    match url::Url::parse(s) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.path() == "/"
                && !s.ends_with('/')
                && u.query().is_none() =>
        {
            Some(s.to_owned())
        }
        _ => {
            r.error(
                p,
                "expected `*` or an origin like \"https://app.example.org\" (no path)",
            );
            None
        }
    }
}
