//! Replies of every call multiplexed on one wildcard inbox subscription.
//!
//! Each call gets its own reply subject `{inbox}.{n}` (written into the
//! request's `reply_to`, so any SDK can answer it), but the bus subscribes once
//! to `{inbox}.*` and routes by `n`: no subscription round trip per call.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use foldhash::HashMap;
use parking_lot::Mutex;
use tokio::sync::OnceCell;

use crate::bus::BusInner;
use crate::error::BusError;
use crate::shards::Shards;
use crate::text::{Text, concat_text, decimal};
use crate::transport::{Message, Operation, Sink, Subscription, Transport, TransportError};

pub(crate) struct ReplyRouter {
    shared: Arc<Shared>,
    subscription: OnceCell<Box<dyn Subscription>>,
}

struct Shared {
    prefix: String,
    slots: Shards<HashMap<u64, Arc<ReplyQueue>>>,
}

/// The request a reply queue answers.
pub(crate) struct SentTo {
    /// The subject it went to.
    pub subject: Text,
    /// When it was sent.
    pub at: std::time::Instant,
    /// Its `event_id`.
    pub id: Text,
}

/// The unread frames of one call: a small bounded queue with one waiting reader.
/// (Lighter than a channel: most calls get a single frame.)
pub(crate) struct ReplyQueue {
    state: Mutex<QueueState>,
}

struct QueueState {
    /// The oldest unread frame: most calls get one frame, which then needs
    /// no queue allocation.
    first: Option<Message>,
    /// Frames after `first`, oldest first (empty while `first` is `None`).
    rest: VecDeque<Message>,
    capacity: usize,
    waker: Option<Waker>,
    closed: bool,
    overflow: bool,
    /// The request this queue answers.
    request: SentTo,
    /// Whether any frame came (a refusal can no longer be this call's).
    answered: bool,
    /// Why the server refused the request, once it did.
    refused: Option<String>,
}

impl ReplyQueue {
    /// Queues a frame; a full queue closes with `overflow` set.
    fn push(&self, msg: Message) -> bool {
        let waker = {
            let mut st = self.state.lock();
            if st.closed {
                return false;
            }
            st.answered = true;
            if st.len() >= st.capacity {
                st.overflow = true;
                st.closed = true;
            } else if st.first.is_none() {
                st.first = Some(msg);
            } else {
                st.rest.push_back(msg);
            }
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    fn close(&self) {
        let waker = {
            let mut st = self.state.lock();
            st.closed = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The next frame; `None` once closed and drained.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let mut st = self.state.lock();
        if let Some(m) = st.pop() {
            return Poll::Ready(Some(m));
        }
        if st.closed {
            return Poll::Ready(None);
        }
        match &st.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next frame if one is queued (`Ready(None)` once closed and
    /// drained), without registering for a wake-up.
    pub fn try_recv(&self) -> Poll<Option<Message>> {
        let mut st = self.state.lock();
        match st.pop() {
            Some(m) => Poll::Ready(Some(m)),
            None if st.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// Whether frames were dropped because the queue was full.
    pub fn overflowed(&self) -> bool {
        self.state.lock().overflow
    }

    /// Why the server refused the request, if it did (the queue is then closed).
    pub fn refused(&self) -> Option<String> {
        self.state.lock().refused.clone()
    }

    /// Closes the queue as refused if the server refused its request and no
    /// frame has come.
    fn close_if_refused(&self, transport: &dyn Transport) {
        let waker = {
            let mut st = self.state.lock();
            if st.closed || st.answered {
                return;
            }
            let SentTo { subject, at, .. } = &st.request;
            let Some(why) = transport.refusal(Operation::Publish, subject, *at) else {
                return;
            };
            st.refused = Some(why);
            st.closed = true;
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl QueueState {
    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    fn pop(&mut self) -> Option<Message> {
        let next = self.first.take()?;
        self.first = self.rest.pop_front();
        Some(next)
    }
}

/// The receiving end of one call's reply subject. Dropping it frees the slot.
pub(crate) struct ReplySlot {
    pub subject: Text,
    pub queue: Arc<ReplyQueue>,
    id: u64,
    /// The bus whose router holds the slot (the call's stream uses it too:
    /// one handle for both, on a count that every call shares).
    pub bus: Arc<BusInner>,
    /// Given back already (the call ended before its stream was dropped).
    released: bool,
}

impl ReplySlot {
    /// The next frame; `None` once the slot is closed.
    pub async fn recv(&self) -> Option<Message> {
        std::future::poll_fn(|cx| self.queue.poll_recv(cx)).await
    }

    /// Gives the slot back: the call has ended, and frames that come for it
    /// now are late (dropped as for an unknown call).
    pub fn release(&mut self) {
        if !std::mem::replace(&mut self.released, true) {
            let slots = &self.bus.replies.shared.slots;
            slots.part(part_of(self.id)).remove(&self.id);
        }
    }
}

impl Drop for ReplySlot {
    fn drop(&mut self) {
        self.release();
    }
}

impl Shared {
    /// `{prefix}.{id}`.
    fn subject_of(&self, id: u64) -> Text {
        concat_text(&[&self.prefix, ".", decimal(id, &mut [0; 20])])
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
        // A missing slot is a late frame of a call that has ended.
        let queue = self.slots.part(part_of(id)).get(&id).cloned();
        if let Some(q) = queue {
            q.push(msg);
        }
    }
}

/// Reply slot ids a thread takes at a time.
const ID_BLOCK: u64 = 1024;

/// The part of the slot table that holds slot `id`: one per block of ids, so
/// the slots of a thread's calls stay in one part (the part's lock and lines
/// stay with that thread's cache).
fn part_of(id: u64) -> usize {
    (id / ID_BLOCK) as usize
}

/// A reply slot id, unique in the process (so in every router). Each thread
/// takes ids from a block of its own: one counter shared by every call on
/// every worker would be a cache line written back and forth between them.
fn next_slot_id() -> u64 {
    static NEXT_BLOCK: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static CURSOR: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    CURSOR.with(|cursor| {
        let (mut next, mut end) = cursor.get();
        if next == end {
            next = NEXT_BLOCK.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        cursor.set((next + 1, end));
        next
    })
}

impl ReplyRouter {
    pub fn new(prefix: String) -> Self {
        ReplyRouter {
            shared: Arc::new(Shared {
                prefix,
                slots: Shards::default(),
            }),
            subscription: OnceCell::new(),
        }
    }

    /// Calls whose answers are still awaited (their slots are open).
    pub fn open(&self) -> usize {
        self.shared.slots.each().map(|part| part.len()).sum()
    }

    /// The `event_id`s of the requests whose answers are still awaited.
    pub fn open_requests(&self) -> Vec<Text> {
        let mut ids = Vec::new();
        for part in self.shared.slots.each() {
            ids.extend(part.values().map(|q| q.state.lock().request.id.clone()));
        }
        ids
    }

    /// Messages the inbox subscription lost: its own count where the
    /// transport keeps one, else `transport_total` (the transport's, which
    /// counts every subscription's).
    pub fn dropped_or(&self, transport_total: u64) -> u64 {
        self.subscription
            .get()
            .and_then(|s| s.dropped())
            .unwrap_or(transport_total)
    }

    /// Whether the inbox is subscribed: [`ReplyRouter::open_subscribed`]
    /// needs it (see [`ReplyRouter::subscribe`]).
    pub fn is_subscribed(&self) -> bool {
        self.subscription.initialized()
    }

    /// Subscribes the inbox, unless that is done.
    pub async fn subscribe(&self, bus: &Arc<BusInner>) -> Result<(), BusError> {
        let transport = &bus.transport;
        self.subscription
            .get_or_try_init(|| async {
                let pattern = format!("{}.*", self.shared.prefix);
                let since = std::time::Instant::now();
                let sub = transport
                    .subscribe(&pattern, None, self.shared.clone())
                    .await?;
                // A server that refuses the inbox (NATS permissions without
                // `_INBOX.>`) would leave every call to time out: say so now.
                if transport.is_connected()
                    && let Err(e @ TransportError::Auth(_)) = transport
                        .confirm(Operation::Subscribe, &pattern, since)
                        .await
                {
                    let _ = sub.unsubscribe().await;
                    return Err(BusError::from(e));
                }
                if let Some(notices) = transport.refusal_notices() {
                    tokio::spawn(end_refused_calls(Arc::downgrade(bus), notices));
                }
                Ok(sub)
            })
            .await?;
        Ok(())
    }

    /// A new reply slot of `bus` (whose router this is) holding up to
    /// `capacity` unread frames of the answer to `request` (the subject it
    /// goes to, and when). The inbox must be subscribed first.
    pub fn open_subscribed(
        &self,
        bus: &Arc<BusInner>,
        capacity: usize,
        request: SentTo,
    ) -> ReplySlot {
        let id = next_slot_id();
        let queue = Arc::new(ReplyQueue {
            state: Mutex::new(QueueState {
                first: None,
                rest: VecDeque::new(),
                capacity: capacity.max(1),
                waker: None,
                closed: false,
                overflow: false,
                request,
                answered: false,
                refused: None,
            }),
        });
        self.shared
            .slots
            .part(part_of(id))
            .insert(id, queue.clone());
        ReplySlot {
            subject: self.shared.subject_of(id),
            queue,
            id,
            bus: bus.clone(),
            released: false,
        }
    }

    pub async fn close(&self) {
        if let Some(sub) = self.subscription.get() {
            let _ = sub.unsubscribe().await;
        }
        for mut part in self.shared.slots.each() {
            for (_, q) in part.drain() {
                q.close();
            }
        }
    }
}

/// Ends the calls of `bus` whose requests the server refuses, as each
/// refusal comes (a refused publish gets no answer to wait for), until the
/// bus or its transport is gone.
async fn end_refused_calls(
    bus: std::sync::Weak<BusInner>,
    mut notices: tokio::sync::watch::Receiver<u64>,
) {
    while notices.changed().await.is_ok() {
        let Some(bus) = bus.upgrade() else { return };
        let queues: Vec<Arc<ReplyQueue>> = bus
            .replies
            .shared
            .slots
            .each()
            .flat_map(|part| part.values().cloned().collect::<Vec<_>>())
            .collect();
        for queue in queues {
            queue.close_if_refused(bus.transport.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: usize) -> ReplyQueue {
        ReplyQueue {
            state: Mutex::new(QueueState {
                first: None,
                rest: VecDeque::new(),
                capacity,
                waker: None,
                closed: false,
                overflow: false,
                request: SentTo {
                    subject: Text::default(),
                    at: std::time::Instant::now(),
                    id: Text::default(),
                },
                answered: false,
                refused: None,
            }),
        }
    }

    fn subject(p: Poll<Option<Message>>) -> Option<String> {
        match p {
            Poll::Ready(Some(m)) => Some(m.subject.to_string()),
            _ => None,
        }
    }

    #[test]
    fn slot_ids_are_unique_across_threads() {
        let ids: Vec<u64> = (0..4)
            .map(|_| std::thread::spawn(|| (0..3000).map(|_| next_slot_id()).collect::<Vec<_>>()))
            .flat_map(|t| t.join().unwrap())
            .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        assert!(!ids.contains(&0));
    }

    #[test]
    fn frames_come_out_in_the_order_they_went_in_up_to_the_capacity() {
        let q = queue(3);
        for s in ["a", "b"] {
            assert!(q.push(Message::bytes(s, "")));
        }
        assert_eq!(subject(q.try_recv()).as_deref(), Some("a"));
        for s in ["c", "d"] {
            assert!(q.push(Message::bytes(s, "")));
        }
        assert!(
            q.push(Message::bytes("e", "")),
            "full: closes, reports overflow"
        );
        assert!(q.overflowed());
        let drained: Vec<_> = std::iter::from_fn(|| subject(q.try_recv())).collect();
        assert_eq!(drained, ["b", "c", "d"]);
        assert!(matches!(q.try_recv(), Poll::Ready(None)));
    }
}
