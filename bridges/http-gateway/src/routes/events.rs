//! `POST /v1/events/{event_type}`: publishes one event; 202 once the bus took
//! it, and (over NATS, when connected) the server did not refuse it: a
//! refusal (permissions) answers `AUTH_FAILURE`, not a silent success.
//!
//! As in the reference adapter, the publish may take at most 5 s (or the
//! request's `X-Timeout-Ms`, else the configured call timeout, when
//! shorter) before it answers `AGENT_TIMEOUT`.

use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use openagentio_core::{BusError, Envelope};

use crate::body::JsonPayload;
use crate::error::ApiError;
use crate::headers::RequestContext;
use crate::routes::path_param;
use crate::state::AppState;

const PUBLISH_WAIT: Duration = Duration::from_secs(5);

pub(crate) async fn publish(
    State(state): State<AppState>,
    event_type: Result<Path<String>, PathRejection>,
    ctx: RequestContext,
    payload: JsonPayload,
) -> Result<StatusCode, ApiError> {
    let event_type = path_param(event_type)?;
    let mut env = Envelope::new(event_type).with_payload(payload.into_value());
    ctx.apply(&mut env);
    let wait = ctx
        .timeout
        .or(state.config().default_timeout)
        .map_or(PUBLISH_WAIT, |t| t.min(PUBLISH_WAIT));
    let bus = state.bus();
    // While the transport is away, its client holds the event for when it
    // is back: taken, as before; there is no server to confirm with.
    let published = async {
        if bus.transport().is_connected() {
            bus.publish_confirmed(env).await
        } else {
            bus.publish(env).await
        }
    };
    match tokio::time::timeout(wait, published).await {
        Ok(Ok(())) => Ok(StatusCode::ACCEPTED),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => {
            Err(BusError::timeout(format!("the bus did not take the event within {wait:?}")).into())
        }
    }
}
