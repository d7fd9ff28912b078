//! Per-call, per-handler and per-subscription options.

use std::time::Duration;

use serde_json::{Map, Value};

/// Options of one `invoke` or `stream_invoke`. Unset fields fall back to the
/// context of the request being served (session, conversation, tenant, user,
/// trace), then to the bus defaults.
///
/// ```
/// use std::time::Duration;
/// use openagentio_core::CallOptions;
/// let o = CallOptions::new().timeout(Duration::from_secs(5)).tenant("acme").meta("k", "v");
/// assert_eq!(o.tenant.as_deref(), Some("acme"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Overall deadline of the call.
    pub timeout: Option<Duration>,
    /// Longest gap allowed between two frames of a stream.
    pub idle_timeout: Option<Duration>,
    /// Tenant scope of the call.
    pub tenant: Option<String>,
    /// Session id.
    pub session: Option<String>,
    /// Conversation id.
    pub conversation: Option<String>,
    /// End user id.
    pub user: Option<String>,
    /// Originating channel.
    pub channel: Option<String>,
    /// A W3C `traceparent` to continue (for example one received over HTTP).
    pub traceparent: Option<String>,
    /// Metadata for the request envelope.
    pub metadata: Map<String, Value>,
}

impl CallOptions {
    /// Empty options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the overall timeout.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// Sets the idle timeout: the longest wait for the next frame. On
    /// `invoke` (which otherwise asks a stream handler for its answer alone)
    /// the request then asks for every frame, so a stream handler's deltas
    /// count as signs of life and only the answer is returned.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = Some(d);
        self
    }
    /// Sets the tenant. Left unset, or set empty, a call made while serving
    /// a request goes to that request's tenant, else to the bus's default.
    pub fn tenant(mut self, t: impl Into<String>) -> Self {
        self.tenant = Some(t.into());
        self
    }
    /// Sets the session.
    pub fn session(mut self, s: impl Into<String>) -> Self {
        self.session = Some(s.into());
        self
    }
    /// Sets the conversation.
    pub fn conversation(mut self, c: impl Into<String>) -> Self {
        self.conversation = Some(c.into());
        self
    }
    /// Sets the user.
    pub fn user(mut self, u: impl Into<String>) -> Self {
        self.user = Some(u.into());
        self
    }
    /// Sets the channel.
    pub fn channel(mut self, c: impl Into<String>) -> Self {
        self.channel = Some(c.into());
        self
    }
    /// Continues the trace of a W3C `traceparent`.
    pub fn traceparent(mut self, tp: impl Into<String>) -> Self {
        self.traceparent = Some(tp.into());
        self
    }
    /// Adds one metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

/// Options of `handle_invoke` / `handle_stream`.
#[derive(Clone, Debug, Default)]
pub struct HandleOptions {
    /// Queue group; defaults to the target name so that workers share the load.
    pub queue: Option<String>,
    /// Serve the target in this tenant's scope instead of the bus default.
    pub tenant: Option<String>,
    /// Requests served at once before new ones are refused with `BACKPRESSURE_DROP`
    /// (default: unlimited).
    pub max_concurrency: Option<usize>,
}

impl HandleOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the queue group.
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = Some(q.into());
        self
    }
    /// Sets the tenant scope.
    pub fn tenant(mut self, t: impl Into<String>) -> Self {
        self.tenant = Some(t.into());
        self
    }
    /// Sets the concurrency limit: requests served at once, the others
    /// refused with `BACKPRESSURE_DROP` (0 counts as 1).
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = Some(n);
        self
    }
}

/// Options of `subscribe`.
#[derive(Clone, Debug, Default)]
pub struct SubscribeOptions {
    /// Queue group: each event goes to one member of the group.
    pub queue: Option<String>,
    /// Subscribe in this tenant's scope instead of the bus default.
    pub tenant: Option<String>,
    /// Events handled at once; 1 (the default) keeps their order.
    pub concurrency: Option<usize>,
    /// How long the handler may take over one event (none by default).
    pub timeout: Option<Duration>,
}

impl SubscribeOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the queue group.
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = Some(q.into());
        self
    }
    /// Sets the tenant scope.
    pub fn tenant(mut self, t: impl Into<String>) -> Self {
        self.tenant = Some(t.into());
        self
    }
    /// Sets how many events are handled at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = Some(n.max(1));
        self
    }
    /// Gives the handler at most `d` for each event: past it, the handler's
    /// future is dropped and the event fails with `AGENT_TIMEOUT` (logged;
    /// retried and dead-lettered like any failure where the retry and
    /// dead-letter middlewares are installed), so one stuck event does not
    /// hold up those behind it.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use openagentio_core::{Bus, Envelope, SubscribeOptions};
    /// let bus = Bus::memory();
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let opts = SubscribeOptions::new().timeout(Duration::from_millis(50));
    /// bus.subscribe_with("job", opts, move |e: Envelope| {
    ///     let tx = tx.clone();
    ///     async move {
    ///         if e.payload_or_null()["stuck"] == true {
    ///             std::future::pending::<()>().await;
    ///         }
    ///         tx.send(e.payload_or_null()["n"].clone()).unwrap();
    ///         Ok(())
    ///     }
    /// })
    /// .await
    /// .unwrap();
    /// bus.publish(Envelope::new("job").with_payload(serde_json::json!({"stuck": true}))).await.unwrap();
    /// bus.publish(Envelope::new("job").with_payload(serde_json::json!({"n": 2}))).await.unwrap();
    /// assert_eq!(rx.recv().await.unwrap(), 2);
    /// # });
    /// ```
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
}
