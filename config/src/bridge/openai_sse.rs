//! `type: openai_chat_sse` (and the reference's `openclaw_chat_sse`, same keys): an
//! OpenAI-compatible `POST {base_url}/chat/completions` streaming endpoint becomes
//! one stream target.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde_json::{Map, Value};
use url::Url;

use super::{Claim, TargetClaim, ignore_reference_mappings};
use crate::error::Report;
use crate::path::Path;
use crate::reader::Obj;
use crate::secret::Secret;
use crate::values::{
    Sign, byte_size, duration, header_name, header_secret, header_value, json_object, map,
    non_empty, string, subject_name, url, whole,
};

/// The default `config.timeout`: 60 s, as the reference's `request_timeout`.
pub const DEFAULT_SSE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default `config.max_event_size`: 1 MiB.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 1024 * 1024;
/// The session header of `openclaw_chat_sse` when `mappings.session_field` is absent.
pub const OPENCLAW_SESSION_HEADER: &str = "x-openclaw-session-key";
/// The metadata prefix of `openclaw_chat_sse` when `mappings.metadata_prefix` is absent.
pub const OPENCLAW_METADATA_PREFIX: &str = "openclaw.";

/// Body parameters the bridge itself controls, refused in `config.params`.
const RESERVED_PARAMS: [(&str, &str); 3] = [
    ("model", "set by `config.model`"),
    ("messages", "built from each request's payload"),
    ("stream", "the bridge always streams"),
];

/// An `openai_chat_sse` / `openclaw_chat_sse` bridge.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenAiSseConfig {
    /// Its `config`.
    pub config: OpenAiSseSettings,
    /// Its `mappings`.
    pub mappings: OpenAiSseMappings,
}

/// `config` of an `openai_chat_sse` / `openclaw_chat_sse` bridge.
///
/// `timeout` (or the reference's name for it, `request_timeout`) is the default of
/// `connect_timeout`, `first_token_timeout` and `idle_timeout`.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(deny_unknown_fields, transform = crate::schema::add_request_timeout)]
pub struct OpenAiSseSettings {
    /// The API base, e.g. `http://127.0.0.1:8000/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: Url,
    /// The `model` of every request.
    pub model: String,
    /// A bearer token sent as `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// Extra request headers (values kept secret).
    #[schemars(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Default body parameters (`temperature`, `max_tokens`, ...); a request's payload
    /// overrides them. `model`, `messages` and `stream` are the bridge's own.
    #[schemars(default)]
    pub params: Map<String, Value>,
    /// A system message put before the request's messages.
    pub system_prompt: Option<String>,
    /// The default of the three timeouts below.
    #[schemars(default = "default_timeout", with = "crate::schema::PositiveDuration")]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub timeout: Duration,
    /// The deadline of connecting to the upstream (default: `timeout`).
    #[schemars(with = "Option<crate::schema::PositiveDuration>")]
    pub connect_timeout: Duration,
    /// The deadline of the first chunk after the request is sent (default: `timeout`).
    #[schemars(with = "Option<crate::schema::PositiveDuration>")]
    pub first_token_timeout: Duration,
    /// The longest gap between two chunks (default: `timeout`).
    #[schemars(with = "Option<crate::schema::PositiveDuration>")]
    pub idle_timeout: Duration,
    /// The deadline of a whole call; none when absent.
    #[schemars(with = "Option<crate::schema::PositiveDuration>")]
    pub total_timeout: Option<Duration>,
    /// Retries (with backoff, honouring `Retry-After`) of a request that failed before
    /// its first byte; never after a delta has gone out. `0` tries once.
    #[schemars(default)]
    pub retries: u32,
    /// The largest SSE event: bytes as a number, or a string like `"1MiB"`.
    #[schemars(default = "default_max_event_size", with = "crate::schema::ByteSize")]
    pub max_event_size: usize,
}

fn default_timeout() -> Duration {
    DEFAULT_SSE_TIMEOUT
}
fn default_max_event_size() -> usize {
    DEFAULT_MAX_EVENT_SIZE
}

/// `mappings` of an `openai_chat_sse` / `openclaw_chat_sse` bridge. Every key
/// is optional; the reference's generic `tool` is accepted and ignored.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields, transform = crate::schema::add_reference_mapping_keys)]
pub struct OpenAiSseMappings {
    /// The stream target the bridge serves; the bridge's name when absent.
    #[schemars(with = "Option<String>")]
    pub target: String,
    /// The payload field that holds a one-message request's text.
    #[schemars(default = "default_text_field")]
    pub text_field: String,
    /// The request header that carries the envelope's `session_id`; none for
    /// `openai_chat_sse`, `x-openclaw-session-key` for `openclaw_chat_sse` when absent.
    pub session_field: Option<String>,
    /// Metadata keys under this prefix become body parameters (prefix stripped); none for
    /// `openai_chat_sse`, `openclaw.` for `openclaw_chat_sse` when absent.
    pub metadata_prefix: Option<String>,
}

fn default_text_field() -> String {
    "text".into()
}

impl OpenAiSseMappings {
    /// What the bridge serves: its one target.
    pub(crate) fn targets(&self) -> Vec<TargetClaim> {
        vec![TargetClaim::Exact(self.target.clone())]
    }
}

impl OpenAiSseConfig {
    /// Reads `config` and `mappings` of the bridge at `path`; `openclaw` picks the
    /// reference's mapping defaults.
    pub(crate) fn read(
        name: Option<&str>,
        openclaw: bool,
        config: &Value,
        mappings: &Value,
        path: &Path,
        r: &mut Report,
    ) -> (Option<Self>, Vec<Claim>) {
        let (mappings, claims) = read_mappings(name, openclaw, mappings, path, r);
        let config = read_settings(config, &path.key("config"), r);
        let out = match (config, mappings) {
            (Some(config), Some(mappings)) => Some(OpenAiSseConfig { config, mappings }),
            _ => None,
        };
        (out, claims)
    }
}

fn read_mappings(
    name: Option<&str>,
    openclaw: bool,
    v: &Value,
    bridge: &Path,
    r: &mut Report,
) -> (Option<OpenAiSseMappings>, Vec<Claim>) {
    let Some(mut o) = Obj::new(v, &bridge.key("mappings"), r) else {
        return (None, Vec::new());
    };
    let given = o.has("target");
    let target = o.opt("target", subject_name);
    let at = if given {
        o.path_of("target")
    } else {
        bridge.key("name")
    };
    let text_field = o.or("text_field", default_text_field(), non_empty);
    let session_field = o
        .opt("session_field", |v: &Value, p: &Path, r: &mut Report| {
            let s = string(v, p, r)?;
            match header_name(&s) {
                Ok(()) => Some(s),
                Err(why) => {
                    r.error(p, format!("invalid header name: {why}"));
                    None
                }
            }
        })
        .or_else(|| (openclaw && !o.has("session_field")).then(|| OPENCLAW_SESSION_HEADER.into()));
    let metadata_prefix = o.opt("metadata_prefix", non_empty).or_else(|| {
        (openclaw && !o.has("metadata_prefix")).then(|| OPENCLAW_METADATA_PREFIX.into())
    });
    ignore_reference_mappings(&mut o, &["text_field", "session_field", "metadata_prefix"]);
    o.finish();
    let target = match (given, target, name) {
        (true, Some(t), _) => t,
        (false, _, Some(n)) => n.to_owned(),
        _ => return (None, Vec::new()),
    };
    let m = OpenAiSseMappings {
        target,
        text_field,
        session_field,
        metadata_prefix,
    };
    let claims = m
        .targets()
        .into_iter()
        .map(|t| Claim::new(t, &at))
        .collect();
    (Some(m), claims)
}

fn read_settings(v: &Value, p: &Path, r: &mut Report) -> Option<OpenAiSseSettings> {
    let mut o = Obj::new(v, p, r)?;
    let pos = duration(Sign::Positive);
    let base_url = o.req("base_url", url(&["http", "https"]));
    let model = o.req("model", non_empty);
    let token = o.opt("token", header_secret);
    let headers = o.or("headers", BTreeMap::new(), map(header_name, header_value));
    let params = o.or("params", Map::new(), json_object);
    let system_prompt = o.opt("system_prompt", string);
    let timeout = o.opt("timeout", &pos);
    let request_timeout = o.opt("request_timeout", &pos);
    if o.has("timeout") && o.has("request_timeout") {
        o.error(
            "request_timeout",
            "give either `timeout` or `request_timeout` (the reference's name for it), not both",
        );
    }
    let base = timeout.or(request_timeout).unwrap_or(DEFAULT_SSE_TIMEOUT);
    let connect_timeout = o.or("connect_timeout", base, &pos);
    let first_token_timeout = o.or("first_token_timeout", base, &pos);
    let idle_timeout = o.or("idle_timeout", base, &pos);
    let total_timeout = o.opt("total_timeout", &pos);
    let retries = o.or("retries", 0, whole(0));
    let max_event_size = o.or("max_event_size", DEFAULT_MAX_EVENT_SIZE, byte_size);
    for (key, why) in RESERVED_PARAMS {
        if params.contains_key(key) {
            let at = o.path_of("params").key(key);
            o.report().error(&at, format!("not allowed here: {why}"));
        }
    }
    o.finish();
    Some(OpenAiSseSettings {
        base_url: base_url?,
        model: model?,
        token,
        headers,
        params,
        system_prompt,
        timeout: base,
        connect_timeout,
        first_token_timeout,
        idle_timeout,
        total_timeout,
        retries,
        max_event_size,
    })
}
