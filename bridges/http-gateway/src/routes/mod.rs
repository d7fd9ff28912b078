//! The routes, one file each, and the router that joins them.

pub(crate) mod catalog;
pub(crate) mod events;
pub(crate) mod feed;
pub(crate) mod health;
pub(crate) mod invoke;
pub(crate) mod stream;

use axum::extract::rejection::PathRejection;

use crate::error::ApiError;

/// A path parameter, or a JSON 400 when it cannot be decoded.
pub(crate) fn path_param(
    p: Result<axum::extract::Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    match p {
        Ok(axum::extract::Path(s)) if !s.is_empty() => Ok(s),
        Ok(_) => Err(ApiError::bad_request("empty path parameter")),
        Err(e) => Err(ApiError::bad_request(format!("bad path: {e}"))),
    }
}

/// Refuses a query string on a route that reads none: `?timeout=100`
/// would otherwise be ignored without a word. What a call takes goes in
/// headers (`X-Timeout-Ms`, `X-Tenant-Id`, ...).
pub(crate) fn no_query(query: Option<&str>) -> Result<(), ApiError> {
    match query.filter(|q| !q.is_empty()) {
        Some(q) => Err(ApiError::bad_request(format!(
            "this route takes no query parameters (got {q:?}); a call's options go in \
             headers: X-Timeout-Ms, X-Tenant-Id, X-Session-Id, ..."
        ))),
        None => Ok(()),
    }
}
