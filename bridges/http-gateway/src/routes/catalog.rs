//! `GET /v1/agents` and `GET /v1/agents/{target}`: the targets the service's
//! bridges declare, with description and input schema.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use openagentio_core::{BusError, TargetInfo};

use crate::error::ApiError;
use crate::routes::path_param;
use crate::state::AppState;

/// Every target, as a JSON array sorted by name.
pub(crate) async fn list(State(state): State<AppState>) -> Json<Vec<TargetInfo>> {
    let mut targets = state.status().targets();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Json(targets)
}

/// One target; 404 `NO_HANDLER` when no bridge declares it.
pub(crate) async fn one(
    State(state): State<AppState>,
    target: Result<Path<String>, PathRejection>,
) -> Result<Json<TargetInfo>, ApiError> {
    let name = path_param(target)?;
    state
        .status()
        .targets()
        .into_iter()
        .find(|t| t.name == name)
        .map(Json)
        .ok_or_else(|| BusError::no_handler(format!("no target named {name:?}")).into())
}
