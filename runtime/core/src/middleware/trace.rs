use tracing::Instrument;

use super::{Middleware, Next};
use crate::error::BusError;
use crate::request::Call;

/// Runs the handler inside a `tracing` span named `acp.handle` that carries the
/// target, event type, trace and session ids of the request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Trace;

#[async_trait::async_trait]
impl Middleware for Trace {
    async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError> {
        let env = call.envelope();
        let span = tracing::info_span!(
            "acp.handle",
            target = %call.name(),
            event_type = %env.event_type,
            event_id = %env.event_id,
            trace_id = %env.trace_id,
            span_id = %env.span_id,
            session_id = %env.session_id,
            tenant_id = %env.tenant_id,
        );
        next.run(call).instrument(span).await
    }
}
