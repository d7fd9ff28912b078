use std::time::Instant;

use super::{Middleware, Next};
use crate::error::BusError;
use crate::request::Call;

/// Logs one structured line per call: target, event id, duration and outcome
/// (`ok`, `cancelled` when the caller gave up, else the error code).
#[derive(Clone, Copy, Debug, Default)]
pub struct Logging;

#[async_trait::async_trait]
impl Middleware for Logging {
    async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError> {
        let name = call.name().to_owned();
        let event_id = call.envelope().event_id.clone();
        let kind = call.kind();
        let cancel = call.request.cancellation().clone();
        let started = Instant::now();
        let result = next.run(call).await;
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &result {
            Ok(()) => tracing::info!(
                target: "openagentio::call",
                name = %name, ?kind, %event_id, duration_ms, outcome = "ok",
                "call served"
            ),
            // A caller that gave up (went away, deadline, drain) is not a
            // failure of the handler: no warning for each client that leaves.
            Err(e) if cancel.is_cancelled() => tracing::info!(
                target: "openagentio::call",
                name = %name, ?kind, %event_id, duration_ms, outcome = "cancelled",
                error = %e.message(), "call cancelled"
            ),
            Err(e) => tracing::warn!(
                target: "openagentio::call",
                name = %name, ?kind, %event_id, duration_ms, outcome = %e.code(),
                error = %e.message(), "call failed"
            ),
        }
        result
    }
}
