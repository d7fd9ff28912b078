//! The router: routes, auth, CORS, counters and JSON fallbacks put together.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use openagentio_core::{Bus, ServiceStatus};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::GatewayConfig;
use crate::error::{method_not_allowed, route_not_found};
use crate::routes::{catalog, events, feed, health, invoke, stream};
use crate::state::AppState;
use crate::{auth, headers, metrics, origin};

/// Builds the gateway's router over `bus`.
///
/// | route | |
/// | --- | --- |
/// | `POST /v1/agents/{target}/invoke` | one call; 200 with the answer, 204 when empty |
/// | `POST /v1/agents/{target}/stream` | the frames as `text/event-stream` |
/// | `POST /v1/events/{event_type}` | publish; 202 |
/// | `GET /v1/events/{event_type}` | the events (wildcards allowed) as `text/event-stream` |
/// | `GET /v1/agents`, `GET /v1/agents/{target}` | the target catalog |
/// | `GET /healthz`, `GET /readyz`, `GET /metrics` | open even when tokens are configured |
///
/// Unknown routes answer 404 and wrong methods 405, with the JSON error shape.
///
/// ```
/// use std::sync::Arc;
/// use openagentio_core::{BridgeHealth, Bus, ServiceStatus, TargetInfo};
/// use openagentio_http_gateway::{GatewayConfig, router};
///
/// struct NoBridges;
/// impl ServiceStatus for NoBridges {
///     fn bridges(&self) -> Vec<(String, BridgeHealth)> { Vec::new() }
///     fn targets(&self) -> Vec<TargetInfo> { Vec::new() }
/// }
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let app = router(Bus::memory(), GatewayConfig::default(), Arc::new(NoBridges));
/// # let _ = app; }
/// ```
pub fn router(bus: Bus, config: GatewayConfig, status: Arc<dyn ServiceStatus>) -> Router {
    let cors = cors_layer(&config.cors_origins);
    let state = AppState::new(bus, config, status);
    let api = Router::new()
        .route("/v1/agents", get(catalog::list))
        .route("/v1/agents/{target}", get(catalog::one))
        .route("/v1/agents/{target}/invoke", post(invoke::invoke))
        .route("/v1/agents/{target}/stream", post(stream::stream))
        .route(
            "/v1/events/{event_type}",
            post(events::publish).get(feed::feed),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::require))
        .route_layer(from_fn_with_state(state.clone(), origin::require_allowed));
    let mut open = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));
    if state.config().metrics {
        open = open.route("/metrics", get(health::metrics));
    }
    let mut app = open
        .merge(api)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .with_state(state);
    if let Some(cors) = cors {
        app = app.layer(cors);
    }
    app
}

fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| match HeaderValue::from_str(o.trim_end_matches('/')) {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!(origin = %o, "ignoring a CORS origin that is not a valid header value");
                    None
                }
            })
            .collect();
        AllowOrigin::list(list)
    };
    let mut allow_headers = vec![header::AUTHORIZATION, header::CONTENT_TYPE];
    allow_headers.extend(headers::ALL.iter().map(|h| HeaderName::from_static(h)));
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers(allow_headers)
            .max_age(std::time::Duration::from_secs(600)),
    )
}
