//! The context of the request being served, carried into the calls a handler makes.
//!
//! The bus runs every handler inside a task-local [`CallContext`]. `invoke`,
//! `stream_invoke` and `publish` read it, so session, conversation, tenant,
//! user and trace flow into nested calls without the handler copying them.
//! The context does not follow work into `tokio::spawn`ed tasks by itself:
//! take [`current`] and run the spawned future inside [`CallContext::scope`].

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use crate::envelope::Envelope;
use crate::trace_context::TraceContext;

/// Metadata key carrying the caller's timeout in milliseconds.
pub const TIMEOUT_MS_KEY: &str = "acp.timeout_ms";

/// Metadata key by which a caller says whether it wants every frame of a
/// stream. `false` (sent by `invoke`) asks for the answer alone: a stream
/// handler's `started` and `delta` frames are not sent and its terminal frame
/// goes out as `seq` 0. Absent (any reference-SDK caller) or `true` (sent by
/// `stream_invoke`): every frame, as the reference SDKs do.
pub const STREAM_KEY: &str = "acp.stream";

/// Metadata key by which a streaming caller offers flow control: how many
/// frames past the last it has read it can hold. A handler on this runtime
/// then waits, rather than send more, until the caller says (notices on
/// `{prefix}.control.cancel`, event type `acp.control.window`, the count read
/// in [`WINDOW_READ_KEY`]) that it has read on. Reference SDK peers neither
/// send nor read it: their frames are not held back, as before.
pub const WINDOW_KEY: &str = "acp.window";

/// Metadata key of a window notice: how many frames the caller has read.
pub const WINDOW_READ_KEY: &str = "acp.window.read";

/// What a request passes on to the calls made while serving it: its context
/// fields (ids, session, conversation, tenant, user, channel, trace) and its
/// deadline. The payload and metadata stay with the handler's
/// [`crate::Request`], which can then take them without a copy.
#[derive(Clone, Debug)]
pub struct CallContext {
    request: Envelope,
    deadline: Option<Instant>,
}

tokio::task_local! {
    static CURRENT: Arc<CallContext>;
}

/// The deadline the caller of `request` sent (`acp.timeout_ms`), if any.
pub(crate) fn caller_deadline(request: &Envelope) -> Option<Instant> {
    request
        .metadata
        .get(TIMEOUT_MS_KEY)
        .and_then(serde_json::Value::as_u64)
        .map(|ms| crate::call::later_by(Instant::now(), std::time::Duration::from_millis(ms)))
}

/// The context of the request being served by this task, if any.
pub fn current() -> Option<Arc<CallContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

impl CallContext {
    /// The context a request establishes; its deadline comes from the
    /// `acp.timeout_ms` metadata the caller sent.
    pub fn from_request(request: &Envelope) -> Self {
        Self::with_deadline(request, caller_deadline(request))
    }

    /// The context of `request` with `deadline`.
    pub(crate) fn with_deadline(request: &Envelope, deadline: Option<Instant>) -> Self {
        CallContext {
            request: request.without_body(),
            deadline,
        }
    }

    /// The request being served: its envelope without payload and metadata.
    pub fn request(&self) -> &Envelope {
        &self.request
    }

    /// When the caller stops waiting.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The request's trace, from `traceparent` or `trace_id`/`span_id`.
    pub fn trace(&self) -> Option<TraceContext> {
        let env = &self.request;
        TraceContext::parse(&env.traceparent).or_else(|| {
            (!env.trace_id.is_empty() && !env.span_id.is_empty())
                .then(|| TraceContext::from_ids(&env.trace_id, &env.span_id))
                .flatten()
        })
    }

    /// Runs `fut` with this context as the current one.
    pub async fn scope<F: Future>(self: Arc<Self>, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}
