//! `GET /healthz` (alive), `GET /readyz` (no bridge unhealthy) and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use openagentio_core::HealthState;
use serde_json::{Value, json};

use crate::state::AppState;

/// 200 `{"status": "ok"}` while the process serves HTTP.
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// 200 unless a bridge is unhealthy, else 503; the body lists each bridge:
/// `{"status": "ready"|"degraded"|"not_ready", "bridges": [{"name", "state", "reason"?}]}`.
///
/// A degraded bridge (serving in part, or recovering: one of several MCP
/// servers down, a failed upstream call, a restart under way) keeps the
/// service ready: it still serves, and a 503 would take it out of rotation
/// until a call it could then never get proves it well again.
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let bridges = state.status().bridges();
    let worst = bridges
        .iter()
        .map(|(_, h)| h.state)
        .max_by_key(|s| match s {
            HealthState::Healthy => 0,
            HealthState::Degraded => 1,
            HealthState::Unhealthy => 2,
        })
        .unwrap_or(HealthState::Healthy);
    let list: Vec<Value> = bridges
        .into_iter()
        .map(|(name, h)| {
            let mut v = json!({"name": name, "state": h.state});
            if let Some(r) = h.reason {
                v["reason"] = Value::String(r);
            }
            v
        })
        .collect();
    let (status, word) = match worst {
        HealthState::Healthy => (StatusCode::OK, "ready"),
        HealthState::Degraded => (StatusCode::OK, "degraded"),
        HealthState::Unhealthy => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
    };
    (status, Json(json!({"status": word, "bridges": list})))
}

/// The service's metrics followed by the gateway's own, in the Prometheus text format.
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.status().metrics();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&state.metrics().render());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
