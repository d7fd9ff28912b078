//! The transport contract: how the bus moves messages between processes.
//!
//! A transport publishes messages on subjects and delivers the messages of a
//! subscription to a [`Sink`]. It knows nothing of envelopes beyond carrying
//! them: the in-memory transport hands envelopes over as they are, a network
//! transport encodes them with [`crate::codec`].

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::envelope::Envelope;
use crate::text::Text;

/// A message body: an envelope not yet encoded, or bytes off the wire.
#[derive(Clone, Debug)]
pub enum Body {
    /// An envelope (the in-memory transport never encodes). Shared, so that
    /// a message delivered to several subscribers is not copied for each; a
    /// receiver that is the only one takes it without a copy.
    Envelope(Arc<Envelope>),
    /// Raw bytes, normally a JSON envelope.
    Bytes(Bytes),
}

/// One message on a subject.
#[derive(Clone, Debug)]
pub struct Message {
    /// The subject it was published on.
    pub subject: Text,
    /// The transport-level reply subject, if any (NATS uses it to report "no responders").
    pub reply: Option<Text>,
    /// The body.
    pub body: Body,
    /// A transport status: 503 means nobody was subscribed to a request's subject.
    pub status: Option<u16>,
}

impl Message {
    /// A message carrying an envelope.
    pub fn envelope(subject: impl Into<Text>, env: Envelope) -> Self {
        Self::shared_envelope(subject, Arc::new(env))
    }

    /// A message carrying an envelope already behind an `Arc` (no copy).
    pub fn shared_envelope(subject: impl Into<Text>, env: Arc<Envelope>) -> Self {
        Message {
            subject: subject.into(),
            reply: None,
            body: Body::Envelope(env),
            status: None,
        }
    }

    /// A message carrying raw bytes.
    pub fn bytes(subject: impl Into<Text>, bytes: impl Into<Bytes>) -> Self {
        Message {
            subject: subject.into(),
            reply: None,
            body: Body::Bytes(bytes.into()),
            status: None,
        }
    }

    /// Sets the transport-level reply subject.
    pub fn with_reply(mut self, reply: impl Into<Text>) -> Self {
        self.reply = Some(reply.into());
        self
    }
}

/// Status a transport attaches when a request reached no subscriber.
pub const STATUS_NO_RESPONDERS: u16 = 503;

/// Receives the messages of a subscription. `deliver` is called from the
/// transport's own context: it must not block (hand work to a task instead).
pub trait Sink: Send + Sync + 'static {
    /// Takes one message.
    fn deliver(&self, msg: Message);
}

/// A live subscription; removing it stops deliveries.
#[async_trait]
pub trait Subscription: Send + Sync {
    /// Stops deliveries. Idempotent.
    async fn unsubscribe(&self) -> Result<(), TransportError>;

    /// Messages this subscription lost because it could not keep up, where
    /// the transport tells them apart from other subscriptions' (`None`:
    /// only its total, [`TransportStats::dropped`], is known).
    fn dropped(&self) -> Option<u64> {
        None
    }
}

/// Counters a transport keeps about itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages dropped because a subscriber could not keep up.
    pub dropped: u64,
    /// Times the connection was re-established.
    pub reconnects: u64,
}

/// A message transport (in-memory, NATS).
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Short name for logs: `memory`, `nats`.
    fn kind(&self) -> &'static str;

    /// Publishes one message.
    async fn publish(&self, msg: Message) -> Result<(), TransportError>;

    /// Publishes `msg` at once when that needs no waiting, else hands it
    /// back for [`Transport::publish`]. A transport whose publishes never
    /// wait (the in-memory one) implements it, so that the bus's calls make
    /// no boxed future per message. The default hands every message back.
    fn publish_now(&self, msg: Message) -> Result<Result<(), TransportError>, Message> {
        Err(msg)
    }

    /// Subscribes `sink` to `subject` (wildcards allowed), optionally in a queue
    /// group: each message goes to one member of each group and to every
    /// subscriber outside groups.
    async fn subscribe(
        &self,
        subject: &str,
        queue: Option<&str>,
        sink: Arc<dyn Sink>,
    ) -> Result<Box<dyn Subscription>, TransportError>;

    /// A fresh, unique inbox prefix such as `_INBOX.x8Fq...`; reply subjects are
    /// made by appending `.token`.
    fn new_inbox_prefix(&self) -> String;

    /// Waits until everything published so far has reached the server.
    async fn flush(&self) -> Result<(), TransportError>;

    /// Returns once what this client did to `subject` (`op`: subscribed,
    /// published) since `since` has reached the server and is in force, or
    /// fails with [`TransportError::Auth`] when the server refused it. The
    /// default: a [`Transport::flush`].
    async fn confirm(
        &self,
        op: Operation,
        subject: &str,
        since: std::time::Instant,
    ) -> Result<(), TransportError> {
        let _ = (op, subject, since);
        self.flush().await
    }

    /// How many messages one subscription holds, waiting to be handed on,
    /// before the transport drops more (a slow consumer): the bus keeps the
    /// flow-control windows of its streams, which share one reply
    /// subscription, within it. `None` (the default): it never drops.
    fn subscription_buffer(&self) -> Option<usize> {
        None
    }

    /// Whether the transport can lose its connection and make it again
    /// (NATS), after which other processes' handlers subscribe again, each
    /// on its own connection: a request that meets nobody in that moment is
    /// sent again for a short while. The default: no.
    fn may_reconnect(&self) -> bool {
        false
    }

    /// Whether the transport is connected now.
    fn is_connected(&self) -> bool;

    /// Counters.
    fn stats(&self) -> TransportStats;

    /// Closes the transport; later publishes fail.
    async fn close(&self);

    /// Counts one more bus built on this transport (see [`Transport::release`]).
    /// The default counts nothing.
    fn share(&self) {}

    /// Counts one bus fewer, as it closes: true when none is left, and the
    /// bus then closes the transport. Buses sharing a transport (several on
    /// one in-memory transport, say) leave it open for the others. The
    /// default: true, for a transport that does not count.
    fn release(&self) -> bool {
        true
    }

    /// Why the server refused to let this client `op` on `subject` since
    /// `since` (NATS permissions), if it did. A refusal arrives apart from
    /// the operation it answers: the bus asks at each of
    /// [`Transport::refusal_notices`] and when a call times out. The default:
    /// never.
    fn refusal(&self, op: Operation, subject: &str, since: std::time::Instant) -> Option<String> {
        let _ = (op, subject, since);
        None
    }

    /// A counter that moves with each refusal the server sends, for a
    /// transport whose server can refuse operations (see
    /// [`Transport::refusal`]): the bus watches it to end refused calls at
    /// once instead of at their deadlines. The default: `None`, never.
    fn refusal_notices(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// What a server can refuse a client ([`Transport::refusal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Publishing to a subject.
    Publish,
    /// Subscribing to a subject.
    Subscribe,
}

/// A transport failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The transport is closed.
    #[error("transport closed")]
    Closed,
    /// Not connected, and the operation cannot wait.
    #[error("not connected: {0}")]
    NotConnected(String),
    /// The server refused credentials.
    #[error("authorization failed: {0}")]
    Auth(String),
    /// A subject was not acceptable.
    #[error("bad subject: {0}")]
    Subject(String),
    /// A message could not be encoded.
    #[error("encode failed: {0}")]
    Encode(String),
    /// A message is larger than the transport carries (NATS: the server's
    /// `max_payload`, 1 MiB by default).
    #[error("message too large: {0}")]
    TooLarge(String),
    /// Any other failure of the underlying client.
    #[error("{0}")]
    Other(String),
}

impl From<TransportError> for crate::BusError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Auth(m) => crate::BusError::auth(m),
            TransportError::Encode(m) => crate::BusError::codec(m),
            TransportError::Subject(m) => crate::BusError::invalid(m),
            // Sending it again will not help: the sender must send less.
            e @ TransportError::TooLarge(_) => crate::BusError::invalid(e.to_string()),
            // Closed for good: no retry will find it open.
            e @ TransportError::Closed => {
                crate::BusError::transport(e.to_string()).with_retryable(false)
            }
            other => crate::BusError::transport(other.to_string()),
        }
    }
}

/// Counts one bus fewer on `buses` (a transport's count of the buses built
/// on it): true when it was the last, or when none was counted.
pub fn release(buses: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering;
    buses
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .map_or(true, |before| before <= 1)
}
