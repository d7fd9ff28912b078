//! Request headers that fill the envelope, as in the reference adapter.
//!
//! | header | envelope field |
//! | --- | --- |
//! | `X-Tenant-Id` | `tenant_id` (a tenant-bound token forces its tenant) |
//! | `X-Session-Id` | `session_id` |
//! | `X-Conversation-Id` | `conversation_id` |
//! | `X-User-Id` | `user_id` |
//! | `X-Channel` | `channel` (no default, as in the reference) |
//! | `X-Traceparent`, then W3C `traceparent` | `traceparent`: the call continues that trace |
//! | `X-Trace-Id` | `trace_id`, when no traceparent is given and it is 32 hex digits |
//!
//! | `X-Timeout-Ms` | the call's deadline (an extension: whole milliseconds, 1 to 86,400,000) |
//!
//! Empty headers count as absent. Calls without `X-Timeout-Ms` (the reference
//! adapter has no such header) use
//! [`GatewayConfig::default_timeout`](crate::GatewayConfig::default_timeout).

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use openagentio_core::{CallOptions, Envelope, Text, TraceContext, new_span_id};

use crate::auth::Principal;
use crate::error::ApiError;

/// `X-Trace-Id`
pub const TRACE_ID: &str = "x-trace-id";
/// `X-Traceparent` (the reference adapter's name)
pub const X_TRACEPARENT: &str = "x-traceparent";
/// `traceparent` (W3C Trace Context)
pub const TRACEPARENT: &str = "traceparent";
/// `X-Tenant-Id`
pub const TENANT_ID: &str = "x-tenant-id";
/// `X-Session-Id`
pub const SESSION_ID: &str = "x-session-id";
/// `X-Conversation-Id`
pub const CONVERSATION_ID: &str = "x-conversation-id";
/// `X-User-Id`
pub const USER_ID: &str = "x-user-id";
/// `X-Channel`
pub const CHANNEL: &str = "x-channel";
/// `X-Timeout-Ms`
pub const TIMEOUT_MS: &str = "x-timeout-ms";

/// The longest deadline `X-Timeout-Ms` may ask for: one day.
const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// Every request header the gateway reads, for CORS.
pub(crate) const ALL: [&str; 10] = [
    TRACE_ID,
    X_TRACEPARENT,
    TRACEPARENT,
    TENANT_ID,
    SESSION_ID,
    CONVERSATION_ID,
    USER_ID,
    CHANNEL,
    TIMEOUT_MS,
    "last-event-id",
];

/// The envelope context of one HTTP request: its headers, with the tenant of
/// a tenant-bound token applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Tenant scope.
    pub tenant: Option<String>,
    /// Session id.
    pub session: Option<String>,
    /// Conversation id.
    pub conversation: Option<String>,
    /// End user id.
    pub user: Option<String>,
    /// Originating channel.
    pub channel: Option<String>,
    /// W3C `traceparent` to continue.
    pub traceparent: Option<String>,
    /// The call's deadline, from `X-Timeout-Ms`.
    pub timeout: Option<std::time::Duration>,
}

impl RequestContext {
    /// Reads the headers. Non-UTF-8 values are `INVALID_REQUEST`; a tenant in
    /// `X-Tenant-Id` other than the one `principal`'s token is bound to is 403
    /// `AUTH_FAILURE`.
    pub fn from_headers(
        headers: &HeaderMap,
        principal: Option<&Principal>,
    ) -> Result<Self, ApiError> {
        let get = |name: &str| -> Result<Option<String>, ApiError> {
            match headers.get(name) {
                None => Ok(None),
                Some(v) => {
                    // UTF-8 beyond ASCII (`X-User-Id: José`), as the
                    // reference adapter takes it.
                    let s = std::str::from_utf8(v.as_bytes())
                        .map_err(|_| {
                            ApiError::bad_request(format!("header {name} is not UTF-8 text"))
                        })?
                        .trim();
                    Ok((!s.is_empty()).then(|| s.to_owned()))
                }
            }
        };
        let mut tenant = get(TENANT_ID)?;
        if let Some(bound) = principal.and_then(|p| p.tenant.as_deref()) {
            match &tenant {
                Some(asked) if asked != bound => {
                    return Err(ApiError::forbidden(format!(
                        "this token may act only for tenant {bound:?}, not {asked:?}"
                    )));
                }
                _ => tenant = Some(bound.to_owned()),
            }
        }
        // The first source that holds a valid trace: one that does not is
        // passed over rather than let it start a new trace.
        let valid = |tp: Option<String>| tp.filter(|tp| TraceContext::parse(tp).is_some());
        let traceparent = match valid(get(X_TRACEPARENT)?).or(valid(get(TRACEPARENT)?)) {
            Some(tp) => Some(tp),
            None => get(TRACE_ID)?.and_then(|id| {
                TraceContext::from_ids(&id.to_ascii_lowercase(), &new_span_id())
                    .map(|t| t.traceparent().to_string())
            }),
        };
        let timeout = match get(TIMEOUT_MS)? {
            None => None,
            Some(ms) => match ms.parse::<u64>() {
                Ok(ms @ 1..=MAX_TIMEOUT_MS) => Some(std::time::Duration::from_millis(ms)),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "header X-Timeout-Ms: expected whole milliseconds from 1 to \
                         {MAX_TIMEOUT_MS}, found {ms:?}"
                    )));
                }
            },
        };
        Ok(RequestContext {
            tenant,
            session: get(SESSION_ID)?,
            conversation: get(CONVERSATION_ID)?,
            user: get(USER_ID)?,
            channel: get(CHANNEL)?,
            traceparent,
            timeout,
        })
    }

    /// Call options carrying this context.
    pub fn call_options(&self) -> CallOptions {
        CallOptions {
            tenant: self.tenant.clone(),
            session: self.session.clone(),
            conversation: self.conversation.clone(),
            user: self.user.clone(),
            channel: self.channel.clone(),
            traceparent: self.traceparent.clone(),
            ..CallOptions::default()
        }
    }

    /// Writes this context into an envelope to publish.
    pub fn apply(&self, env: &mut Envelope) {
        let set = |dst: &mut Text, src: &Option<String>| {
            if let Some(s) = src {
                *dst = Text::new(s);
            }
        };
        set(&mut env.tenant_id, &self.tenant);
        set(&mut env.session_id, &self.session);
        set(&mut env.conversation_id, &self.conversation);
        set(&mut env.user_id, &self.user);
        set(&mut env.channel, &self.channel);
        set(&mut env.traceparent, &self.traceparent);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        RequestContext::from_headers(&parts.headers, parts.extensions.get::<Principal>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn header_values_are_utf8_text_beyond_ascii() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-user-id",
            HeaderValue::from_bytes("José".as_bytes()).unwrap(),
        );
        let ctx = RequestContext::from_headers(&h, None).unwrap();
        assert_eq!(ctx.user.as_deref(), Some("José"));
        h.insert("x-user-id", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        let e = RequestContext::from_headers(&h, None).unwrap_err();
        assert!(e.error().message().contains("x-user-id"), "{e:?}");
    }

    #[test]
    fn reference_traceparent_wins_over_w3c_and_trace_id() {
        let h = headers(&[
            (
                X_TRACEPARENT,
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            (
                TRACEPARENT,
                "00-11111111111111111111111111111111-b7ad6b7169203331-01",
            ),
            (TRACE_ID, "22222222222222222222222222222222"),
        ]);
        let c = RequestContext::from_headers(&h, None).unwrap();
        assert!(
            c.traceparent
                .unwrap()
                .contains("0af7651916cd43dd8448eb211c80319c")
        );
    }

    #[test]
    fn an_invalid_traceparent_gives_way_to_the_next_source() {
        let c = RequestContext::from_headers(
            &headers(&[
                (X_TRACEPARENT, "garbage"),
                (
                    TRACEPARENT,
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                ),
            ]),
            None,
        )
        .unwrap();
        assert!(
            c.traceparent
                .unwrap()
                .contains("0af7651916cd43dd8448eb211c80319c")
        );
        let c = RequestContext::from_headers(
            &headers(&[
                (TRACEPARENT, "00-zz-yy-01"),
                (TRACE_ID, "0af7651916cd43dd8448eb211c80319c"),
            ]),
            None,
        )
        .unwrap();
        assert!(
            c.traceparent
                .unwrap()
                .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
        );
    }

    #[test]
    fn trace_id_alone_starts_a_traceparent_of_that_trace() {
        let h = headers(&[(TRACE_ID, "0AF7651916CD43DD8448EB211C80319C")]);
        let c = RequestContext::from_headers(&h, None).unwrap();
        assert!(
            c.traceparent
                .unwrap()
                .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
        );
        let c = RequestContext::from_headers(&headers(&[(TRACE_ID, "not-hex")]), None).unwrap();
        assert_eq!(c.traceparent, None);
    }

    #[test]
    fn bound_tenant_is_forced_and_others_refused() {
        let p = Principal {
            tenant: Some("acme".into()),
        };
        let c = RequestContext::from_headers(&HeaderMap::new(), Some(&p)).unwrap();
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        let e =
            RequestContext::from_headers(&headers(&[(TENANT_ID, "other")]), Some(&p)).unwrap_err();
        assert_eq!(e.status().as_u16(), 403);
    }
}
