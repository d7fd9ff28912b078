//! The in-memory transport: the embedded default, one process, no encoding.
//!
//! It follows NATS semantics exactly where the bus can tell the difference:
//! `*`/`>` wildcards, one delivery per queue group, and a status-503 message to
//! the reply subject of a request that reached nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use foldhash::HashMap;
use parking_lot::Mutex;
use smallvec::SmallVec;

use crate::subject::{has_wildcard, matches};
use crate::transport::{
    Body, Message, STATUS_NO_RESPONDERS, Sink, Subscription, Transport, TransportError,
    TransportStats, release,
};

/// A process-local transport.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use openagentio_core::{Bus, MemoryTransport};
/// let bus = Bus::builder().transport(MemoryTransport::new()).build();
/// # let _ = bus; }
/// ```
#[derive(Clone, Default)]
pub struct MemoryTransport {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Who is subscribed: read without a lock by every publish (a lock word
    /// written by each reader is a cache line the workers pass back and
    /// forth), replaced whole by (rare) subscription changes.
    table: ArcSwap<Table>,
    /// Serializes subscription changes.
    edits: Mutex<()>,
    next_id: AtomicU64,
    next_inbox: AtomicU64,
    closed: AtomicBool,
    /// Open buses built on this transport (see [`Transport::release`]).
    buses: AtomicU64,
}

#[derive(Clone, Default)]
struct Table {
    exact: HashMap<String, Vec<Entry>>,
    wildcard: Vec<(Pattern, Entry)>,
}

/// The sinks one message goes to (most messages have one or two).
type Recipients<'a> = SmallVec<[&'a Arc<dyn Sink>; 2]>;

/// A wildcard subject pattern with its literal start, checked first: most
/// subjects differ from most patterns in their first bytes. The common
/// shapes `literal.*` and `literal.>` (a bus's reply inbox is one) need no
/// more than that check.
#[derive(Clone)]
struct Pattern {
    pattern: String,
    literal: usize,
    tail: Tail,
}

/// What follows a pattern's literal start.
#[derive(Clone, Copy)]
enum Tail {
    /// `*` and nothing after: one more token.
    OneToken,
    /// `>`: anything.
    Rest,
    /// Anything else: matched token by token.
    Tokens,
}

impl Pattern {
    fn new(pattern: &str) -> Self {
        let literal: usize = pattern
            .split('.')
            .take_while(|t| *t != "*" && *t != ">")
            .map(|t| t.len() + 1)
            .sum();
        let tail = match &pattern[literal.min(pattern.len())..] {
            "*" => Tail::OneToken,
            ">" => Tail::Rest,
            _ => Tail::Tokens,
        };
        Pattern {
            pattern: pattern.to_owned(),
            literal,
            tail,
        }
    }

    fn matches(&self, subject: &str) -> bool {
        let Some(rest) = subject.strip_prefix(&self.pattern[..self.literal]) else {
            return false;
        };
        match self.tail {
            Tail::OneToken => !rest.contains('.'),
            Tail::Rest => true,
            Tail::Tokens => matches(&self.pattern, subject),
        }
    }
}

#[derive(Clone)]
struct Entry {
    id: u64,
    queue: Option<Arc<str>>,
    sink: Arc<dyn Sink>,
}

impl MemoryTransport {
    /// A new, empty in-memory transport.
    pub fn new() -> Self {
        Self::default()
    }

    /// Changes the subscriptions.
    fn edit(&self, change: impl FnOnce(&mut Table)) {
        let _one_at_a_time = self.inner.edits.lock();
        let mut table = Table::clone(&self.inner.table.load());
        change(&mut table);
        self.inner.table.store(Arc::new(table));
    }

    /// Hands `msg` to its recipients, or reports "no responders" to its
    /// reply subject when there are none.
    fn deliver(&self, msg: Message) -> Result<(), TransportError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        // Refused as the NATS transport refuses it to encode it: what no
        // reader takes does not go out, on either transport.
        if let Body::Envelope(env) = &msg.body
            && crate::envelope::too_deep(env)
        {
            return Err(TransportError::Encode(
                "the envelope nests JSON deeper than 128 levels, which no reader takes".into(),
            ));
        }
        // The snapshot stays loaded while its sinks take the message (a
        // handler served inline may publish in turn: it loads its own).
        let table = self.inner.table.load();
        let recipients = table.recipients(&msg.subject);
        let Some((last, others)) = recipients.split_last() else {
            if let Some(reply) = msg.reply {
                let notice = Message {
                    subject: reply,
                    reply: None,
                    body: Body::Bytes(Bytes::new()),
                    status: Some(STATUS_NO_RESPONDERS),
                };
                for sink in table.recipients(&notice.subject) {
                    sink.deliver(notice.clone());
                }
            }
            return Ok(());
        };
        for sink in others {
            sink.deliver(msg.clone());
        }
        last.deliver(msg);
        Ok(())
    }
}

impl Table {
    /// Every plain subscriber of `subject` and one member of each queue group.
    fn recipients(&self, subject: &str) -> Recipients<'_> {
        let mut matched: SmallVec<[&Entry; 4]> = SmallVec::new();
        if let Some(list) = self.exact.get(subject) {
            matched.extend(list.iter());
        }
        matched.extend(
            self.wildcard
                .iter()
                .filter(|(pattern, _)| pattern.matches(subject))
                .map(|(_, e)| e),
        );
        let mut out = Recipients::new();
        for (i, e) in matched.iter().enumerate() {
            let Some(q) = &e.queue else {
                out.push(&e.sink);
                continue;
            };
            let same_group = |other: &&Entry| other.queue.as_ref() == Some(q);
            if matched[..i].iter().any(same_group) {
                continue; // this group has been served
            }
            let group: SmallVec<[&Entry; 4]> =
                matched[i..].iter().copied().filter(same_group).collect();
            let pick = if group.len() == 1 {
                0
            } else {
                fastrand::usize(..group.len())
            };
            out.push(&group[pick].sink);
        }
        out
    }
}

#[async_trait]
impl Transport for MemoryTransport {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, msg: Message) -> Result<(), TransportError> {
        // Delivery here never waits, so a loop of calls would never give its
        // worker back: take part in tokio's cooperative budget as sockets do.
        tokio::task::coop::consume_budget().await;
        self.deliver(msg)
    }

    fn publish_now(&self, msg: Message) -> Result<Result<(), TransportError>, Message> {
        Ok(self.deliver(msg))
    }

    async fn subscribe(
        &self,
        subject: &str,
        queue: Option<&str>,
        sink: Arc<dyn Sink>,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(TransportError::Closed);
        }
        crate::subject::check_name("subject", subject, true)
            .map_err(|e| TransportError::Subject(e.to_string()))?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            id,
            queue: queue.filter(|q| !q.is_empty()).map(Arc::from),
            sink,
        };
        self.edit(|table| {
            if has_wildcard(subject) {
                table.wildcard.push((Pattern::new(subject), entry));
            } else {
                table
                    .exact
                    .entry(subject.to_owned())
                    .or_default()
                    .push(entry);
            }
        });
        Ok(Box::new(MemorySubscription {
            transport: self.clone(),
            subject: subject.to_owned(),
            id,
        }))
    }

    fn new_inbox_prefix(&self) -> String {
        // Unique within this transport, which is all a process-local inbox
        // needs; short, so that reply subjects (`_INBOX.7.1234`) fit a
        // `Text` inline and a call allocates none for them.
        let n = self.inner.next_inbox.fetch_add(1, Ordering::Relaxed);
        format!("_INBOX.{n}")
    }

    async fn flush(&self) -> Result<(), TransportError> {
        Ok(())
    }

    fn is_connected(&self) -> bool {
        !self.inner.closed.load(Ordering::Acquire)
    }

    fn stats(&self) -> TransportStats {
        TransportStats::default()
    }

    fn share(&self) {
        self.inner.buses.fetch_add(1, Ordering::AcqRel);
    }

    fn release(&self) -> bool {
        release(&self.inner.buses)
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.edit(|table| *table = Table::default());
    }
}

struct MemorySubscription {
    transport: MemoryTransport,
    subject: String,
    id: u64,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn unsubscribe(&self) -> Result<(), TransportError> {
        self.transport.edit(|table| {
            if let Some(list) = table.exact.get_mut(&self.subject) {
                list.retain(|e| e.id != self.id);
                if list.is_empty() {
                    table.exact.remove(&self.subject);
                }
            }
            table.wildcard.retain(|(_, e)| e.id != self.id);
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<Message>>);
    impl Sink for Collect {
        fn deliver(&self, msg: Message) {
            self.0.lock().push(msg);
        }
    }

    #[tokio::test]
    async fn queue_groups_get_one_copy_each_and_plain_subscribers_all() {
        let t = MemoryTransport::new();
        let (a, b, c) = (
            Arc::new(Collect::default()),
            Arc::new(Collect::default()),
            Arc::new(Collect::default()),
        );
        let _sa = t.subscribe("x.y", Some("g"), a.clone()).await.unwrap();
        let _sb = t.subscribe("x.*", Some("g"), b.clone()).await.unwrap();
        let _sc = t.subscribe("x.>", None, c.clone()).await.unwrap();
        for _ in 0..100 {
            t.publish(Message::bytes("x.y", "1")).await.unwrap();
        }
        assert_eq!(a.0.lock().len() + b.0.lock().len(), 100);
        assert_eq!(c.0.lock().len(), 100);
    }

    #[test]
    fn patterns_check_their_literal_start_then_every_token() {
        let p = Pattern::new("a.*.c");
        assert!(p.matches("a.b.c"));
        assert!(!p.matches("a.b.d"));
        assert!(!p.matches("ab.b.c"));
        assert!(!p.matches("a.b"));
        let all = Pattern::new(">");
        assert!(all.matches("x.y"));
        let tail = Pattern::new("_INBOX.k.>");
        assert!(tail.matches("_INBOX.k.1.2"));
        assert!(!tail.matches("_INBOX.k"));
        assert!(!tail.matches("_INBOX.kk.1"));
        let one = Pattern::new("_INBOX.k.*");
        assert!(one.matches("_INBOX.k.1"));
        assert!(!one.matches("_INBOX.k.1.2"));
        assert!(!one.matches("_INBOX.k"));
        assert!(Pattern::new("*").matches("x"));
        assert!(!Pattern::new("*").matches("x.y"));
    }

    #[tokio::test]
    async fn publish_now_delivers_without_waiting_and_fails_once_closed() {
        let t = MemoryTransport::new();
        let got = Arc::new(Collect::default());
        let _sub = t.subscribe("a.b", None, got.clone()).await.unwrap();
        assert!(matches!(
            t.publish_now(Message::bytes("a.b", "1")),
            Ok(Ok(()))
        ));
        assert_eq!(got.0.lock().len(), 1);
        t.close().await;
        assert!(matches!(
            t.publish_now(Message::bytes("a.b", "2")),
            Ok(Err(TransportError::Closed))
        ));
    }

    #[tokio::test]
    async fn request_to_nobody_gets_no_responders() {
        let t = MemoryTransport::new();
        let inbox = Arc::new(Collect::default());
        let sub = t
            .subscribe("_INBOX.a.*", None, inbox.clone())
            .await
            .unwrap();
        t.publish(Message::bytes("nobody", "x").with_reply("_INBOX.a.1"))
            .await
            .unwrap();
        assert_eq!(inbox.0.lock()[0].status, Some(STATUS_NO_RESPONDERS));
        sub.unsubscribe().await.unwrap();
        t.publish(Message::bytes("_INBOX.a.1", "x")).await.unwrap();
        assert_eq!(inbox.0.lock().len(), 1);
    }

    #[tokio::test]
    async fn closing_one_bus_leaves_the_others_on_the_transport_working() {
        let t = MemoryTransport::new();
        let a = crate::Bus::builder()
            .agent_id("a")
            .transport(t.clone())
            .build();
        let b = crate::Bus::builder()
            .agent_id("b")
            .transport(t.clone())
            .build();
        b.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
            .await
            .unwrap();
        a.close().await;
        assert!(a.invoke("echo", serde_json::json!(1)).await.is_err());
        let c = crate::Bus::builder()
            .agent_id("c")
            .transport(t.clone())
            .build();
        assert_eq!(
            c.invoke("echo", serde_json::json!(2))
                .await
                .unwrap()
                .payload,
            Some(serde_json::json!(2))
        );
        b.close().await;
        // c is still open: so is the transport.
        assert_eq!(
            c.invoke("echo", serde_json::json!(3))
                .await
                .unwrap_err()
                .code(),
            crate::ErrorCode::NoHandler
        );
        c.close().await;
        let d = crate::Bus::builder().agent_id("d").transport(t).build();
        assert!(
            d.invoke("echo", serde_json::json!(4)).await.is_err(),
            "the last bus closed the transport"
        );
    }
}
