use serde_json::Value;

use super::{Middleware, Next, RETRY_ATTEMPT_KEY};
use crate::error::BusError;
use crate::request::Call;
use crate::transport::Message;

/// Metadata key naming the event type of a dead letter's original.
pub const DLQ_ORIGINAL_EVENT_TYPE_KEY: &str = "acp.dlq.original_event_type";
/// Metadata key holding the last error of a dead letter.
pub const DLQ_LAST_ERROR_KEY: &str = "acp.dlq.last_error";

/// Publishes the request of a failed call to `{prefix}.dlq.{event_type}`,
/// stamped with `acp.dlq.*` metadata, then passes the failure on. A dead
/// letter whose own handler fails (a store that is down) is logged, not
/// dead-lettered again: that would hand it back to the same handler, for ever.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeadLetter;

/// Whether `env` is a dead letter (it carries `acp.dlq.original_event_type`).
pub(crate) fn is_dead_letter(env: &crate::envelope::Envelope) -> bool {
    env.metadata.contains_key(DLQ_ORIGINAL_EVENT_TYPE_KEY)
}

#[async_trait::async_trait]
impl Middleware for DeadLetter {
    async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError> {
        let bus = call.request.bus().clone();
        let mut original = call.envelope().clone();
        let attempts = call.clone();
        let err = match next.run(call).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if is_dead_letter(&original) {
            tracing::error!(
                event_type = %original.event_type,
                error = %err,
                "a dead letter's handler failed; the dead letter is dropped"
            );
            return Err(err);
        }
        if attempts.attempt.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            original.metadata.insert(
                RETRY_ATTEMPT_KEY.to_owned(),
                Value::from(attempts.attempt()),
            );
        }
        original.metadata.insert(
            DLQ_ORIGINAL_EVENT_TYPE_KEY.to_owned(),
            Value::from(original.event_type.as_str()),
        );
        original
            .metadata
            .insert(DLQ_LAST_ERROR_KEY.to_owned(), Value::from(err.to_string()));
        let subject = bus.subjects().dlq(&original.event_type);
        if let Err(e) = bus
            .transport()
            .publish(Message::envelope(subject, original))
            .await
        {
            tracing::error!(error = %e, "dead letter could not be published");
        }
        Err(err)
    }
}
