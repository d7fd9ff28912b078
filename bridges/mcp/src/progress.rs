//! Progress of a tool call: from `notifications/progress` to delta frames.
//!
//! Every `tools/call` carries a progress token. The connection hands each
//! progress notification to the connection's router in the order it arrived
//! (before the serve loop sees it), and the router passes it to the call that
//! owns the token. A call that streams turns each one into a delta frame:
//!
//! ```json
//! {"data": {"progress": 2, "total": 5, "message": "step 2"}}
//! ```
//!
//! (`total` and `message` are `null` when the server sent none.)
//!
//! Up to [`PER_CALL_BUFFER`] notifications wait for a call that reads them
//! slower than they come (its caller reads slowly); past that, the newest
//! replaces the last one waiting, so the latest progress always arrives and
//! only intermediate steps of a flood are merged away (counted in the log).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use openagentio_core::DeltaPayload;
use parking_lot::Mutex;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use serde_json::{Map, Value};
use tokio::sync::Notify;

/// Notifications a call may have unread before new ones replace the newest
/// one waiting.
pub const PER_CALL_BUFFER: usize = 8_192;
/// Notifications for tokens nobody owns (yet) kept for a moment.
const UNCLAIMED: usize = 64;

/// Routes progress notifications of one connection to the calls awaiting them.
#[derive(Default)]
pub(crate) struct ProgressRouter {
    state: Mutex<RouterState>,
}

#[derive(Default)]
struct RouterState {
    calls: HashMap<ProgressToken, Arc<CallQueue>>,
    /// Notifications that arrived before their call subscribed (a narrow race:
    /// the token is only known once the request is queued).
    unclaimed: VecDeque<ProgressNotificationParam>,
}

/// The notifications waiting for one call.
#[derive(Default)]
struct CallQueue {
    waiting: Mutex<VecDeque<ProgressNotificationParam>>,
    /// Notifications merged into a later one because the call fell behind.
    merged: AtomicU64,
    ready: Notify,
}

impl CallQueue {
    /// Queues `p` (never blocks): when the queue is full, `p` takes the place
    /// of the newest one waiting.
    fn push(&self, p: ProgressNotificationParam) {
        let mut waiting = self.waiting.lock();
        if waiting.len() >= PER_CALL_BUFFER {
            waiting.pop_back();
            self.merged.fetch_add(1, Ordering::Relaxed);
        }
        waiting.push_back(p);
        drop(waiting);
        self.ready.notify_one();
    }
}

impl ProgressRouter {
    /// Hands `p` to its call (never blocks).
    pub(crate) fn dispatch(&self, p: ProgressNotificationParam) {
        let mut st = self.state.lock();
        match st.calls.get(&p.progress_token) {
            Some(queue) => queue.push(p),
            None => {
                if st.unclaimed.len() == UNCLAIMED {
                    st.unclaimed.pop_front();
                }
                st.unclaimed.push_back(p);
            }
        }
    }

    /// Receives the notifications of `token` until the subscription drops.
    pub(crate) fn subscribe(self: &Arc<Self>, token: ProgressToken) -> ProgressSubscription {
        let queue = Arc::new(CallQueue::default());
        let mut st = self.state.lock();
        let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut st.unclaimed)
            .into_iter()
            .partition(|p| p.progress_token == token);
        st.unclaimed = rest;
        for p in mine {
            queue.push(p);
        }
        st.calls.insert(token.clone(), queue.clone());
        ProgressSubscription {
            router: self.clone(),
            token,
            queue,
        }
    }

    #[cfg(test)]
    fn subscribers(&self) -> usize {
        self.state.lock().calls.len()
    }
}

/// The progress notifications of one call.
pub(crate) struct ProgressSubscription {
    router: Arc<ProgressRouter>,
    token: ProgressToken,
    queue: Arc<CallQueue>,
}

impl ProgressSubscription {
    /// The next notification (waits for one).
    pub(crate) async fn recv(&mut self) -> Option<ProgressNotificationParam> {
        loop {
            if let Some(p) = self.try_recv() {
                return Some(p);
            }
            // One reader: a notification pushed before this wait leaves
            // its permit, so none is missed.
            self.queue.ready.notified().await;
        }
    }

    /// A notification already received, if any.
    pub(crate) fn try_recv(&mut self) -> Option<ProgressNotificationParam> {
        self.queue.waiting.lock().pop_front()
    }
}

impl Drop for ProgressSubscription {
    fn drop(&mut self) {
        self.router.state.lock().calls.remove(&self.token);
        let merged = self.queue.merged.load(Ordering::Relaxed);
        if merged > 0 {
            tracing::debug!(
                merged,
                "progress notifications merged into later ones: the caller read them slower than the server sent them"
            );
        }
    }
}

/// The delta frame payload of a progress notification.
///
/// ```
/// # use openagentio_mcp::progress::progress_delta;
/// let d = progress_delta(2.0, Some(5.0), Some("step 2"));
/// assert_eq!(serde_json::to_value(d).unwrap(),
///     serde_json::json!({"data": {"progress": 2, "total": 5, "message": "step 2"}}));
/// ```
pub fn progress_delta(progress: f64, total: Option<f64>, message: Option<&str>) -> DeltaPayload {
    let mut data = Map::new();
    data.insert("progress".to_owned(), number(progress));
    data.insert("total".to_owned(), total.map_or(Value::Null, number));
    data.insert(
        "message".to_owned(),
        message.map_or(Value::Null, |m| Value::String(m.to_owned())),
    );
    DeltaPayload {
        delta: String::new(),
        data,
    }
}

pub(crate) fn delta_of(p: &ProgressNotificationParam) -> DeltaPayload {
    progress_delta(p.progress, p.total, p.message.as_deref())
}

/// A JSON number, integral when the value is (so `2.0` is written `2`).
fn number(v: f64) -> Value {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
        Value::from(v as i64)
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::NumberOrString;

    use super::*;

    fn param(token: i64, progress: f64) -> ProgressNotificationParam {
        let mut p =
            ProgressNotificationParam::new(ProgressToken(NumberOrString::Number(token)), progress);
        p.total = Some(10.0);
        p
    }

    #[tokio::test]
    async fn routes_by_token_and_keeps_early_ones() {
        let r = Arc::new(ProgressRouter::default());
        r.dispatch(param(1, 0.5));
        let mut s1 = r.subscribe(ProgressToken(NumberOrString::Number(1)));
        let mut s2 = r.subscribe(ProgressToken(NumberOrString::Number(2)));
        r.dispatch(param(2, 1.0));
        r.dispatch(param(1, 2.0));
        assert_eq!(s1.recv().await.unwrap().progress, 0.5);
        assert_eq!(s1.recv().await.unwrap().progress, 2.0);
        assert_eq!(s2.try_recv().unwrap().progress, 1.0);
        assert!(s2.try_recv().is_none());
        drop(s1);
        drop(s2);
        assert_eq!(r.subscribers(), 0);
    }

    #[tokio::test]
    async fn a_flood_keeps_every_step_up_to_the_buffer_and_always_the_latest() {
        let r = Arc::new(ProgressRouter::default());
        let mut s = r.subscribe(ProgressToken(NumberOrString::Number(7)));
        let sent = PER_CALL_BUFFER + 100;
        for i in 0..sent {
            r.dispatch(param(7, i as f64));
        }
        let mut got = Vec::new();
        while let Some(p) = s.try_recv() {
            got.push(p.progress);
        }
        assert_eq!(got.len(), PER_CALL_BUFFER);
        assert_eq!(
            got[..PER_CALL_BUFFER - 1],
            (0..PER_CALL_BUFFER - 1)
                .map(|i| i as f64)
                .collect::<Vec<_>>()[..]
        );
        assert_eq!(got.last(), Some(&((sent - 1) as f64)));
        // A reader that waits is woken by the next one.
        let waiter = tokio::spawn(async move { s.recv().await.map(|p| p.progress) });
        tokio::task::yield_now().await;
        r.dispatch(param(7, 1e6));
        assert_eq!(waiter.await.unwrap(), Some(1e6));
    }

    #[test]
    fn delta_shape() {
        let d = progress_delta(0.25, None, None);
        assert_eq!(
            serde_json::to_value(d).unwrap(),
            serde_json::json!({"data": {"progress": 0.25, "total": null, "message": null}})
        );
    }
}
