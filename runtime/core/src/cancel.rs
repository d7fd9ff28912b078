//! The requests being served: their cancellation across processes, and draining.
//!
//! A caller that gives up on a call (its stream was dropped, or its deadline
//! passed) publishes a notice on `{prefix}.control.cancel` naming the request's
//! `event_id` in `correlation_id`. Every bus that serves handlers listens there
//! and cancels the token of that request if it is serving it. This is an
//! extension of this runtime: reference SDK peers neither send nor read it.
//!
//! The same registry lets [`crate::Bus::drain`] wait for the requests in
//! flight, cancel the ones that outlive the drain, and end their streams.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use foldhash::HashMap;
use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::codec::decode_body;
use crate::envelope::Envelope;
use crate::error::BusError;
use crate::shards::Shards;
use crate::stats::Counters;
use crate::text::Text;
use crate::transport::{Message, Operation, Sink, Subscription, Transport, TransportError};
use crate::writer::StreamWriter;

/// Event type of a cancellation notice.
pub const CANCEL_EVENT: &str = "acp.control.cancel";

/// Event type of a flow-control notice (see [`crate::context::WINDOW_KEY`]).
pub const WINDOW_EVENT: &str = "acp.control.window";

pub(crate) struct CancelRegistry {
    served: Arc<Served>,
    subscription: OnceCell<Box<dyn Subscription>>,
}

struct Served {
    calls: Shards<ServedPart>,
    /// Drains waiting for the requests in flight to end: only then does
    /// the end of a request notify `idle`.
    drains: AtomicUsize,
    idle: Notify,
    counters: Arc<Counters>,
}

/// One part of the requests being served. Each part counts its own, under
/// its own lock: a shared counter would be a cache line that every call on
/// every worker writes twice.
#[derive(Default)]
struct ServedPart {
    /// By request `event_id`.
    calls: HashMap<Text, (CancellationToken, StreamWriter)>,
    /// Requests registered and not yet done (two with the same `event_id`
    /// count twice).
    serving: usize,
}

impl Sink for Served {
    fn deliver(&self, msg: Message) {
        let env = match decode_body(msg.body) {
            Ok(env) => env,
            Err(e) => {
                Counters::bump(&self.counters.bad_messages);
                tracing::warn!(subject = %msg.subject, error = %e, "cancellation notice is not an acp envelope");
                return;
            }
        };
        let read = match env.event_type.as_str() {
            CANCEL_EVENT => None,
            WINDOW_EVENT => match env
                .metadata
                .get(crate::context::WINDOW_READ_KEY)
                .and_then(serde_json::Value::as_u64)
            {
                Some(n) => Some(n),
                None => return,
            },
            _ => return,
        };
        // Requests are filed under the thread that registered them: look in
        // every part (notices are rare; registrations are every call).
        let id = env.correlation_id.as_str();
        for part in self.calls.each() {
            if let Some((token, writer)) = part.calls.get(id) {
                match read {
                    None => token.cancel(),
                    Some(n) => writer.caller_read(n),
                }
            }
        }
    }
}

/// Removes a request from the registry when its handler is done. It reaches
/// the registry through the request's writer, a handle of this request's
/// own, rather than through one more count on the registry that every call
/// shares.
pub(crate) struct CancelGuard {
    writer: StreamWriter,
    id: Text,
    /// The part of the registry it is filed in.
    part: usize,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.writer.bus().cancels.release(self.part, &self.id);
    }
}

impl CancelRegistry {
    pub fn new(counters: Arc<Counters>) -> Self {
        CancelRegistry {
            served: Arc::new(Served {
                calls: Shards::default(),
                drains: AtomicUsize::new(0),
                idle: Notify::new(),
                counters,
            }),
            subscription: OnceCell::new(),
        }
    }

    /// Starts listening for notices (once per bus).
    pub async fn listen(
        &self,
        transport: &Arc<dyn Transport>,
        subject: &str,
    ) -> Result<(), BusError> {
        self.subscription
            .get_or_try_init(|| async {
                let since = std::time::Instant::now();
                let sub = transport
                    .subscribe(subject, None, self.served.clone())
                    .await
                    .map_err(BusError::from)?;
                // Handlers still serve without it; only callers' cancel
                // notices are lost, so a refusal is worth a warning, not a
                // failure.
                if transport.is_connected()
                    && let Err(TransportError::Auth(why)) = transport
                        .confirm(Operation::Subscribe, subject, since)
                        .await
                {
                    tracing::warn!(
                        %subject,
                        %why,
                        "cancel notices from callers cannot be received: handlers whose \
                         caller gives up run on until their deadline"
                    );
                }
                Ok::<_, BusError>(sub)
            })
            .await?;
        Ok(())
    }

    /// Tracks `request` (by its `event_id`) until the guard drops.
    pub fn register(
        &self,
        request: &Envelope,
        token: CancellationToken,
        writer: StreamWriter,
    ) -> CancelGuard {
        let id = request.event_id.clone();
        let index = {
            let (index, mut part) = self.served.calls.here();
            part.calls.insert(id.clone(), (token, writer.clone()));
            part.serving += 1;
            index
        };
        CancelGuard {
            writer,
            id,
            part: index,
        }
    }

    /// Ends the tracking of a request [`CancelRegistry::register`] began.
    fn release(&self, part: usize, id: &str) {
        let served = &self.served;
        let emptied = {
            let mut part = served.calls.part(part);
            part.calls.remove(id);
            part.serving -= 1;
            part.serving == 0
        };
        // A waiting drain re-counts every part when woken.
        if emptied && served.drains.load(Ordering::SeqCst) > 0 {
            served.idle.notify_waiters();
        }
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> usize {
        self.served.calls.each().map(|part| part.serving).sum()
    }

    /// Waits until no request is being served, or `deadline`; true when idle.
    pub async fn wait_idle(&self, deadline: Instant) -> bool {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.served.drains.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.served.drains);
        loop {
            let notified = self.served.idle.notified();
            if self.in_flight() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.in_flight() == 0;
            }
        }
    }

    /// Cancels every request being served.
    pub fn cancel_all(&self) {
        for part in self.served.calls.each() {
            part.calls.values().for_each(|(token, _)| token.cancel());
        }
    }

    /// Ends the streams of requests still being served with `err`.
    pub async fn fail_all(&self, err: &BusError) {
        let mut writers: Vec<StreamWriter> = Vec::new();
        for part in self.served.calls.each() {
            writers.extend(part.calls.values().map(|(_, w)| w.clone()));
        }
        for w in writers {
            if !w.is_closed() {
                let _ = w.error(err).await;
            }
        }
    }

    pub async fn close(&self) {
        if let Some(sub) = self.subscription.get() {
            let _ = sub.unsubscribe().await;
        }
        self.cancel_all();
    }
}
