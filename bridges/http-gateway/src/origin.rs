//! Requests from web pages of origins outside `cors_origins` are refused.
//!
//! CORS alone only keeps a page from *reading* an answer: a page of any
//! origin can still send a simple cross-origin POST, and the call would run.
//! When `cors_origins` names the allowed origins (and not `*`), a `/v1`
//! request whose `Origin` is not one of them is answered 403
//! `AUTH_FAILURE` before anything runs. Requests without `Origin` (every
//! non-browser client) are not affected.

use axum::extract::{Request, State};
use axum::http::header::ORIGIN;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn require_allowed(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let allowed = &state.config().cors_origins;
    let refused = match req.headers().get(ORIGIN) {
        None => None,
        Some(_) if allowed.is_empty() || allowed.iter().any(|o| o == "*") => None,
        Some(origin) => {
            let origin = origin.to_str().unwrap_or("");
            let listed = allowed
                .iter()
                .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
            (!listed).then(|| origin.to_owned())
        }
    };
    match refused {
        None => next.run(req).await,
        Some(origin) => {
            ApiError::forbidden(format!("origin {origin:?} is not one of http.cors_origins"))
                .into_response()
        }
    }
}
