//! Replies of every call multiplexed on one wildcard inbox subscription.
//!
//! Each call gets its own reply subject `{inbox}.{n}` (written into the
//! request's `reply_to`, so any SDK can answer it), but the bus subscribes once
//! to `{inbox}.*` and routes by `n`: no subscription round trip per call.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::{OnceCell, mpsc};

use crate::error::BusError;
use crate::transport::{Message, Sink, Subscription, Transport};

pub(crate) struct ReplyRouter {
    shared: Arc<Shared>,
    subscription: OnceCell<Box<dyn Subscription>>,
}

struct Shared {
    prefix: String,
    next: AtomicU64,
    slots: Mutex<HashMap<u64, Slot>>,
}

struct Slot {
    tx: mpsc::Sender<Message>,
    overflow: Arc<AtomicBool>,
}

/// The receiving end of one call's reply subject. Dropping it frees the slot.
pub(crate) struct ReplySlot {
    pub subject: String,
    pub rx: mpsc::Receiver<Message>,
    pub overflow: Arc<AtomicBool>,
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        self.shared.slots.lock().remove(&self.id);
    }
}

impl Sink for Shared {
    fn deliver(&self, msg: Message) {
        let Some(id) = msg
            .subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return;
        };
        let mut slots = self.slots.lock();
        let Some(slot) = slots.get(&id) else {
            return; // a late frame of a call that has ended
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = slot.tx.try_send(msg) {
            slot.overflow.store(true, Ordering::Release);
            slots.remove(&id);
        }
    }
}

impl ReplyRouter {
    pub fn new(prefix: String) -> Self {
        ReplyRouter {
            shared: Arc::new(Shared {
                prefix,
                next: AtomicU64::new(1),
                slots: Mutex::new(HashMap::new()),
            }),
            subscription: OnceCell::new(),
        }
    }

    /// A new reply slot holding up to `capacity` unread frames.
    pub async fn open(
        &self,
        transport: &Arc<dyn Transport>,
        capacity: usize,
    ) -> Result<ReplySlot, BusError> {
        self.subscription
            .get_or_try_init(|| async {
                let pattern = format!("{}.*", self.shared.prefix);
                transport
                    .subscribe(&pattern, None, self.shared.clone())
                    .await
                    .map_err(BusError::from)
            })
            .await?;
        let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let overflow = Arc::new(AtomicBool::new(false));
        self.shared.slots.lock().insert(
            id,
            Slot {
                tx,
                overflow: overflow.clone(),
            },
        );
        Ok(ReplySlot {
            subject: format!("{}.{id}", self.shared.prefix),
            rx,
            overflow,
            id,
            shared: self.shared.clone(),
        })
    }

    pub async fn close(&self) {
        if let Some(sub) = self.subscription.get() {
            let _ = sub.unsubscribe().await;
        }
        self.shared.slots.lock().clear();
    }
}
