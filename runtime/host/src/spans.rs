//! Spans around served calls and gateway requests, parented by the W3C trace
//! context they arrive with, so one trace spans gateway → bus → handler →
//! nested calls, across processes.

use axum::extract::Request;
use axum::middleware::Next as HttpNext;
use axum::response::Response;
use openagentio_core::middleware::{Middleware, Next};
use openagentio_core::{BusError, Call, CallKind};
use tracing::Instrument;

use crate::telemetry::set_remote_parent;

/// Middleware: runs each handler inside a `bus.handle` span whose parent is the
/// request's `traceparent`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HandleSpan;

#[async_trait::async_trait]
impl Middleware for HandleSpan {
    async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError> {
        let env = call.envelope();
        let kind = match call.kind() {
            CallKind::Invoke => "invoke",
            CallKind::Stream => "stream",
            CallKind::Event => "event",
        };
        let span = tracing::info_span!(
            "bus.handle",
            otel.name = %format!("bus {kind} {}", call.name()),
            otel.kind = "server",
            acp.target = %call.name(),
            acp.event_id = %env.event_id,
            acp.session_id = %env.session_id,
            acp.tenant_id = %env.tenant_id,
            acp.outcome = tracing::field::Empty,
        );
        set_remote_parent(&span, &env.traceparent);
        let result = next.run(call).instrument(span.clone()).await;
        span.record(
            "acp.outcome",
            match &result {
                Ok(()) => "ok",
                Err(e) => e.code().as_str(),
            },
        );
        result
    }
}

/// HTTP middleware for the gateway: one `gateway` span per request, parented by
/// its `traceparent` (or `X-Traceparent`) header.
pub async fn gateway_span(req: Request, next: HttpNext) -> Response {
    // A block, so that no borrow of the (not `Sync`) request lives across an await.
    let traceparent = {
        let headers = req.headers();
        ["x-traceparent", "traceparent"]
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
            .map(str::to_owned)
    };
    let span = tracing::info_span!(
        "gateway.request",
        otel.name = %format!("gateway {} {}", req.method(), req.uri().path()),
        otel.kind = "server",
        http.method = %req.method(),
        http.path = %req.uri().path(),
        http.status = tracing::field::Empty,
    );
    if let Some(tp) = traceparent {
        set_remote_parent(&span, &tp);
    }
    let response = next.run(req).instrument(span.clone()).await;
    span.record("http.status", response.status().as_u16());
    response
}
