//! The bus handle: one cheap-to-clone entry point to publish, subscribe, invoke and serve.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

use crate::cancel::{CANCEL_EVENT, CancelRegistry, WINDOW_EVENT};
use crate::context;
use crate::context::WINDOW_READ_KEY;
use crate::dispatch::{EventSink, RequestSink, Route, run_event_worker};
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::memory::MemoryTransport;
use crate::middleware::{BoxFuture, Endpoint, Middleware};
use crate::options::{HandleOptions, SubscribeOptions};
use crate::registration::Registration;
use crate::reply_router::ReplyRouter;
use crate::request::{Call, CallKind, Request};
use crate::stats::{BusStats, Counters};
use crate::stream::StreamLimits;
use crate::subject::{Subjects, check_name, check_tenant};
use crate::text::Text;
use crate::transport::{Message, Operation, Transport, TransportError};
use crate::writer::{FrameKind, StreamWriter};

/// Settings fixed when the bus is built.
#[derive(Clone, Debug)]
pub struct BusSettings {
    /// This process's agent id, written into `from`.
    pub agent_id: Text,
    /// Default tenant for calls and registrations ("" = none).
    pub tenant: Text,
    /// Timeout of calls that set none.
    pub default_timeout: Duration,
    /// Reorder limits of streams.
    pub limits: StreamLimits,
    /// Unread frames a call may hold before it fails with `BACKPRESSURE_DROP`.
    pub frame_buffer: usize,
    /// Unhandled events a subscription may hold before it drops (and counts) more.
    pub event_buffer: usize,
    /// How long a handler may serve a request that carries no deadline (a
    /// reference-SDK caller sends none, nor any cancellation): past it the
    /// handler is cancelled and the call ends with `AGENT_TIMEOUT`. `None`
    /// (the default): such requests run until their handler ends.
    pub serve_timeout: Option<Duration>,
    /// How long a cancelled handler (its caller went away, its deadline or
    /// the serve timeout passed, or a drain stopped it) has to end by itself
    /// before it is dropped where it waits, and its request ends with an
    /// error frame. Without it, a handler that never looks at its
    /// cancellation (one stuck on a call with no timeout of its own) would
    /// hold its task and its place in a concurrency limit for good.
    pub cancel_grace: Duration,
}

impl Default for BusSettings {
    fn default() -> Self {
        BusSettings {
            agent_id: Text::new_static("openagentio"),
            tenant: Text::default(),
            default_timeout: Duration::from_secs(30),
            limits: StreamLimits::default(),
            frame_buffer: 4096,
            event_buffer: 65_536,
            serve_timeout: None,
            cancel_grace: Duration::from_secs(5),
        }
    }
}

/// Builds a [`Bus`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::time::Duration;
/// use openagentio_core::{Bus, MemoryTransport};
/// let bus = Bus::builder()
///     .transport(MemoryTransport::new())
///     .agent_id("docs")
///     .default_timeout(Duration::from_secs(5))
///     .build();
/// assert_eq!(bus.agent_id(), "docs");
/// # }
/// ```
pub struct BusBuilder {
    transport: Option<Arc<dyn Transport>>,
    settings: BusSettings,
    prefix: String,
    middleware: Vec<Arc<dyn Middleware>>,
    preparers: Vec<Arc<dyn EnvelopePreparer>>,
}

/// Adjusts every envelope this bus sends as a caller or publisher (requests and
/// events, not reply frames), after the bus has filled context and trace. The
/// reference SDKs call this an envelope preparer; telemetry uses it to put the
/// current span into `traceparent`.
pub trait EnvelopePreparer: Send + Sync + 'static {
    /// Adjusts `env` before it is sent.
    fn prepare(&self, env: &mut Envelope);
}

impl<F: Fn(&mut Envelope) + Send + Sync + 'static> EnvelopePreparer for F {
    fn prepare(&self, env: &mut Envelope) {
        self(env)
    }
}

impl BusBuilder {
    /// Uses `transport` (default: a new [`MemoryTransport`]).
    pub fn transport(mut self, transport: impl Transport) -> Self {
        self.transport = Some(Arc::new(transport));
        self
    }
    /// Uses an already shared transport.
    pub fn shared_transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }
    /// Sets the agent id written into `from`.
    pub fn agent_id(mut self, id: impl Into<Text>) -> Self {
        self.settings.agent_id = id.into();
        self
    }
    /// Sets the subject prefix (default `acp.v1`).
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// Sets the default tenant.
    pub fn tenant(mut self, tenant: impl Into<Text>) -> Self {
        self.settings.tenant = tenant.into();
        self
    }
    /// Sets the timeout of calls that set none (default 30 s).
    pub fn default_timeout(mut self, d: Duration) -> Self {
        self.settings.default_timeout = d;
        self
    }
    /// Bounds the requests that carry no deadline (see
    /// [`BusSettings::serve_timeout`]; default: unbounded).
    pub fn serve_timeout(mut self, d: Duration) -> Self {
        self.settings.serve_timeout = Some(d);
        self
    }
    /// Sets how long a cancelled handler has to end before it is dropped
    /// (see [`BusSettings::cancel_grace`]; default 5 s).
    pub fn cancel_grace(mut self, d: Duration) -> Self {
        self.settings.cancel_grace = d;
        self
    }
    /// Sets the stream reorder limits (default 256 pending, gap 1024).
    pub fn stream_limits(mut self, limits: StreamLimits) -> Self {
        self.settings.limits = limits;
        self
    }
    /// Sets how many unread frames a call may hold (default 4096; at least
    /// 2: a stream's window lets one frame through, and the terminal frame
    /// needs room of its own).
    pub fn frame_buffer(mut self, n: usize) -> Self {
        self.settings.frame_buffer = n.max(2);
        self
    }
    /// Sets how many unhandled events a subscription may hold (default 65 536).
    pub fn event_buffer(mut self, n: usize) -> Self {
        self.settings.event_buffer = n.max(1);
        self
    }
    /// Adds a middleware layer around every handler (first added = outermost).
    pub fn middleware(mut self, layer: impl Middleware) -> Self {
        self.middleware.push(Arc::new(layer));
        self
    }
    /// Adds an envelope preparer (run in the order added).
    pub fn preparer(mut self, p: impl EnvelopePreparer) -> Self {
        self.preparers.push(Arc::new(p));
        self
    }
    /// Builds the bus.
    pub fn build(self) -> Bus {
        let transport = self
            .transport
            .unwrap_or_else(|| Arc::new(MemoryTransport::new()));
        transport.share();
        let inbox = transport.new_inbox_prefix();
        let counters = Arc::new(Counters::default());
        Bus {
            inner: Arc::new(BusInner {
                subjects: Subjects::new(self.prefix),
                settings: self.settings,
                middleware: self.middleware.into(),
                preparers: self.preparers.into(),
                replies: ReplyRouter::new(inbox),
                cancels: CancelRegistry::new(counters.clone()),
                registrations: Mutex::new(Vec::new()),
                counters,
                closed: AtomicBool::new(false),
                draining: AtomicBool::new(false),
                intake_stopped: AtomicBool::new(false),
                // Three quarters: room for answers, notices and events.
                window_budget: transport
                    .subscription_buffer()
                    .map(|n| Arc::new(std::sync::atomic::AtomicU64::new(n as u64 / 4 * 3))),
                transport,
            }),
        }
    }
}

/// The runtime bus: publish/subscribe, invoke/handle_invoke and
/// stream_invoke/handle_stream over one transport. Cloning is cheap; clones
/// share everything.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), openagentio_core::BusError> {
/// use openagentio_core::Bus;
/// use serde_json::json;
/// let bus = Bus::memory();
/// bus.handle_invoke("echo", |req| async move { Ok(req.payload().clone()) }).await?;
/// let reply = bus.invoke("echo", json!({"msg": "hi"})).await?;
/// assert_eq!(reply.payload, Some(json!({"msg": "hi"})));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Bus {
    pub(crate) inner: Arc<BusInner>,
}

/// Aligned so that its fields never share a cache line with the reference
/// counts in front of it, which every call's handles count up and down from
/// every worker.
#[repr(align(128))]
pub(crate) struct BusInner {
    pub transport: Arc<dyn Transport>,
    pub settings: BusSettings,
    pub subjects: Subjects,
    pub middleware: Arc<[Arc<dyn Middleware>]>,
    pub preparers: Arc<[Arc<dyn EnvelopePreparer>]>,
    pub replies: ReplyRouter,
    pub cancels: CancelRegistry,
    pub registrations: Mutex<Vec<Registration>>,
    pub counters: Arc<Counters>,
    pub closed: AtomicBool,
    /// Set when a drain starts cancelling the requests still being served.
    pub draining: AtomicBool,
    /// Set when a drain starts: intake stopped, and registrations refused.
    pub intake_stopped: AtomicBool,
    /// Frames the streams in flight may still be offered as flow-control
    /// windows, when the transport drops what a subscription cannot hold
    /// (see [`Transport::subscription_buffer`]): every stream's frames share
    /// the one reply subscription, so their windows together stay within it.
    pub window_budget: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// Takes part in tokio's cooperative budget after a publish that did not
/// wait: without it, a loop of such publishes would never give its worker
/// back.
pub(crate) async fn yield_if_out_of_budget() {
    tokio::task::coop::consume_budget().await
}

impl BusInner {
    /// Publishes `msg`: at once where the transport can (no boxed future,
    /// see [`Transport::publish_now`]), else through its async path.
    pub async fn publish(&self, msg: Message) -> Result<(), TransportError> {
        match self.transport.publish_now(msg) {
            Ok(sent) => {
                yield_if_out_of_budget().await;
                sent
            }
            Err(msg) => self.transport.publish(msg).await,
        }
    }

    /// Tells whoever serves request `request_id` to stop (fire and forget).
    pub fn send_cancel(&self, request_id: &str) {
        self.send_control(|| self.cancel_message(request_id));
    }

    /// Tells whoever serves `request_id` that its caller has read `read`
    /// frames (fire and forget; see [`crate::context::WINDOW_KEY`]).
    pub fn send_window(&self, request_id: &str, read: u64) {
        self.send_control(|| {
            self.control_message(WINDOW_EVENT, request_id, |env| {
                env.metadata
                    .insert(WINDOW_READ_KEY.to_owned(), serde_json::Value::from(read));
            })
        });
    }

    /// Publishes the notice `make` builds in the background, unless the bus
    /// is closed or there is no runtime to do it on (a drop outside one).
    fn send_control(&self, make: impl FnOnce() -> Message) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let transport = self.transport.clone();
        let msg = make();
        rt.spawn(async move {
            let _ = transport.publish(msg).await;
        });
    }

    /// The message that tells whoever serves `request_id` to stop.
    pub(crate) fn cancel_message(&self, request_id: &str) -> Message {
        self.control_message(CANCEL_EVENT, request_id, |_| {})
    }

    /// A notice of `event_type` about request `request_id` to whoever serves
    /// it, with what `fill` adds.
    fn control_message(
        &self,
        event_type: &'static str,
        request_id: &str,
        fill: impl FnOnce(&mut Envelope),
    ) -> Message {
        let mut env = Envelope::new(event_type);
        env.from = self.settings.agent_id.clone();
        env.correlation_id = Text::new(request_id);
        fill(&mut env);
        Message::envelope(self.subjects.cancel(), env)
    }
}

impl Bus {
    /// A builder.
    pub fn builder() -> BusBuilder {
        BusBuilder {
            transport: None,
            settings: BusSettings::default(),
            prefix: crate::subject::DEFAULT_PREFIX.to_owned(),
            middleware: Vec::new(),
            preparers: Vec::new(),
        }
    }

    /// A bus on a new in-memory transport with default settings.
    pub fn memory() -> Bus {
        Bus::builder().build()
    }

    pub(crate) fn from_inner(inner: Arc<BusInner>) -> Bus {
        Bus { inner }
    }

    /// The agent id.
    pub fn agent_id(&self) -> &str {
        &self.inner.settings.agent_id
    }

    /// The settings.
    pub fn settings(&self) -> &BusSettings {
        &self.inner.settings
    }

    /// The subject layout.
    pub fn subjects(&self) -> &Subjects {
        &self.inner.subjects
    }

    /// The transport.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// Counters of messages the bus could not process.
    pub fn stats(&self) -> BusStats {
        self.inner.counters.snapshot()
    }

    pub(crate) fn prepare(&self, env: &mut Envelope) {
        for p in self.inner.preparers.iter() {
            p.prepare(env);
        }
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(BusError::closed_bus());
        }
        Ok(())
    }

    /// [`Bus::ensure_open`], and not drained: a drain stopped intake for
    /// good, and a handler registered after it would take requests again.
    pub(crate) fn ensure_taking(&self) -> Result<(), BusError> {
        self.ensure_open()?;
        if self.inner.intake_stopped.load(Ordering::Acquire) {
            return Err(BusError::unavailable(
                "the bus is draining: it takes no new handlers or subscriptions",
            )
            .with_retryable(false));
        }
        Ok(())
    }

    fn tenant_or_default<'a>(&'a self, tenant: Option<&'a str>) -> Result<&'a str, BusError> {
        let t = tenant.unwrap_or(&self.inner.settings.tenant);
        check_tenant(t).map_err(|e| BusError::invalid(e.to_string()))?;
        Ok(t)
    }

    /// Publishes an event on `{prefix}[.{tenant}].events.{event_type}`. Empty
    /// context fields (session, conversation, tenant, user, trace) are filled
    /// from the request being served, if any. Fails with `TRANSPORT_FAILURE`
    /// when the transport does not take the event within the default timeout
    /// (or the served request's deadline): a NATS client that lost its server
    /// buffers publishes until its send buffer is full, then holds them.
    ///
    /// A NATS server tells of a publish it refuses (permissions) only after
    /// this returns: [`Bus::publish_confirmed`] waits for that.
    pub async fn publish(&self, env: Envelope) -> Result<(), BusError> {
        self.publish_on_subject(env).await.map(drop)
    }

    /// [`Bus::publish`], then waits until the transport's server has the
    /// event. Fails with `AUTH_FAILURE` when the server refused it (NATS
    /// permissions), with `TRANSPORT_FAILURE` when it did not answer. One
    /// round trip to the server more than a publish; in memory, nothing more.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), openagentio_core::BusError> {
    /// use openagentio_core::{Bus, Envelope};
    /// let bus = Bus::memory();
    /// bus.publish_confirmed(Envelope::new("order.placed")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish_confirmed(&self, env: Envelope) -> Result<(), BusError> {
        let since = std::time::Instant::now();
        let event_type = env.event_type.clone();
        let subject = self.publish_on_subject(env).await?;
        match self
            .inner
            .transport
            .confirm(Operation::Publish, &subject, since)
            .await
        {
            Ok(()) => Ok(()),
            Err(TransportError::Auth(why)) => {
                Err(BusError::auth(format!("event {event_type}: {why}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// [`Bus::publish`], returning the subject the event went to.
    async fn publish_on_subject(&self, mut env: Envelope) -> Result<Text, BusError> {
        self.ensure_open()?;
        check_name("event type", &env.event_type, false)
            .map_err(|e| BusError::invalid(e.to_string()))?;
        crate::envelope::fit_to_send(&mut env)?;
        if env.from.is_empty() {
            env.from = self.inner.settings.agent_id.clone();
        }
        let ctx = context::current();
        crate::call::inherit_context(&mut env, ctx.as_deref());
        self.prepare(&mut env);
        let tenant = if env.tenant_id.is_empty() {
            Text::new(self.tenant_or_default(None)?)
        } else {
            check_tenant(&env.tenant_id).map_err(|e| BusError::invalid(e.to_string()))?;
            env.tenant_id.clone()
        };
        let subject = Text::from(self.inner.subjects.event(&env.event_type, &tenant));
        // Bounded like a call: a disconnected NATS client holds publishes
        // once its send buffer is full, until it reconnects.
        let limit = self.inner.settings.default_timeout;
        let deadline =
            crate::call::deadline_within(tokio::time::Instant::now(), limit, ctx.as_deref());
        let event_type = env.event_type.clone();
        let sent = self.inner.publish(Message::envelope(subject.clone(), env));
        match crate::call::finish_by(deadline, sent).await {
            Ok(sent) => sent.map(|()| subject).map_err(BusError::from),
            Err(_) => Err(BusError::transport(format!(
                "event {event_type}: not taken by the transport within {limit:?} \
                 (is it connected?)"
            ))),
        }
    }

    /// Publishes a new event of `event_type` with `payload`.
    pub async fn emit(&self, event_type: &str, payload: Value) -> Result<(), BusError> {
        self.publish(Envelope::new(event_type).with_payload(payload))
            .await
    }

    /// Subscribes `handler` to events of `event_type` (`*` and `>` allowed).
    pub async fn subscribe<F, Fut>(
        &self,
        event_type: &str,
        handler: F,
    ) -> Result<Registration, BusError>
    where
        F: Fn(Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BusError>> + Send + 'static,
    {
        self.subscribe_with(event_type, SubscribeOptions::default(), handler)
            .await
    }

    /// [`Bus::subscribe`] with options (queue group, tenant, concurrency).
    pub async fn subscribe_with<F, Fut>(
        &self,
        event_type: &str,
        opts: SubscribeOptions,
        handler: F,
    ) -> Result<Registration, BusError>
    where
        F: Fn(Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BusError>> + Send + 'static,
    {
        self.ensure_taking()?;
        check_name("event type", event_type, true).map_err(|e| BusError::invalid(e.to_string()))?;
        check_queue(opts.queue.as_deref())?;
        let tenant = self.tenant_or_default(opts.tenant.as_deref())?;
        let subject = self.inner.subjects.event(event_type, tenant);
        self.subscribe_on(subject, event_type, opts, handler).await
    }

    /// Subscribes `handler` to the dead letters of `event_type` (`*` and `>`
    /// allowed) on `{prefix}.dlq.{event_type}`.
    pub async fn subscribe_dead_letters<F, Fut>(
        &self,
        event_type: &str,
        handler: F,
    ) -> Result<Registration, BusError>
    where
        F: Fn(Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BusError>> + Send + 'static,
    {
        self.ensure_taking()?;
        check_name("event type", event_type, true).map_err(|e| BusError::invalid(e.to_string()))?;
        let subject = self.inner.subjects.dlq(event_type);
        self.subscribe_on(subject, event_type, SubscribeOptions::default(), handler)
            .await
    }

    async fn subscribe_on<F, Fut>(
        &self,
        subject: String,
        event_type: &str,
        opts: SubscribeOptions,
        handler: F,
    ) -> Result<Registration, BusError>
    where
        F: Fn(Envelope) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BusError>> + Send + 'static,
    {
        let timeout = opts.timeout;
        let endpoint: Endpoint = Arc::new(move |call: Call| {
            let handled = handler(call.request.into_envelope());
            match timeout {
                None => Box::pin(handled) as BoxFuture<'static, _>,
                // Innermost: a retry gives each attempt the whole time.
                Some(d) => Box::pin(async move {
                    tokio::time::timeout(d, handled).await.unwrap_or_else(|_| {
                        Err(BusError::timeout(format!(
                            "the event handler took longer than its timeout of {d:?}"
                        )))
                    })
                }),
            }
        });
        let route = self.route(CallKind::Event, event_type, endpoint, None);
        let (tx, rx) = mpsc::channel(self.inner.settings.event_buffer);
        let sink = Arc::new(EventSink {
            tx,
            bus: Arc::downgrade(&self.inner),
            name: route.name.clone(),
        });
        let attempt = self.registration_attempt();
        let worker = tokio::spawn(run_event_worker(route, rx, opts.concurrency.unwrap_or(1)));
        let subscribed = self
            .inner
            .transport
            .subscribe(&subject, opts.queue.as_deref(), sink);
        let sub = match self
            .registering(&subject, attempt.deadline, subscribed)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                worker.abort();
                return Err(e);
            }
        };
        let reg = self.track(subject, sub, Some(worker.abort_handle()));
        self.confirm(reg, attempt).await
    }

    /// Serves `target` with a request/reply handler: its `Ok` value becomes the
    /// payload of one `agent.response.final` frame, its `Err` an
    /// `agent.response.error` frame.
    ///
    /// Handlers of one target share its requests (a queue group named after
    /// it, on this bus as across processes): registering a target twice
    /// splits its calls between the two handlers, it does not replace the
    /// first. Unsubscribe the first [`Registration`] to replace it.
    pub async fn handle_invoke<F, Fut>(
        &self,
        target: &str,
        handler: F,
    ) -> Result<Registration, BusError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, BusError>> + Send + 'static,
    {
        self.handle_invoke_with(target, HandleOptions::default(), handler)
            .await
    }

    /// [`Bus::handle_invoke`] with options.
    pub async fn handle_invoke_with<F, Fut>(
        &self,
        target: &str,
        opts: HandleOptions,
        handler: F,
    ) -> Result<Registration, BusError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, BusError>> + Send + 'static,
    {
        let endpoint: Endpoint = Arc::new(move |call: Call| {
            // The handler's future is made here, not in the boxed one: no
            // handle on the handler to carry along.
            let writer = call.writer;
            let answer = handler(call.request);
            Box::pin(async move {
                let value = answer.await?;
                match writer {
                    Some(w) => w.send(FrameKind::Final, Some(value)).await,
                    None => Ok(()),
                }
            }) as BoxFuture<'static, _>
        });
        self.register_handler(CallKind::Invoke, target, opts, endpoint)
            .await
    }

    /// Serves `target` with a streaming handler that writes frames with the
    /// [`StreamWriter`]. Returning without a terminal frame sends `final` for
    /// it (or `error`, when the handler fails).
    pub async fn handle_stream<F, Fut>(
        &self,
        target: &str,
        handler: F,
    ) -> Result<Registration, BusError>
    where
        F: Fn(Request, StreamWriter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BusError>> + Send + 'static,
    {
        self.handle_stream_with(target, HandleOptions::default(), handler)
            .await
    }

    /// [`Bus::handle_stream`] with options.
    pub async fn handle_stream_with<F, Fut>(
        &self,
        target: &str,
        opts: HandleOptions,
        handler: F,
    ) -> Result<Registration, BusError>
    where
        F: Fn(Request, StreamWriter) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BusError>> + Send + 'static,
    {
        let endpoint: Endpoint = Arc::new(move |call: Call| match call.writer {
            Some(writer) => Box::pin(handler(call.request, writer)) as BoxFuture<'static, _>,
            None => Box::pin(std::future::ready(Err(BusError::invalid(
                "stream handler called without a writer",
            )))),
        });
        self.register_handler(CallKind::Stream, target, opts, endpoint)
            .await
    }

    async fn register_handler(
        &self,
        kind: CallKind,
        target: &str,
        opts: HandleOptions,
        endpoint: Endpoint,
    ) -> Result<Registration, BusError> {
        self.ensure_taking()?;
        check_name("target", target, false).map_err(|e| BusError::invalid(e.to_string()))?;
        check_queue(opts.queue.as_deref())?;
        let tenant = self.tenant_or_default(opts.tenant.as_deref())?;
        let subject = self.inner.subjects.invoke(target, tenant);
        let attempt = self.registration_attempt();
        let cancels = self.inner.subjects.cancel();
        let listening = self.inner.cancels.listen(&self.inner.transport, &cancels);
        self.registering(&cancels, attempt.deadline, listening)
            .await?;
        let limiter = opts
            .max_concurrency
            .map(|n| Arc::new(Semaphore::new(n.max(1))));
        let route = self.route(kind, target, endpoint, limiter);
        let queue = opts.queue.unwrap_or_else(|| target.to_owned());
        let subscribed =
            self.inner
                .transport
                .subscribe(&subject, Some(&queue), Arc::new(RequestSink(route)));
        let sub = self
            .registering(&subject, attempt.deadline, subscribed)
            .await?;
        let reg = self.track(subject, sub, None);
        self.confirm(reg, attempt).await
    }

    fn route(
        &self,
        kind: CallKind,
        name: &str,
        endpoint: Endpoint,
        limiter: Option<Arc<Semaphore>>,
    ) -> Arc<Route> {
        Arc::new(Route {
            bus: Arc::downgrade(&self.inner),
            chain: self.inner.middleware.clone(),
            endpoint,
            kind,
            name: Text::new(name),
            limiter,
            inline: Default::default(),
        })
    }

    /// Requests being served by this bus's handlers now.
    pub fn in_flight(&self) -> usize {
        self.inner.cancels.in_flight()
    }

    /// Calls made by this bus whose answers are still awaited: invokes not
    /// yet answered and streams not yet ended (read to their terminal frame,
    /// failed or cancelled) or dropped. Each holds its reply slot until then,
    /// so a count that only grows is a caller that keeps streams it no
    /// longer reads.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use openagentio_core::Bus;
    /// let bus = Bus::memory();
    /// bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) }).await.unwrap();
    /// bus.invoke("echo", serde_json::json!({"n": 1})).await.unwrap();
    /// assert_eq!(bus.open_calls(), 0);
    /// let mut s = bus.stream_invoke("echo", serde_json::json!(2)).await.unwrap();
    /// assert_eq!(bus.open_calls(), 1);
    /// while let Some(frame) = s.next().await { frame.unwrap(); }
    /// assert_eq!(bus.open_calls(), 0); // ended, though `s` is still held
    /// # });
    /// ```
    pub fn open_calls(&self) -> usize {
        self.inner.replies.open()
    }

    /// Stops taking requests and events (every registration is removed), lets
    /// the requests being served finish until shortly before `timeout`, then
    /// cancels the rest and, at `timeout`, ends the streams still open with an
    /// `AGENT_UNAVAILABLE` error frame. Calls made by this bus keep working.
    /// Returns true when every request finished by itself.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.intake_stopped.store(true, Ordering::Release);
        self.unsubscribe_all().await;
        let deadline = crate::call::later_by(tokio::time::Instant::now(), timeout);
        let grace = (timeout / 4).min(Duration::from_secs(1));
        if self.inner.cancels.wait_idle(deadline - grace).await {
            return true;
        }
        tracing::warn!(
            in_flight = self.in_flight(),
            "drain: cancelling requests still being served"
        );
        self.inner.draining.store(true, Ordering::Release);
        self.inner.cancels.cancel_all();
        if self.inner.cancels.wait_idle(deadline).await {
            return false;
        }
        let err = BusError::unavailable("the service is shutting down");
        self.inner.cancels.fail_all(&err).await;
        false
    }

    /// Whether a drain ([`Bus::drain`]) has cancelled the requests still
    /// being served: a handler that sees its cancellation can tell the
    /// caller the service is shutting down, rather than that it gave up.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// Removes every registration, stops listening for replies and closes the
    /// transport, unless other buses built on it are still open (they go on
    /// working: the last to close closes it).
    pub async fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.unsubscribe_all().await;
        // Requests still being served (no drain came first) end with an
        // error frame while the transport can still carry it: their callers
        // hear now, not at their deadline. Their handlers are told to stop.
        self.inner.cancels.cancel_all();
        self.inner
            .cancels
            .fail_all(&BusError::unavailable(
                "the bus serving the call was closed before it ended",
            ))
            .await;
        // Calls still awaiting answers end here: their handlers (in other
        // processes, maybe) are told to stop, before the transport goes.
        let open = self.inner.replies.open_requests();
        if !open.is_empty() {
            let transport = &self.inner.transport;
            for id in &open {
                let _ = transport.publish(self.inner.cancel_message(id)).await;
            }
            // Not waited for without a connection: they cannot go out.
            if transport.is_connected() {
                let _ = tokio::time::timeout(Duration::from_secs(1), transport.flush()).await;
            }
        }
        // Together: each may wait a while for a server that does not answer.
        futures::join!(self.inner.replies.close(), self.inner.cancels.close());
        if self.inner.transport.release() {
            self.inner.transport.close().await;
        }
    }

    /// A weak handle that does not keep the bus alive.
    pub fn downgrade(&self) -> WeakBus {
        WeakBus(Arc::downgrade(&self.inner))
    }
}

/// A handle that does not keep the bus alive.
#[derive(Clone)]
pub struct WeakBus(Weak<BusInner>);

impl WeakBus {
    /// The bus, if it still exists.
    pub fn upgrade(&self) -> Option<Bus> {
        self.0.upgrade().map(Bus::from_inner)
    }
}

/// A queue group name, when one is given: what a target name may be (NATS
/// takes no whitespace, and the name goes on the command line).
fn check_queue(queue: Option<&str>) -> Result<(), BusError> {
    match queue {
        // Empty is no group, as the transports read it.
        Some(q) if !q.is_empty() => {
            check_name("queue group", q, false).map_err(|e| BusError::invalid(e.to_string()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_in_flight_when_its_bus_closes_says_so() {
        let bus = Bus::memory();
        bus.handle_invoke("slow", |_req| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Value::Null)
        })
        .await
        .unwrap();
        let caller = bus.clone();
        let call = tokio::spawn(async move { caller.invoke("slow", Value::Null).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        bus.close().await;
        let err = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the call outlived its bus")
            .unwrap()
            .unwrap_err();
        // The bus serves the call too: its close ends the call it serves
        // with an error frame first.
        assert_eq!(err.code(), crate::ErrorCode::AgentUnavailable, "{err}");
        assert!(
            err.to_string()
                .contains("the bus serving the call was closed"),
            "{err}"
        );
    }
}
