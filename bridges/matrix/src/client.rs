//! A lean client of the Matrix client-server API (v3) over `reqwest`.
//!
//! It speaks only the endpoints the bridge needs, honours `M_LIMIT_EXCEEDED`
//! (`retry_after_ms`) by waiting and retrying, and cancels an "auth lost"
//! token as soon as the homeserver rejects the access token, so the sync loop
//! learns of a logout at once.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::api::{MessagesResponse, SyncResponse, WhoAmI};
use crate::error::MatrixError;
use crate::secret::Secret;

/// Longest total wait for one request while rate limited.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(600);
/// Timeout of requests other than `/sync`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of an idempotent send on network or server errors.
const SEND_ATTEMPTS: u32 = 5;

/// A client for one homeserver, with or without an access token. Cloning is
/// cheap; clones share the connection pool and the auth-lost token.
#[derive(Clone)]
pub(crate) struct MatrixClient {
    http: reqwest::Client,
    base: String,
    user_id: String,
    token: Option<Secret>,
    auth_lost: CancellationToken,
}

/// A successful password login.
pub(crate) struct Login {
    pub user_id: String,
    pub device_id: Option<String>,
    pub access_token: Secret,
}

/// Percent-encodes one path segment (room ids, aliases, event ids, txn ids).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl MatrixClient {
    /// A client without a token, for login.
    pub fn new(base: &str, user_id: &str) -> Result<Self, MatrixError> {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("openagentio-matrix/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| MatrixError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(MatrixClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            user_id: user_id.to_owned(),
            token: None,
            auth_lost: CancellationToken::new(),
        })
    }

    /// This client with `token` (and a fresh auth-lost token).
    pub fn with_token(&self, token: Secret) -> Self {
        MatrixClient {
            http: self.http.clone(),
            base: self.base.clone(),
            user_id: self.user_id.clone(),
            token: Some(token),
            auth_lost: CancellationToken::new(),
        }
    }

    /// Cancelled once the homeserver has rejected this client's token.
    pub fn auth_lost(&self) -> &CancellationToken {
        &self.auth_lost
    }

    fn scrub(&self, s: String) -> String {
        match &self.token {
            Some(t) => t.scrub(&s),
            None => s,
        }
    }

    /// One API call; waits out rate limits. `path` starts with `/_matrix/`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Value, MatrixError> {
        let url = format!("{}{}", self.base, path);
        let mut waited = Duration::ZERO;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .timeout(timeout)
                .query(query);
            if let Some(t) = &self.token {
                req = req.bearer_auth(t.expose());
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| self.network_error(e))?;
            let status = resp.status();
            let retry_header = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let bytes = resp.bytes().await.map_err(|e| self.network_error(e))?;
            if status.is_success() {
                if bytes.is_empty() {
                    return Ok(json!({}));
                }
                return serde_json::from_slice(&bytes)
                    .map_err(|e| MatrixError::Protocol(format!("{path}: {e}")));
            }
            let err: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let errcode = err["errcode"].as_str().unwrap_or("").to_owned();
            let message =
                self.scrub(err["error"].as_str().map(str::to_owned).unwrap_or_else(|| {
                    String::from_utf8_lossy(&bytes).chars().take(200).collect()
                }));
            if status == StatusCode::TOO_MANY_REQUESTS || errcode == "M_LIMIT_EXCEEDED" {
                let wait = err["retry_after_ms"]
                    .as_u64()
                    .map(Duration::from_millis)
                    .or(retry_header)
                    .unwrap_or_else(|| Duration::from_millis(500 * u64::from(attempt.min(10))));
                if waited + wait > MAX_RATE_LIMIT_WAIT {
                    return Err(MatrixError::RateLimited(waited + wait));
                }
                tracing::debug!(path = %redact_path(path), retry_after_ms = wait.as_millis() as u64, "rate limited by the homeserver; waiting");
                tokio::time::sleep(wait).await;
                waited += wait;
                continue;
            }
            // A homeserver answers every client-server path it does not
            // serve with a Matrix error (`M_UNRECOGNIZED`); a bare 404 or
            // 405 comes from something else at that address.
            if errcode.is_empty()
                && matches!(
                    status,
                    StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
                )
            {
                return Err(MatrixError::NotAHomeserver(format!(
                    "config: homeserver_url {}: {} answered HTTP {} without a Matrix error, so no \
                     homeserver serves the client-server API there; give the homeserver's \
                     base URL (like \"https://matrix.example.org\", without a path)",
                    self.base,
                    redact_path(path),
                    status.as_u16()
                )));
            }
            if errcode == "M_UNKNOWN_TOKEN" || errcode == "M_MISSING_TOKEN" {
                if self.token.is_some() {
                    self.auth_lost.cancel();
                }
                return Err(MatrixError::UnknownToken {
                    user_id: self.user_id.clone(),
                    errcode,
                    message,
                    soft_logout: err["soft_logout"].as_bool().unwrap_or(false),
                });
            }
            return Err(MatrixError::Api {
                status: status.as_u16(),
                errcode: if errcode.is_empty() {
                    "M_UNKNOWN".into()
                } else {
                    errcode
                },
                message,
            });
        }
    }

    fn network_error(&self, e: reqwest::Error) -> MatrixError {
        let e = e.without_url();
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        if e.is_timeout() {
            msg = format!("request timed out ({msg})");
        }
        MatrixError::Network(self.scrub(msg))
    }

    /// `GET /account/whoami`.
    pub async fn whoami(&self) -> Result<WhoAmI, MatrixError> {
        let v = self
            .call(
                Method::GET,
                "/_matrix/client/v3/account/whoami",
                &[],
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        serde_json::from_value(v).map_err(|e| MatrixError::Protocol(format!("whoami: {e}")))
    }

    /// `POST /login` with a password; reuses `device_id` when given.
    pub async fn login_password(
        &self,
        password: &Secret,
        device_id: Option<&str>,
        display_name: &str,
    ) -> Result<Login, MatrixError> {
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.user_id},
            "password": password.expose(),
            "initial_device_display_name": display_name,
        });
        if let Some(d) = device_id {
            body["device_id"] = json!(d);
        }
        let v = self
            .call(
                Method::POST,
                "/_matrix/client/v3/login",
                &[],
                Some(&body),
                REQUEST_TIMEOUT,
            )
            .await
            .map_err(|e| match e {
                MatrixError::Api {
                    status: 400..=499,
                    errcode,
                    message,
                } => MatrixError::LoginRefused {
                    user_id: self.user_id.clone(),
                    errcode,
                    message: password.scrub(&message),
                },
                other => other,
            })?;
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| MatrixError::Protocol("login answer without access_token".into()))?;
        Ok(Login {
            user_id: v["user_id"].as_str().unwrap_or(&self.user_id).to_owned(),
            device_id: v["device_id"].as_str().map(str::to_owned),
            access_token: Secret::new(token),
        })
    }

    /// `GET /sync`.
    pub async fn sync(
        &self,
        since: Option<&str>,
        filter: &str,
        timeout: Duration,
        full_state: bool,
    ) -> Result<SyncResponse, MatrixError> {
        let mut q = vec![
            ("timeout", timeout.as_millis().to_string()),
            ("filter", filter.to_owned()),
            ("set_presence", "offline".to_owned()),
        ];
        if let Some(s) = since {
            q.push(("since", s.to_owned()));
        }
        if full_state {
            q.push(("full_state", "true".to_owned()));
        }
        let v = self
            .call(
                Method::GET,
                "/_matrix/client/v3/sync",
                &q,
                None,
                timeout + Duration::from_secs(15),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| MatrixError::Protocol(format!("sync: {e}")))
    }

    /// `GET /rooms/{room}/messages`.
    pub async fn messages(
        &self,
        room: &str,
        from: &str,
        to: Option<&str>,
        backwards: bool,
        limit: u32,
        filter: &str,
    ) -> Result<MessagesResponse, MatrixError> {
        let mut q = vec![
            ("from", from.to_owned()),
            ("dir", if backwards { "b" } else { "f" }.to_owned()),
            ("limit", limit.to_string()),
            ("filter", filter.to_owned()),
        ];
        if let Some(t) = to {
            q.push(("to", t.to_owned()));
        }
        let path = format!("/_matrix/client/v3/rooms/{}/messages", enc(room));
        let v = self
            .call(Method::GET, &path, &q, None, REQUEST_TIMEOUT)
            .await?;
        serde_json::from_value(v).map_err(|e| MatrixError::Protocol(format!("messages: {e}")))
    }

    /// `PUT /rooms/{room}/send/{type}/{txn}`; returns the event id. The same
    /// transaction id never posts twice, so network and server errors are
    /// retried.
    pub async fn send(
        &self,
        room: &str,
        event_type: &str,
        txn_id: &str,
        content: &Value,
    ) -> Result<String, MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/{}/{}",
            enc(room),
            enc(event_type),
            enc(txn_id)
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .call(Method::PUT, &path, &[], Some(content), REQUEST_TIMEOUT)
                .await
            {
                Ok(v) => {
                    return v["event_id"].as_str().map(str::to_owned).ok_or_else(|| {
                        MatrixError::Protocol("send answer without event_id".into())
                    });
                }
                Err(e) if e.is_retryable() && attempt < SEND_ATTEMPTS => {
                    let delay = Duration::from_millis(250 << attempt);
                    tracing::warn!(error = %e, attempt, "send failed; retrying with the same transaction id");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `POST /join/{room_or_alias}`; returns the room id.
    pub async fn join(&self, room: &str) -> Result<String, MatrixError> {
        let path = format!("/_matrix/client/v3/join/{}", enc(room));
        let v = self
            .call(Method::POST, &path, &[], Some(&json!({})), REQUEST_TIMEOUT)
            .await?;
        v["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| MatrixError::Protocol("join answer without room_id".into()))
    }

    /// `GET /directory/room/{alias}`; returns the room id.
    pub async fn resolve_alias(&self, alias: &str) -> Result<String, MatrixError> {
        let path = format!("/_matrix/client/v3/directory/room/{}", enc(alias));
        let v = self
            .call(Method::GET, &path, &[], None, REQUEST_TIMEOUT)
            .await?;
        v["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| MatrixError::Protocol("alias answer without room_id".into()))
    }

    /// `GET /joined_rooms`.
    pub async fn joined_rooms(&self) -> Result<Vec<String>, MatrixError> {
        let v = self
            .call(
                Method::GET,
                "/_matrix/client/v3/joined_rooms",
                &[],
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(v["joined_rooms"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `GET /rooms/{room}/state/{type}/{key}`; `None` when the room has no such state.
    pub async fn state_event(
        &self,
        room: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<Value>, MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/{}/{}",
            enc(room),
            enc(event_type),
            enc(state_key)
        );
        match self
            .call(Method::GET, &path, &[], None, REQUEST_TIMEOUT)
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(MatrixError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PUT /rooms/{room}/typing/{user}`.
    pub async fn typing(
        &self,
        room: &str,
        typing: bool,
        timeout: Duration,
    ) -> Result<(), MatrixError> {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/typing/{}",
            enc(room),
            enc(&self.user_id)
        );
        let body = if typing {
            json!({"typing": true, "timeout": timeout.as_millis() as u64})
        } else {
            json!({"typing": false})
        };
        self.call(Method::PUT, &path, &[], Some(&body), REQUEST_TIMEOUT)
            .await
            .map(|_| ())
    }
}

/// The path without ids, for logs (`/_matrix/client/v3/rooms/…/send/…`).
fn redact_path(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.contains('%') { "…" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(enc("!abc:localhost"), "%21abc%3Alocalhost");
        assert_eq!(enc("#a b:x"), "%23a%20b%3Ax");
        assert_eq!(enc("oaio.0199-ab_~"), "oaio.0199-ab_~");
    }
}
