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
//!
//! Over NATS a notice can come before its request: the two arrive on
//! different subscriptions, and a server that froze for a while delivers a
//! request its caller has long given up on together with the notice. A
//! notice that finds no request is kept for a while, and a request it names
//! that arrives later is not served.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use foldhash::{HashMap, HashSet};
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
    /// Cancel notices of requests that may not have arrived yet.
    early: parking_lot::Mutex<EarlyCancels>,
    /// A bit for each id `early` holds (by hash), read without its lock by
    /// every registration: only a set bit sends one to the lock. A lock
    /// taken by every call would be one more cache line the workers pass
    /// back and forth.
    early_bits: Box<[AtomicU64; FILTER_WORDS]>,
}

/// Words of [`Served::early_bits`]: 16,384 bits, few of them set at once.
const FILTER_WORDS: usize = 256;

/// Where `id`'s bit is in [`Served::early_bits`]: its word, and the bit.
fn filter_bit(id: &str) -> (usize, u64) {
    const HASH: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0x0ea7);
    let bit = (HASH.hash_one(id) % (FILTER_WORDS as u64 * 64)) as usize;
    (bit / 64, 1 << (bit % 64))
}

/// How long a cancel notice that found no request is kept: the request it
/// names may still be on its way.
const EARLY_CANCEL_KEEP: Duration = Duration::from_secs(60);

/// How many such notices are kept at most (every bus that serves hears
/// every notice, most of them about requests other buses serve).
const EARLY_CANCELS: usize = 4096;

/// The request ids of recent cancel notices, oldest first.
#[derive(Default)]
struct EarlyCancels {
    order: VecDeque<(std::time::Instant, Text)>,
    ids: HashSet<Text>,
}

impl EarlyCancels {
    fn insert(&mut self, id: Text, now: std::time::Instant) {
        self.expire(now);
        if self.ids.insert(id.clone()) {
            self.order.push_back((now, id));
        }
        if self.order.len() > EARLY_CANCELS
            && let Some((_, oldest)) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
    }

    fn contains(&mut self, id: &str, now: std::time::Instant) -> bool {
        self.expire(now);
        self.ids.contains(id)
    }

    /// The filter bits of the ids held.
    fn bits(&self) -> [u64; FILTER_WORDS] {
        let mut bits = [0; FILTER_WORDS];
        for id in &self.ids {
            let (word, bit) = filter_bit(id);
            bits[word] |= bit;
        }
        bits
    }

    fn expire(&mut self, now: std::time::Instant) {
        while let Some((at, _)) = self.order.front()
            && now.duration_since(*at) > EARLY_CANCEL_KEEP
        {
            if let Some((_, id)) = self.order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }
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
        let id = env.correlation_id.as_str();
        if read.is_none() {
            // Kept before the search below, which a registration made
            // meanwhile may miss: it looks here after it is filed (see
            // `CancelRegistry::cancelled_before_arrival`).
            self.remember_early(&env.correlation_id);
        }
        // Requests are filed under the thread that registered them: look in
        // every part (notices are rare; registrations are every call).
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

impl Served {
    fn remember_early(&self, id: &Text) {
        if id.is_empty() {
            return;
        }
        let mut early = self.early.lock();
        early.insert(id.clone(), std::time::Instant::now());
        self.publish_bits(&early);
    }

    /// Makes [`Served::early_bits`] those of `early`, word by word: the bit
    /// of an id still held is never seen cleared on the way.
    fn publish_bits(&self, early: &EarlyCancels) {
        for (word, bits) in self.early_bits.iter().zip(early.bits()) {
            word.store(bits, Ordering::SeqCst);
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
                early: parking_lot::Mutex::default(),
                early_bits: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
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

    /// Whether a cancel notice for `request` came before it (the caller gave
    /// up before it arrived): it is not to be served. Asked after
    /// [`CancelRegistry::register`], so that a notice that comes meanwhile
    /// is found either here or by its search of the registry.
    pub fn cancelled_before_arrival(&self, request: &Envelope) -> bool {
        let served = &self.served;
        let (word, bit) = filter_bit(&request.event_id);
        if served.early_bits[word].load(Ordering::SeqCst) & bit == 0 {
            return false;
        }
        let mut early = served.early.lock();
        let found = early.contains(&request.event_id, std::time::Instant::now());
        // Expired ids leave the filter too.
        served.publish_bits(&early);
        found
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_cancels_are_kept_for_a_while_and_to_a_bound() {
        let mut early = EarlyCancels::default();
        let t0 = std::time::Instant::now();
        early.insert(Text::new("a"), t0);
        early.insert(Text::new("a"), t0);
        assert_eq!(early.order.len(), 1, "an id is kept once");
        assert!(early.contains("a", t0 + EARLY_CANCEL_KEEP));
        assert!(!early.contains("a", t0 + EARLY_CANCEL_KEEP * 2));
        assert!(early.ids.is_empty() && early.order.is_empty());
        for i in 0..=EARLY_CANCELS {
            early.insert(Text::new(i.to_string()), t0);
        }
        assert_eq!(early.ids.len(), EARLY_CANCELS);
        assert!(!early.contains("0", t0), "the oldest went first");
        assert!(early.contains(&EARLY_CANCELS.to_string(), t0));
        let bits = early.bits();
        let (word, bit) = filter_bit("1");
        assert_ne!(bits[word] & bit, 0);
    }
}
