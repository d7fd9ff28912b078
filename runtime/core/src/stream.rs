//! The client side of a stream: frames in `seq` order, once each, up to the terminal one.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde_json::Value;
use tokio::time::{Instant, Sleep};

use crate::bus::BusInner;
use crate::codec::decode_body;
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::reply_router::ReplySlot;
use crate::stats::Counters;
use crate::text::Text;
use crate::transport::{Message, Operation, STATUS_NO_RESPONDERS};

/// Limits that end a stream with `BACKPRESSURE_DROP`.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Out-of-order frames held while waiting for a missing `seq` (reference: 256).
    pub max_pending: usize,
    /// Largest distance between the next expected `seq` and a received one (reference: 1024).
    pub max_gap: u64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_pending: 256,
            max_gap: 1024,
        }
    }
}

/// How a transport lost messages during a call (see [`Stream`]'s gap check).
enum TransportLoss {
    /// It reconnected: what was sent to its subscriptions meanwhile is gone.
    Reconnected,
    /// It dropped messages a subscription could not take.
    Dropped,
}

/// The request a [`Stream`] answers.
pub(crate) struct SentRequest {
    /// Its `event_id`, which the frames carry as `correlation_id`.
    pub id: Text,
    /// The subject it went to.
    pub subject: Text,
    /// When it was sent.
    pub at: std::time::Instant,
    /// The request, to send again when it met nobody just after a
    /// reconnect (see [`Transport::may_reconnect`](crate::transport::Transport::may_reconnect)).
    pub resend: Option<Arc<Envelope>>,
}

/// How long after meeting nobody, following a reconnect, a request is sent
/// again: the handlers' connections come back on their own backoff.
const RESUBSCRIBE_GRACE: Duration = Duration::from_secs(5);
/// The pause between those sends.
const RESEND_PAUSE: Duration = Duration::from_millis(100);
/// How often a stream that waits looks whether the transport dropped
/// messages (see `Stream::look_for_drops`).
const DROP_LOOK: Duration = Duration::from_secs(1);
/// How long a stream waits for a frame after it noticed that the transport
/// dropped messages, before it takes the rest of its frames as lost (its
/// terminal frame among them, maybe, which nothing would bring back). Long
/// enough for a handler that pauses (a model thinking) to come back: the
/// drops may have been another subscription's.
const DROP_SILENCE: Duration = Duration::from_secs(10);
/// How long frames missing before a terminal frame that has arrived are
/// waited for: one sender's frames come in order (a handler writing from
/// several tasks may cross them by moments), so past this they are lost.
const GAP_BEFORE_END_GRACE: Duration = Duration::from_secs(1);

/// How a wait for the next message ended.
enum Waited {
    /// A message, or `None` when the reply slot closed.
    Message(Option<Message>),
    /// The deadline or the idle limit passed.
    Timeout,
    /// Silent for [`DROP_SILENCE`] after the reply subscription dropped
    /// messages.
    SilentAfterDrops,
}

/// The frames of one `stream_invoke`, reordered by `seq`, without duplicates,
/// ending after the terminal frame. Local failures (timeout, no handler,
/// backpressure, transport) come as `Err`; an `agent.response.error` frame from
/// the handler comes as `Ok` (see [`Envelope::error`]). Dropping the stream
/// before its end tells the handler to stop.
pub struct Stream {
    slot: ReplySlot,
    request: SentRequest,
    target: Text,
    expected: u64,
    pending: BTreeMap<u64, Envelope>,
    deadline: Option<Instant>,
    idle: Option<Duration>,
    limits: StreamLimits,
    done: bool,
    /// One timer for the whole call, moved only when the wait limit moves.
    timer: Option<Pin<Box<Sleep>>>,
    /// The flow-control window the request offered (see
    /// [`crate::context::WINDOW_KEY`]), and how many frames read the handler
    /// was last told of.
    window: Option<u64>,
    told_read: u64,
    /// The window's share of the bus's budget, given back when the stream
    /// ends.
    window_reservation: Option<crate::window_budget::WindowReservation>,
    /// Until when a request that met nobody after a reconnect is sent again.
    resend_until: Option<Instant>,
    /// Until when frames missing before a terminal frame already held are
    /// waited for.
    gap_before_end: Option<Instant>,
    /// The transport's dropped-message count last looked at.
    drops_seen: u64,
    /// The reply subscription's own, last looked at (see
    /// [`Stream::look_for_drops`]).
    own_drops_seen: u64,
    /// When a waiting stream next looks for drops.
    next_look: Option<Instant>,
    /// The transport's counters when the call began: a frame missing after
    /// a reconnect, or after the transport dropped messages, is lost for good
    /// (core NATS drops what is sent to a subscription while it is being
    /// made again, or while it is full), not late.
    transport_at_start: crate::transport::TransportStats,
}

impl Stream {
    pub(crate) fn new(
        slot: ReplySlot,
        request: SentRequest,
        target: Text,
        deadline: Option<Instant>,
        idle: Option<Duration>,
        limits: StreamLimits,
    ) -> Self {
        let transport_at_start = slot.bus.transport.stats();
        let own_drops_seen = slot.bus.replies.dropped_or(transport_at_start.dropped);
        Stream {
            transport_at_start,
            own_drops_seen,
            slot,
            request,
            target,
            expected: 0,
            pending: BTreeMap::new(),
            deadline,
            idle,
            limits,
            done: false,
            timer: None,
            window: None,
            told_read: 0,
            window_reservation: None,
            resend_until: None,
            gap_before_end: None,
            drops_seen: transport_at_start.dropped,
            next_look: None,
        }
    }

    /// Tells the handler, as frames are read, that it may send more
    /// (`window`: the frames the request offered to hold).
    pub(crate) fn with_window(
        mut self,
        window: Option<u64>,
        reservation: Option<crate::window_budget::WindowReservation>,
    ) -> Self {
        self.window = window;
        self.window_reservation = reservation;
        self
    }

    /// The bus the call went out on.
    fn bus(&self) -> &Arc<BusInner> {
        &self.slot.bus
    }

    /// Ends the stream and tells the handler to stop, returning once the
    /// cancellation is handed to the transport (dropping the stream sends it
    /// in the background instead, which a process about to exit may not
    /// wait for). Nothing is sent when the stream has already ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), openagentio_core::BusError> {
    /// use openagentio_core::Bus;
    /// use serde_json::json;
    /// let bus = Bus::memory();
    /// bus.handle_stream("forever", |req, w| async move {
    ///     req.cancelled().await;
    ///     w.finish(json!("stopped")).await
    /// }).await?;
    /// let s = bus.stream_invoke("forever", json!(null)).await?;
    /// s.cancel().await?;
    /// # Ok(()) }
    /// ```
    pub async fn cancel(mut self) -> Result<(), BusError> {
        if self.done {
            return Ok(());
        }
        self.end();
        let msg = self.bus().cancel_message(&self.request.id);
        self.bus().transport.publish(msg).await?;
        self.bus().transport.flush().await.map_err(BusError::from)
    }

    /// The `event_id` of the request; frames carry it as `correlation_id`.
    pub fn request_id(&self) -> &str {
        &self.request.id
    }

    /// Whether the stream has ended.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The next frame, or `None` after the end.
    pub async fn next(&mut self) -> Option<Result<Envelope, BusError>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(env) = self.pending.remove(&self.expected) {
                return Some(Ok(self.hand_out(env)));
            }
            // A frame already queued needs no timer.
            let received = match self.slot.queue.try_recv() {
                Poll::Ready(m) => m,
                Poll::Pending => match self.wait().await {
                    Waited::Message(m) => m,
                    Waited::Timeout => return Some(Err(self.fail_timeout())),
                    Waited::SilentAfterDrops => {
                        let err = BusError::backpressure(format!(
                            "{}: the transport dropped replies to this process's calls (its \
                             reply subscription fell behind), and no frame has come for \
                             {DROP_SILENCE:?} since: the rest of the stream is taken as lost",
                            self.target
                        ));
                        return Some(Err(self.fail(err)));
                    }
                },
            };
            let Some(msg) = received else {
                if let Some(why) = self.slot.queue.refused() {
                    return Some(Err(self.fail(self.refused(&why))));
                }
                if self.slot.queue.overflowed() {
                    Counters::bump(&self.bus().counters.overflowed_calls);
                    return Some(Err(self.fail(BusError::backpressure(format!(
                        "{}: reply buffer overflowed; frames were dropped",
                        self.target
                    )))));
                }
                let err = if self.bus().closed.load(std::sync::atomic::Ordering::Acquire) {
                    // Closed on purpose (a service stopping): the call will
                    // not be answered here, whatever the handler does.
                    BusError::unavailable(format!(
                        "{}: the bus making the call was closed (its service is stopping) \
                         before the terminal frame",
                        self.target
                    ))
                } else {
                    BusError::transport(format!(
                        "{}: reply channel closed before the terminal frame",
                        self.target
                    ))
                };
                return Some(Err(self.fail(err)));
            };
            if msg.status == Some(STATUS_NO_RESPONDERS) {
                match self.resend_after_reconnect().await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(e) => return Some(Err(self.fail(e))),
                }
                self.end();
                // A tenant's subject: say which, as the target may be
                // served for others.
                let tenant = self
                    .request
                    .subject
                    .strip_prefix(self.bus().subjects.prefix())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .and_then(|rest| rest.strip_suffix(&*format!(".invoke.{}", self.target)))
                    .filter(|t| !t.is_empty());
                return Some(Err(BusError::no_handler(match tenant {
                    Some(t) => format!("no handler for target {:?} in tenant {t:?}", self.target),
                    None => format!("no handler for target {:?}", self.target),
                })));
            }
            let env = match decode_body(msg.body) {
                Ok(env) => env,
                Err(e) => {
                    // It came on this call's own reply subject: the answer
                    // cannot be read, and waiting would only end in a
                    // timeout that blames the handler.
                    Counters::bump(&self.bus().counters.bad_messages);
                    tracing::warn!(target = %self.target, error = %e, "a reply frame is not an envelope; the call fails");
                    return Some(Err(self.fail(BusError::codec(format!(
                        "{}: a reply frame could not be decoded: {e}",
                        self.target
                    )))));
                }
            };
            if env.seq == self.expected && self.pending.is_empty() {
                // In order, nothing held back: the common case skips the map.
                return Some(Ok(self.hand_out(env)));
            }
            if env.seq < self.expected || self.pending.contains_key(&env.seq) {
                continue; // duplicate or late
            }
            if let Some(loss) = self.transport_loss() {
                let (target, first, last) = (&self.target, self.expected, env.seq - 1);
                let err = match loss {
                    TransportLoss::Reconnected => BusError::transport(format!(
                        "{target}: frames {first} to {last} were lost while the connection to \
                         the bus was down; the stream cannot be completed"
                    )),
                    TransportLoss::Dropped => BusError::backpressure(format!(
                        "{target}: frames {first} to {last} were dropped by the transport (a \
                         subscription of this process fell behind); the stream cannot be \
                         completed"
                    )),
                };
                return Some(Err(self.fail(err)));
            }
            if env.seq - self.expected > self.limits.max_gap {
                return Some(Err(self.fail(BusError::backpressure(format!(
                    "{}: frame seq {} is more than {} ahead of the expected {}",
                    self.target, env.seq, self.limits.max_gap, self.expected
                )))));
            }
            if env.is_terminal() {
                self.gap_before_end =
                    Some(crate::call::later_by(Instant::now(), GAP_BEFORE_END_GRACE));
            }
            self.pending.insert(env.seq, env);
            if self.pending.len() > self.limits.max_pending {
                return Some(Err(self.fail(BusError::backpressure(format!(
                    "{}: more than {} frames pending while seq {} is missing",
                    self.target, self.limits.max_pending, self.expected
                )))));
            }
        }
    }

    /// Reads to the end and returns the terminal frame's payload; an error frame
    /// becomes `Err`.
    pub async fn final_payload(mut self) -> Result<Value, BusError> {
        self.answer().await
    }

    /// [`Stream::final_payload`] without giving the stream up: a caller that
    /// stops waiting (a `select!` on Ctrl-C, say) can still
    /// [cancel](Stream::cancel) the call.
    pub async fn answer(&mut self) -> Result<Value, BusError> {
        while let Some(frame) = self.next().await {
            let frame = frame?;
            if frame.is_terminal() {
                if let Some(e) = frame.error() {
                    return Err(e);
                }
                return Ok(frame.payload.unwrap_or(Value::Null));
            }
        }
        Err(BusError::transport(format!(
            "{}: ended without a terminal frame",
            self.target
        )))
    }

    /// The frames as a `futures::Stream`.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Envelope, BusError>> + Send {
        futures::stream::unfold(self, |mut s| async move { s.next().await.map(|f| (f, s)) })
    }

    /// Gives out the frame with the expected `seq`; a terminal one ends the stream.
    fn hand_out(&mut self, env: Envelope) -> Envelope {
        self.expected += 1;
        if env.is_terminal() {
            self.end();
        } else if let Some(window) = self.window {
            // Every quarter window: often enough that the handler rarely
            // waits, seldom enough to cost nothing.
            if self.expected - self.told_read >= (window / 4).max(1) {
                self.told_read = self.expected;
                self.bus().send_window(&self.request.id, self.expected);
            }
        }
        env
    }

    /// Waits for the next message of the reply slot, until the deadline or
    /// the idle limit, or until it is silent for [`DROP_SILENCE`] after the
    /// transport dropped messages.
    async fn wait(&mut self) -> Waited {
        let limit = self.wait_limit();
        let mut drops_noticed: Option<Instant> = None;
        loop {
            // A stream with a window looks now and then whether the
            // transport dropped messages: a whole window lost would leave its
            // handler waiting for a notice that never comes, and this stream
            // waiting for frames that never come, until the deadline.
            // Armed once a second, not at every wait: a busy stream does
            // not move its timer for each frame.
            let look = match self.window {
                Some(_) => Some(
                    *self
                        .next_look
                        .get_or_insert_with(|| crate::call::later_by(Instant::now(), DROP_LOOK)),
                ),
                None => None,
            };
            let until = [limit, look].into_iter().flatten().min();
            let Some(until) = until else {
                return Waited::Message(self.slot.recv().await);
            };
            let timer = match &mut self.timer {
                Some(t) => {
                    if t.deadline() != until {
                        t.as_mut().reset(until);
                    }
                    t
                }
                None => self.timer.insert(Box::pin(tokio::time::sleep_until(until))),
            };
            tokio::select! {
                biased;
                m = self.slot.recv() => return Waited::Message(m),
                _ = timer.as_mut() => {}
            }
            let now = Instant::now();
            if limit.is_some_and(|l| now >= l) {
                return Waited::Timeout;
            }
            if self.next_look.is_some_and(|at| now >= at) {
                self.next_look = None;
                if self.look_for_drops() {
                    drops_noticed = Some(now);
                }
            }
            if drops_noticed.is_some_and(|at| now.saturating_duration_since(at) >= DROP_SILENCE) {
                return Waited::SilentAfterDrops;
            }
        }
    }

    /// After the transport dropped messages, tells the handler it may send
    /// a window beyond what it was allowed: if frames were lost, the next
    /// one shows the gap and the stream ends at once with a typed error
    /// (see [`Stream::next`]) instead of both sides waiting. Any
    /// subscription's drops do (the notice costs nothing when none of this
    /// stream's frames were lost, and the client may not report every drop
    /// with its subscription). Returns whether the reply subscription itself
    /// lost messages: only then does the silence rule apply (a flooded
    /// event subscriber must not end a stream that is just slow).
    fn look_for_drops(&mut self) -> bool {
        let Some(window) = self.window else {
            return false;
        };
        let now = self.bus().transport.stats();
        let own = self.reply_drops(now);
        let own_new = own != self.own_drops_seen;
        self.own_drops_seen = own;
        if now.dropped != self.drops_seen {
            self.drops_seen = now.dropped;
            let claimed = self.told_read.max(self.expected) + window;
            self.bus().send_window(&self.request.id, claimed);
        }
        own_new
    }

    fn wait_limit(&self) -> Option<Instant> {
        let idle = self.idle.map(|d| crate::call::later_by(Instant::now(), d));
        [self.deadline, idle, self.gap_before_end]
            .into_iter()
            .flatten()
            .min()
    }

    fn fail_timeout(&mut self) -> BusError {
        if let Some(end) = self.pending.last_key_value().map(|(seq, _)| *seq)
            && self.gap_before_end.is_some_and(|t| Instant::now() >= t)
        {
            let err = BusError::transport(format!(
                "{}: frames {} to {} never arrived, though the terminal frame (seq {end}) did",
                self.target,
                self.expected,
                end - 1
            ));
            return self.fail(err);
        }
        let overall = self.deadline.is_some_and(|d| Instant::now() >= d);
        let what = if overall {
            "no terminal frame before the deadline"
        } else {
            "idle timeout between frames"
        };
        // Say why when the likely cause is known, which the timeout alone
        // hides: the server refused the request, or the transport is down.
        let transport = &self.bus().transport;
        let refused = transport.refusal(Operation::Publish, &self.request.subject, self.request.at);
        if let Some(why) = refused {
            let err = self.refused(&why);
            return self.fail(err);
        }
        let why = if !transport.is_connected() {
            " (the bus transport is not connected)"
        } else {
            match self.transport_loss() {
                Some(TransportLoss::Reconnected) => {
                    " (the connection to the bus was lost and made again during the call: \
                     the request or frames may have been lost)"
                }
                Some(TransportLoss::Dropped) => {
                    " (the transport dropped messages of a subscription that fell behind \
                     during the call: frames may have been lost)"
                }
                None => "",
            }
        };
        // Frames held back behind a missing one: say which is missing.
        let held = match self.pending.len() {
            0 => String::new(),
            n => format!(
                " (frame seq {} never arrived; {n} later frame(s) held)",
                self.expected
            ),
        };
        self.fail(BusError::timeout(format!(
            "{}: {what}{why}{held}",
            self.target
        )))
    }

    /// Marks the stream ended; its window goes back to the bus's budget and
    /// its reply slot to the router.
    fn end(&mut self) {
        self.done = true;
        self.window_reservation = None;
        self.slot.release();
    }

    /// Messages the reply subscription has lost: those of the frames of every
    /// call this bus makes. Where the transport cannot tell them apart,
    /// every subscription's (`now`'s total).
    fn reply_drops(&self, now: crate::transport::TransportStats) -> u64 {
        self.bus().replies.dropped_or(now.dropped)
    }

    /// What the transport did since the call began that loses frames for good.
    fn transport_loss(&self) -> Option<TransportLoss> {
        let now = self.bus().transport.stats();
        if now.reconnects != self.transport_at_start.reconnects {
            Some(TransportLoss::Reconnected)
        } else if now.dropped != self.transport_at_start.dropped {
            Some(TransportLoss::Dropped)
        } else {
            None
        }
    }

    /// Sends the request again when it met nobody after the connection was
    /// made again during the call: the handlers' own connections may not
    /// have subscribed again yet (a call made while the server was away is
    /// answered if it is back before the deadline). Every [`RESEND_PAUSE`],
    /// for up to [`RESUBSCRIBE_GRACE`] and within the deadline. Returns
    /// whether it was sent.
    async fn resend_after_reconnect(&mut self) -> Result<bool, BusError> {
        let Some(env) = self.request.resend.clone() else {
            return Ok(false);
        };
        if !matches!(self.transport_loss(), Some(TransportLoss::Reconnected)) {
            return Ok(false);
        }
        let now = Instant::now();
        let grace = *self.resend_until.get_or_insert(now + RESUBSCRIBE_GRACE);
        let until = self.deadline.map_or(grace, |d| d.min(grace));
        let at = now + RESEND_PAUSE;
        if at >= until {
            return Ok(false);
        }
        tokio::time::sleep_until(at).await;
        let msg = Message::shared_envelope(self.request.subject.clone(), env)
            .with_reply(self.slot.subject.clone());
        self.bus().transport.publish(msg).await?;
        Ok(true)
    }

    /// The error of a call whose request the server refused (`why`).
    fn refused(&self, why: &str) -> BusError {
        BusError::auth(format!(
            "{}: the server refused the request ({why})",
            self.target
        ))
    }

    /// Ends the stream locally and tells the handler to stop.
    fn fail(&mut self, err: BusError) -> BusError {
        self.end();
        self.bus().send_cancel(&self.request.id);
        err
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.done {
            self.bus().send_cancel(&self.request.id);
        }
    }
}
