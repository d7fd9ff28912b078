use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

use super::{Middleware, Next};
use crate::error::BusError;
use crate::request::Call;

/// Turns a panicking handler into an `AGENT_UNAVAILABLE` error. (The bus also
/// catches panics outside the chain.) The layers outside it see the panic as
/// that error: put it inside those that should (logging, dead-letter); in the
/// recommended order, outermost, it guards the other layers themselves.
#[derive(Clone, Copy, Debug, Default)]
pub struct Recover;

/// The message of a panic payload.
pub fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[async_trait::async_trait]
impl Middleware for Recover {
    async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError> {
        let bus = call.request.bus().clone();
        let name = call.name.clone();
        match AssertUnwindSafe(next.run(call)).catch_unwind().await {
            Ok(r) => r,
            Err(panic) => {
                // Caught here, the bus's own guard does not see it: count
                // and say it as that guard would.
                crate::stats::Counters::bump(&bus.inner.counters.handler_panics);
                let message = panic_message(panic.as_ref());
                tracing::error!(target = %name, panic = %message, "handler panicked");
                Err(BusError::unavailable(format!(
                    "handler panicked: {message}"
                )))
            }
        }
    }
}
