//! Middleware around handlers: each layer sees a [`Call`] and decides whether
//! and how often to run the rest of the chain.
//!
//! Layers are given outermost first. A typical chain:
//! `[Recover, Trace, Logging, DeadLetter, Retry]`: retries happen inside the
//! dead-letter layer, so only exhausted failures become dead letters.

mod dead_letter;
mod logging;
mod recover;
mod retry;
mod trace;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use dead_letter::{DLQ_LAST_ERROR_KEY, DLQ_ORIGINAL_EVENT_TYPE_KEY, DeadLetter};
pub use logging::Logging;
pub use recover::{Recover, panic_message};
pub use retry::{RETRY_ATTEMPT_KEY, Retry, RetryPolicy};
pub use trace::Trace;

use crate::error::BusError;
use crate::request::Call;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The innermost step of a chain: runs the user's handler.
pub(crate) type Endpoint =
    Arc<dyn Fn(Call) -> BoxFuture<'static, Result<(), BusError>> + Send + Sync>;

/// One layer around handlers.
///
/// ```
/// use openagentio_core::middleware::{Middleware, Next};
/// use openagentio_core::{BusError, Call};
///
/// struct CountCalls(std::sync::atomic::AtomicU64);
///
/// #[async_trait::async_trait]
/// impl Middleware for CountCalls {
///     async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError> {
///         self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         next.run(call).await
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait Middleware: Send + Sync + 'static {
    /// Handles `call`, normally by running `next` once.
    async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError>;
}

/// The rest of the chain after the current layer. `Copy`, so a layer may run it
/// more than once (retry).
#[derive(Clone, Copy)]
pub struct Next<'a> {
    rest: &'a [Arc<dyn Middleware>],
    endpoint: &'a Endpoint,
}

impl<'a> Next<'a> {
    pub(crate) fn new(chain: &'a [Arc<dyn Middleware>], endpoint: &'a Endpoint) -> Self {
        Next {
            rest: chain,
            endpoint,
        }
    }

    /// Runs the remaining layers and the handler.
    pub fn run(self, call: Call) -> BoxFuture<'a, Result<(), BusError>> {
        match self.rest.split_first() {
            Some((layer, rest)) => layer.handle(
                call,
                Next {
                    rest,
                    endpoint: self.endpoint,
                },
            ),
            None => (self.endpoint)(call),
        }
    }
}
