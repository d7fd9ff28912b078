//! Bad input on every subject the bus listens to, on both transports (the
//! in-memory one and a real nats-server).
//!
//! Proves that bytes which are not an acp envelope, published raw on an invoke
//! subject, a stream target, an event subscription, a dead-letter subscription
//! and the cancellation subject:
//! - are counted in `bus.stats().bad_messages`, exactly once each;
//! - panic nothing and do not stop the subscription (valid calls, streams and
//!   events that follow are served);
//! - when they name a `reply_to` (in a JSON object that is otherwise not an
//!   envelope) or carry a transport reply subject, are answered there with an
//!   `agent.response.error` frame of code `CODEC_FAILURE`.
//!
//! On a caller's reply subject they are the call's answer gone bad: that
//! call fails at once with `CODEC_FAILURE`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openagentio_core::codec;
use openagentio_core::transport::{Body, Message, Sink};
use openagentio_core::{Bus, BusError, Envelope, ErrorCode};
use openagentio_testkit::{BusPair, TransportKind};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(10);

openagentio_testkit::on_both_transports!(
    junk_on_handler_and_subscription_subjects_is_counted_and_serving_goes_on,
    undecodable_requests_with_a_reply_subject_get_codec_failure,
    junk_on_a_callers_reply_subject_fails_that_call_at_once,
    junk_on_the_cancel_subject_is_counted_and_cancellation_still_works,
    requests_are_answered_where_a_reply_can_go,
);

/// Waits (bounded) until `cond` holds; the bus offers no notification for its
/// counters, so this polls them.
async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(LIMIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("{what}: nothing arrived within {LIMIT:?}"))
        .expect("channel closed")
}

/// Forwards every message of a raw transport subscription to a channel.
struct ToChannel(mpsc::UnboundedSender<Message>);

impl Sink for ToChannel {
    fn deliver(&self, msg: Message) {
        let _ = self.0.send(msg);
    }
}

/// A raw inbox on the client's transport (`{inbox}.*`), its messages sent to
/// a channel; settled, so that answers published to it arrive.
async fn reply_inbox(
    p: &BusPair,
) -> (
    String,
    mpsc::UnboundedReceiver<Message>,
    Box<dyn openagentio_core::transport::Subscription>,
) {
    let inbox = p.client.transport().new_inbox_prefix();
    let (tx, rx) = mpsc::unbounded_channel();
    let sub = p
        .client
        .transport()
        .subscribe(&format!("{inbox}.*"), None, Arc::new(ToChannel(tx)))
        .await
        .unwrap();
    p.settle().await;
    (inbox, rx, sub)
}

/// Publishes raw bytes on `subject` through `bus`'s transport, bypassing the bus.
async fn publish_raw(bus: &Bus, subject: &str, bytes: &[u8]) {
    bus.transport()
        .publish(Message::bytes(subject.to_owned(), bytes.to_vec()))
        .await
        .expect("raw publish");
}

/// Byte strings that are not acp envelopes, each for a different reason.
fn junk() -> Vec<(&'static str, Vec<u8>)> {
    let valid = codec::encode(&Envelope::new("agent.message.received")).unwrap();
    let obj = |extra: &str| {
        format!(
            r#"{{"spec_version":"acp/1.0","schema_version":1,"event_id":"e1","event_type":"t","occurred_at":"2026-05-02T10:00:00Z"{extra}}}"#
        )
        .into_bytes()
    };
    vec![
        ("empty", Vec::new()),
        ("text", b"not json at all".to_vec()),
        ("invalid utf-8", vec![0xff, 0xfe, 0x00, 0xc3]),
        ("array", b"[1,2,3]".to_vec()),
        ("null", b"null".to_vec()),
        ("string", br#""an envelope?""#.to_vec()),
        ("empty object", b"{}".to_vec()),
        ("truncated envelope", valid[..valid.len() / 2].to_vec()),
        ("bad occurred_at", {
            let mut v: Value = serde_json::from_slice(&obj("")).unwrap();
            v["occurred_at"] = json!("yesterday");
            serde_json::to_vec(&v).unwrap()
        }),
        ("spec acp/2.0", {
            let mut v: Value = serde_json::from_slice(&obj("")).unwrap();
            v["spec_version"] = json!("acp/2.0");
            serde_json::to_vec(&v).unwrap()
        }),
        ("seq not a number", obj(r#","seq":"three""#)),
        ("metadata not an object", obj(r#","metadata":[1]"#)),
        ("deep nesting", {
            let mut b = vec![b'['; 20_000];
            b.extend(vec![b']'; 20_000]);
            b
        }),
        ("large", vec![b'x'; 256 * 1024]),
    ]
}

async fn junk_on_handler_and_subscription_subjects_is_counted_and_serving_goes_on(
    kind: TransportKind,
) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_invoke("echo", |req| async move { Ok(req.payload().clone()) })
        .await
        .unwrap();
    p.server
        .handle_stream("chat", |req, w| async move {
            for word in req.payload().as_str().unwrap_or_default().split(' ') {
                w.delta_text(word).await?;
            }
            w.finish(json!("done")).await
        })
        .await
        .unwrap();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    p.server
        .subscribe("demo.event", move |env| {
            let tx = ev_tx.clone();
            async move {
                tx.send(env).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    let (dl_tx, mut dl_rx) = mpsc::unbounded_channel();
    p.server
        .subscribe_dead_letters(">", move |env| {
            let tx = dl_tx.clone();
            async move {
                tx.send(env).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    p.settle().await;

    let s = p.server.subjects().clone();
    let subjects = [
        s.invoke("echo", ""),
        s.invoke("chat", ""),
        s.event("demo.event", ""),
        s.dlq("demo.event"),
    ];
    let junk = junk();
    for subject in &subjects {
        for (_, bytes) in &junk {
            publish_raw(&p.client, subject, bytes).await;
        }
    }
    p.client.transport().flush().await.unwrap();
    let expected = (subjects.len() * junk.len()) as u64;
    wait_until(&format!("{expected} bad messages counted"), || {
        p.server.stats().bad_messages >= expected
    })
    .await;

    // Every subscription still serves.
    let reply = p
        .client
        .invoke("echo", json!({"after": "junk"}))
        .await
        .unwrap();
    assert_eq!(reply.payload, Some(json!({"after": "junk"})));
    let mut stream = p
        .client
        .stream_invoke("chat", json!("a b c"))
        .await
        .unwrap();
    let mut deltas = Vec::new();
    while let Some(frame) = stream.next().await {
        let frame = frame.unwrap();
        if let Some(d) = frame.payload.as_ref().and_then(|p| p["delta"].as_str()) {
            deltas.push(d.to_owned());
        }
    }
    assert_eq!(deltas, ["a", "b", "c"]);
    p.client
        .emit("demo.event", json!({"valid": true}))
        .await
        .unwrap();
    let ev = recv(&mut ev_rx, "the valid event").await;
    assert_eq!(ev.payload, Some(json!({"valid": true})));
    let mut letter = Envelope::new("demo.event").with_payload(json!({"dead": 1}));
    letter.from = "client".into();
    p.client
        .transport()
        .publish(Message::envelope(s.dlq("demo.event"), letter))
        .await
        .unwrap();
    let dead = recv(&mut dl_rx, "the valid dead letter").await;
    assert_eq!(dead.payload, Some(json!({"dead": 1})));
    assert!(ev_rx.try_recv().is_err(), "junk reached the event handler");
    assert!(
        dl_rx.try_recv().is_err(),
        "junk reached the dead-letter handler"
    );

    let stats = p.server.stats();
    assert_eq!(
        stats.bad_messages, expected,
        "each junk message counted once"
    );
    assert_eq!(stats.handler_panics, 0);
    assert_eq!(p.client.stats().bad_messages, 0);
}

async fn undecodable_requests_with_a_reply_subject_get_codec_failure(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_invoke("echo", |req| async move { Ok(req.payload().clone()) })
        .await
        .unwrap();
    p.server
        .handle_stream("chat", |_req, w| async move { w.finish(json!("ok")).await })
        .await
        .unwrap();
    let (inbox, mut rx, _sub) = reply_inbox(&p).await;

    let s = p.server.subjects().clone();
    let missing_event_type = |n: u32| {
        json!({
            "spec_version": "acp/1.0", "schema_version": 1,
            "event_id": format!("req-{n}"), "occurred_at": "2026-05-02T10:00:00Z",
            "reply_to": format!("{inbox}.{n}"), "payload": {"text": "hi"},
            "metadata": {"tenant.tag": "x"}
        })
        .to_string()
    };
    // (subject, body, transport reply subject, expected reply subject, expected correlation_id)
    let cases: Vec<(String, String, Option<String>, String, &str)> = vec![
        (
            s.invoke("echo", ""),
            missing_event_type(1),
            None,
            format!("{inbox}.1"),
            "req-1",
        ),
        (
            s.invoke("chat", ""),
            missing_event_type(2),
            None,
            format!("{inbox}.2"),
            "req-2",
        ),
        (
            s.invoke("echo", ""),
            json!({"event_id": "req-3", "event_type": 42, "reply_to": format!("{inbox}.3")})
                .to_string(),
            None,
            format!("{inbox}.3"),
            "req-3",
        ),
        (
            s.invoke("echo", ""),
            "<<not json>>".to_owned(),
            Some(format!("{inbox}.4")),
            format!("{inbox}.4"),
            "",
        ),
    ];
    for (subject, body, reply, expect_subject, expect_correlation) in &cases {
        let mut msg = Message::bytes(subject.clone(), body.clone().into_bytes());
        if let Some(r) = reply {
            msg = msg.with_reply(r.clone());
        }
        p.client.transport().publish(msg).await.unwrap();
        let answer = recv(&mut rx, &format!("the CODEC_FAILURE reply to {body}")).await;
        assert_eq!(&answer.subject, expect_subject);
        let frame = match answer.body {
            Body::Envelope(env) => std::sync::Arc::unwrap_or_clone(env),
            Body::Bytes(b) => codec::decode(&b).expect("the error reply is an envelope"),
        };
        assert_eq!(frame.event_type, "agent.response.error", "{frame:?}");
        assert!(frame.is_final);
        assert_eq!(frame.correlation_id, *expect_correlation);
        assert_eq!(frame.from, "server");
        let err = frame.error().expect("an error payload");
        assert_eq!(err.code(), ErrorCode::CodecFailure, "{err}");
        assert!(!err.retryable());
    }
    assert_eq!(p.server.stats().bad_messages, cases.len() as u64);

    // The handlers still serve.
    let reply = p.client.invoke("echo", json!(1)).await.unwrap();
    assert_eq!(reply.payload, Some(json!(1)));
    let done = p
        .client
        .stream_invoke("chat", json!(null))
        .await
        .unwrap()
        .final_payload()
        .await
        .unwrap();
    assert_eq!(done, json!({"result": "ok"}));
}

/// A frame on a call's own reply subject that cannot be decoded (a peer
/// writing `NaN`, say) is that call's answer gone: the call fails at once
/// with `CODEC_FAILURE`, not at its deadline with a timeout that blames the
/// handler. Calls after it are served.
async fn junk_on_a_callers_reply_subject_fails_that_call_at_once(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_stream("junky", |req, w| async move {
            w.delta_text("one").await?;
            req.bus()
                .transport()
                .publish(Message::bytes(
                    req.envelope().reply_to.clone(),
                    &b"{\"seq\": 1, \"score\": NaN}"[..],
                ))
                .await
                .map_err(BusError::from)?;
            req.cancelled().await;
            w.finish(json!("never read")).await
        })
        .await
        .unwrap();
    p.server
        .handle_invoke("junky-invoke", |req| async move {
            req.bus()
                .transport()
                .publish(Message::bytes(
                    req.envelope().reply_to.clone(),
                    &b"\x00\x01"[..],
                ))
                .await
                .map_err(BusError::from)?;
            req.cancelled().await;
            Ok(json!("never read"))
        })
        .await
        .unwrap();
    p.server
        .handle_invoke("fine", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    p.settle().await;

    let started = Instant::now();
    let opts = openagentio_core::CallOptions::new().timeout(LIMIT);
    let mut s = p
        .client
        .stream_invoke_with("junky", json!(null), opts.clone())
        .await
        .unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(first.event_type.as_str(), "agent.response.delta");
    let err = s.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::CodecFailure, "{err}");
    assert!(err.message().contains("junky"), "{err}");
    assert!(s.next().await.is_none());
    let err = p
        .client
        .invoke_with("junky-invoke", json!(null), opts)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::CodecFailure, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let reply = p.client.invoke("fine", json!({"after": 1})).await.unwrap();
    assert_eq!(reply.payload, Some(json!({"after": 1})));
    assert_eq!(p.client.stats().bad_messages, 2);
    assert_eq!(p.server.stats().bad_messages, 0);
}

async fn junk_on_the_cancel_subject_is_counted_and_cancellation_still_works(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let (tx, mut cancelled) = mpsc::unbounded_channel();
    p.server
        .handle_stream("waits", move |req, w| {
            let tx = tx.clone();
            async move {
                w.delta_text("waiting").await?;
                req.cancellation().cancelled().await;
                tx.send(()).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    p.settle().await;

    let cancel_subject = p.server.subjects().cancel();
    for (_, bytes) in junk() {
        publish_raw(&p.client, &cancel_subject, &bytes).await;
    }
    p.client.transport().flush().await.unwrap();

    // Cancellation still reaches the handler.
    let mut s = p.client.stream_invoke("waits", json!(null)).await.unwrap();
    let first = s.next().await.unwrap().unwrap();
    assert_eq!(first.event_type, "agent.response.delta");
    drop(s);
    recv(&mut cancelled, "the handler's cancellation").await;

    let expected = junk().len() as u64;
    let counted = tokio::time::timeout(Duration::from_secs(3), async {
        while p.server.stats().bad_messages < expected {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        counted.is_ok(),
        "junk on {cancel_subject} was not counted: bad_messages = {} of {expected} \
         (runtime/core/src/cancel.rs `Served::deliver` drops undecodable notices silently)",
        p.server.stats().bad_messages
    );
}

/// A request envelope without `reply_to` but with a transport reply subject
/// (a plain `nats request`) is answered at that subject; one whose
/// `reply_to` cannot be published to is refused with `INVALID_REQUEST` at the
/// transport reply subject (or, without one, only counted), its handler not
/// run; a lone UTF-16 surrogate escape (which Go reads as U+FFFD) is read as
/// Go reads it.
async fn requests_are_answered_where_a_reply_can_go(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = runs.clone();
    p.server
        .handle_invoke("echo", move |req| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { Ok(req.payload().clone()) }
        })
        .await
        .unwrap();
    p.server
        .handle_stream("chat", |_req, w| async move {
            w.delta_text("a").await?;
            w.finish(json!("ok")).await
        })
        .await
        .unwrap();
    let (inbox, mut rx, _sub) = reply_inbox(&p).await;
    let s = p.server.subjects().clone();
    let request = |id: &str, reply_to: &str, payload: &str| {
        format!(
            r#"{{"spec_version":"acp/1.0","schema_version":1,"event_id":"{id}","event_type":"agent.message.received","occurred_at":"2026-05-02T10:00:00Z","reply_to":"{reply_to}","payload":{payload}}}"#
        )
    };
    let send = |subject: String, body: String, reply: Option<String>| {
        let mut msg = Message::bytes(subject, body.into_bytes());
        if let Some(r) = reply {
            msg = msg.with_reply(r);
        }
        let client = p.client.clone();
        async move { client.transport().publish(msg).await.unwrap() }
    };
    let mut next_frame = async |what: &str| {
        let answer = recv(&mut rx, what).await;
        let frame = match answer.body {
            Body::Envelope(env) => Arc::unwrap_or_clone(env),
            Body::Bytes(b) => codec::decode(&b).expect("an envelope"),
        };
        (answer.subject.to_string(), frame)
    };

    // No reply_to: answered at the transport reply subject.
    let body = request("plain-1", "", r#"{"n":1}"#);
    send(s.invoke("echo", ""), body, Some(format!("{inbox}.1"))).await;
    let (subject, frame) = next_frame("the answer to a request without reply_to").await;
    assert_eq!(subject, format!("{inbox}.1"));
    assert_eq!(frame.event_type, "agent.response.final", "{frame:?}");
    assert_eq!(frame.correlation_id, "plain-1");
    assert_eq!(frame.payload, Some(json!({"n": 1})));
    // A stream target sends all its frames there.
    let body = request("plain-2", "", "null");
    send(s.invoke("chat", ""), body, Some(format!("{inbox}.2"))).await;
    let mut kinds = Vec::new();
    loop {
        let (subject, frame) = next_frame("the stream's frames").await;
        assert_eq!(subject, format!("{inbox}.2"));
        kinds.push(frame.event_type.to_string());
        if frame.is_final {
            break;
        }
    }
    assert_eq!(kinds, ["agent.response.delta", "agent.response.final"]);

    // A reply_to nobody can publish to: refused, the handler not run.
    let before = runs.load(std::sync::atomic::Ordering::SeqCst);
    for (n, bad) in [(3, "has space"), (4, "wild.*"), (5, "wild.>"), (6, "a..b")] {
        let body = request(&format!("bad-{n}"), bad, "null");
        send(s.invoke("echo", ""), body, Some(format!("{inbox}.{n}"))).await;
        let (subject, frame) = next_frame(&format!("the refusal of reply_to {bad:?}")).await;
        assert_eq!(subject, format!("{inbox}.{n}"));
        assert_eq!(frame.correlation_id, format!("bad-{n}"));
        let err = frame.error().expect("an error frame");
        assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
        assert!(err.message().contains(bad), "{err}");
    }
    // Without a transport reply subject there is nowhere to say so: counted.
    send(s.invoke("echo", ""), request("bad-7", "x y", "null"), None).await;
    wait_until("the reply_to refusals counted", || {
        p.server.stats().bad_messages == 5
    })
    .await;
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), before);

    // Half an emoji from a sender that counts UTF-16 units.
    let body = request("lone-8", &format!("{inbox}.8"), r#"{"text":"cut \ud83d"}"#);
    send(s.invoke("echo", ""), body, None).await;
    let (_, frame) = next_frame("the answer to a lone surrogate").await;
    assert_eq!(frame.payload, Some(json!({"text": "cut \u{FFFD}"})));
    assert_eq!(p.server.stats().bad_messages, 5);
}
