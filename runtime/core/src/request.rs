//! What a handler receives: the request envelope, its cancellation and the bus.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::bus::Bus;
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::text::Text;
use crate::writer::StreamWriter;

/// A request being served.
#[derive(Clone)]
pub struct Request {
    envelope: Arc<Envelope>,
    cancel: CancellationToken,
    bus: BusSource,
}

/// Where a request's bus handle lives: an invoke or stream request shares
/// its writer's (one handle less to count up and down per call, on a count
/// that every call shares); an event has its own.
#[derive(Clone)]
enum BusSource {
    Own(Bus),
    Writer(StreamWriter),
}

impl Request {
    pub(crate) fn new(envelope: Arc<Envelope>, cancel: CancellationToken, bus: Bus) -> Self {
        Request {
            envelope,
            cancel,
            bus: BusSource::Own(bus),
        }
    }

    /// A request answered through `writer`, whose bus it uses.
    pub(crate) fn answered_by(
        envelope: Arc<Envelope>,
        cancel: CancellationToken,
        writer: StreamWriter,
    ) -> Self {
        Request {
            envelope,
            cancel,
            bus: BusSource::Writer(writer),
        }
    }

    /// The request envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The request envelope, mutable (middleware stamps metadata on it). A
    /// request cloned by a middleware (retry keeps one) shares its envelope;
    /// the first change then copies it.
    pub fn envelope_mut(&mut self) -> &mut Envelope {
        Arc::make_mut(&mut self.envelope)
    }

    /// Takes the envelope: a move, unless a clone of this request still shares it.
    pub fn into_envelope(self) -> Envelope {
        Arc::try_unwrap(self.envelope).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Takes the payload (`null` when absent). The handler's request is the
    /// envelope's only owner unless it was cloned (a retry layer keeps one), so
    /// this is normally a move; a shared envelope has just its payload copied.
    pub fn into_payload(mut self) -> Value {
        // Taken in place: the rest of the envelope is dropped where it is.
        let payload = match Arc::get_mut(&mut self.envelope) {
            Some(env) => env.payload.take(),
            None => self.envelope.payload.clone(),
        };
        payload.unwrap_or(Value::Null)
    }

    /// The payload, or `null`.
    pub fn payload(&self) -> &Value {
        self.envelope.payload_or_null()
    }

    /// The payload decoded as `T`; a mismatch is `INVALID_REQUEST`.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, BusError> {
        self.envelope.payload_as()
    }

    /// Cancelled when the caller gives up.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the caller has given up.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when the caller gives up.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await
    }

    /// What the caller said about frames: `Some(true)` it asked for a stream
    /// (`stream_invoke`), `Some(false)` for the answer alone (`invoke`), `None`
    /// it did not say (reference-SDK callers, whose `invoke` takes the first frame
    /// it gets). Bridges that send progress frames send them only for `Some(true)`.
    pub fn stream_requested(&self) -> Option<bool> {
        self.envelope
            .metadata
            .get(crate::context::STREAM_KEY)
            .and_then(Value::as_bool)
    }

    /// The bus serving this request, for nested calls (which inherit its context).
    pub fn bus(&self) -> &Bus {
        match &self.bus {
            BusSource::Own(bus) => bus,
            BusSource::Writer(writer) => writer.bus_handle(),
        }
    }
}

/// What kind of registration a call arrived through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallKind {
    /// `handle_invoke`
    Invoke,
    /// `handle_stream`
    Stream,
    /// `subscribe`
    Event,
}

/// A request on its way through the middleware chain to its handler.
#[derive(Clone)]
pub struct Call {
    /// The request.
    pub request: Request,
    pub(crate) writer: Option<StreamWriter>,
    pub(crate) kind: CallKind,
    pub(crate) name: Text,
    pub(crate) attempt: Arc<AtomicU32>,
}

impl Call {
    /// The stream writer, for invoke and stream calls (not for events).
    pub fn writer(&self) -> Option<&StreamWriter> {
        self.writer.as_ref()
    }
    /// How the call arrived.
    pub fn kind(&self) -> CallKind {
        self.kind
    }
    /// The target (invoke, stream) or event pattern (event) it was registered under.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The request envelope.
    pub fn envelope(&self) -> &Envelope {
        self.request.envelope()
    }
    /// The attempt being made (from 1; more when a retry layer retries).
    pub fn attempt(&self) -> u32 {
        self.attempt.load(Ordering::Relaxed).max(1)
    }
    /// Records the attempt being made; every clone of the call sees it.
    pub fn set_attempt(&self, attempt: u32) {
        self.attempt.store(attempt, Ordering::Relaxed);
    }
    /// Frames already sent for this call.
    pub fn frames_sent(&self) -> u64 {
        self.writer.as_ref().map_or(0, StreamWriter::frames_sent)
    }
}
