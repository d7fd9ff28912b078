//! The calling side: `invoke` and `stream_invoke`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::bus::Bus;
use crate::context::{CallContext, STREAM_KEY, TIMEOUT_MS_KEY, WINDOW_KEY, current};
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::event_type::MESSAGE_RECEIVED;
use crate::options::CallOptions;
use crate::stream::{SentRequest, Stream};
use crate::subject::{check_name, check_tenant};
use crate::text::Text;
use crate::trace_context::TraceContext;
use crate::transport::Message;

/// Fills empty context fields of `env` from the request being served, and gives
/// it a trace: a child span of the served request's trace, of the envelope's
/// own `traceparent`, or a new root.
pub(crate) fn inherit_context(env: &mut Envelope, ctx: Option<&CallContext>) {
    if let Some(ctx) = ctx {
        let req = ctx.request();
        fill(&mut env.session_id, &req.session_id);
        fill(&mut env.conversation_id, &req.conversation_id);
        fill(&mut env.tenant_id, &req.tenant_id);
        fill(&mut env.user_id, &req.user_id);
        fill(&mut env.channel, &req.channel);
    }
    let parent = TraceContext::parse(&env.traceparent).or_else(|| ctx.and_then(CallContext::trace));
    let (trace, traceparent) = match parent {
        Some(p) => {
            let child = p.child();
            let traceparent = child.traceparent();
            (child, traceparent)
        }
        None => TraceContext::new_root_with_traceparent(),
    };
    env.traceparent = traceparent;
    env.trace_id = trace.trace_id;
    env.span_id = trace.span_id;
}

/// `fut`, unless `deadline` passes first. A future that is done on its first
/// poll (an in-memory publish always is) needs no timer: making one reads the
/// runtime's handle, a reference count that every worker shares.
pub(crate) async fn finish_by<F: std::future::Future>(
    deadline: Instant,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut fut = std::pin::pin!(fut);
    if let std::task::Poll::Ready(out) = futures::poll!(fut.as_mut()) {
        return Ok(out);
    }
    tokio::time::timeout_at(deadline, fut).await
}

/// Further than any call waits: what a deadline past the clock's range
/// becomes.
const FAR_FUTURE: Duration = Duration::from_secs(60 * 60 * 24 * 365 * 30);

/// `now + d`, or [`FAR_FUTURE`] from now when that does not fit the clock (a
/// caller's `Duration::MAX`, a peer's `acp.timeout_ms` of `u64::MAX`).
pub(crate) fn later_by(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + FAR_FUTURE)
}

/// Whole milliseconds of `d`, at most `u64::MAX` (not wrapped around).
pub(crate) fn whole_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `timeout` from `now`, or the served request's deadline if that is sooner
/// (nested calls and publishes inherit it).
pub(crate) fn deadline_within(
    now: Instant,
    timeout: Duration,
    ctx: Option<&CallContext>,
) -> Instant {
    let own = later_by(now, timeout);
    ctx.and_then(CallContext::deadline)
        .map_or(own, |parent| own.min(parent))
}

fn fill(dst: &mut Text, src: &Text) {
    if dst.is_empty() && !src.is_empty() {
        dst.clone_from(src);
    }
}

fn set(dst: &mut Text, src: &Option<String>) {
    if let Some(s) = src {
        *dst = Text::new(s);
    }
}

impl Bus {
    /// Calls `target` and waits for its terminal frame. An `agent.response.error`
    /// frame becomes `Err` with the handler's code; frames before the terminal
    /// one (when the target streams) are skipped.
    pub async fn invoke(&self, target: &str, payload: Value) -> Result<Envelope, BusError> {
        self.invoke_with(target, payload, CallOptions::default())
            .await
    }

    /// [`Bus::invoke`] with options.
    pub async fn invoke_with(
        &self,
        target: &str,
        payload: Value,
        opts: CallOptions,
    ) -> Result<Envelope, BusError> {
        // An idle timeout needs the frames between, as signs of life.
        let streaming = opts.idle_timeout.is_some();
        let request = self.prepare_payload(target, payload, opts, streaming);
        let mut stream = self.send_prepared(target, request).await?;
        while let Some(frame) = stream.next().await {
            let frame = frame?;
            if frame.is_terminal() {
                return match frame.error() {
                    Some(e) => Err(e),
                    None => Ok(frame),
                };
            }
        }
        Err(BusError::transport(format!(
            "{target}: ended without a terminal frame"
        )))
    }

    /// [`Bus::invoke_with`] in two steps: sends the request and returns the
    /// call, whose terminal frame is the answer (a stream handler sends no
    /// frames before it, unless the options set an idle timeout). The caller can wait for it, or end the call with
    /// [`Stream::cancel`], which tells the handler to stop.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), openagentio_core::BusError> {
    /// use openagentio_core::Bus;
    /// use serde_json::json;
    /// let bus = Bus::memory();
    /// bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) }).await?;
    /// let call = bus.start_invoke("echo", json!("hi"), Default::default()).await?;
    /// assert_eq!(call.final_payload().await?, json!("hi"));
    /// # Ok(()) }
    /// ```
    pub async fn start_invoke(
        &self,
        target: &str,
        payload: Value,
        opts: CallOptions,
    ) -> Result<Stream, BusError> {
        let streaming = opts.idle_timeout.is_some();
        let request = self.prepare_payload(target, payload, opts, streaming);
        self.send_prepared(target, request).await
    }

    /// Calls `target` and returns its frames as they arrive.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), openagentio_core::BusError> {
    /// use openagentio_core::Bus;
    /// use serde_json::json;
    /// let bus = Bus::memory();
    /// bus.handle_stream("count", |_req, w| async move {
    ///     for i in 0..3 { w.delta_text(i.to_string()).await?; }
    ///     w.finish(json!("done")).await
    /// }).await?;
    /// let mut s = bus.stream_invoke("count", json!(null)).await?;
    /// let mut seqs = vec![];
    /// while let Some(frame) = s.next().await { seqs.push(frame?.seq); }
    /// assert_eq!(seqs, [0, 1, 2, 3]);
    /// # Ok(()) }
    /// ```
    pub async fn stream_invoke(&self, target: &str, payload: Value) -> Result<Stream, BusError> {
        self.stream_invoke_with(target, payload, CallOptions::default())
            .await
    }

    /// [`Bus::stream_invoke`] with options.
    pub async fn stream_invoke_with(
        &self,
        target: &str,
        payload: Value,
        opts: CallOptions,
    ) -> Result<Stream, BusError> {
        let request = self.prepare_payload(target, payload, opts, true);
        self.send_prepared(target, request).await
    }

    /// Sends a request envelope of the caller's making (its own id, event type,
    /// payload, metadata) to `target` and returns its frames. Empty fields are
    /// filled as for [`Bus::stream_invoke_with`].
    pub async fn stream_request(
        &self,
        target: &str,
        env: Envelope,
        opts: CallOptions,
    ) -> Result<Stream, BusError> {
        let request = self.prepare_request(target, Arc::new(env), opts, true);
        self.send_prepared(target, request).await
    }

    /// A new request carrying `payload`, prepared (see [`Bus::prepare_request`]).
    fn prepare_payload(
        &self,
        target: &str,
        payload: Value,
        opts: CallOptions,
        streaming: bool,
    ) -> Result<PreparedRequest, BusError> {
        let request = Arc::new(Envelope::new(MESSAGE_RECEIVED).with_payload(payload));
        self.prepare_request(target, request, opts, streaming)
    }

    /// Sends a request prepared for `target` (by [`Bus::prepare_request`],
    /// a sync step, so that the futures of calls stay small).
    async fn send_prepared(
        &self,
        target: &str,
        request: Result<PreparedRequest, BusError>,
    ) -> Result<Stream, BusError> {
        let PreparedRequest {
            mut request,
            subject,
            deadline,
            sent_at,
            window,
            reservation,
            idle_timeout,
        } = request?;
        let inner = &self.inner;
        let capacity = inner.settings.frame_buffer;
        if !inner.replies.is_subscribed() {
            // The first call subscribes the reply inbox: a disconnected NATS
            // client with a full send buffer would hold that past the
            // deadline. Boxed: once per bus.
            match Box::pin(finish_by(deadline, inner.replies.subscribe(inner))).await {
                Ok(subscribed) => subscribed?,
                Err(_) => {
                    return Err(BusError::timeout(format!(
                        "{target}: the reply subscription could not be made before the deadline \
                         (is the transport connected?)"
                    )));
                }
            }
        }
        // The only handle yet: filled in place, not copied.
        let env = Arc::make_mut(&mut request);
        let sent_to = crate::reply_router::SentTo {
            subject: subject.clone(),
            at: sent_at,
            id: env.event_id.clone(),
        };
        let slot = inner.replies.open_subscribed(inner, capacity, sent_to);
        env.reply_to.clone_from(&slot.subject);
        let sent = SentRequest {
            id: env.event_id.clone(),
            subject: subject.clone(),
            at: sent_at,
            // Kept to be sent again after a reconnect (see `Stream`); not on
            // a transport that hands the envelope itself to the handler.
            resend: inner.transport.may_reconnect().then(|| request.clone()),
        };
        let msg = Message::shared_envelope(subject, request).with_reply(slot.subject.clone());
        let published = match inner.transport.publish_now(msg) {
            Ok(published) => {
                crate::bus::yield_if_out_of_budget().await;
                Ok(published)
            }
            Err(msg) => finish_by(deadline, inner.transport.publish(msg)).await,
        };
        match published {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(BusError::timeout(format!(
                    "{target}: the request could not be sent before the deadline \
                     (is the transport connected?)"
                )));
            }
        }
        Ok(Stream::new(
            slot,
            sent,
            Text::new(target),
            Some(deadline),
            idle_timeout,
            inner.settings.limits,
        )
        .with_window(window, reservation))
    }

    /// Fills `request` for `target` (sender, context, trace, tenant, the
    /// caller's metadata, the stream flag and window, the deadline) and works
    /// out where and until when it goes. With `streaming`, the request asks
    /// for every frame; without, a stream handler answers with its terminal
    /// frame alone (see [`STREAM_KEY`]).
    fn prepare_request(
        &self,
        target: &str,
        mut request: Arc<Envelope>,
        opts: CallOptions,
        streaming: bool,
    ) -> Result<PreparedRequest, BusError> {
        // Filled in place: the envelope is not copied again on its way to
        // the transport.
        let env = Arc::make_mut(&mut request);
        let inner = &self.inner;
        if inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(BusError::closed_bus());
        }
        check_name("target", target, false).map_err(|e| BusError::invalid(e.to_string()))?;
        crate::envelope::fit_to_send(env)?;
        let ctx = current();
        if env.from.is_empty() {
            env.from.clone_from(&inner.settings.agent_id);
        }
        if env.to.is_empty() {
            env.to = Text::new(target);
        }
        set(&mut env.tenant_id, &opts.tenant);
        set(&mut env.session_id, &opts.session);
        set(&mut env.conversation_id, &opts.conversation);
        set(&mut env.user_id, &opts.user);
        set(&mut env.channel, &opts.channel);
        if let Some(tp) = &opts.traceparent {
            env.traceparent = Text::new(tp);
        }
        inherit_context(env, ctx.as_deref());
        if env.tenant_id.is_empty() {
            env.tenant_id.clone_from(&inner.settings.tenant);
        }
        check_tenant(&env.tenant_id).map_err(|e| BusError::invalid(e.to_string()))?;
        for (k, v) in opts.metadata {
            env.metadata.insert(k, v);
        }
        env.metadata
            .insert(STREAM_KEY.to_owned(), Value::Bool(streaming));
        let mut reservation = None;
        if streaming {
            // Room for the unread frames the window lets through, plus the
            // notices' granularity (a quarter of it) and the terminal frame.
            let mut window = (inner.settings.frame_buffer as u64 * 3 / 4).max(1);
            if let Some(budget) = &inner.window_budget {
                let (within, reserved) = crate::window_budget::reserve(budget, window);
                window = within;
                reservation = Some(reserved);
            }
            env.metadata
                .insert(WINDOW_KEY.to_owned(), Value::from(window));
        }
        self.prepare(env);
        // What the request offers once prepared (a preparer may take it back).
        let window = env.metadata.get(WINDOW_KEY).and_then(Value::as_u64);
        if window.is_none() {
            reservation = None;
        }

        let timeout = opts.timeout.unwrap_or(inner.settings.default_timeout);
        let now = Instant::now();
        let deadline = deadline_within(now, timeout, ctx.as_deref());
        let remaining_ms = whole_millis(deadline.saturating_duration_since(now));
        env.metadata
            .insert(TIMEOUT_MS_KEY.to_owned(), Value::from(remaining_ms));
        let subject = inner.subjects.invoke_text(target, &env.tenant_id);
        Ok(PreparedRequest {
            request,
            subject,
            deadline,
            sent_at: now.into_std(),
            window,
            reservation,
            idle_timeout: opts.idle_timeout,
        })
    }
}

/// A request filled and ready to send (see [`Bus::prepare_request`]).
struct PreparedRequest {
    request: Arc<Envelope>,
    /// Where it goes.
    subject: Text,
    deadline: Instant,
    sent_at: std::time::Instant,
    /// The frames it offers to hold unread (flow control).
    window: Option<u64>,
    /// The window's share of the bus's budget, held while the call runs.
    reservation: Option<crate::window_budget::WindowReservation>,
    idle_timeout: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_past_the_clocks_range_do_not_overflow() {
        let now = Instant::now();
        assert_eq!(
            later_by(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert_eq!(later_by(now, Duration::MAX), now + FAR_FUTURE);
        assert_eq!(whole_millis(Duration::MAX), u64::MAX);
        // A peer's `acp.timeout_ms` of u64::MAX.
        let env = Envelope::new("x").with_metadata(TIMEOUT_MS_KEY, Value::from(u64::MAX));
        assert!(crate::context::caller_deadline(&env).unwrap() > now);
    }

    #[tokio::test]
    async fn started_after_a_delta_is_refused_whether_or_not_frames_are_sent() {
        let bus = Bus::memory();
        bus.handle_stream("late", |_req, w| async move {
            w.delta_text("x").await?;
            let refused = w.started(Value::Null).await.is_err();
            w.finish(Value::Bool(refused)).await
        })
        .await
        .unwrap();
        let streamed = bus.stream_invoke("late", Value::Null).await.unwrap();
        assert_eq!(
            streamed.final_payload().await.unwrap(),
            serde_json::json!({"result": true})
        );
        let answered = bus.invoke("late", Value::Null).await.unwrap();
        assert_eq!(answered.payload, Some(serde_json::json!({"result": true})));
    }

    #[tokio::test]
    async fn the_longest_timeouts_are_taken_as_no_limit() {
        let bus = Bus::builder().default_timeout(Duration::MAX).build();
        bus.handle_stream("echo", |req, w| async move {
            w.finish(req.payload().clone()).await
        })
        .await
        .unwrap();
        let opts = CallOptions::default()
            .timeout(Duration::MAX)
            .idle_timeout(Duration::MAX);
        let s = bus
            .stream_invoke_with("echo", Value::from(1), opts)
            .await
            .unwrap();
        assert_eq!(
            s.final_payload().await.unwrap(),
            serde_json::json!({"result": 1})
        );
    }
}
