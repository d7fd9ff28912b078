//! `GET /healthz` (alive), `GET /readyz` (every bridge healthy) and `GET /metrics`.

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

/// 200 when every bridge reports healthy, else 503; the body lists each
/// bridge: `{"status": "ready"|"not_ready", "bridges": [{"name", "state", "reason"?}]}`.
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let bridges = state.status().bridges();
    let ready = bridges.iter().all(|(_, h)| h.state == HealthState::Healthy);
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
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if ready { "ready" } else { "not_ready" };
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
