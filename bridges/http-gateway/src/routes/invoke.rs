//! `POST /v1/agents/{target}/invoke`: one call, one answer.
//!
//! The body is the payload. The answer is 200 with the final frame's payload as
//! JSON, or 204 when that payload is empty; a failure answers its JSON error
//! with the status of its code. A client that leaves before the answer cancels
//! the call.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::body::JsonPayload;
use crate::error::ApiError;
use crate::headers::RequestContext;
use crate::routes::{no_query, path_param};
use crate::state::AppState;

pub(crate) async fn invoke(
    State(state): State<AppState>,
    target: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    ctx: RequestContext,
    payload: JsonPayload,
) -> Result<Response, ApiError> {
    no_query(query.as_deref())?;
    let target = path_param(target)?;
    let mut opts = ctx.call_options();
    opts.timeout = ctx.timeout.or(state.config().default_timeout);
    let reply = state
        .bus()
        .invoke_with(&target, payload.into_value(), opts)
        .await?;
    Ok(match reply.payload {
        None => StatusCode::NO_CONTENT.into_response(),
        Some(v) => Json(v).into_response(),
    })
}
