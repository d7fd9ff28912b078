//! The flow-control windows of a bus's streams, kept within what its reply
//! subscription holds.
//!
//! Every stream a bus calls gets its frames through the one reply
//! subscription, and a transport that drops what a subscription cannot hold
//! (NATS: a slow consumer) would drop frames once the windows offered to
//! handlers add up to more than that. Each stream takes its window from a
//! budget, sized from [`Transport::subscription_buffer`](crate::Transport::subscription_buffer),
//! and gives it back when it ends: under many streams at once, each is
//! offered less.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The smallest window offered, however many streams are in flight: a
/// handler that may send only a few frames at a time would crawl.
pub(crate) const MIN_WINDOW: u64 = 32;

/// Frames a caller offering `window` may be sent before its handler waits:
/// the window, the notices' granularity (a quarter of it) and the terminal
/// frame.
fn outstanding(window: u64) -> u64 {
    window + window / 4 + 1
}

/// A window taken from a budget; given back when dropped.
#[derive(Debug)]
pub(crate) struct WindowReservation {
    budget: Arc<AtomicU64>,
    frames: u64,
}

impl Drop for WindowReservation {
    fn drop(&mut self) {
        self.budget.fetch_add(self.frames, Ordering::AcqRel);
    }
}

/// The window to offer, at most `wanted`, and its reservation: all of it
/// when `budget` has room, else what is left (at least [`MIN_WINDOW`]).
pub(crate) fn reserve(budget: &Arc<AtomicU64>, wanted: u64) -> (u64, WindowReservation) {
    let mut window = wanted;
    let mut frames = 0;
    let _ = budget.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
        window = if outstanding(wanted) <= left {
            wanted
        } else {
            (left.saturating_sub(1) * 4 / 5).clamp(MIN_WINDOW.min(wanted), wanted)
        };
        frames = outstanding(window).min(left);
        Some(left - frames)
    });
    (
        window,
        WindowReservation {
            budget: budget.clone(),
            frames,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_shrink_as_the_budget_runs_low_and_come_back() {
        let budget = Arc::new(AtomicU64::new(10_000));
        let (w1, r1) = reserve(&budget, 3072);
        assert_eq!(w1, 3072);
        let (w2, r2) = reserve(&budget, 3072);
        assert_eq!(w2, 3072);
        // 10,000 - 2 x 3,841 = 2,318 left: a smaller window.
        let (w3, r3) = reserve(&budget, 3072);
        assert!(w3 < 3072 && outstanding(w3) <= 2318, "{w3}");
        // Nothing left: the smallest window, and nothing taken.
        let (w4, r4) = reserve(&budget, 3072);
        assert_eq!(w4, MIN_WINDOW);
        drop((r1, r2, r3, r4));
        assert_eq!(budget.load(Ordering::Acquire), 10_000);
        let (w5, _r5) = reserve(&budget, 3072);
        assert_eq!(w5, 3072);
    }
}
