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
