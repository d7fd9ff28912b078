//! `bus`: the runtime bus, its transport (in-memory or NATS) and subject layout.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use crate::error::Report;
use crate::path::Path;
use crate::reader::Obj;
use crate::secret::Secret;
use crate::values::{
    Choice, Sign, boolean, check_url, choice, duration, expected, file_path, non_empty, secret,
    string, subject_name, subject_token,
};

/// The default subject prefix, `acp.v1`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "acp.v1";
/// The default NATS server, `nats://127.0.0.1:4222`.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// `bus`: the runtime bus. Every key is optional.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct BusConfig {
    /// The transport: `memory` (one process, the default) or `nats`.
    pub transport: Transport,
    /// How to reach NATS; used when `transport` is `nats`.
    pub nats: NatsConfig,
    /// The prefix of every subject.
    pub subject_prefix: String,
    /// The tenant of calls and events that name none (a single subject token); none by default.
    pub default_tenant: Option<String>,
    /// The deadline of calls that set none.
    #[schemars(with = "crate::schema::PositiveDuration")]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub default_timeout: Duration,
    /// How long a handler may serve a request that carries no deadline (as
    /// reference-SDK callers send them: no deadline, no cancellation); past it
    /// the handler is cancelled and the call ends with `AGENT_TIMEOUT`. Unbounded when absent.
    #[schemars(with = "Option<crate::schema::PositiveDuration>")]
    pub serve_timeout: Option<Duration>,
    /// How long a cancelled handler (its caller went away, its deadline or
    /// the serve timeout passed, or shutdown stopped it) has to end by itself
    /// before it is dropped and its call ends with an error frame.
    #[schemars(with = "crate::schema::PositiveDuration")]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub cancel_grace: Duration,
    /// The id this service writes into the `from` field of the envelopes it sends.
    pub agent_id: String,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            transport: Transport::Memory,
            nats: NatsConfig::default(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.into(),
            default_tenant: None,
            default_timeout: Duration::from_secs(30),
            serve_timeout: None,
            cancel_grace: Duration::from_secs(5),
            agent_id: "openagentio".into(),
        }
    }
}

impl BusConfig {
    pub(crate) fn read(v: &Value, p: &Path, r: &mut Report) -> Option<Self> {
        let d = BusConfig::default();
        let mut o = Obj::new(v, p, r)?;
        let config = BusConfig {
            transport: o.or("transport", d.transport, choice::<Transport>),
            nats: o.opt("nats", NatsConfig::read).unwrap_or(d.nats),
            subject_prefix: o.or("subject_prefix", d.subject_prefix, subject_name),
            default_tenant: o.opt("default_tenant", subject_token),
            default_timeout: o.or(
                "default_timeout",
                d.default_timeout,
                duration(Sign::Positive),
            ),
            serve_timeout: o.opt("serve_timeout", duration(Sign::Positive)),
            cancel_grace: o.or("cancel_grace", d.cancel_grace, duration(Sign::Positive)),
            agent_id: o.or("agent_id", d.agent_id, non_empty),
        };
        o.finish();
        Some(config)
    }
}

/// The transport that carries the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = crate::schema::any_case)]
pub enum Transport {
    /// In-process: one service, nothing to install.
    Memory,
    /// A NATS server: many processes and machines.
    Nats,
}

impl Choice for Transport {
    const CHOICES: &'static [(&'static str, Self)] =
        &[("memory", Transport::Memory), ("nats", Transport::Nats)];
}

/// `bus.nats`: how to reach the NATS server(s).
///
/// At most one way to authenticate may be given: `token`, `user` with
/// `password`, or `credentials_file`.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s): one string (several may be separated by commas) or a list.
    /// Schemes `nats`, `tls`, `ws`, `wss`; a bare `host:port` means `nats://host:port`.
    #[schemars(with = "crate::schema::NatsUrls")]
    pub url: Vec<Url>,
    /// The connection name the server shows.
    pub name: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials_file: Option<PathBuf>,
    /// A token.
    pub token: Option<Secret>,
    /// A user name (with `password`).
    pub user: Option<String>,
    /// A password (with `user`).
    pub password: Option<Secret>,
    /// TLS settings.
    pub tls: NatsTlsConfig,
    /// Start even when no server answers yet, and connect as soon as one
    /// does (default `false`: the service fails at start, naming the URL).
    /// Until then the service is not ready, and what it sends is buffered.
    pub retry_on_initial_connect: bool,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: vec![Url::parse(DEFAULT_NATS_URL).expect("valid default URL")],
            name: None,
            credentials_file: None,
            token: None,
            user: None,
            password: None,
            tls: NatsTlsConfig::default(),
            retry_on_initial_connect: false,
        }
    }
}

impl NatsConfig {
    /// The server URLs joined by commas, as NATS clients take them.
    pub fn url_list(&self) -> String {
        let urls: Vec<String> = self
            .url
            .iter()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .collect();
        urls.join(",")
    }

    fn read(v: &Value, p: &Path, r: &mut Report) -> Option<Self> {
        let d = NatsConfig::default();
        let mut o = Obj::new(v, p, r)?;
        let config = NatsConfig {
            url: o.or("url", d.url, nats_urls),
            name: o.opt("name", non_empty),
            credentials_file: o.opt("credentials_file", file_path),
            token: o.opt("token", secret),
            user: o.opt("user", non_empty),
            password: o.opt("password", secret),
            tls: o.opt("tls", NatsTlsConfig::read).unwrap_or_default(),
            retry_on_initial_connect: o.or(
                "retry_on_initial_connect",
                d.retry_on_initial_connect,
                boolean,
            ),
        };
        // `user` and `password` go together; one way to authenticate at most.
        match (o.has("user"), o.has("password")) {
            (true, false) => o.error("password", "missing: `user` needs `password`"),
            (false, true) => o.error("user", "missing: `password` needs `user`"),
            _ => {}
        }
        let methods: Vec<&'static str> = ["token", "user", "credentials_file"]
            .into_iter()
            .filter(|k| o.has(k))
            .collect();
        if let Some(second) = methods.get(1) {
            o.error(
                second,
                "give only one way to authenticate: `token`, `user`/`password` or `credentials_file`",
            );
        }
        o.finish();
        Some(config)
    }
}

/// NATS server URLs: a string (comma-separated) or a list of strings.
fn nats_urls(v: &Value, p: &Path, r: &mut Report) -> Option<Vec<Url>> {
    const SCHEMES: &[&str] = &["nats", "tls", "ws", "wss"];
    let one = |s: &str, p: &Path, r: &mut Report| {
        let s = s.trim();
        let full = if s.contains("://") {
            s.to_owned()
        } else {
            format!("nats://{s}")
        };
        check_url(&full, SCHEMES, p, r)
    };
    let urls: Vec<Option<Url>> = match v {
        Value::String(s) => s.split(',').map(|part| one(part, p, r)).collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let ip = p.index(i);
                string(item, &ip, r).and_then(|s| one(&s, &ip, r))
            })
            .collect(),
        _ => return expected(v, p, r, "a URL or a list of URLs"),
    };
    if urls.is_empty() {
        r.error(p, "expected at least one URL");
        return None;
    }
    urls.into_iter().collect()
}

/// `bus.nats.tls`: TLS to the NATS server.
#[derive(Clone, Debug, Default, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields, default)]
pub struct NatsTlsConfig {
    /// Require TLS even when the server does not ask for it.
    pub required: bool,
    /// Extra root certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS; needs `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl NatsTlsConfig {
    fn read(v: &Value, p: &Path, r: &mut Report) -> Option<Self> {
        let mut o = Obj::new(v, p, r)?;
        let config = NatsTlsConfig {
            required: o.or("required", false, boolean),
            ca_file: o.opt("ca_file", file_path),
            cert_file: o.opt("cert_file", file_path),
            key_file: o.opt("key_file", file_path),
        };
        match (o.has("cert_file"), o.has("key_file")) {
            (true, false) => o.error("key_file", "missing: `cert_file` needs `key_file`"),
            (false, true) => o.error("cert_file", "missing: `key_file` needs `cert_file`"),
            _ => {}
        }
        o.finish();
        Some(config)
    }
}
