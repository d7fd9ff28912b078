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

/// What a request passes on to the calls made while serving it.
#[derive(Clone, Debug, Default)]
pub struct CallContext {
    /// Session id.
    pub session_id: String,
    /// Conversation id.
    pub conversation_id: String,
    /// Tenant id.
    pub tenant_id: String,
    /// User id.
    pub user_id: String,
    /// Channel.
    pub channel: String,
    /// The request's trace; nested calls get a child span of it.
    pub trace: Option<TraceContext>,
    /// When the caller stops waiting.
    pub deadline: Option<Instant>,
}

tokio::task_local! {
    static CURRENT: Arc<CallContext>;
}

/// The context of the request being served by this task, if any.
pub fn current() -> Option<Arc<CallContext>> {
    CURRENT.try_with(Arc::clone).ok()
}

impl CallContext {
    /// The context a request envelope establishes.
    pub fn from_request(env: &Envelope) -> Self {
        let trace = TraceContext::parse(&env.traceparent).or_else(|| {
            (!env.trace_id.is_empty() && !env.span_id.is_empty())
                .then(|| TraceContext::from_ids(&env.trace_id, &env.span_id))
                .flatten()
        });
        let deadline = env
            .metadata
            .get(TIMEOUT_MS_KEY)
            .and_then(serde_json::Value::as_u64)
            .map(|ms| Instant::now() + std::time::Duration::from_millis(ms));
        CallContext {
            session_id: env.session_id.clone(),
            conversation_id: env.conversation_id.clone(),
            tenant_id: env.tenant_id.clone(),
            user_id: env.user_id.clone(),
            channel: env.channel.clone(),
            trace,
            deadline,
        }
    }

    /// Runs `fut` with this context as the current one.
    pub async fn scope<F: Future>(self: Arc<Self>, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }
}
