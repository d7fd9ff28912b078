//! Counters the bus keeps about what it could not process.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the bus counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Messages on a subscribed subject that were not envelopes.
    pub bad_messages: u64,
    /// Handlers that panicked.
    pub handler_panics: u64,
    /// Requests refused because a handler was at its concurrency limit.
    pub refused_requests: u64,
    /// Calls that ended because their frame buffer overflowed.
    pub overflowed_calls: u64,
    /// Events dropped because a subscriber fell behind by more than its
    /// buffer (each is also logged).
    pub dropped_events: u64,
    /// Handlers dropped because they did not end within the cancellation
    /// grace after they were cancelled (each is also logged).
    pub abandoned_handlers: u64,
    /// Requests not served because their caller had cancelled them before
    /// they arrived (over NATS, its cancel notice came first, as after a
    /// server that froze for a while).
    pub stale_requests: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub bad_messages: AtomicU64,
    pub handler_panics: AtomicU64,
    pub refused_requests: AtomicU64,
    pub overflowed_calls: AtomicU64,
    pub dropped_events: AtomicU64,
    pub abandoned_handlers: AtomicU64,
    pub stale_requests: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BusStats {
        BusStats {
            bad_messages: self.bad_messages.load(Ordering::Relaxed),
            handler_panics: self.handler_panics.load(Ordering::Relaxed),
            refused_requests: self.refused_requests.load(Ordering::Relaxed),
            overflowed_calls: self.overflowed_calls.load(Ordering::Relaxed),
            dropped_events: self.dropped_events.load(Ordering::Relaxed),
            abandoned_handlers: self.abandoned_handlers.load(Ordering::Relaxed),
            stale_requests: self.stale_requests.load(Ordering::Relaxed),
        }
    }
}
