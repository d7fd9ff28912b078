//! Bearer-token authentication.
//!
//! When tokens are configured, every `/v1/...` route needs
//! `Authorization: Bearer <token>` (the scheme is case-insensitive, as in the
//! reference adapter). A missing, malformed or unknown token answers 401
//! `AUTH_FAILURE`. The health routes (`/healthz`, `/readyz`) and `/metrics`
//! stay open. A token bound to a tenant makes the request act for that
//! tenant; naming another one in `X-Tenant-Id` is refused with 403
//! `AUTH_FAILURE` (see [`crate::headers`]).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::ApiToken;
use crate::error::ApiError;
use crate::state::AppState;

/// Who a request acts for, once authenticated. Put into the request's
/// extensions by the auth layer; absent when no tokens are configured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// The tenant the token is bound to, if any.
    pub tenant: Option<String>,
}

/// Checks bearer tokens against the configured list.
#[derive(Clone)]
pub(crate) struct Authenticator {
    tokens: Vec<ApiToken>,
}

impl Authenticator {
    pub fn new(tokens: Vec<ApiToken>) -> Self {
        Authenticator { tokens }
    }

    /// `Ok(None)` when authentication is off; the principal when the token is known.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
        if self.tokens.is_empty() {
            return Ok(None);
        }
        let presented = bearer_token(headers)?;
        // Compare against every token, in constant time per token, so that the
        // time taken does not tell which prefix matched.
        let mut found: Option<&ApiToken> = None;
        for t in &self.tokens {
            if constant_time_eq(t.token.as_bytes(), presented.as_bytes()) && found.is_none() {
                found = Some(t);
            }
        }
        match found {
            Some(t) => Ok(Some(Principal {
                tenant: t.tenant.clone(),
            })),
            None => Err(ApiError::unauthorized("invalid bearer token")),
        }
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing bearer token"))?
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    const PREFIX: &str = "bearer ";
    if raw.len() <= PREFIX.len() || !raw[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return Err(ApiError::unauthorized(
            "Authorization must be \"Bearer <token>\"",
        ));
    }
    let token = raw[PREFIX.len()..].trim();
    if token.is_empty() {
        return Err(ApiError::unauthorized("missing bearer token"));
    }
    Ok(token)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The layer on the `/v1/...` routes: refuses unauthenticated requests and
/// records the [`Principal`] of the others.
pub(crate) async fn require(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    match state.auth().authenticate(req.headers()) {
        Ok(Some(p)) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Ok(None) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn scheme_is_case_insensitive_and_tenant_comes_along() {
        let a = Authenticator::new(vec![ApiToken::new("a"), ApiToken::for_tenant("b", "acme")]);
        assert_eq!(
            a.authenticate(&headers("bearer a")).unwrap(),
            Some(Principal::default())
        );
        assert_eq!(
            a.authenticate(&headers("Bearer  b "))
                .unwrap()
                .unwrap()
                .tenant
                .as_deref(),
            Some("acme")
        );
        assert!(a.authenticate(&headers("Bearer c")).is_err());
        assert!(a.authenticate(&headers("Basic a")).is_err());
        assert!(a.authenticate(&HeaderMap::new()).is_err());
    }

    #[test]
    fn no_tokens_means_open() {
        assert_eq!(
            Authenticator::new(vec![])
                .authenticate(&HeaderMap::new())
                .unwrap(),
            None
        );
    }
}
