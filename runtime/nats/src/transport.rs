//! The NATS Core transport.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use async_trait::async_trait;
use futures::StreamExt;
use openagentio_core::transport::{
    Body, Message, Operation, Sink, Subscription, Transport, TransportError, TransportStats,
};
use openagentio_core::{BusError, codec};

use crate::options::{NatsAuth, NatsOptions, OptionNames};
use crate::url_credentials::{redact_urls, take_url_credentials};

/// A transport over one NATS connection. Subjects and queue groups map one to
/// one; the client reconnects by itself and restores subscriptions.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use openagentio_core::Bus;
/// use openagentio_nats::{NatsOptions, NatsTransport};
/// let nats = NatsTransport::connect(NatsOptions::new("nats://127.0.0.1:4222")).await?;
/// let bus = Bus::builder().transport(nats).agent_id("svc").build();
/// # let _ = bus; Ok(()) }
/// ```
#[derive(Clone)]
pub struct NatsTransport {
    client: async_nats::Client,
    stats: Arc<Counters>,
    subscription_capacity: usize,
}

#[derive(Default)]
struct Counters {
    dropped: AtomicU64,
    reconnects: AtomicU64,
    /// Open buses built on this connection (see [`Transport::release`]).
    buses: AtomicU64,
    connected_once: AtomicBool,
    closed: AtomicBool,
    /// A client error was logged since the last connect: the next ones of
    /// the same outage (one per reconnect attempt) go to debug.
    failing: AtomicBool,
    /// The server's latest permission refusals, oldest first, with when they
    /// came (for [`Transport::refusal`]).
    refusals: parking_lot::Mutex<VecDeque<(Instant, String)>>,
    /// Counts refusals: woken with each new one (for
    /// [`Transport::refusal_notices`] and subscription confirmations).
    refused: tokio::sync::watch::Sender<u64>,
    /// The dropped-message count of each subscription of ours, by the
    /// client's subscription id (slow-consumer events name it).
    drops_by_sid: parking_lot::Mutex<HashMap<u64, Arc<AtomicU64>>>,
}

/// Permission refusals remembered at most.
const REFUSALS_KEPT: usize = 64;

/// How long a confirmation (of a subscription or a publish) waits for a
/// refusal the client has received but not yet reported.
const REFUSAL_GRACE: Duration = Duration::from_millis(3);

/// Why connecting failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The credentials file could not be read.
    #[error("cannot read the NATS credentials file (`{setting}`): {source}")]
    Credentials {
        /// The option that names it.
        setting: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A TLS file named in the options cannot be read (checked before
    /// connecting: the client reads them only if the server asks for TLS).
    #[error("cannot read the NATS TLS {what} {path} (`{setting}`): {source}")]
    TlsFile {
        /// What the file holds, e.g. "CA certificates".
        what: &'static str,
        /// The option that names it.
        setting: &'static str,
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A TLS file that holds no PEM block of the kind it should.
    #[error(
        "the NATS TLS {what} {path} (`{setting}`) holds no PEM {pem}: \
         expected a `-----BEGIN {pem}-----` block"
    )]
    TlsContent {
        /// What the file should hold, e.g. "CA certificates".
        what: &'static str,
        /// The option that names it.
        setting: &'static str,
        /// The file.
        path: String,
        /// The PEM label looked for, e.g. `CERTIFICATE`.
        pem: &'static str,
    },
    /// A TLS file whose PEM holds something the handshake cannot use (a
    /// malformed certificate, an unsupported key).
    #[error("the NATS TLS {what} {path} (`{setting}`) cannot be used: {reason}")]
    TlsInvalid {
        /// What the file holds, e.g. "client key".
        what: &'static str,
        /// The option that names it.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The client key is not the key of the client certificate.
    #[error(
        "the NATS TLS client key {key} (`{key_setting}`) is not the key of the client \
         certificate {cert} (`{cert_setting}`)"
    )]
    TlsKeyMismatch {
        /// The certificate file.
        cert: String,
        /// The option that names it.
        cert_setting: &'static str,
        /// The key file.
        key: String,
        /// The option that names it.
        key_setting: &'static str,
    },
    /// Credentials were given both in the URL and in the options: one of
    /// them would go unused without a word.
    #[error(
        "NATS credentials in the URL {url} and in the options: give one of them \
         (the URL's user, password or token, or the options' authentication)"
    )]
    TwoCredentials {
        /// The URLs, credentials redacted.
        url: String,
    },
    /// The server refused the credentials.
    #[error("NATS authorization failed at {url}")]
    Auth {
        /// The server.
        url: String,
    },
    /// No server answered: the connection was refused or timed out, or the
    /// host name did not resolve.
    #[error("cannot connect to NATS at {url}: {message}")]
    Unreachable {
        /// The server.
        url: String,
        /// What failed.
        message: String,
    },
    /// A server answered but the connection could not be made (TLS, protocol).
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// The server.
        url: String,
        /// What failed.
        message: String,
    },
}

impl From<ConnectError> for TransportError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Auth { .. } => TransportError::Auth(e.to_string()),
            other => TransportError::NotConnected(other.to_string()),
        }
    }
}

/// So that `?` on [`NatsTransport::connect`] works where a [`BusError`] is
/// the error: refused credentials are `AUTH_FAILURE`, a file that cannot be
/// used `INVALID_REQUEST`, anything else `AGENT_UNAVAILABLE`.
///
/// ```no_run
/// use openagentio_core::{Bus, BusError};
/// use openagentio_nats::{NatsOptions, NatsTransport};
/// # async fn run() -> Result<(), BusError> {
/// let bus = Bus::builder()
///     .transport(NatsTransport::connect(NatsOptions::new("nats://127.0.0.1:4222")).await?)
///     .build();
/// # let _ = bus; Ok(()) }
/// ```
impl From<ConnectError> for BusError {
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Auth { .. } => BusError::auth(e.to_string()),
            ConnectError::Credentials { .. }
            | ConnectError::TlsFile { .. }
            | ConnectError::TlsContent { .. }
            | ConnectError::TlsInvalid { .. }
            | ConnectError::TlsKeyMismatch { .. }
            | ConnectError::TwoCredentials { .. } => BusError::invalid(e.to_string()),
            other => BusError::unavailable(other.to_string()),
        }
    }
}

impl NatsTransport {
    /// Connects to the server named in `opts`.
    pub async fn connect(opts: NatsOptions) -> Result<Self, ConnectError> {
        let stats = Arc::new(Counters::default());
        let events = stats.clone();
        let max_delay = opts.max_reconnect_delay;
        let subscription_capacity = opts.subscription_capacity;
        let mut co = ConnectOptions::new()
            .connection_timeout(opts.connect_timeout)
            .ping_interval(opts.ping_interval)
            .subscription_capacity(opts.subscription_capacity)
            .reconnect_delay_callback(move |attempts| {
                // 0, 50, 100, 200 ... ms up to the cap, with jitter against thundering herds.
                let base = Duration::from_millis(25u64.saturating_mul(1 << attempts.min(10)));
                let d = base.min(max_delay);
                d.mul_f64(0.5 + fastrand_f64() * 0.5)
            })
            .event_callback(move |event| {
                let events = events.clone();
                async move { on_event(&events, event) }
            });
        if let Some(name) = &opts.name {
            co = co.name(name);
        }
        // Credentials in the URLs (which async-nats would not send) count
        // when none are given otherwise; the URLs go on without them.
        let (url, url_auth) = take_url_credentials(&opts.url);
        let auth = match (&opts.auth, url_auth) {
            (NatsAuth::None, Some(from_url)) => from_url,
            (NatsAuth::None, None) => NatsAuth::None,
            (_, Some(_)) => {
                return Err(ConnectError::TwoCredentials {
                    url: redact_urls(&opts.url),
                });
            }
            (given, None) => given.clone(),
        };
        match &auth {
            NatsAuth::None => {}
            NatsAuth::Token(t) => co = co.token(t.clone()),
            NatsAuth::UserPassword { user, password } => {
                co = co.user_and_password(user.clone(), password.clone())
            }
            NatsAuth::CredentialsFile(path) => {
                co = co.credentials_file(path).await.map_err(|source| {
                    ConnectError::Credentials {
                        setting: opts.option_names.credentials_file,
                        path: path.display().to_string(),
                        source,
                    }
                })?;
            }
        }
        let names = opts.option_names;
        crate::tls_files::check(&opts.tls, &names)?;
        if opts.tls.required {
            co = co.require_tls(true);
        }
        if let Some(ca) = &opts.tls.ca_file {
            co = co.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&opts.tls.cert_file, &opts.tls.key_file) {
            co = co.add_client_certificate(cert.clone(), key.clone());
        }
        if opts.retry_on_initial_connect {
            co = co.retry_on_initial_connect();
        }
        let shown = redact_urls(&opts.url);
        // async-nats reads a string as one address: a list goes as a list.
        let servers: Vec<&str> = url
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        let client = co.connect(servers.as_slice()).await.map_err(|e| {
            let url = &shown;
            let message = e.to_string();
            match e.kind() {
                ConnectErrorKind::AuthorizationViolation => ConnectError::Auth { url: url.clone() },
                _ if no_server_answered(&e) => ConnectError::Unreachable {
                    url: url.clone(),
                    message,
                },
                _ => ConnectError::Connect {
                    url: url.clone(),
                    message: with_tls_hint(message, &names),
                },
            }
        })?;
        Ok(NatsTransport {
            client,
            stats,
            subscription_capacity,
        })
    }

    /// The underlying client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Flushes, then sends a message to itself through the server and waits
    /// for it, or for the server's refusal of the probe's subscription (a
    /// user without `_INBOX.>` subscribe permission): the server handles a
    /// connection's commands in order, so either answer means it has handled
    /// all sent before.
    async fn round_trip(&self) -> Result<(), TransportError> {
        let since = Instant::now();
        self.client.flush().await.map_err(to_transport_error)?;
        let probe = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(probe.clone())
            .await
            .map_err(to_transport_error)?;
        self.client
            .publish(probe.clone(), bytes::Bytes::new())
            .await
            .map_err(to_transport_error)?;
        self.client.flush().await.map_err(to_transport_error)?;
        // Made before the check, so a refusal in between still wakes it.
        let mut refused = self.stats.refused.subscribe();
        loop {
            if self.refusal(Operation::Subscribe, &probe, since).is_some() {
                return Ok(());
            }
            tokio::select! {
                m = sub.next() => {
                    return match m {
                        Some(_) => Ok(()),
                        None => Err(TransportError::NotConnected(
                            "connection closed during flush".into(),
                        )),
                    };
                }
                _ = refused.changed() => {}
            }
        }
    }
}

/// Whether `e` means that no server answered (refused, timed out, not
/// resolved) rather than that one answered and the handshake failed (TLS
/// alerts and certificate errors come as I/O errors too).
fn no_server_answered(e: &async_nats::ConnectError) -> bool {
    use std::io::ErrorKind;
    match e.kind() {
        ConnectErrorKind::TimedOut | ConnectErrorKind::Dns => true,
        ConnectErrorKind::Io => std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .is_some_and(|io| {
                matches!(
                    io.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::TimedOut
                        | ErrorKind::HostUnreachable
                        | ErrorKind::NetworkUnreachable
                        | ErrorKind::AddrNotAvailable
                        | ErrorKind::NotFound
                )
            }),
        _ => false,
    }
}

/// Bytes of subject, reply subject or queue group a command may hold. The
/// server reads a command line of at most 4,096 bytes (`max_control_line`)
/// and cuts the connection on a longer one, taking every call of this
/// process with it; what would not fit is refused here instead.
const MAX_CONTROL_LINE_NAMES: usize = 3_900;

fn check_control_line(names: &[&str]) -> Result<(), TransportError> {
    let len: usize = names.iter().map(|n| n.len()).sum();
    if len > MAX_CONTROL_LINE_NAMES {
        let shown: String = names[0].chars().take(64).collect();
        return Err(TransportError::Subject(format!(
            "subject {shown:?}... and its reply subject or queue group are {len} bytes; \
             NATS takes at most {MAX_CONTROL_LINE_NAMES}"
        )));
    }
    Ok(())
}

/// How long a [`Transport::flush`] waits for the server's answer.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// How long an unsubscribe waits for its round trip through the server (see
/// [`Transport::subscribe`]'s task): many times a healthy one, short enough
/// that closing with a server that froze is quick.
const UNSUBSCRIBE_ROUND_TRIP: Duration = Duration::from_secs(1);

/// `message` with what to do about the TLS refusals a user can fix in the
/// settings (rustls names them, but not the setting that helps).
fn with_tls_hint(message: String, names: &OptionNames) -> String {
    let hint = if message.contains("UnknownIssuer") {
        format!(
            "the server's certificate is signed by a CA this client does not trust: \
             give that CA as `{}`",
            names.ca_file
        )
    } else if message.contains("BadCertificate") || message.contains("CertificateRequired") {
        format!(
            "the server may want a client certificate: set `{}` and `{}`",
            names.cert_file, names.key_file
        )
    } else if message.contains("InvalidContentType") {
        let asks = match names.tls_required {
            Some(required) => format!("`{required}` or a tls:// URL asks"),
            None => "a tls:// URL asks".to_owned(),
        };
        format!("the server did not answer in TLS: it may not have TLS on, while {asks} for it")
    } else {
        return message;
    };
    format!("{message} ({hint})")
}

fn fastrand_f64() -> f64 {
    // Enough randomness for jitter without another dependency.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

fn on_event(stats: &Counters, event: Event) {
    match event {
        Event::Connected => {
            stats.failing.store(false, Ordering::Relaxed);
            if stats.connected_once.swap(true, Ordering::AcqRel) {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!("NATS connection restored");
            } else {
                tracing::info!("NATS connected");
            }
        }
        Event::Disconnected => tracing::warn!("NATS connection lost; reconnecting"),
        Event::SlowConsumer(sid) => {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(own) = stats.drops_by_sid.lock().get(&sid) {
                own.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(
                sid,
                "NATS subscription is a slow consumer: messages were dropped"
            );
        }
        Event::LameDuckMode => tracing::warn!("NATS server entered lame duck mode"),
        Event::ServerError(e) => {
            let message = e.to_string();
            if message.to_lowercase().contains("permissions violation") {
                let mut refusals = stats.refusals.lock();
                if refusals.len() == REFUSALS_KEPT {
                    refusals.pop_front();
                }
                refusals.push_back((Instant::now(), message.clone()));
                drop(refusals);
                stats.refused.send_modify(|n| *n += 1);
            }
            tracing::warn!(error = %message, "NATS server error");
        }
        Event::ClientError(e) => {
            if stats.failing.swap(true, Ordering::Relaxed) {
                tracing::debug!(error = %e, "NATS client error");
            } else {
                tracing::warn!(
                    error = %e,
                    "NATS client error; retrying (further errors until it connects are logged at debug)"
                );
            }
        }
        Event::Draining | Event::Closed => {}
    }
}

fn to_transport_error(e: impl std::fmt::Display) -> TransportError {
    TransportError::Other(e.to_string())
}

#[async_trait]
impl Transport for NatsTransport {
    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn publish(&self, msg: Message) -> Result<(), TransportError> {
        if self.stats.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        check_control_line(&[&msg.subject, msg.reply.as_deref().unwrap_or("")])?;
        let payload = match msg.body {
            Body::Bytes(b) => b,
            Body::Envelope(env) => {
                codec::encode(&env).map_err(|e| TransportError::Encode(e.to_string()))?
            }
        };
        let result = match msg.reply {
            Some(reply) => {
                self.client
                    .publish_with_reply(msg.subject.to_string(), reply.to_string(), payload)
                    .await
            }
            None => self.client.publish(msg.subject.to_string(), payload).await,
        };
        result.map_err(|e| match e.kind() {
            async_nats::PublishErrorKind::MaxPayloadExceeded => {
                TransportError::TooLarge(format!("{e} (the NATS server's max_payload)"))
            }
            _ => to_transport_error(e),
        })
    }

    async fn subscribe(
        &self,
        subject: &str,
        queue: Option<&str>,
        sink: Arc<dyn Sink>,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        if self.stats.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        check_control_line(&[subject, queue.unwrap_or("")])?;
        let subject_owned = subject.to_owned();
        let mut sub = match queue.filter(|q| !q.is_empty()) {
            Some(q) => {
                self.client
                    .queue_subscribe(subject_owned, q.to_owned())
                    .await
            }
            None => self.client.subscribe(subject_owned).await,
        }
        .map_err(to_transport_error)?;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let own_drops = SubscriptionDrops::track(&self.stats, &sub);
        let dropped = own_drops.as_ref().map(|d| d.count.clone());
        let transport = self.clone();
        let task = tokio::spawn(async move {
            // Untracked when the task ends, however it ends.
            let _own_drops = own_drops;
            let deliver = |m: async_nats::Message| {
                sink.deliver(Message {
                    subject: m.subject.as_str().into(),
                    reply: m.reply.map(|r| r.as_str().into()),
                    body: Body::Bytes(m.payload),
                    status: m.status.map(|s| s.as_u16()),
                })
            };
            if !forward_until(&mut sub, &deliver, &mut stopped).await {
                return;
            }
            // Unsubscribed. What the server routed here before now (a
            // request this very process sent just before a drain, say) is
            // still handed on, not lost: a message to ourselves goes through
            // the server while this subscription goes on forwarding, and
            // whatever was routed here before it arrives ahead of it. Only
            // then is the subscription ended. (async-nats's own `drain`
            // forgets the subscription without waiting for the server, and
            // loses what is still on its way.) Without a server, what the
            // client holds is all there is.
            if transport.client.connection_state() == State::Connected {
                // Bounded: a server that froze answers nothing, and a bus
                // closing must not wait for it.
                let echo = tokio::time::timeout(UNSUBSCRIBE_ROUND_TRIP, transport.round_trip());
                if !forward_until(&mut sub, &deliver, std::pin::pin!(echo)).await {
                    return;
                }
            }
            let _ = sub.unsubscribe().await;
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            while let Ok(Some(m)) = tokio::time::timeout_at(until, sub.next()).await {
                deliver(m);
            }
        });
        Ok(Box::new(NatsSubscription {
            stop: parking_lot::Mutex::new(Some(stop)),
            task: parking_lot::Mutex::new(Some(task)),
            dropped,
        }))
    }

    fn new_inbox_prefix(&self) -> String {
        self.client.new_inbox()
    }

    /// Flushes, then makes a round trip through the server on this connection:
    /// when it returns, the server has processed every subscription and publish
    /// sent before it (a bare client flush only empties the socket buffer).
    async fn flush(&self) -> Result<(), TransportError> {
        // Bounded as a whole: while disconnected, async-nats holds a flush
        // (and a subscription, once its send buffer is full) until it
        // reconnects.
        match tokio::time::timeout(FLUSH_LIMIT, self.round_trip()).await {
            Ok(done) => done,
            Err(_) => Err(TransportError::NotConnected(format!(
                "no answer from the server within {} s",
                FLUSH_LIMIT.as_secs()
            ))),
        }
    }

    async fn confirm(
        &self,
        op: Operation,
        subject: &str,
        since: Instant,
    ) -> Result<(), TransportError> {
        self.flush().await?;
        // The server answers a refused command before the flush's round trip
        // ends, but the client hands that answer to its event callback on
        // another task: the check gives it a moment.
        let refused = || {
            self.refusal(op, subject, since).map(|why| {
                let what = match op {
                    Operation::Publish => "a publish",
                    Operation::Subscribe => "the subscription",
                };
                TransportError::Auth(format!("{subject}: the server refused {what} ({why})"))
            })
        };
        tokio::task::yield_now().await;
        if let Some(e) = refused() {
            return Err(e);
        }
        tokio::time::sleep(REFUSAL_GRACE).await;
        refused().map_or(Ok(()), Err)
    }

    fn subscription_buffer(&self) -> Option<usize> {
        Some(self.subscription_capacity)
    }

    fn may_reconnect(&self) -> bool {
        true
    }

    fn is_connected(&self) -> bool {
        !self.stats.closed.load(Ordering::Acquire)
            && self.client.connection_state() == State::Connected
    }

    fn stats(&self) -> TransportStats {
        TransportStats {
            dropped: self.stats.dropped.load(Ordering::Relaxed),
            reconnects: self.stats.reconnects.load(Ordering::Relaxed),
        }
    }

    fn refusal(&self, op: Operation, subject: &str, since: Instant) -> Option<String> {
        // nats-server: `Permissions Violation for Subscription to "a.b" using
        // queue "q"`, `Permissions Violation for Publish to "a.b"`.
        let what = match op {
            Operation::Publish => "publish",
            Operation::Subscribe => "subscription",
        };
        let needle = format!("permissions violation for {what} to \"{subject}\"").to_lowercase();
        let refusals = self.stats.refusals.lock();
        refusals
            .iter()
            .rev()
            .take_while(|(at, _)| *at >= since)
            .find(|(_, message)| message.to_lowercase().contains(&needle))
            .map(|(_, message)| message.clone())
    }

    fn refusal_notices(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.stats.refused.subscribe())
    }

    fn share(&self) {
        self.stats.buses.fetch_add(1, Ordering::AcqRel);
    }

    fn release(&self) -> bool {
        openagentio_core::transport::release(&self.stats.buses)
    }

    async fn close(&self) {
        if self.stats.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Without a server there is nothing to flush to: waiting would only
        // hold a shutdown during an outage.
        if self.client.connection_state() != State::Connected {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.drain()).await;
    }
}

/// Hands `sub`'s messages to `deliver` until `done` completes (true) or the
/// subscription ends (false).
async fn forward_until<F: std::future::Future + Unpin>(
    sub: &mut async_nats::Subscriber,
    deliver: &impl Fn(async_nats::Message),
    mut done: F,
) -> bool {
    loop {
        tokio::select! {
            m = sub.next() => match m {
                Some(m) => deliver(m),
                None => return false,
            },
            _ = &mut done => return true,
        }
    }
}

/// A subscription's forwarding task, stopped by [`Subscription::unsubscribe`].
struct NatsSubscription {
    stop: parking_lot::Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What it lost, when its client id could be read (see [`subscriber_sid`]).
    dropped: Option<Arc<AtomicU64>>,
}

/// A subscription's own dropped-message count, kept in
/// [`Counters::drops_by_sid`] while it lives.
struct SubscriptionDrops {
    stats: Arc<Counters>,
    sid: u64,
    count: Arc<AtomicU64>,
}

impl SubscriptionDrops {
    /// Tracks `sub`'s drops; `None` when its id cannot be read (then only the
    /// connection's total is known).
    fn track(stats: &Arc<Counters>, sub: &async_nats::Subscriber) -> Option<Self> {
        let sid = subscriber_sid(sub)?;
        let count = Arc::new(AtomicU64::new(0));
        stats.drops_by_sid.lock().insert(sid, count.clone());
        Some(SubscriptionDrops {
            stats: stats.clone(),
            sid,
            count,
        })
    }
}

impl Drop for SubscriptionDrops {
    fn drop(&mut self) {
        self.stats.drops_by_sid.lock().remove(&self.sid);
    }
}

/// The client's id of `sub`, which slow-consumer events name. async-nats
/// keeps it private; its `Debug` form shows it (`Subscriber { sid: 7, .. }`).
/// Checked by the `nats_windows` tests, which fail if it cannot be read.
fn subscriber_sid(sub: &async_nats::Subscriber) -> Option<u64> {
    let text = format!("{sub:?}");
    let rest = text.split_once("sid: ")?.1;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[async_trait]
impl Subscription for NatsSubscription {
    fn dropped(&self) -> Option<u64> {
        self.dropped.as_ref().map(|d| d.load(Ordering::Relaxed))
    }

    async fn unsubscribe(&self) -> Result<(), TransportError> {
        if let Some(stop) = self.stop.lock().take() {
            let _ = stop.send(());
        }
        let task = self.task.lock().take();
        if let Some(mut task) = task
            && tokio::time::timeout(Duration::from_secs(3), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
        Ok(())
    }
}

impl Drop for NatsSubscription {
    fn drop(&mut self) {
        // Not unsubscribed explicitly: ending the task drops the client-side
        // subscriber, which unsubscribes on the server.
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}
