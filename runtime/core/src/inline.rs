//! Running a request's future on the delivering task first.
//!
//! A request that wants only its answer (`acp.stream: false`) usually
//! completes without waiting for anything: the handler computes a value and
//! the reply is handed to the transport. Polling it once where it is delivered
//! saves a task spawn and a hop between workers per call, and lets the replies
//! to a burst of requests leave in one write. A future that is not done after
//! that first poll continues on a task of its own, exactly as if it had been
//! spawned at once (futures re-register with the waker of each poll, so the
//! throw-away waker of the first poll is never relied on).

use std::cell::Cell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Nested inline runs allowed on one thread (a handler that invokes a handler
/// that invokes ...); deeper calls are spawned, which bounds stack use.
const MAX_DEPTH: u32 = 4;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// How a first poll here went.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FirstPoll {
    /// How long it held this task, when timed.
    pub held: Option<Duration>,
    /// Whether the future finished (else it went on on a task of its own).
    pub finished: bool,
}

/// Polls `fut` once here; spawns it on the runtime if it is not done. With
/// `timed`, measures how long the poll held the task (two clock reads).
/// Boxed by the caller, where it is made: a large future passed by value
/// would be copied on the way.
pub(crate) fn run_inline_first<F>(mut fut: Pin<Box<F>>, timed: bool) -> FirstPoll
where
    F: Future<Output = ()> + Send + 'static,
{
    let depth = DEPTH.with(Cell::get);
    if depth >= MAX_DEPTH {
        tokio::spawn(fut);
        return FirstPoll {
            held: None,
            finished: false,
        };
    }
    DEPTH.with(|d| d.set(depth + 1));
    let mut cx = Context::from_waker(Waker::noop());
    let started = timed.then(Instant::now);
    let polled = std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
    let held = started.map(|t| t.elapsed());
    DEPTH.with(|d| d.set(depth));
    let finished = match polled {
        Ok(Poll::Ready(())) => true,
        Ok(Poll::Pending) => {
            tokio::spawn(fut);
            false
        }
        Err(panic) => {
            tracing::error!(
                panic = %crate::middleware::panic_message(panic.as_ref()),
                "request dispatch panicked"
            );
            true
        }
    };
    FirstPoll { held, finished }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn a_ready_future_runs_here_and_a_pending_one_finishes_on_a_task() {
        let done = Arc::new(AtomicU32::new(0));
        let d = done.clone();
        run_inline_first(
            Box::pin(async move {
                d.fetch_add(1, Ordering::SeqCst);
            }),
            false,
        );
        assert_eq!(done.load(Ordering::SeqCst), 1, "ran inline");

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let d = done.clone();
        run_inline_first(
            Box::pin(async move {
                rx.await.unwrap();
                d.fetch_add(1, Ordering::SeqCst);
            }),
            false,
        );
        assert_eq!(done.load(Ordering::SeqCst), 1, "waits for its input");
        tx.send(()).unwrap();
        for _ in 0..100 {
            if done.load(Ordering::SeqCst) == 2 {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the pending future never finished");
    }

    #[tokio::test]
    async fn reports_how_long_the_first_poll_held_the_task() {
        let slow = run_inline_first(
            Box::pin(async {
                std::thread::sleep(Duration::from_millis(2));
            }),
            true,
        );
        assert!(slow.held >= Some(Duration::from_millis(2)), "{slow:?}");
        assert!(slow.finished);
        let quick = run_inline_first(Box::pin(async {}), true);
        assert!(quick.held < Some(Duration::from_millis(2)), "{quick:?}");
        assert_eq!(run_inline_first(Box::pin(async {}), false).held, None);
        let waiting = run_inline_first(Box::pin(std::future::pending()), false);
        assert!(!waiting.finished);
    }

    #[tokio::test]
    async fn deep_nesting_is_spawned_not_recursed() {
        fn nest(level: u32, seen: Arc<AtomicU32>) {
            run_inline_first(
                Box::pin(async move {
                    seen.fetch_max(DEPTH.with(Cell::get), Ordering::SeqCst);
                    if level < 10 {
                        nest(level + 1, seen);
                    }
                }),
                false,
            );
        }
        let seen = Arc::new(AtomicU32::new(0));
        nest(0, seen.clone());
        tokio::task::yield_now().await;
        assert_eq!(seen.load(Ordering::SeqCst), MAX_DEPTH);
    }
}
