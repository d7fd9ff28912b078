//! `GET /v1/agents` and `GET /v1/agents/{target}`: the targets that calls
//! through this gateway reach, with description and input schema.
//!
//! On NATS that is every service on the bus: the catalogs of all services
//! built on this runtime are gathered (see [`openagentio_core::catalog`]) in
//! the request's tenant, so a gateway in front of a fleet lists the fleet's
//! targets (reference-SDK agents serve no catalog: theirs are not listed).
//! Should the bus not answer, the service's own targets are listed. On the
//! in-memory bus, the service is the bus: its bridges' targets, and none for
//! a request whose calls go to another tenant (a tenant-bound token, or
//! `X-Tenant-Id`) than the one they serve: it could call none.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use openagentio_core::{BusError, TargetInfo, catalog};

use crate::error::ApiError;
use crate::headers::RequestContext;
use crate::routes::path_param;
use crate::state::AppState;

/// How long the gateway waits for the bus's catalogs: services answer within
/// milliseconds; a listing should not keep its client waiting.
const GATHER_TIMEOUT: Duration = Duration::from_secs(2);
const GATHER_GRACE: Duration = Duration::from_millis(100);

/// The targets a call made with `ctx` reaches, sorted by name; a tenant no
/// call could be made in is `INVALID_REQUEST`, as on the call routes.
async fn reachable(state: &AppState, ctx: &RequestContext) -> Result<Vec<TargetInfo>, ApiError> {
    if let Some(t) = &ctx.tenant {
        openagentio_core::subject::check_tenant(t)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    Ok(listed(state, ctx).await)
}

async fn listed(state: &AppState, ctx: &RequestContext) -> Vec<TargetInfo> {
    let bus = state.bus();
    if bus.transport().kind() != "memory" {
        match catalog::gather(bus, ctx.tenant.as_deref(), GATHER_TIMEOUT, GATHER_GRACE).await {
            Ok(targets) => return targets,
            Err(e) => {
                tracing::debug!(error = %e, "the bus's catalogs could not be gathered; listing this service's");
            }
        }
    }
    // The bridges serve theirs in the bus's default tenant.
    let served_in = bus.settings().tenant.as_str();
    if ctx.tenant.as_deref().unwrap_or(served_in) != served_in {
        return Vec::new();
    }
    let mut targets = state.status().targets();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    targets
}

/// Every target, as a JSON array sorted by name.
pub(crate) async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
) -> Result<Json<Vec<TargetInfo>>, ApiError> {
    reachable(&state, &ctx).await.map(Json)
}

/// One target; 404 `NO_HANDLER` when no catalog lists it.
pub(crate) async fn one(
    State(state): State<AppState>,
    ctx: RequestContext,
    target: Result<Path<String>, PathRejection>,
) -> Result<Json<TargetInfo>, ApiError> {
    let name = path_param(target)?;
    reachable(&state, &ctx)
        .await?
        .into_iter()
        .find(|t| t.name == name)
        .map(Json)
        .ok_or_else(|| BusError::no_handler(format!("no target named {name:?}")).into())
}
