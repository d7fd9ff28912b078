//! The bridge's runtime config. The service host maps the config file
//! (`openai_chat_sse`, or the reference `openclaw_chat_sse` keys) into it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use url::Url;

/// Default of [`SseConfig::text_field`].
pub const DEFAULT_TEXT_FIELD: &str = "text";
/// Session header of the reference `openclaw_chat_sse` bridge.
pub const OPENCLAW_SESSION_HEADER: &str = "x-openclaw-session-key";
/// Metadata prefix of the reference `openclaw_chat_sse` bridge.
pub const OPENCLAW_METADATA_PREFIX: &str = "openclaw.";

/// Everything one [`SseBridge`](crate::SseBridge) needs. Build it with
/// [`SseConfig::new`] and adjust the public fields.
///
/// `Debug` never shows the token or header values.
///
/// ```
/// use openagentio_openai_sse::SseConfig;
/// let mut cfg = SseConfig::new("http://127.0.0.1:8000/v1".parse().unwrap(), "gpt-4o-mini");
/// cfg.token = Some("sk-secret".into());
/// assert!(!format!("{cfg:?}").contains("sk-secret"));
/// assert!(cfg.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct SseConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `http://host:8000/v1`; the
    /// bridge posts to `{base_url}/chat/completions`.
    pub base_url: Url,
    /// Bearer token sent as `Authorization: Bearer …` (none: no header).
    pub token: Option<String>,
    /// The `model` of every request (callers cannot change it).
    pub model: String,
    /// Extra request headers (values are never logged).
    pub headers: BTreeMap<String, String>,
    /// Default request parameters (`temperature`, `max_tokens`, …); metadata
    /// and payload keys override them.
    pub params: Map<String, Value>,
    /// A system message put before the conversation when it has none.
    pub system_prompt: Option<String>,
    /// The invoke target served; empty means the bridge name.
    pub target: String,
    /// The payload field holding the user's text (default `text`).
    pub text_field: String,
    /// Name of the request header that carries the envelope's `session_id`
    /// (none: the session goes only to the body's `user`).
    pub session_field: Option<String>,
    /// Envelope metadata keys with this prefix become body parameters, the
    /// prefix stripped (none: metadata is not mapped).
    pub metadata_prefix: Option<String>,
    /// Limit for opening the TCP (and TLS) connection. Default 10 s.
    pub connect_timeout: Duration,
    /// Limit from sending the request to the first SSE event (response
    /// headers included; keep-alive comments do not count). Default 60 s.
    pub first_token_timeout: Duration,
    /// Longest silence allowed after the first event (any received bytes,
    /// keep-alive comments included, end the silence). Default 60 s.
    pub idle_timeout: Duration,
    /// Limit for the whole call, retries included. Default 10 min.
    pub total_timeout: Duration,
    /// Retries after a retryable failure (connection refused, 429, 5xx) before
    /// any byte of a response stream was read; never after. Default 0.
    pub retries: u32,
    /// Delay before the first retry, doubled for each next one (at most 10 s);
    /// a longer `Retry-After` from the upstream wins. Default 250 ms.
    pub retry_backoff: Duration,
    /// Largest SSE event accepted (bytes of its lines); a larger one fails the
    /// call with `CODEC_FAILURE`. Default 1 MiB.
    pub max_event_bytes: usize,
}

impl SseConfig {
    /// A config for `model` at `base_url`, everything else at its default.
    pub fn new(base_url: Url, model: impl Into<String>) -> Self {
        SseConfig {
            base_url,
            token: None,
            model: model.into(),
            headers: BTreeMap::new(),
            params: Map::new(),
            system_prompt: None,
            target: String::new(),
            text_field: DEFAULT_TEXT_FIELD.to_owned(),
            session_field: None,
            metadata_prefix: None,
            connect_timeout: Duration::from_secs(10),
            first_token_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            total_timeout: Duration::from_secs(600),
            retries: 0,
            retry_backoff: Duration::from_millis(250),
            max_event_bytes: 1 << 20,
        }
    }

    /// Fills the mappings the reference `openclaw_chat_sse` bridge defaults
    /// (`x-openclaw-session-key`, `openclaw.`) where none is set.
    pub fn with_openclaw_defaults(mut self) -> Self {
        self.session_field
            .get_or_insert_with(|| OPENCLAW_SESSION_HEADER.to_owned());
        self.metadata_prefix
            .get_or_insert_with(|| OPENCLAW_METADATA_PREFIX.to_owned());
        self
    }

    /// The URL requests go to: `{base_url}/chat/completions`, with the
    /// query of `base_url` kept (Azure OpenAI's `?api-version=...`, say).
    pub fn endpoint(&self) -> Result<Url, ConfigError> {
        let mut url = self.base_url.clone();
        if url.cannot_be_a_base() {
            return Err(ConfigError::new("base_url", "must be an http or https URL"));
        }
        let path = format!("{}/chat/completions", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_fragment(None);
        Ok(url)
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.base_url.scheme(), "http" | "https") {
            return Err(ConfigError::new("base_url", "must be an http or https URL"));
        }
        self.endpoint()?;
        if self.model.trim().is_empty() {
            return Err(ConfigError::new("model", "must not be empty"));
        }
        if let Some(token) = &self.token
            && HeaderValue::from_str(&format!("Bearer {token}")).is_err()
        {
            return Err(ConfigError::new(
                "token",
                "holds characters not allowed in a header",
            ));
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::new(
                    "headers",
                    format!("{name:?} is not a header name"),
                ));
            }
            if HeaderValue::from_str(value).is_err() {
                return Err(ConfigError::new(
                    "headers",
                    format!("the value of {name:?} holds characters not allowed in a header"),
                ));
            }
        }
        if let Some(name) = &self.session_field
            && HeaderName::from_bytes(name.as_bytes()).is_err()
        {
            return Err(ConfigError::new(
                "session_field",
                format!("{name:?} is not a header name"),
            ));
        }
        if self.text_field.is_empty() {
            return Err(ConfigError::new("text_field", "must not be empty"));
        }
        for (field, d) in [
            ("connect_timeout", self.connect_timeout),
            ("first_token_timeout", self.first_token_timeout),
            ("idle_timeout", self.idle_timeout),
            ("total_timeout", self.total_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::new(field, "must be positive"));
            }
        }
        if self.max_event_bytes == 0 {
            return Err(ConfigError::new("max_event_bytes", "must be positive"));
        }
        Ok(())
    }
}

impl fmt::Debug for SseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("SseConfig")
            .field("base_url", &redacted_url(&self.base_url))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .field("headers", &headers)
            .field("params", &self.params)
            .field("system_prompt", &self.system_prompt)
            .field("target", &self.target)
            .field("text_field", &self.text_field)
            .field("session_field", &self.session_field)
            .field("metadata_prefix", &self.metadata_prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("retries", &self.retries)
            .field("retry_backoff", &self.retry_backoff)
            .field("max_event_bytes", &self.max_event_bytes)
            .finish()
    }
}

/// `url` without the password it may carry, for logs and `Debug`.
pub(crate) fn redacted_url(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("redacted"));
    }
    u.to_string()
}

/// A config field that is not acceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// The field, as named in [`SseConfig`].
    pub field: &'static str,
    /// What is wrong (never holds secrets).
    pub message: String,
}

impl ConfigError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        ConfigError {
            field,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SseConfig {
        SseConfig::new("http://u:pw@127.0.0.1:9/v1/".parse().unwrap(), "m")
    }

    #[test]
    fn endpoint_appends_chat_completions_once() {
        assert_eq!(
            cfg().endpoint().unwrap().as_str(),
            "http://u:pw@127.0.0.1:9/v1/chat/completions"
        );
        // A query (Azure's api-version) stays a query, after the path.
        let mut c = cfg();
        c.base_url = "https://x.example/openai/deployments/d?api-version=2024-06-01"
            .parse()
            .unwrap();
        assert_eq!(
            c.endpoint().unwrap().as_str(),
            "https://x.example/openai/deployments/d/chat/completions?api-version=2024-06-01"
        );
        c.base_url = "http://h:8000".parse().unwrap();
        assert_eq!(
            c.endpoint().unwrap().as_str(),
            "http://h:8000/chat/completions"
        );
    }

    #[test]
    fn debug_hides_token_password_and_header_values() {
        let mut c = cfg();
        c.token = Some("sk-123".into());
        c.headers.insert("api-key".into(), "hdr-secret".into());
        let s = format!("{c:?}");
        assert!(
            !s.contains("sk-123") && !s.contains("hdr-secret") && !s.contains(":pw@"),
            "{s}"
        );
        assert!(s.contains("api-key"));
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = cfg();
        c.model.clear();
        assert_eq!(c.validate().unwrap_err().field, "model");
        let mut c = cfg();
        c.headers.insert("bad name".into(), "v".into());
        assert_eq!(c.validate().unwrap_err().field, "headers");
        let mut c = cfg();
        c.idle_timeout = Duration::ZERO;
        assert_eq!(c.validate().unwrap_err().field, "idle_timeout");
        let mut c = cfg();
        c.base_url = "ftp://x/".parse().unwrap();
        assert_eq!(c.validate().unwrap_err().field, "base_url");
    }

    #[test]
    fn openclaw_defaults_fill_only_unset_mappings() {
        let mut c = cfg();
        c.session_field = Some("x-session".into());
        let c = c.with_openclaw_defaults();
        assert_eq!(c.session_field.as_deref(), Some("x-session"));
        assert_eq!(c.metadata_prefix.as_deref(), Some(OPENCLAW_METADATA_PREFIX));
    }
}
