//! `GET /v1/agents` and `GET /v1/agents/{target}`: the targets the service's
//! bridges declare, with description and input schema. A request whose calls
//! go to another tenant than the one the bridges serve (a tenant-bound token,
//! or `X-Tenant-Id`) sees none of them: it could call none.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use openagentio_core::{BusError, TargetInfo};

use crate::error::ApiError;
use crate::headers::RequestContext;
use crate::routes::path_param;
use crate::state::AppState;

/// The targets a call made with `ctx` reaches. The bridges serve theirs in
/// the bus's default tenant.
fn reachable(state: &AppState, ctx: &RequestContext) -> Vec<TargetInfo> {
    let served_in = state.bus().settings().tenant.as_str();
    if ctx.tenant.as_deref().unwrap_or(served_in) != served_in {
        return Vec::new();
    }
    state.status().targets()
}

/// Every target, as a JSON array sorted by name.
pub(crate) async fn list(
    State(state): State<AppState>,
    ctx: RequestContext,
) -> Json<Vec<TargetInfo>> {
    let mut targets = reachable(&state, &ctx);
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Json(targets)
}

/// One target; 404 `NO_HANDLER` when no bridge declares it.
pub(crate) async fn one(
    State(state): State<AppState>,
    ctx: RequestContext,
    target: Result<Path<String>, PathRejection>,
) -> Result<Json<TargetInfo>, ApiError> {
    let name = path_param(target)?;
    reachable(&state, &ctx)
        .into_iter()
        .find(|t| t.name == name)
        .map(Json)
        .ok_or_else(|| BusError::no_handler(format!("no target named {name:?}")).into())
}
