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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use openagentio_core::DeltaPayload;
use parking_lot::Mutex;
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// Notifications a call may have unread before more are dropped.
const PER_CALL_BUFFER: usize = 256;
/// Notifications for tokens nobody owns (yet) kept for a moment.
const UNCLAIMED: usize = 64;

/// Routes progress notifications of one connection to the calls awaiting them.
#[derive(Default)]
pub(crate) struct ProgressRouter {
    state: Mutex<RouterState>,
}

#[derive(Default)]
struct RouterState {
    calls: HashMap<ProgressToken, mpsc::Sender<ProgressNotificationParam>>,
    /// Notifications that arrived before their call subscribed (a narrow race:
    /// the token is only known once the request is queued).
    unclaimed: VecDeque<ProgressNotificationParam>,
}

impl ProgressRouter {
    /// Hands `p` to its call (never blocks; drops it if the call is not keeping up).
    pub(crate) fn dispatch(&self, p: ProgressNotificationParam) {
        let mut st = self.state.lock();
        match st.calls.get(&p.progress_token) {
            Some(tx) => {
                if tx.try_send(p).is_err() {
                    tracing::debug!("progress notification dropped: the call is not reading them");
                }
            }
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
        let (tx, rx) = mpsc::channel(PER_CALL_BUFFER);
        let mut st = self.state.lock();
        let early: Vec<_> = {
            let (mine, rest): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut st.unclaimed)
                .into_iter()
                .partition(|p| p.progress_token == token);
            st.unclaimed = rest;
            mine.into_iter().collect()
        };
        for p in early {
            let _ = tx.try_send(p);
        }
        st.calls.insert(token.clone(), tx);
        ProgressSubscription {
            router: self.clone(),
            token,
            rx,
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
    rx: mpsc::Receiver<ProgressNotificationParam>,
}

impl ProgressSubscription {
    /// The next notification.
    pub(crate) async fn recv(&mut self) -> Option<ProgressNotificationParam> {
        self.rx.recv().await
    }

    /// A notification already received, if any.
    pub(crate) fn try_recv(&mut self) -> Option<ProgressNotificationParam> {
        self.rx.try_recv().ok()
    }
}

impl Drop for ProgressSubscription {
    fn drop(&mut self) {
        self.router.state.lock().calls.remove(&self.token);
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

    #[test]
    fn delta_shape() {
        let d = progress_delta(0.25, None, None);
        assert_eq!(
            serde_json::to_value(d).unwrap(),
            serde_json::json!({"data": {"progress": 0.25, "total": null, "message": null}})
        );
    }
}
