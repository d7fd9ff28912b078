//! The HTTP side: one shared client, the request headers, and opening a
//! response stream with retries before its first byte.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::redirect::Policy;
use tokio::time::Instant;
use url::Url;

use crate::config::{ConfigError, SseConfig, redacted_url};
use crate::errors::{SseError, TimeoutKind, http_error_message, parse_retry_after};
use crate::request::ChatRequest;

/// Longest delay between two retries (a longer `Retry-After` still wins).
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Most bytes of an HTTP error body read for its message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The upstream endpoint and a client for it.
pub(crate) struct Upstream {
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    session_header: Option<HeaderName>,
    retries: u32,
    retry_backoff: Duration,
    first_token_timeout: Duration,
}

/// A response whose status is a success, with the deadline of its first event.
pub(crate) struct Opened {
    pub response: reqwest::Response,
    pub first_token_deadline: Instant,
}

impl Upstream {
    /// Builds the client (TCP_NODELAY, connect timeout, no redirects).
    pub fn new(cfg: &SseConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let bad = |field: &'static str, message: String| ConfigError { field, message };
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| bad("headers", e.to_string()))?;
            let mut value =
                HeaderValue::from_str(value).map_err(|e| bad("headers", e.to_string()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(token) = &cfg.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| bad("token", "not a valid header value".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let session_header = cfg
            .session_field
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| HeaderName::from_bytes(s.as_bytes()))
            .transpose()
            .map_err(|e| bad("session_field", e.to_string()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(cfg.connect_timeout)
            .tcp_nodelay(true)
            .redirect(Policy::none())
            .user_agent(concat!(
                "openagentio-openai-sse/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| bad("base_url", format!("cannot build the HTTP client: {e}")))?;
        Ok(Upstream {
            client,
            endpoint: cfg.endpoint()?,
            headers,
            session_header,
            retries: cfg.retries,
            retry_backoff: cfg.retry_backoff,
            first_token_timeout: cfg.first_token_timeout,
        })
    }

    /// The endpoint for logs (password redacted).
    pub fn endpoint_for_logs(&self) -> String {
        redacted_url(&self.endpoint)
    }

    /// Posts `req` until a success status arrives, retrying retryable failures
    /// (connection refused, 429, 5xx) up to the configured count, after the
    /// backoff or the upstream's `Retry-After`, whichever is longer. Gives up
    /// when the wait would pass `total_deadline`.
    pub async fn open(
        &self,
        req: &ChatRequest,
        total_deadline: Instant,
    ) -> Result<Opened, SseError> {
        let body = Bytes::from(
            serde_json::to_vec(&req.body).map_err(|e| SseError::InvalidRequest(e.to_string()))?,
        );
        let mut headers = self.headers.clone();
        if let (Some(name), Some(session)) = (&self.session_header, &req.session) {
            let value = HeaderValue::from_str(session).map_err(|_| {
                SseError::InvalidRequest("the session id is not a valid header value".into())
            })?;
            headers.insert(name.clone(), value);
        }
        let mut attempt = 0u32;
        loop {
            let first_token_deadline =
                (Instant::now() + self.first_token_timeout).min(total_deadline);
            let err = match self
                .attempt(
                    body.clone(),
                    headers.clone(),
                    first_token_deadline,
                    total_deadline,
                )
                .await
            {
                Ok(response) => {
                    return Ok(Opened {
                        response,
                        first_token_deadline,
                    });
                }
                Err(e) => e,
            };
            if attempt >= self.retries || !err.retry_before_stream() {
                return Err(err);
            }
            let backoff = self
                .retry_backoff
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            let delay = backoff.max(err.retry_after().unwrap_or_default());
            if Instant::now() + delay >= total_deadline {
                return Err(err);
            }
            attempt += 1;
            tracing::debug!(attempt, ?delay, error = %err, "retrying the upstream request");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        body: Bytes,
        headers: HeaderMap,
        first_token_deadline: Instant,
        total_deadline: Instant,
    ) -> Result<reqwest::Response, SseError> {
        let kind = if first_token_deadline < total_deadline {
            TimeoutKind::FirstToken
        } else {
            TimeoutKind::Total
        };
        let send = self
            .client
            .post(self.endpoint.clone())
            .headers(headers)
            .body(body)
            .send();
        let response = match tokio::time::timeout_at(first_token_deadline, send).await {
            Err(_) => return Err(SseError::Timeout(kind)),
            Ok(Err(e)) => return Err(SseError::from_reqwest(e, true)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let body = read_capped(response, MAX_ERROR_BODY, first_token_deadline).await;
        Err(SseError::Http {
            status: status.as_u16(),
            message: format!(
                "{}: {}",
                status.canonical_reason().unwrap_or("error"),
                http_error_message(&body)
            ),
            retry_after,
        })
    }
}

/// Up to `cap` bytes of `response`'s body, whatever arrives by `deadline`.
async fn read_capped(mut response: reqwest::Response, cap: usize, deadline: Instant) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < cap {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())])
            }
            _ => break,
        }
    }
    body
}
