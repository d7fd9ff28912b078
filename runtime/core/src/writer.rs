//! The server side of a stream: emits `started → delta* → final | error` frames.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::bus::{Bus, BusInner};
use crate::context::{STREAM_KEY, WINDOW_KEY};
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::event_type::{RESPONSE_DELTA, RESPONSE_ERROR, RESPONSE_FINAL, RESPONSE_STARTED};
use crate::ids::event_id_at;
use crate::payload::DeltaPayload;
use crate::text::Text;
use crate::transport::Message;

/// The kind of a response frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// `agent.response.started`
    Started,
    /// `agent.response.delta`
    Delta,
    /// `agent.response.final` (terminal)
    Final,
    /// `agent.response.error` (terminal)
    Error,
}

impl FrameKind {
    fn event_type(self) -> &'static str {
        match self {
            FrameKind::Started => RESPONSE_STARTED,
            FrameKind::Delta => RESPONSE_DELTA,
            FrameKind::Final => RESPONSE_FINAL,
            FrameKind::Error => RESPONSE_ERROR,
        }
    }
    fn frame_type(self) -> &'static str {
        match self {
            FrameKind::Started => "response.started",
            FrameKind::Delta => "response.delta",
            FrameKind::Final => "response.final",
            FrameKind::Error => "response.error",
        }
    }
    fn is_terminal(self) -> bool {
        matches!(self, FrameKind::Final | FrameKind::Error)
    }
}

/// Writes the response frames of one request to its `reply_to`, numbering them
/// by `seq` from 0. Cheap to clone; clones write to the same stream. After a
/// terminal frame every write fails with `INVALID_REQUEST`.
#[derive(Clone)]
pub struct StreamWriter {
    inner: Arc<WriterInner>,
}

struct WriterInner {
    bus: Bus,
    /// Where the replies go (the request's `reply_to`).
    reply_to: Text,
    state: Mutex<WriterState>,
    frames: AtomicU64,
    cancel: CancellationToken,
    streaming: bool,
    /// The request's deadline: a frame the transport has not taken by then
    /// is given up (see [`StreamWriter::send`]).
    deadline: Option<tokio::time::Instant>,
    /// The frames the caller can hold past those it has read, when it
    /// offered flow control (see [`crate::context::WINDOW_KEY`]).
    window: Option<u64>,
    /// How many frames the caller has said it has read.
    caller_read: AtomicU64,
    /// Woken when the caller reads on.
    read_on: tokio::sync::Notify,
}

struct WriterState {
    seq: u64,
    started: bool,
    /// A frame was written but not sent (the caller wanted only the answer):
    /// `started` may no longer come, as if it had been sent.
    held_back: bool,
    closed: bool,
    /// Every field a reply copies from the request, made once per request.
    /// The terminal frame takes it and is made in it, in place, sent without
    /// a copy; other frames copy it.
    template: Option<Arc<Envelope>>,
}

/// Non-`acp.*` metadata of a request, inherited by its replies.
pub(crate) fn inherited_metadata(src: &Map<String, Value>) -> Map<String, Value> {
    src.iter()
        .filter(|(k, _)| !k.starts_with("acp."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// What every reply to `req` copies from it: correlation, session, trace,
/// addressing and inherited metadata.
fn reply_template(agent_id: &Text, req: &Envelope) -> Envelope {
    let mut e = Envelope::empty();
    e.trace_id.clone_from(&req.trace_id);
    e.span_id.clone_from(&req.span_id);
    e.traceparent.clone_from(&req.traceparent);
    e.session_id.clone_from(&req.session_id);
    e.conversation_id.clone_from(&req.conversation_id);
    e.correlation_id.clone_from(&req.event_id);
    e.from = agent_id.clone();
    e.to.clone_from(&req.from);
    e.channel.clone_from(&req.channel);
    e.tenant_id.clone_from(&req.tenant_id);
    e.user_id.clone_from(&req.user_id);
    e.metadata = inherited_metadata(&req.metadata);
    e
}

/// Makes a reply template a frame of `kind`: a new id and time, the frame's
/// event type, `seq`, `is_final` and payload.
fn stamp(e: &mut Envelope, kind: FrameKind, seq: u64, payload: Option<Value>) {
    let now = Utc::now();
    e.event_id = event_id_at(now.timestamp_millis() as u64);
    e.event_type = Text::new_static(kind.event_type());
    e.frame_type = Text::new_static(kind.frame_type());
    e.occurred_at = now.fixed_offset();
    e.seq = seq;
    e.is_final = kind.is_terminal();
    e.payload = payload.filter(|p| !p.is_null());
}

/// A reply frame to `req`: correlation, session, trace and metadata copied from it.
pub(crate) fn reply_frame(
    agent_id: &Text,
    req: &Envelope,
    kind: FrameKind,
    seq: u64,
    payload: Option<Value>,
) -> Envelope {
    let mut frame = reply_template(agent_id, req);
    stamp(&mut frame, kind, seq, payload);
    frame
}

impl StreamWriter {
    pub(crate) fn new(
        bus: Arc<BusInner>,
        request: &Envelope,
        cancel: CancellationToken,
        deadline: Option<tokio::time::Instant>,
    ) -> Self {
        let streaming = request.metadata.get(STREAM_KEY).and_then(Value::as_bool) != Some(false);
        let window = request
            .metadata
            .get(WINDOW_KEY)
            .and_then(Value::as_u64)
            .filter(|w| streaming && *w > 0);
        StreamWriter {
            inner: Arc::new(WriterInner {
                streaming,
                window,
                caller_read: AtomicU64::new(0),
                read_on: tokio::sync::Notify::new(),
                reply_to: request.reply_to.clone(),
                state: Mutex::new(WriterState {
                    seq: 0,
                    started: false,
                    held_back: false,
                    closed: false,
                    template: Some(Arc::new(reply_template(&bus.settings.agent_id, request))),
                }),
                bus: Bus::from_inner(bus),
                frames: AtomicU64::new(0),
                cancel,
                deadline,
            }),
        }
    }

    /// The bus the frames go out on.
    pub(crate) fn bus(&self) -> &Arc<BusInner> {
        &self.inner.bus.inner
    }

    /// The bus the frames go out on, as a handle.
    pub(crate) fn bus_handle(&self) -> &Bus {
        &self.inner.bus
    }

    /// Sends `agent.response.started` with payload `{"meta": meta}`. At most once,
    /// and only before any other frame.
    pub async fn started(&self, meta: Value) -> Result<(), BusError> {
        {
            let mut st = self.inner.state.lock();
            if st.started || st.seq > 0 || st.held_back {
                return Err(BusError::invalid(
                    "stream: started must be the first frame, once",
                ));
            }
            st.started = true;
        }
        let meta = if meta.is_null() { json!({}) } else { meta };
        self.send(FrameKind::Started, Some(json!({ "meta": meta })))
            .await
    }

    /// Sends `agent.response.delta` with a typed payload.
    pub async fn delta(&self, delta: DeltaPayload) -> Result<(), BusError> {
        self.send(FrameKind::Delta, Some(delta.into_value())).await
    }

    /// Sends `agent.response.delta` with payload `{"delta": text}`.
    pub async fn delta_text(&self, text: impl Into<String>) -> Result<(), BusError> {
        self.send(FrameKind::Delta, Some(json!({ "delta": text.into() })))
            .await
    }

    /// Sends the terminal `agent.response.final` with payload `{"result": result}`.
    pub async fn finish(&self, result: Value) -> Result<(), BusError> {
        self.send(FrameKind::Final, Some(json!({ "result": result })))
            .await
    }

    /// Sends the terminal `agent.response.error` frame for `err`.
    pub async fn error(&self, err: &BusError) -> Result<(), BusError> {
        let payload = serde_json::to_value(err.to_payload()).expect("error payload serializes");
        self.send(FrameKind::Error, Some(payload)).await
    }

    /// Sends a frame of `kind` with `payload` exactly as given. When the
    /// caller offered flow control and holds as many unread frames as it
    /// can, a non-terminal frame waits until it reads on (or cancels, or its
    /// deadline passes).
    pub async fn send(&self, kind: FrameKind, payload: Option<Value>) -> Result<(), BusError> {
        if !kind.is_terminal() && self.inner.window.is_some() {
            self.wait_for_room().await?;
        }
        let (seq, template) = {
            let mut st = self.inner.state.lock();
            if st.closed {
                return Err(BusError::invalid(
                    "stream: already closed by a terminal frame",
                ));
            }
            if kind.is_terminal() {
                st.closed = true;
            } else if !self.inner.streaming {
                // The caller wants only the answer (see `context::STREAM_KEY`).
                st.held_back = true;
                return Ok(());
            }
            let seq = st.seq;
            st.seq += 1;
            let template = if self.inner.reply_to.is_empty() {
                None // nobody asked for an answer
            } else if kind.is_terminal() {
                st.template.take()
            } else {
                st.template.clone()
            };
            (seq, template)
        };
        self.inner.frames.fetch_add(1, Ordering::Relaxed);
        let Some(template) = template else {
            return Ok(());
        };
        // The terminal frame holds the only handle: made in place. Others
        // copy the template once.
        let mut frame = template;
        let env = Arc::make_mut(&mut frame);
        stamp(env, kind, seq, payload);
        let correlation_id = kind.is_terminal().then(|| env.correlation_id.clone());
        let msg = Message::shared_envelope(self.inner.reply_to.clone(), frame);
        let sent = match self.bus().transport.publish_now(msg) {
            Ok(sent) => {
                crate::bus::yield_if_out_of_budget().await;
                sent.map_err(BusError::from)
            }
            Err(msg) => {
                let publish = self.bus().transport.publish(msg);
                self.within_deadline(publish).await
            }
        };
        if let Err(e) = &sent {
            match correlation_id {
                // Boxed: a rare path that should not grow every send's future.
                Some(correlation_id) => {
                    Box::pin(self.report_lost_terminal(seq, correlation_id, e)).await
                }
                None => {
                    // Not sent: the next frame takes its number, or the caller
                    // would wait for it (unless another frame took the next one).
                    let mut st = self.inner.state.lock();
                    if st.seq == seq + 1 {
                        st.seq = seq;
                        self.inner.frames.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        sent
    }

    /// Waits until the caller can hold one more frame.
    async fn wait_for_room(&self) -> Result<(), BusError> {
        let Some(window) = self.inner.window else {
            return Ok(());
        };
        // The frames sent so far (one or two more under concurrent writers:
        // the window leaves the caller room for that).
        let has_room = || {
            self.inner.frames.load(Ordering::Relaxed)
                < self.inner.caller_read.load(Ordering::Acquire) + window
        };
        if has_room() {
            return Ok(());
        }
        loop {
            // Registered before the check, so a notice between the two is not missed.
            let read_on = self.inner.read_on.notified();
            tokio::pin!(read_on);
            read_on.as_mut().enable();
            if has_room() {
                return Ok(());
            }
            let deadline = async {
                match self.inner.deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = read_on => {}
                _ = self.inner.cancel.cancelled() => {
                    return Err(BusError::unavailable(
                        "stream: the caller went away while it was still to read the frames sent",
                    ));
                }
                _ = deadline => {
                    return Err(BusError::timeout(
                        "stream: the caller did not read the frames sent before the deadline",
                    ));
                }
            }
        }
    }

    /// The caller has read `read` frames: frames waiting for room may go.
    pub(crate) fn caller_read(&self, read: u64) {
        self.inner.caller_read.fetch_max(read, Ordering::AcqRel);
        self.inner.read_on.notify_waiters();
    }

    /// `publish`, given up at the request's deadline: a NATS client without
    /// its server holds publishes once its send buffer is full, and the
    /// caller, gone by then, cannot send the cancellation that would stop the
    /// handler. So the handler is cancelled here, and learns why from the error.
    async fn within_deadline(
        &self,
        publish: impl std::future::Future<Output = Result<(), crate::transport::TransportError>>,
    ) -> Result<(), BusError> {
        let Some(deadline) = self.inner.deadline else {
            return publish.await.map_err(BusError::from);
        };
        match crate::call::finish_by(deadline, publish).await {
            Ok(sent) => sent.map_err(BusError::from),
            Err(_) => {
                self.inner.cancel.cancel();
                Err(BusError::timeout(
                    "the frame was not sent before the request's deadline (is the transport connected?)",
                ))
            }
        }
    }

    /// After a terminal frame could not be sent (larger than the transport
    /// carries, say), tells the caller why in a small error frame, so that it
    /// does not wait for its deadline. Best effort: the handler has the error.
    async fn report_lost_terminal(&self, seq: u64, correlation_id: Text, err: &BusError) {
        let bus = &self.inner.bus.inner;
        let mut frame = Envelope::empty();
        frame.correlation_id = correlation_id;
        frame.from = bus.settings.agent_id.clone();
        let lost = BusError::new(
            err.code(),
            format!("the handler's answer could not be sent: {}", err.message()),
        );
        let payload = serde_json::to_value(lost.to_payload()).ok();
        stamp(&mut frame, FrameKind::Error, seq, payload);
        let publish = bus
            .transport
            .publish(Message::envelope(self.inner.reply_to.clone(), frame));
        let _ = self.within_deadline(publish).await;
    }

    /// Whether the caller takes every frame (else only the terminal one is
    /// sent). True unless the caller said otherwise (see `context::STREAM_KEY`).
    pub fn is_streaming(&self) -> bool {
        self.inner.streaming
    }

    /// Whether a terminal frame has been sent.
    pub fn is_closed(&self) -> bool {
        self.inner.state.lock().closed
    }

    /// How many frames have been sent.
    pub fn frames_sent(&self) -> u64 {
        self.inner.frames.load(Ordering::Relaxed)
    }

    /// Cancelled when the caller gives up (drops its stream or passes its deadline).
    pub fn cancellation(&self) -> &CancellationToken {
        &self.inner.cancel
    }
}
