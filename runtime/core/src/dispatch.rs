//! Serving deliveries: requests to invoke/stream handlers, events to subscribers.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusInner};
use crate::codec::{decode_body_shared, salvage_reply_fields};
use crate::context::{CallContext, STREAM_KEY, caller_deadline};
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::inline::{FirstPoll, run_inline_first};
use crate::middleware::{Endpoint, Middleware, Next, panic_message};
use crate::request::{Call, CallKind, Request};
use crate::stats::Counters;
use crate::subject::is_reply_subject;
use crate::text::Text;
use crate::transport::{Body, Message, Sink};
use crate::writer::{FrameKind, StreamWriter, reply_frame};

/// Everything needed to serve the deliveries of one registration. Aligned
/// like `BusInner`: every delivery clones the handle and reads the fields.
#[repr(align(128))]
pub(crate) struct Route {
    pub bus: Weak<BusInner>,
    pub chain: Arc<[Arc<dyn Middleware>]>,
    pub endpoint: Endpoint,
    pub kind: CallKind,
    /// Copied into every call: a `Text`, so short names copy without
    /// touching a shared reference count.
    pub name: Text,
    pub limiter: Option<Arc<Semaphore>>,
    /// How the first polls of this route's requests went: see [`InlinePolicy`].
    pub inline: InlinePolicy,
}

/// Whether a route's answer-only requests run on the delivering task first.
///
/// A first poll that does not finish the request (the handler waits for I/O:
/// running it here gained nothing) or that holds the task longer than
/// [`INLINE_LIMIT`] is a strike; a quick, finished one takes a strike away.
/// Polls are timed while a route has strikes, else one in [`TIME_EVERY`] on
/// each thread (reading the clock twice a call showed in profiles); a route
/// whose polls are slow is thus found within some dozens of calls. From
/// [`STRIKES_TO_SPAWN`] strikes on, each
/// request gets a task of its own (slow handlers keep running in parallel),
/// except one in [`PROBE_EVERY`], which still runs inline so that a handler
/// that became quick again wins its fast path back. A single hiccup (the
/// thread preempted once) changes nothing.
#[derive(Default)]
pub(crate) struct InlinePolicy {
    strikes: AtomicU32,
    requests: AtomicU32,
}

const STRIKES_TO_SPAWN: u32 = 4;
const PROBE_EVERY: u32 = 256;
const TIME_EVERY: u32 = 16;

thread_local! {
    /// Inline polls on this thread, for [`InlinePolicy::should_time`].
    static POLLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl InlinePolicy {
    fn run_inline(&self) -> bool {
        self.strikes.load(Ordering::Relaxed) < STRIKES_TO_SPAWN
            || self
                .requests
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(PROBE_EVERY)
    }

    /// Whether to time the next inline poll.
    fn should_time(&self) -> bool {
        let n = POLLS.with(|p| {
            let n = p.get().wrapping_add(1);
            p.set(n);
            n
        });
        self.strikes.load(Ordering::Relaxed) > 0 || n.is_multiple_of(TIME_EVERY)
    }

    fn record(&self, poll: FirstPoll) {
        let strikes = self.strikes.load(Ordering::Relaxed);
        let next = match poll.held {
            _ if !poll.finished => (strikes + 1).min(2 * STRIKES_TO_SPAWN),
            Some(held) if held > INLINE_LIMIT => (strikes + 1).min(2 * STRIKES_TO_SPAWN),
            Some(_) => strikes.saturating_sub(1),
            None => strikes,
        };
        if next != strikes {
            self.strikes.store(next, Ordering::Relaxed);
        }
    }
}

/// How long a request may hold its delivering task on its first poll without
/// counting as slow (see [`InlinePolicy`]).
const INLINE_LIMIT: Duration = Duration::from_micros(500);

/// Delivers requests. A request that wants only its answer is first run on
/// the delivering task (see [`crate::inline`]); others get a task of their own.
pub(crate) struct RequestSink(pub Arc<Route>);

impl Sink for RequestSink {
    fn deliver(&self, msg: Message) {
        let Some(bus) = self.0.bus.upgrade() else {
            return;
        };
        let permit = match &self.0.limiter {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    Counters::bump(&bus.counters.refused_requests);
                    let name = self.0.name.clone();
                    tokio::spawn(async move {
                        let err = BusError::backpressure(format!(
                            "{name}: handler is at its concurrency limit"
                        ));
                        reply_error_to_undecoded(&bus, msg, err).await;
                    });
                    return;
                }
            },
        };
        let Some(env) = decode_request(&bus, msg) else {
            return;
        };
        let answer_only = env.metadata.get(STREAM_KEY).and_then(Value::as_bool) == Some(false);
        let route = self.0.clone();
        let serve = move || async move {
            serve_request(bus, route, env).await;
            drop(permit);
        };
        if answer_only && self.0.inline.run_inline() {
            let timed = self.0.inline.should_time();
            // Made in its box: the future is not copied on its way there.
            self.0
                .inline
                .record(run_inline_first(Box::pin(serve()), timed));
        } else {
            tokio::spawn(serve());
        }
    }
}

/// The request envelope of `msg`; bytes that are not one are counted, logged
/// and answered with `CODEC_FAILURE` where the sender can be found.
///
/// Answers go to the envelope's `reply_to` (the subject the reference SDKs
/// read). A request without one that came with a transport reply subject (a
/// plain `nats request`, say) is answered there: it becomes the `reply_to`.
/// A `reply_to` that no reply can be published to is refused like bytes
/// that are not an envelope, with `INVALID_REQUEST` to the transport's reply
/// subject if there is one: the handler's answer could not reach anyone.
fn decode_request(bus: &Arc<BusInner>, msg: Message) -> Option<Arc<Envelope>> {
    let mut env = match msg.body {
        Body::Envelope(env) => env,
        Body::Bytes(bytes) => match crate::codec::decode(&bytes) {
            Ok(env) => Arc::new(env),
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, bytes = bytes.len(), "request is not an acp envelope");
                let err = BusError::codec(e.to_string());
                refuse(bus, msg.subject, msg.reply, Body::Bytes(bytes), err);
                return None;
            }
        },
    };
    if env.reply_to.is_empty() {
        if let Some(reply) = msg.reply.filter(|r| is_reply_subject(r)) {
            Arc::make_mut(&mut env).reply_to = reply;
        }
    } else if !is_reply_subject(&env.reply_to) {
        tracing::warn!(subject = %msg.subject, reply_to = %env.reply_to, "request refused: replies cannot be published to its reply_to");
        let err = BusError::invalid(format!(
            "reply_to {:?} is not a subject replies can be published to",
            env.reply_to
        ));
        // Answered at the transport's reply subject, if any, not there.
        Arc::make_mut(&mut env).reply_to = Text::default();
        refuse(bus, msg.subject, msg.reply, Body::Envelope(env), err);
        return None;
    }
    Some(env)
}

/// Counts a request that will not be served as a bad message and answers it
/// with `err` where its sender can be found.
fn refuse(bus: &Arc<BusInner>, subject: Text, reply: Option<Text>, body: Body, err: BusError) {
    Counters::bump(&bus.counters.bad_messages);
    let msg = Message {
        subject,
        reply,
        body,
        status: None,
    };
    let bus = bus.clone();
    tokio::spawn(async move { reply_error_to_undecoded(&bus, msg, err).await });
}

/// Answers a request that will not be served with an error frame, decoding only
/// as much of it as needed to find where to answer.
async fn reply_error_to_undecoded(bus: &Arc<BusInner>, msg: Message, err: BusError) {
    let (reply_to, request_id, request) = match msg.body {
        Body::Envelope(env) => (
            Some(env.reply_to.clone()),
            Some(env.event_id.clone()),
            Some(Arc::unwrap_or_clone(env)),
        ),
        Body::Bytes(b) => match crate::codec::decode(&b) {
            Ok(env) => (
                Some(env.reply_to.clone()),
                Some(env.event_id.clone()),
                Some(env),
            ),
            Err(_) => {
                let (r, id) = salvage_reply_fields(&b);
                (r, id, None)
            }
        },
    };
    let usable = |r: &Text| is_reply_subject(r);
    let Some(reply_to) = reply_to.filter(usable).or(msg.reply.filter(usable)) else {
        return;
    };
    let payload = Some(serde_json::to_value(err.to_payload()).expect("error payload serializes"));
    let frame = match &request {
        Some(req) => reply_frame(&bus.settings.agent_id, req, FrameKind::Error, 0, payload),
        None => {
            let mut e = Envelope::new(crate::event_type::RESPONSE_ERROR);
            e.from = bus.settings.agent_id.clone();
            e.correlation_id = request_id.unwrap_or_default();
            e.is_final = true;
            e.payload = payload;
            e
        }
    };
    if let Err(e) = bus
        .transport
        .publish(Message::envelope(reply_to, frame))
        .await
    {
        tracing::warn!(error = %e, "could not send an error reply");
    }
}

async fn serve_request(bus: Arc<BusInner>, route: Arc<Route>, env: Arc<Envelope>) {
    let token = CancellationToken::new();
    // A caller that sent no deadline (a reference SDK's) gets the bus's
    // serve timeout, if one is set: it will send no cancellation either.
    let caller = caller_deadline(&env);
    let serve_limit = bus.settings.serve_timeout.filter(|_| caller.is_none());
    let deadline = caller
        .or_else(|| serve_limit.map(|d| crate::call::later_by(tokio::time::Instant::now(), d)));
    let grace = bus.settings.cancel_grace;
    let writer = StreamWriter::new(bus, &env, token.clone(), deadline);
    let cancels = &writer.bus().cancels;
    let _guard = cancels.register(&env, token.clone(), writer.clone());
    if cancels.cancelled_before_arrival(&env) {
        // Its caller gave up on it already: the handler would work for
        // nobody. The error frame keeps the rule that every request gets a
        // terminal frame (its caller no longer reads it).
        Counters::bump(&writer.bus().counters.stale_requests);
        tracing::debug!(target = %route.name, request = %env.event_id, "request not served: its caller cancelled it before it arrived");
        token.cancel();
        let err = BusError::unavailable(format!(
            "{}: the caller cancelled the request before it arrived",
            route.name
        ));
        if let Err(e) = writer.error(&err).await {
            tracing::debug!(target = %route.name, error = %e, "could not answer a stale request");
        }
        return;
    }
    let ctx = Arc::new(CallContext::with_deadline(&env, deadline));
    // The handler's request is normally the envelope's only owner: it can
    // take the payload without a copy.
    let call = Call {
        request: Request::answered_by(env, token.clone(), writer.clone()),
        writer: Some(writer.clone()),
        kind: route.kind,
        name: route.name.clone(),
        attempt: Arc::default(),
    };
    // The chain is entered inside the guard: a middleware or handler may
    // panic before its future exists, too.
    let run = async { Next::new(&route.chain, &route.endpoint).run(call).await };
    let guarded = ctx.scope(AssertUnwindSafe(run).catch_unwind());
    // The handler is told to stop at the deadline even when no cancellation
    // comes from the caller (its process may be gone). The caller's own
    // deadline passes first (see `CALLER_DEADLINE_GRACE`).
    let stop_at = match (caller, deadline) {
        (Some(at), _) => Some(at + CALLER_DEADLINE_GRACE),
        (None, limit) => limit,
    };
    let (outcome, ran_out) = match run_handler(guarded, stop_at, &token, grace).await {
        Ended::Returned { output, ran_out } => (output, ran_out),
        Ended::Abandoned { ran_out } => {
            Counters::bump(&writer.bus().counters.abandoned_handlers);
            tracing::warn!(
                target = %route.name,
                ?grace,
                "a cancelled handler did not end within its grace; dropped"
            );
            let message = format!(
                "{}: the handler did not end within {grace:?} of its cancellation",
                route.name
            );
            let err = if ran_out {
                BusError::timeout(message)
            } else {
                BusError::unavailable(message)
            };
            (Ok(Err(err)), ran_out)
        }
    };
    let mut result = outcome.unwrap_or_else(|panic| {
        Counters::bump(&writer.bus().counters.handler_panics);
        Err(BusError::unavailable(format!(
            "handler panicked: {}",
            panic_message(panic.as_ref())
        )))
    });
    if let (true, Some(d), Err(_)) = (ran_out, serve_limit, &result) {
        result = Err(BusError::timeout(format!(
            "{}: the request carried no deadline and ran past the serve timeout ({d:?})",
            route.name
        )));
    }
    if writer.is_closed() {
        if let Err(e) = result {
            tracing::debug!(target = %route.name, error = %e, "handler failed after its terminal frame");
        }
        return;
    }
    let sent = match &result {
        Ok(()) => writer.send(FrameKind::Final, None).await,
        Err(e) => writer.error(e).await,
    };
    if let Err(e) = sent {
        tracing::warn!(target = %route.name, error = %e, "could not send the terminal frame");
    }
}

/// How long after a caller's deadline its handler is cancelled when no
/// cancellation came. Without it, a handler that answers its cancellation
/// could answer before the caller's deadline passes there (the deadline is
/// sent in whole milliseconds, rounded down), and the caller would take a
/// cut-short answer for the real one.
const CALLER_DEADLINE_GRACE: Duration = Duration::from_millis(100);

/// How a handler's run ended.
enum Ended<T> {
    /// It ended by itself; `ran_out` when its deadline had passed (and
    /// cancelled it) first.
    Returned { output: T, ran_out: bool },
    /// It was cancelled and did not end within the grace: it was dropped.
    Abandoned { ran_out: bool },
}

/// Runs `fut` (a handler). When `stop_at` passes first, cancels `token`;
/// once `token` is cancelled, for that or any other reason (the caller went
/// away, a drain), `fut` has `grace` to end before it is dropped. A handler
/// done on its first poll needs no timer.
async fn run_handler<F: std::future::Future>(
    fut: F,
    stop_at: Option<tokio::time::Instant>,
    token: &CancellationToken,
    grace: Duration,
) -> Ended<F::Output> {
    let mut fut = std::pin::pin!(fut);
    if let std::task::Poll::Ready(output) = futures::poll!(fut.as_mut()) {
        return Ended::Returned {
            output,
            ran_out: false,
        };
    }
    let deadline = async {
        match stop_at {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    };
    let ran_out = tokio::select! {
        output = &mut fut => return Ended::Returned { output, ran_out: false },
        () = deadline => {
            token.cancel();
            true
        }
        () = token.cancelled() => false,
    };
    match tokio::time::timeout(grace, fut).await {
        Ok(output) => Ended::Returned { output, ran_out },
        Err(_) => Ended::Abandoned { ran_out },
    }
}

/// Delivers events to a worker task that runs the handler, `concurrency` at a time.
pub(crate) struct EventSink {
    pub tx: mpsc::Sender<Message>,
    pub bus: Weak<BusInner>,
    pub name: Text,
}

impl Sink for EventSink {
    fn deliver(&self, msg: Message) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(msg) {
            if let Some(bus) = self.bus.upgrade() {
                Counters::bump(&bus.counters.dropped_events);
            }
            tracing::warn!(subscription = %self.name, "event dropped: the subscriber is not keeping up");
        }
    }
}

/// Runs events of one subscription until it is removed.
pub(crate) async fn run_event_worker(
    route: Arc<Route>,
    rx: mpsc::Receiver<Message>,
    concurrency: usize,
) {
    tokio_stream_from(rx)
        .for_each_concurrent(concurrency, |msg| {
            let route = route.clone();
            async move {
                let Some(bus) = route.bus.upgrade() else {
                    return;
                };
                serve_event(bus, &route, msg).await;
            }
        })
        .await;
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Message>) -> impl futures::Stream<Item = Message> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn serve_event(bus: Arc<BusInner>, route: &Route, msg: Message) {
    let subject = msg.subject.clone();
    let env = match decode_body_shared(msg.body) {
        Ok(env) => env,
        Err(e) => {
            Counters::bump(&bus.counters.bad_messages);
            tracing::warn!(%subject, error = %e, "event is not an acp envelope");
            return;
        }
    };
    let ctx = Arc::new(CallContext::from_request(&env));
    let call = Call {
        request: Request::new(env, CancellationToken::new(), Bus::from_inner(bus.clone())),
        writer: None,
        kind: CallKind::Event,
        name: route.name.clone(),
        attempt: Arc::default(),
    };
    let run = async { Next::new(&route.chain, &route.endpoint).run(call).await };
    match ctx.scope(AssertUnwindSafe(run).catch_unwind()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(subscription = %route.name, error = %e, "event handler failed")
        }
        Err(panic) => {
            Counters::bump(&bus.counters.handler_panics);
            tracing::error!(subscription = %route.name, panic = %panic_message(panic.as_ref()), "event handler panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hiccup_keeps_the_fast_path_and_a_slow_handler_loses_it_until_quick_again() {
        let p = InlinePolicy::default();
        let slow = FirstPoll {
            held: Some(INLINE_LIMIT * 2),
            finished: true,
        };
        let quick = FirstPoll {
            held: Some(Duration::ZERO),
            finished: true,
        };
        p.record(slow);
        assert!(p.run_inline(), "a single slow poll changes nothing");
        for _ in 0..STRIKES_TO_SPAWN {
            p.record(slow);
        }
        let inline = (0..PROBE_EVERY).filter(|_| p.run_inline()).count();
        assert_eq!(inline, 1, "only probes run inline");
        for _ in 0..2 * STRIKES_TO_SPAWN {
            p.record(quick);
        }
        assert!(
            (0..10).all(|_| p.run_inline()),
            "quick probes win the fast path back"
        );
    }

    #[test]
    fn untimed_polls_change_nothing_and_routes_with_strikes_are_always_timed() {
        let p = InlinePolicy::default();
        let timed = (0..TIME_EVERY * 4).filter(|_| p.should_time()).count();
        assert_eq!(timed, 4, "one poll in TIME_EVERY is timed");
        p.record(FirstPoll {
            held: None,
            finished: true,
        });
        assert_eq!(p.strikes.load(Ordering::Relaxed), 0);
        p.record(FirstPoll {
            held: Some(INLINE_LIMIT * 2),
            finished: true,
        });
        assert!((0..TIME_EVERY).all(|_| p.should_time()));
    }

    #[test]
    fn handlers_that_wait_for_io_get_their_own_task() {
        let p = InlinePolicy::default();
        let waited = FirstPoll {
            held: Some(Duration::from_micros(5)),
            finished: false,
        };
        for _ in 0..STRIKES_TO_SPAWN {
            assert!(p.run_inline());
            p.record(waited);
        }
        let inline = (0..PROBE_EVERY).filter(|_| p.run_inline()).count();
        assert_eq!(inline, 1, "only probes run inline");
    }
}
