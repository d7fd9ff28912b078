//! The behavioural suite of the runtime bus. Every test runs twice: on the
//! in-memory transport and on a real nats-server, and must pass the same way on
//! both: pub/sub fan-out and queue groups, invoke, streams with frames out of
//! order, duplicates, gaps, a reader too slow for its stream, events a slow
//! subscriber cannot take (counted, never lost silently), timeouts,
//! cancellation, panics, retry, dead letters,
//! context propagation across nested calls, tenant isolation, the serve
//! timeout of requests that carry no deadline (as reference SDKs send them),
//! the caller's deadline enforced where the handler runs, handlers deaf to
//! their cancellation dropped after a grace, and no per-call state left on
//! either side however calls end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use openagentio_core::middleware::{DeadLetter, RETRY_ATTEMPT_KEY, Recover, Retry, RetryPolicy};
use openagentio_core::transport::{Body, Message, Sink};
use openagentio_core::{
    BusError, CallOptions, Envelope, ErrorCode, HandleOptions, StreamLimits, SubscribeOptions,
};
use openagentio_testkit::{BusPair, TransportKind};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(10);

openagentio_testkit::on_both_transports!(
    pubsub_fans_out_and_queue_groups_share,
    invoke_returns_payload_and_error_codes,
    invoke_to_nobody_fails_fast_with_no_handler,
    stream_frames_arrive_in_order_with_auto_final,
    stream_reorders_and_drops_duplicates,
    stream_gap_too_wide_is_backpressure,
    stream_too_many_pending_is_backpressure,
    timeouts_end_calls_and_cancel_handlers,
    dropping_a_stream_cancels_its_handler,
    a_reader_too_slow_for_its_stream_gets_backpressure,
    a_slow_reader_holds_its_producer_back_and_loses_nothing,
    events_a_slow_subscriber_cannot_take_are_counted,
    panics_become_error_frames,
    retry_retries_only_retryable_failures,
    exhausted_failures_become_dead_letters,
    dead_letter_readers_behind_middleware_see_the_original_and_do_not_loop,
    context_flows_through_two_nested_calls,
    tenants_are_isolated,
    metadata_is_inherited_except_acp_keys,
    workers_in_a_queue_group_share_invokes,
    invoke_of_a_stream_target_gets_only_the_answer,
    drain_finishes_in_flight_calls_and_stops_intake,
    requests_without_a_deadline_end_at_the_serve_timeout,
    handlers_are_cancelled_at_the_callers_deadline_without_a_cancel_message,
    no_call_state_is_left_behind_however_calls_end,
    a_handler_deaf_to_its_cancellation_is_dropped_after_the_grace,
    closing_a_bus_tells_the_handlers_of_its_open_calls_to_stop,
    closing_a_serving_bus_ends_its_calls_with_an_error,
    the_smallest_frame_buffer_loses_nothing,
    a_stuck_event_handler_times_out_and_the_next_event_is_served,
    what_no_reader_takes_is_refused_at_the_sender,
    an_idle_timeout_on_invoke_counts_a_stream_handlers_deltas,
    a_request_cancelled_before_it_arrives_is_not_served,
);

async fn recv<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("nothing arrived in time")
        .expect("channel closed")
}

async fn pubsub_fans_out_and_queue_groups_share(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    for name in ["a", "b"] {
        let tx = tx.clone();
        p.server
            .subscribe("demo.>", move |env: Envelope| {
                let tx = tx.clone();
                async move {
                    tx.send((name, env)).unwrap();
                    Ok(())
                }
            })
            .await
            .unwrap();
    }
    for name in ["q1", "q2"] {
        let tx = tx.clone();
        p.server
            .subscribe_with(
                "demo.*",
                SubscribeOptions::new().queue("workers"),
                move |env: Envelope| {
                    let tx = tx.clone();
                    async move {
                        tx.send((name, env)).unwrap();
                        Ok(())
                    }
                },
            )
            .await
            .unwrap();
    }
    p.settle().await;
    for i in 0..10 {
        p.client.emit("demo.tick", json!({"i": i})).await.unwrap();
    }
    let mut counts = std::collections::HashMap::new();
    for _ in 0..30 {
        let (name, env) = recv(&mut rx).await;
        assert_eq!(env.event_type, "demo.tick");
        assert_eq!(env.from, "client");
        *counts.entry(name).or_insert(0) += 1;
    }
    assert_eq!(counts["a"], 10);
    assert_eq!(counts["b"], 10);
    assert_eq!(
        counts.get("q1").unwrap_or(&0) + counts.get("q2").unwrap_or(&0),
        10
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        rx.try_recv().is_err(),
        "a queue group received an event twice"
    );
}

async fn invoke_returns_payload_and_error_codes(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_invoke("echo", |req| async move { Ok(req.payload().clone()) })
        .await
        .unwrap();
    p.server
        .handle_invoke("fail", |req| async move {
            let code: String = req.payload_as::<Value>()?["code"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let code = ErrorCode::parse(&code).unwrap();
            Err(BusError::new(code, format!("failing with {code}")))
        })
        .await
        .unwrap();
    p.server
        .handle_invoke("empty", |_req| async move { Ok(Value::Null) })
        .await
        .unwrap();
    p.settle().await;

    let reply = p
        .client
        .invoke("echo", json!({"text": "hi", "n": [1, 2]}))
        .await
        .unwrap();
    assert_eq!(reply.payload, Some(json!({"text": "hi", "n": [1, 2]})));
    assert_eq!(reply.event_type, "agent.response.final");
    assert!(reply.is_final);
    assert_eq!(reply.seq, 0);
    assert_eq!(reply.from, "server");
    assert_eq!(reply.to, "client");

    let empty = p.client.invoke("empty", Value::Null).await.unwrap();
    assert_eq!(empty.payload, None);

    for code in ErrorCode::ALL {
        let err = p
            .client
            .invoke("fail", json!({"code": code.as_str()}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code);
        assert_eq!(err.message(), format!("failing with {code}"));
        assert_eq!(err.retryable(), code.default_retryable());
    }
}

async fn invoke_to_nobody_fails_fast_with_no_handler(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let started = Instant::now();
    let err = p.client.invoke("nobody.home", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoHandler, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let err = p
        .client
        .stream_invoke("nobody.home", json!({}))
        .await
        .unwrap()
        .next()
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoHandler);
    let err = p.client.invoke("bad target", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest);
}

async fn stream_frames_arrive_in_order_with_auto_final(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_stream("words", |req, w| async move {
            w.started(json!({"model": "m"})).await?;
            for word in req.payload()["text"].as_str().unwrap().split(' ') {
                w.delta_text(word).await?;
            }
            Ok(()) // no terminal frame: the bus sends one
        })
        .await
        .unwrap();
    p.server
        .handle_stream("half", |_req, w| async move {
            w.delta_text("partial").await?;
            Err(BusError::unavailable("upstream went away"))
        })
        .await
        .unwrap();
    p.settle().await;
    let mut s = p
        .client
        .stream_invoke("words", json!({"text": "a b c d e"}))
        .await
        .unwrap();
    let mut frames = vec![];
    while let Some(f) = s.next().await {
        frames.push(f.unwrap());
    }
    let kinds: Vec<_> = frames.iter().map(|f| f.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "agent.response.started",
            "agent.response.delta",
            "agent.response.delta",
            "agent.response.delta",
            "agent.response.delta",
            "agent.response.delta",
            "agent.response.final"
        ]
    );
    let seqs: Vec<_> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5, 6]);
    assert!(frames.iter().all(|f| f.correlation_id == s.request_id()));
    assert!(frames.last().unwrap().is_final);
    assert_eq!(frames[0].payload, Some(json!({"meta": {"model": "m"}})));
    assert_eq!(frames[3].payload, Some(json!({"delta": "c"})));
    assert!(s.next().await.is_none());

    let mut s = p.client.stream_invoke("half", json!({})).await.unwrap();
    assert_eq!(
        s.next().await.unwrap().unwrap().payload,
        Some(json!({"delta": "partial"}))
    );
    let last = s.next().await.unwrap().unwrap();
    assert!(last.is_final);
    assert_eq!(last.error().unwrap().code(), ErrorCode::AgentUnavailable);
}

/// A handler at the transport level that answers each request with the frames
/// `plan` gives (seq, is_final), published in the given order.
struct RawResponder {
    transport: Arc<dyn openagentio_core::Transport>,
    plan: Vec<(u64, bool)>,
}

impl Sink for RawResponder {
    fn deliver(&self, msg: Message) {
        let transport = self.transport.clone();
        let plan = self.plan.clone();
        tokio::spawn(async move {
            let req = match msg.body {
                Body::Envelope(e) => std::sync::Arc::unwrap_or_clone(e),
                Body::Bytes(b) => openagentio_core::codec::decode(&b).unwrap(),
            };
            for (seq, fin) in plan {
                let kind = if fin {
                    "agent.response.final"
                } else {
                    "agent.response.delta"
                };
                let mut f = Envelope::new(kind).with_payload(json!({"delta": seq.to_string()}));
                f.correlation_id = req.event_id.clone();
                f.seq = seq;
                f.is_final = fin;
                transport
                    .publish(Message::envelope(req.reply_to.clone(), f))
                    .await
                    .unwrap();
            }
        });
    }
}

async fn raw_target(
    p: &BusPair,
    target: &str,
    plan: Vec<(u64, bool)>,
) -> Box<dyn openagentio_core::transport::Subscription> {
    let t = p.server.transport().clone();
    let subject = p.server.subjects().invoke(target, "");
    let sub = t
        .subscribe(
            &subject,
            Some(target),
            Arc::new(RawResponder {
                transport: t.clone(),
                plan,
            }),
        )
        .await
        .unwrap();
    p.settle().await;
    sub
}

async fn collect_seqs(p: &BusPair, target: &str) -> Result<Vec<u64>, BusError> {
    let mut s = p.client.stream_invoke(target, json!({})).await?;
    let mut seqs = vec![];
    while let Some(f) = s.next().await {
        seqs.push(f?.seq);
    }
    Ok(seqs)
}

async fn stream_reorders_and_drops_duplicates(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let _a = raw_target(
        &p,
        "shuffled",
        vec![(3, false), (1, false), (0, false), (4, true), (2, false)],
    )
    .await;
    assert_eq!(collect_seqs(&p, "shuffled").await.unwrap(), [0, 1, 2, 3, 4]);
    let _b = raw_target(
        &p,
        "doubled",
        vec![
            (0, false),
            (0, false),
            (2, false),
            (1, false),
            (2, false),
            (1, false),
            (3, true),
            (3, true),
        ],
    )
    .await;
    assert_eq!(collect_seqs(&p, "doubled").await.unwrap(), [0, 1, 2, 3]);
    // Frames after the terminal one are not seen.
    let _c = raw_target(&p, "chatty", vec![(0, false), (1, true), (2, false)]).await;
    assert_eq!(collect_seqs(&p, "chatty").await.unwrap(), [0, 1]);
    // A terminal frame with a hole before it that never fills: the stream
    // ends soon after, naming the missing frames, not at its deadline.
    let _d = raw_target(&p, "holed", vec![(0, false), (2, true)]).await;
    let started = Instant::now();
    let err = collect_seqs(&p, "holed").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::TransportFailure, "{err}");
    assert!(
        err.message().contains("frames 1 to 1 never arrived"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

async fn stream_gap_too_wide_is_backpressure(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let _a = raw_target(&p, "gappy", vec![(0, false), (2000, true)]).await;
    let err = collect_seqs(&p, "gappy").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::BackpressureDrop, "{err}");
}

async fn stream_too_many_pending_is_backpressure(kind: TransportKind) {
    let p = BusPair::new(kind, |b, _| {
        b.stream_limits(StreamLimits {
            max_pending: 16,
            max_gap: 1024,
        })
    })
    .await;
    // seq 0 never comes; 1..=40 pile up.
    let _a = raw_target(
        &p,
        "missing-first",
        (1..=40).map(|s| (s, s == 40)).collect(),
    )
    .await;
    let err = collect_seqs(&p, "missing-first").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::BackpressureDrop, "{err}");
}

async fn timeouts_end_calls_and_cancel_handlers(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.server
        .handle_invoke("slow", move |req| {
            let tx = tx.clone();
            async move {
                let started = Instant::now();
                tokio::select! {
                    _ = req.cancelled() => { tx.send(started.elapsed()).unwrap(); Err(BusError::timeout("cancelled")) }
                    _ = tokio::time::sleep(Duration::from_secs(5)) => Ok(json!("late")),
                }
            }
        })
        .await
        .unwrap();
    p.server
        .handle_stream("stall", |_req, w| async move {
            w.delta_text("first").await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await
        .unwrap();
    p.settle().await;
    let started = Instant::now();
    let err = p
        .client
        .invoke_with(
            "slow",
            json!({}),
            CallOptions::new().timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentTimeout);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
    let seen = recv(&mut rx).await;
    assert!(
        seen < Duration::from_secs(1),
        "handler saw the cancellation after {seen:?}"
    );

    let mut s = p
        .client
        .stream_invoke_with(
            "stall",
            json!({}),
            CallOptions::new().idle_timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap();
    assert!(s.next().await.unwrap().is_ok());
    let err = s.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentTimeout);
    assert!(err.message().contains("idle"), "{err}");
    assert!(s.next().await.is_none());
}

async fn dropping_a_stream_cancels_its_handler(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.server
        .handle_stream("endless", move |req, w| {
            let tx = tx.clone();
            async move {
                let mut n = 0u64;
                loop {
                    tokio::select! {
                        _ = req.cancelled() => { tx.send(n).unwrap(); return Ok(()); }
                        _ = tokio::time::sleep(Duration::from_millis(10)) => { w.delta_text(n.to_string()).await?; n += 1; }
                    }
                }
            }
        })
        .await
        .unwrap();
    p.settle().await;
    let mut s = p.client.stream_invoke("endless", json!({})).await.unwrap();
    for _ in 0..3 {
        s.next().await.unwrap().unwrap();
    }
    let dropped_at = Instant::now();
    drop(s);
    let _ = recv(&mut rx).await;
    assert!(
        dropped_at.elapsed() < Duration::from_millis(500),
        "cancel took {:?}",
        dropped_at.elapsed()
    );
}

async fn a_reader_too_slow_for_its_stream_gets_backpressure(kind: TransportKind) {
    // The caller holds 32 unread frames; the handler writes 1,000 at once.
    // The caller offers no flow control (as reference SDK callers do not),
    // so nothing holds the handler back.
    let p = BusPair::new(kind, |b, side| {
        let b = b.frame_buffer(32);
        if side == "client" {
            b.preparer(|env: &mut Envelope| {
                env.metadata.remove(openagentio_core::context::WINDOW_KEY);
            })
        } else {
            b
        }
    })
    .await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.server
        .handle_stream("firehose", move |req, w| {
            let tx = tx.clone();
            async move {
                for i in 0..1000 {
                    if w.delta_text(i.to_string()).await.is_err() {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                // The caller's notice that it gave up arrives in time.
                let stopped = tokio::time::timeout(LIMIT, req.cancelled()).await.is_ok();
                tx.send(stopped).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    p.settle().await;
    let mut s = p.client.stream_invoke("firehose", json!({})).await.unwrap();
    // Not reading while the frames pile up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut frames = 0;
    let err = loop {
        match s.next().await {
            Some(Ok(_)) => frames += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without an error after {frames} frames"),
        }
    };
    assert_eq!(err.code(), ErrorCode::BackpressureDrop, "{err}");
    assert!(err.to_string().contains("overflowed"), "{err}");
    assert!(frames <= 32, "{frames} frames before the error");
    assert!(s.next().await.is_none(), "frames after the error");
    assert!(recv(&mut rx).await, "the handler was not told to stop");
}

async fn a_slow_reader_holds_its_producer_back_and_loses_nothing(kind: TransportKind) {
    // The caller holds 32 unread frames and offers flow control (as every
    // `stream_invoke` here does); the handler writes 1,000 as fast as it may.
    let p = BusPair::new(kind, |b, _| b.frame_buffer(32)).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.server
        .handle_stream("firehose", move |_req, w| {
            let tx = tx.clone();
            async move {
                for i in 0..1000 {
                    w.delta_text(i.to_string()).await?;
                }
                tx.send(()).unwrap();
                w.finish(json!("done")).await
            }
        })
        .await
        .unwrap();
    p.settle().await;
    let mut s = p
        .client
        .stream_invoke_with(
            "firehose",
            json!({}),
            CallOptions::new().timeout(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    // Not reading for a while: the handler waits instead of flooding.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "the handler was not held back");
    let mut deltas = Vec::new();
    let mut last = None;
    while let Some(f) = s.next().await {
        let f = f.expect("no frame is lost");
        if f.is_terminal() {
            last = Some(f);
        } else {
            deltas.push(f.payload_or_null()["delta"].as_str().unwrap().to_owned());
            if deltas.len().is_multiple_of(100) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    let want: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    assert_eq!(deltas, want);
    assert_eq!(last.unwrap().payload_or_null()["result"], "done");
    recv(&mut rx).await;
}

/// The smallest frame buffer still carries a whole stream: the window and
/// the terminal frame each have room (a buffer of 1 is taken as 2).
async fn the_smallest_frame_buffer_loses_nothing(kind: TransportKind) {
    let p = BusPair::new(kind, |b, _| b.frame_buffer(1)).await;
    p.server
        .handle_stream("trickle", |_req, w| async move {
            for i in 0..500 {
                w.delta_text(i.to_string()).await?;
            }
            w.finish(json!("done")).await
        })
        .await
        .unwrap();
    p.settle().await;
    let opts = CallOptions::new().timeout(Duration::from_secs(30));
    let mut s = p
        .client
        .stream_invoke_with("trickle", json!({}), opts)
        .await
        .unwrap();
    let (mut deltas, mut last) = (0, None);
    while let Some(f) = s.next().await {
        let f = f.expect("no frame is lost");
        if f.is_terminal() {
            last = Some(f);
        } else {
            deltas += 1;
        }
    }
    assert_eq!(deltas, 500);
    assert_eq!(last.unwrap().payload_or_null()["result"], "done");
}

async fn events_a_slow_subscriber_cannot_take_are_counted(kind: TransportKind) {
    let p = BusPair::new(kind, |b, _| b.event_buffer(4)).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.server
        .subscribe("burst.tick", move |_env| {
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tx.send(()).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    p.settle().await;
    const SENT: u64 = 50;
    for i in 0..SENT {
        p.client.emit("burst.tick", json!(i)).await.unwrap();
    }
    // Every event is either handled or counted as dropped: none vanishes.
    let started = Instant::now();
    let mut handled = 0;
    loop {
        while rx.try_recv().is_ok() {
            handled += 1;
        }
        let dropped = p.server.stats().dropped_events;
        if handled + dropped == SENT {
            assert!(dropped > 0, "a 4-event buffer took a burst of {SENT}");
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "{handled} handled + {dropped} dropped of {SENT}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn panics_become_error_frames(kind: TransportKind) {
    let p = BusPair::new(kind, |b, _| b.middleware(Recover)).await;
    p.server
        .handle_invoke("boom", |_req| async move {
            if true {
                panic!("kaboom")
            }
            Ok(Value::Null)
        })
        .await
        .unwrap();
    p.server
        .handle_stream("boom-stream", |_req, w| async move {
            w.delta_text("x").await?;
            panic!("stream kaboom")
        })
        .await
        .unwrap();
    p.settle().await;
    let err = p.client.invoke("boom", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentUnavailable);
    assert!(err.message().contains("kaboom"), "{err}");
    let mut s = p
        .client
        .stream_invoke("boom-stream", json!({}))
        .await
        .unwrap();
    s.next().await.unwrap().unwrap();
    let last = s.next().await.unwrap().unwrap();
    assert!(last.error().unwrap().message().contains("stream kaboom"));
    // The handler still serves.
    let err = p.client.invoke("boom", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentUnavailable);

    // Without the recover middleware, the bus itself answers for a panic,
    // also one raised while the handler makes its future, before any poll.
    let bare = BusPair::new(kind, |b, _| b).await;
    bare.server
        .handle_invoke(
            "boom-early",
            |_req| -> std::future::Ready<Result<Value, openagentio_core::BusError>> {
                panic!("early kaboom")
            },
        )
        .await
        .unwrap();
    bare.settle().await;
    for _ in 0..2 {
        let err = bare
            .client
            .invoke("boom-early", json!({}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::AgentUnavailable);
        assert!(err.message().contains("early kaboom"), "{err}");
    }
}

async fn retry_retries_only_retryable_failures(kind: TransportKind) {
    let policy = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let p = BusPair::new(kind, move |b, _| b.middleware(Retry::new(policy.clone()))).await;
    let flaky_calls = Arc::new(AtomicU32::new(0));
    let calls = flaky_calls.clone();
    p.server
        .handle_invoke("flaky", move |req| {
            let calls = calls.clone();
            async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 {
                    return Err(BusError::transport("try again"));
                }
                Ok(json!({"attempt": req.envelope().metadata[RETRY_ATTEMPT_KEY]}))
            }
        })
        .await
        .unwrap();
    let fatal_calls = Arc::new(AtomicU32::new(0));
    let calls = fatal_calls.clone();
    p.server
        .handle_invoke("fatal", move |_req| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(BusError::invalid("no"))
            }
        })
        .await
        .unwrap();
    let stream_calls = Arc::new(AtomicU32::new(0));
    let calls = stream_calls.clone();
    p.server
        .handle_stream("streamed-then-failed", move |_req, w| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                w.delta_text("seen").await?;
                Err(BusError::transport("lost"))
            }
        })
        .await
        .unwrap();
    p.settle().await;

    let reply = p.client.invoke("flaky", json!({})).await.unwrap();
    assert_eq!(reply.payload, Some(json!({"attempt": 3})));
    assert_eq!(flaky_calls.load(Ordering::SeqCst), 3);
    // acp.* keys do not flow back into the reply.
    assert!(!reply.metadata.contains_key(RETRY_ATTEMPT_KEY));

    assert_eq!(
        p.client
            .invoke("fatal", json!({}))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidRequest
    );
    assert_eq!(fatal_calls.load(Ordering::SeqCst), 1);

    let mut s = p
        .client
        .stream_invoke("streamed-then-failed", json!({}))
        .await
        .unwrap();
    s.next().await.unwrap().unwrap();
    let last = s.next().await.unwrap().unwrap();
    assert_eq!(last.error().unwrap().code(), ErrorCode::TransportFailure);
    assert_eq!(
        stream_calls.load(Ordering::SeqCst),
        1,
        "a stream that sent a frame was retried"
    );
}

/// A pair whose serving side (with `client_too`, both sides) dead-letters
/// and retries (2 attempts), serving `doomed`, which always fails.
async fn doomed_pair(kind: TransportKind, client_too: bool) -> BusPair {
    let policy = RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let p = BusPair::new(kind, move |b, side| {
        if side == "server" || client_too {
            b.middleware(DeadLetter)
                .middleware(Retry::new(policy.clone()))
        } else {
            b
        }
    })
    .await;
    p.server
        .handle_invoke("doomed", |_req| async move {
            Err(BusError::transport("always down"))
        })
        .await
        .unwrap();
    p
}

/// The dead letters `bus` reads, as they come.
async fn dead_letters(bus: &openagentio_core::Bus) -> mpsc::UnboundedReceiver<Envelope> {
    let (tx, rx) = mpsc::unbounded_channel();
    bus.subscribe_dead_letters(">", move |env| {
        let tx = tx.clone();
        async move {
            tx.send(env).unwrap();
            Ok(())
        }
    })
    .await
    .unwrap();
    rx
}

async fn exhausted_failures_become_dead_letters(kind: TransportKind) {
    // Middleware on the serving side only: the dead-letter reader must see the letters as sent.
    let p = doomed_pair(kind, false).await;
    p.server
        .subscribe("orders.created", |_env| async move {
            Err(BusError::invalid("cannot process"))
        })
        .await
        .unwrap();
    let mut rx = dead_letters(&p.client).await;
    p.settle().await;

    let err = p
        .client
        .invoke("doomed", json!({"order": 7}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TransportFailure);
    let dead = recv(&mut rx).await;
    assert_eq!(dead.event_type, "agent.message.received");
    assert_eq!(dead.payload, Some(json!({"order": 7})));
    assert_eq!(
        dead.metadata["acp.dlq.original_event_type"],
        json!("agent.message.received")
    );
    assert!(
        dead.metadata["acp.dlq.last_error"]
            .as_str()
            .unwrap()
            .contains("always down")
    );
    assert_eq!(dead.metadata[RETRY_ATTEMPT_KEY], json!(2), "{dead:?}");

    p.client
        .emit("orders.created", json!({"id": 1}))
        .await
        .unwrap();
    let dead = recv(&mut rx).await;
    assert_eq!(dead.event_type, "orders.created");
    assert!(
        dead.metadata["acp.dlq.last_error"]
            .as_str()
            .unwrap()
            .contains("cannot process")
    );
}

/// An event handler given a timeout that gets stuck on one event: that
/// event fails with `AGENT_TIMEOUT` (dead-lettered after its retries), and
/// the events behind it are served in order.
async fn a_stuck_event_handler_times_out_and_the_next_event_is_served(kind: TransportKind) {
    let p = doomed_pair(kind, false).await;
    let (tx, mut served) = mpsc::unbounded_channel();
    let attempts = Arc::new(AtomicUsize::new(0));
    let tries = attempts.clone();
    p.server
        .subscribe_with(
            "jobs.run",
            SubscribeOptions::new().timeout(Duration::from_millis(200)),
            move |env| {
                let tx = tx.clone();
                let tries = tries.clone();
                async move {
                    let n = env.payload_or_null()["n"].as_u64().unwrap();
                    if n == 1 {
                        tries.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<()>().await;
                    }
                    tx.send(n).unwrap();
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
    let mut dead = dead_letters(&p.client).await;
    p.settle().await;
    for n in 1..=3 {
        p.client.emit("jobs.run", json!({"n": n})).await.unwrap();
    }
    assert_eq!(recv(&mut served).await, 2);
    assert_eq!(recv(&mut served).await, 3);
    let letter = recv(&mut dead).await;
    assert_eq!(letter.payload, Some(json!({"n": 1})));
    let why = letter.metadata["acp.dlq.last_error"].as_str().unwrap();
    assert!(why.contains("timeout"), "{why}");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "each attempt had its time"
    );
}

/// Dead letters read on a bus whose middleware dead-letters and retries
/// (the recommended chain): a reader sees the original's attempt count, and
/// a reader that fails does not get its own dead letter back, for ever.
async fn dead_letter_readers_behind_middleware_see_the_original_and_do_not_loop(
    kind: TransportKind,
) {
    let p = doomed_pair(kind, true).await;
    let failing_reads = Arc::new(AtomicUsize::new(0));
    let reads = failing_reads.clone();
    p.server
        .subscribe_dead_letters(">", move |_env| {
            reads.fetch_add(1, Ordering::SeqCst);
            async move { Err(BusError::unavailable("the store is down")) }
        })
        .await
        .unwrap();
    let mut rx = dead_letters(&p.server).await;
    p.settle().await;

    p.client.invoke("doomed", json!(1)).await.unwrap_err();
    let dead = recv(&mut rx).await;
    assert_eq!(dead.metadata[RETRY_ATTEMPT_KEY], json!(2), "{dead:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Its own tries (at most the policy's 2), then it is dropped.
    let reads = failing_reads.load(Ordering::SeqCst);
    assert!((1..=2).contains(&reads), "read {reads} times");
    assert!(rx.try_recv().is_err(), "a dead letter came back");
}

async fn context_flows_through_two_nested_calls(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_invoke("outer", |req| async move {
            let inner = req.bus().invoke("middle", json!({})).await?;
            Ok(json!({"outer": context_of(req.envelope()), "middle": inner.payload}))
        })
        .await
        .unwrap();
    p.server
        .handle_invoke("middle", |req| async move {
            let inner = req.bus().invoke("inner", json!({})).await?;
            Ok(json!({"middle": context_of(req.envelope()), "inner": inner.payload}))
        })
        .await
        .unwrap();
    p.server
        .handle_invoke("inner", |req| async move { Ok(context_of(req.envelope())) })
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.server
        .subscribe("inner.done", move |env| {
            let tx = tx.clone();
            async move {
                tx.send(env).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    p.server
        .handle_invoke("emitter", |req| async move {
            req.bus().emit("inner.done", json!({})).await?;
            Ok(Value::Null)
        })
        .await
        .unwrap();
    p.settle().await;

    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let opts = CallOptions::new()
        .session("sess-1")
        .conversation("conv-1")
        .user("user-1")
        .traceparent(tp);
    let reply = p
        .client
        .invoke_with("outer", json!({}), opts.clone())
        .await
        .unwrap();
    let v = reply.payload.unwrap();
    let all = [
        v["outer"].clone(),
        v["middle"]["middle"].clone(),
        v["middle"]["inner"].clone(),
    ];
    let mut spans = std::collections::HashSet::new();
    for ctx in &all {
        assert_eq!(ctx["session_id"], "sess-1", "{v}");
        assert_eq!(ctx["conversation_id"], "conv-1");
        assert_eq!(ctx["user_id"], "user-1");
        assert_eq!(ctx["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert!(
            ctx["traceparent"]
                .as_str()
                .unwrap()
                .starts_with("00-0af7651916cd43dd8448eb211c80319c-")
        );
        assert_ne!(ctx["span_id"], "b7ad6b7169203331");
        spans.insert(ctx["span_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(spans.len(), 3, "every hop gets a new span id: {spans:?}");

    p.client
        .invoke_with("emitter", json!({}), opts)
        .await
        .unwrap();
    let event = recv(&mut rx).await;
    assert_eq!(event.session_id, "sess-1");
    assert_eq!(event.trace_id, "0af7651916cd43dd8448eb211c80319c");
}

fn context_of(env: &Envelope) -> Value {
    json!({
        "session_id": env.session_id, "conversation_id": env.conversation_id, "user_id": env.user_id,
        "tenant_id": env.tenant_id, "trace_id": env.trace_id, "span_id": env.span_id, "traceparent": env.traceparent,
    })
}

async fn tenants_are_isolated(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_invoke_with(
            "books",
            HandleOptions::new().tenant("acme"),
            |req| async move { Ok(json!({"tenant": req.envelope().tenant_id})) },
        )
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    for tenant in ["acme", "globex"] {
        let tx = tx.clone();
        p.server
            .subscribe_with(
                "audit.entry",
                SubscribeOptions::new().tenant(tenant),
                move |env| {
                    let tx = tx.clone();
                    async move {
                        tx.send((tenant, env)).unwrap();
                        Ok(())
                    }
                },
            )
            .await
            .unwrap();
    }
    p.settle().await;
    let ok = p
        .client
        .invoke_with("books", json!({}), CallOptions::new().tenant("acme"))
        .await
        .unwrap();
    assert_eq!(ok.payload, Some(json!({"tenant": "acme"})));
    assert_eq!(ok.tenant_id, "acme");
    for (other, says) in [
        (
            CallOptions::new().tenant("globex"),
            "no handler for target \"books\" in tenant \"globex\"",
        ),
        (CallOptions::new(), "no handler for target \"books\""),
    ] {
        let err = p
            .client
            .invoke_with("books", json!({}), other)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::NoHandler);
        // The target is served, for another tenant: the message says which.
        assert_eq!(err.message(), says);
    }
    assert_eq!(
        p.client
            .invoke_with("books", json!({}), CallOptions::new().tenant("a.b"))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidRequest
    );
    p.client
        .publish(Envelope::new("audit.entry").with_tenant("globex"))
        .await
        .unwrap();
    let (tenant, env) = recv(&mut rx).await;
    assert_eq!((tenant, env.tenant_id.as_str()), ("globex", "globex"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        rx.try_recv().is_err(),
        "the event leaked into another tenant"
    );
}

async fn metadata_is_inherited_except_acp_keys(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_stream("meta", |req, w| async move {
            w.delta_text(
                req.envelope()
                    .metadata
                    .get("k")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            )
            .await
        })
        .await
        .unwrap();
    p.settle().await;
    let opts = CallOptions::new()
        .meta("k", "v")
        .meta("dingtalk.chat", json!({"id": 1}))
        .meta("acp.secret", 1);
    let mut s = p
        .client
        .stream_invoke_with("meta", json!({}), opts)
        .await
        .unwrap();
    while let Some(f) = s.next().await {
        let f = f.unwrap();
        assert_eq!(f.metadata.get("k"), Some(&json!("v")));
        assert_eq!(f.metadata.get("dingtalk.chat"), Some(&json!({"id": 1})));
        assert!(
            f.metadata.keys().all(|k| !k.starts_with("acp.")),
            "{:?}",
            f.metadata
        );
    }
}

async fn workers_in_a_queue_group_share_invokes(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let second = match &p.nats {
        Some(n) => {
            openagentio_testkit::nats_bus(
                &n.url(),
                openagentio_core::Bus::builder().agent_id("server-2"),
            )
            .await
        }
        None => openagentio_core::Bus::builder()
            .shared_transport(p.server.transport().clone())
            .agent_id("server-2")
            .build(),
    };
    for bus in [&p.server, &second] {
        bus.handle_invoke("work", |req| async move { Ok(json!(req.bus().agent_id())) })
            .await
            .unwrap();
        bus.transport().flush().await.unwrap();
    }
    let mut seen = std::collections::HashMap::new();
    for _ in 0..60 {
        let r = p.client.invoke("work", json!({})).await.unwrap();
        *seen
            .entry(r.payload.unwrap().as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both workers should serve: {seen:?}");
    assert_eq!(seen.values().sum::<i32>(), 60);
}

async fn invoke_of_a_stream_target_gets_only_the_answer(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_stream("talk", |_req, w| async move {
            w.started(json!({})).await?;
            for t in ["a", "b", "c"] {
                w.delta_text(t).await?;
            }
            w.finish(json!("abc")).await
        })
        .await
        .unwrap();
    p.settle().await;
    // invoke (like any reference-SDK caller) does not ask for frames: one final frame, seq 0.
    let reply = p.client.invoke("talk", json!({})).await.unwrap();
    assert_eq!(reply.seq, 0);
    assert_eq!(reply.payload, Some(json!({"result": "abc"})));
    // stream_invoke asks for them all.
    assert_eq!(collect_seqs(&p, "talk").await.unwrap(), [0, 1, 2, 3, 4]);
}

async fn drain_finishes_in_flight_calls_and_stops_intake(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    p.server
        .handle_invoke("quick", move |_req| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.send(());
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(json!("done"))
            }
        })
        .await
        .unwrap();
    p.server
        .handle_stream("stubborn", |_req, w| async move {
            w.delta_text("working").await?;
            // Ignores cancellation: the drain must end its stream for it.
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        })
        .await
        .unwrap();
    p.settle().await;
    let client = p.client.clone();
    let quick = tokio::spawn(async move { client.invoke("quick", json!({})).await });
    recv(&mut started_rx).await;
    let mut stubborn = p.client.stream_invoke("stubborn", json!({})).await.unwrap();
    stubborn.next().await.unwrap().unwrap();
    let started = Instant::now();
    let all_finished = p.server.drain(Duration::from_millis(800)).await;
    assert!(!all_finished);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(quick.await.unwrap().unwrap().payload, Some(json!("done")));
    let last = stubborn.next().await.unwrap().unwrap();
    assert!(last.is_final);
    assert_eq!(last.error().unwrap().code(), ErrorCode::AgentUnavailable);
    let err = p.client.invoke("quick", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoHandler);
    // Intake stays stopped: a handler registered after the drain (a bridge
    // reconnecting during shutdown, say) is refused, and nothing serves.
    let refused = p
        .server
        .handle_invoke("quick", |_req| async { Ok(json!("late")) })
        .await
        .err()
        .expect("registered after the drain");
    assert_eq!(refused.code(), ErrorCode::AgentUnavailable, "{refused}");
    assert!(
        p.server
            .subscribe("late.event", |_e| async { Ok(()) })
            .await
            .is_err()
    );
    let err = p.client.invoke("quick", json!({})).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoHandler);
    // Its calls still work.
    p.client
        .handle_invoke("elsewhere", |_req| async { Ok(json!("here")) })
        .await
        .unwrap();
    p.settle().await;
    let here = p.server.invoke("elsewhere", json!({})).await.unwrap();
    assert_eq!(here.payload, Some(json!("here")));
}

/// Hands every message it gets to a channel.
struct Catcher(mpsc::UnboundedSender<Message>);

impl Sink for Catcher {
    fn deliver(&self, msg: Message) {
        let _ = self.0.send(msg);
    }
}

async fn requests_without_a_deadline_end_at_the_serve_timeout(kind: TransportKind) {
    let limit = Duration::from_millis(300);
    let grace = Duration::from_millis(200);
    let p = openagentio_testkit::BusPair::new(kind, move |b, side| {
        if side == "server" {
            b.serve_timeout(limit).cancel_grace(grace)
        } else {
            b
        }
    })
    .await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    p.server
        .handle_invoke("wait", move |req| {
            let seen_tx = seen_tx.clone();
            async move {
                let started = Instant::now();
                tokio::select! {
                    _ = req.cancelled() => {
                        seen_tx.send(started.elapsed()).unwrap();
                        Err(BusError::unavailable("stopped"))
                    }
                    _ = tokio::time::sleep(Duration::from_millis(800)) => Ok(json!("done")),
                }
            }
        })
        .await
        .unwrap();
    // One that does not look at its cancellation: dropped after the grace.
    p.server
        .handle_invoke("deaf", |_req| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(Value::Null)
        })
        .await
        .unwrap();
    p.settle().await;

    // As a reference SDK asks: a reply subject in the body, no `acp.timeout_ms`.
    let t = p.client.transport().clone();
    let inbox = format!("{}.ref", t.new_inbox_prefix());
    let (reply_tx, mut replies) = mpsc::unbounded_channel();
    let _sub = t
        .subscribe(&inbox, None, Arc::new(Catcher(reply_tx)))
        .await
        .unwrap();
    t.flush().await.unwrap();
    let ask_as_a_reference_caller = |target: &str| {
        let mut req = Envelope::new("agent.message.received").with_payload(json!({}));
        req.reply_to = inbox.as_str().into();
        let subject = p.client.subjects().invoke(target, "");
        t.publish(Message::envelope(subject, req))
    };
    let mut error_reply = async || {
        let reply = tokio::time::timeout(LIMIT, replies.recv())
            .await
            .unwrap()
            .unwrap();
        let reply = match reply.body {
            Body::Envelope(e) => Arc::unwrap_or_clone(e),
            Body::Bytes(b) => openagentio_core::codec::decode(&b).unwrap(),
        };
        assert_eq!(reply.event_type, "agent.response.error");
        let err = reply.error().unwrap();
        assert_eq!(err.code(), ErrorCode::AgentTimeout, "{err}");
        assert!(err.message().contains("serve timeout"), "{err}");
    };

    ask_as_a_reference_caller("wait").await.unwrap();
    let took = tokio::time::timeout(LIMIT, seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        took >= limit - Duration::from_millis(20) && took < Duration::from_secs(2),
        "cancelled after {took:?}"
    );
    error_reply().await;

    let started = Instant::now();
    ask_as_a_reference_caller("deaf").await.unwrap();
    error_reply().await;
    let took = started.elapsed();
    assert!(
        took >= limit + grace - Duration::from_millis(20) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    assert_eq!(p.server.stats().abandoned_handlers, 1);

    // A caller that sends its deadline is held to that, not to the serve timeout.
    let answer = p
        .client
        .invoke_with(
            "wait",
            json!({}),
            CallOptions::new().timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    assert_eq!(answer.payload_or_null(), &json!("done"));
}

async fn handlers_are_cancelled_at_the_callers_deadline_without_a_cancel_message(
    kind: TransportKind,
) {
    let p = BusPair::plain(kind).await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    p.server
        .handle_stream("wait", move |req, w| {
            let seen_tx = seen_tx.clone();
            async move {
                w.delta_text("working").await?;
                let started = Instant::now();
                tokio::select! {
                    _ = req.cancelled() => seen_tx.send(started.elapsed()).unwrap(),
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                w.finish(json!("done")).await
            }
        })
        .await
        .unwrap();
    p.settle().await;

    // A caller that sent a 300 ms deadline and then went silent (its process
    // died): no cancellation message will come.
    let t = p.client.transport().clone();
    let mut req = Envelope::new("agent.message.received")
        .with_payload(json!({}))
        .with_metadata("acp.timeout_ms", json!(300));
    req.reply_to = format!("{}.gone", t.new_inbox_prefix()).into();
    let subject = p.client.subjects().invoke("wait", "");
    let sent = Instant::now();
    t.publish(Message::envelope(subject, req)).await.unwrap();
    let waited = tokio::time::timeout(LIMIT, seen.recv())
        .await
        .expect("the handler was not cancelled at the caller's deadline")
        .unwrap();
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(2),
        "cancelled {took:?} after the request ({waited:?} into the handler)"
    );
}

/// However a call ends (answered, failed, panicked, timed out, refused for
/// want of a handler, a stream read to its end or dropped after its first
/// frame), neither side keeps anything of it: the caller's open calls and
/// the server's requests in flight come back to zero. Calls run 20 at a time.
async fn no_call_state_is_left_behind_however_calls_end(kind: TransportKind) {
    let p = BusPair::new(kind, |b, _| b.middleware(Recover)).await;
    p.server
        .handle_invoke("ok", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    p.server
        .handle_invoke("fail", |_req| async move { Err(BusError::invalid("no")) })
        .await
        .unwrap();
    p.server
        .handle_invoke("panic", |_req| async move {
            if true {
                panic!("handler bug")
            }
            Ok(Value::Null)
        })
        .await
        .unwrap();
    p.server
        .handle_invoke("slow", |req| async move {
            req.cancelled().await;
            Err(BusError::timeout("cancelled"))
        })
        .await
        .unwrap();
    p.server
        .handle_stream("words", |_req, w| async move {
            for i in 0..20 {
                w.delta_text(format!("w{i} ")).await?;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            w.finish(Value::Null).await
        })
        .await
        .unwrap();
    p.settle().await;
    let client = &p.client;
    let calls = (0..20).map(|i| async move {
        assert_eq!(
            client
                .invoke("ok", json!({"i": i}))
                .await
                .unwrap()
                .payload_or_null(),
            &json!({"i": i})
        );
        let code = |r: Result<Envelope, BusError>| r.unwrap_err().code();
        assert_eq!(
            code(client.invoke("fail", json!({})).await),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(client.invoke("panic", json!({})).await),
            ErrorCode::AgentUnavailable
        );
        let quick = CallOptions::new().timeout(Duration::from_millis(100));
        assert_eq!(
            code(client.invoke_with("slow", json!({}), quick).await),
            ErrorCode::AgentTimeout
        );
        assert_eq!(
            code(client.invoke("nobody", json!({})).await),
            ErrorCode::NoHandler
        );
        let mut whole = client.stream_invoke("words", json!({})).await.unwrap();
        let mut frames = 0;
        while let Some(frame) = whole.next().await {
            frame.unwrap();
            frames += 1;
        }
        assert_eq!(frames, 21);
        let mut dropped = client.stream_invoke("words", json!({})).await.unwrap();
        dropped.next().await.unwrap().unwrap();
        drop(dropped);
    });
    futures::future::join_all(calls).await;
    let deadline = Instant::now() + LIMIT;
    loop {
        // (the client's open calls, the server's requests in flight, and the
        // same the other way round, which nothing here uses)
        let state = (
            p.client.open_calls(),
            p.server.in_flight(),
            p.server.open_calls(),
            p.client.in_flight(),
        );
        if state == (0, 0, 0, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {state:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends the time it is dropped: held by a handler, it tells when the
/// handler's future was dropped.
struct DropSignal(mpsc::UnboundedSender<Instant>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.send(Instant::now());
    }
}

/// A handler that never looks at its cancellation (stuck on a call with no
/// timeout of its own) is dropped the cancellation grace after its caller's
/// deadline cancelled it: its task and its place under a concurrency limit
/// come back, and the drop is counted. A handler that ends within the grace
/// after its cancellation is left to end.
async fn a_handler_deaf_to_its_cancellation_is_dropped_after_the_grace(kind: TransportKind) {
    let grace = Duration::from_millis(300);
    let p = BusPair::new(kind, move |b, side| {
        if side == "server" {
            b.cancel_grace(grace)
        } else {
            b
        }
    })
    .await;
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    p.server
        .handle_invoke_with(
            "deaf",
            HandleOptions::new().max_concurrency(1),
            move |_req| {
                let signal = DropSignal(dropped_tx.clone());
                async move {
                    let _signal = signal;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(Value::Null)
                }
            },
        )
        .await
        .unwrap();
    p.server
        .handle_invoke("slow-to-stop", |req| async move {
            req.cancelled().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err(BusError::unavailable("stopped"))
        })
        .await
        .unwrap();
    p.settle().await;
    let quick = || CallOptions::new().timeout(Duration::from_millis(200));
    let idle = |bus: &openagentio_core::Bus| {
        let bus = bus.clone();
        async move {
            let deadline = Instant::now() + LIMIT;
            while bus.in_flight() > 0 {
                assert!(Instant::now() < deadline, "still serving");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };

    for round in 1..=2u64 {
        let started = Instant::now();
        let err = p
            .client
            .invoke_with("deaf", json!({}), quick())
            .await
            .unwrap_err();
        // Served, not refused at the limit of one: the first one's place came back.
        assert_eq!(err.code(), ErrorCode::AgentTimeout, "round {round}: {err}");
        let at = recv(&mut dropped).await - started;
        // Its deadline (200 ms; the caller then sends its cancellation),
        // then the grace (300 ms).
        assert!(
            at >= Duration::from_millis(480) && at < Duration::from_secs(3),
            "round {round}: dropped after {at:?}"
        );
        idle(&p.server).await;
        assert_eq!(p.server.stats().abandoned_handlers, round);
        assert_eq!(p.server.stats().refused_requests, 0);
    }

    let err = p
        .client
        .invoke_with("slow-to-stop", json!({}), quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentTimeout);
    idle(&p.server).await;
    assert_eq!(p.server.stats().abandoned_handlers, 2);
}

/// A caller that closes (a service shutting down with streams open through
/// it) tells the handlers of its calls still open to stop: they run in other
/// processes, and would otherwise run on for a caller that is gone.
async fn closing_a_bus_tells_the_handlers_of_its_open_calls_to_stop(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    p.server
        .handle_stream("long", move |req, w| {
            let tx = tx.clone();
            async move {
                w.started(json!({})).await?;
                req.cancelled().await;
                tx.send(()).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    p.settle().await;
    let mut s = p.client.stream_invoke("long", json!(null)).await.unwrap();
    assert_eq!(s.next().await.unwrap().unwrap().seq, 0);
    p.client.close().await;
    tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("the handler was not told to stop")
        .unwrap();
    drop(s);
}

/// A serving bus that closes (without a drain first) ends the calls it is
/// still serving with an error frame, so that their callers hear at once,
/// not at their deadline; the handlers are told to stop.
async fn closing_a_serving_bus_ends_its_calls_with_an_error(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_stream("held", |req, w| async move {
            w.started(json!({})).await?;
            req.cancelled().await;
            Err(BusError::unavailable("stopped"))
        })
        .await
        .unwrap();
    p.settle().await;
    let opts = CallOptions::new().timeout(Duration::from_secs(20));
    let mut s = p
        .client
        .stream_invoke_with("held", json!(null), opts)
        .await
        .unwrap();
    assert_eq!(s.next().await.unwrap().unwrap().seq, 0);
    let started = std::time::Instant::now();
    p.server.close().await;
    let end = tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("no end within 5 s")
        .unwrap();
    let e = match end {
        Ok(frame) => frame.error().expect("an error frame"),
        Err(e) => e,
    };
    assert_eq!(e.code(), ErrorCode::AgentUnavailable, "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The closed bus refuses what it is asked, and says a retry cannot help.
    let refused = [
        p.server.invoke("held", json!(null)).await.unwrap_err(),
        p.server.emit("x", json!(null)).await.unwrap_err(),
        p.server
            .handle_invoke("again", |_r| async { Ok(json!(null)) })
            .await
            .err()
            .expect("no registration on a closed bus"),
    ];
    for e in refused {
        assert_eq!(e.code(), ErrorCode::TransportFailure, "{e}");
        assert!(!e.retryable(), "{e}");
    }
}

/// An envelope no reader would take is refused where it is sent, the same
/// way on both transports, instead of being thrown away where it arrives:
/// JSON nested deeper than 128 levels is `CODEC_FAILURE`, a `spec_version`
/// other than acp/1.x `INVALID_REQUEST`; an empty `event_id` gets one.
async fn what_no_reader_takes_is_refused_at_the_sender(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    p.server
        .subscribe("deep.>", move |env| {
            let tx = tx.clone();
            async move {
                tx.send(env).unwrap();
                Ok(())
            }
        })
        .await
        .unwrap();
    p.server
        .handle_invoke("deep.answer", |req| async move {
            let levels = req.payload()["levels"].as_u64().unwrap_or(0) as usize;
            let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            Ok(serde_json::from_str::<Value>(&text).unwrap_or(Value::Null))
        })
        .await
        .unwrap();
    p.settle().await;
    let nested = |levels: usize| -> Value {
        let text = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        serde_json::from_str(&text).unwrap()
    };
    // 126 levels in the payload (127 with the envelope) go; 127 do not.
    p.client
        .emit("deep.ok", nested(126))
        .await
        .expect("126 levels go");
    assert_eq!(recv(&mut events).await.payload, Some(nested(126)));
    let err = p.client.emit("deep.no", nested(127)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::CodecFailure, "{err}");
    let err = p
        .client
        .invoke("deep.answer", nested(127))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::CodecFailure, "{err}");
    // A handler's answer too deep to carry fails the call, not silently.
    let err = p
        .client
        .invoke("deep.answer", json!({"levels": 127}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::CodecFailure, "{err}");
    let ok = p
        .client
        .invoke("deep.answer", json!({"levels": 126}))
        .await
        .unwrap();
    assert_eq!(ok.payload, Some(nested(126)));

    let mut odd = Envelope::new("deep.version").with_payload(json!(1));
    odd.spec_version = "acp/2.0".into();
    let err = p.client.publish(odd).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidRequest, "{err}");
    let mut no_id = Envelope::new("deep.id").with_payload(json!(2));
    no_id.event_id = "".into();
    p.client.publish(no_id).await.unwrap();
    let got = recv(&mut events).await;
    assert_eq!(got.payload, Some(json!(2)));
    assert!(!got.event_id.is_empty());
    let mut request = Envelope::new("agent.message.received").with_payload(json!({"levels": 1}));
    request.event_id = "".into();
    let answer = p
        .client
        .stream_request("deep.answer", request, CallOptions::new())
        .await
        .unwrap()
        .final_payload()
        .await
        .unwrap();
    assert_eq!(answer, json!([]));
    assert!(
        events.try_recv().is_err(),
        "an event arrived that was refused"
    );
}

/// `invoke` with an idle timeout of a stream handler that keeps sending:
/// its deltas are signs of life (the answer alone comes back), and silence
/// longer than the idle timeout still ends the call.
async fn an_idle_timeout_on_invoke_counts_a_stream_handlers_deltas(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    p.server
        .handle_stream("ticker", |req, w| async move {
            let pause = Duration::from_millis(req.payload()["pause_ms"].as_u64().unwrap_or(0));
            for i in 0..8 {
                tokio::time::sleep(pause).await;
                w.delta_text(i.to_string()).await?;
            }
            w.finish(json!("done")).await
        })
        .await
        .unwrap();
    p.settle().await;
    let opts = || CallOptions::new().idle_timeout(Duration::from_millis(400));
    let answer = p
        .client
        .invoke_with("ticker", json!({"pause_ms": 100}), opts())
        .await
        .expect("deltas every 100 ms keep a 400 ms idle timeout from firing");
    assert!(answer.is_terminal());
    assert_eq!(answer.payload, Some(json!({"result": "done"})));
    let err = p
        .client
        .invoke_with("ticker", json!({"pause_ms": 800}), opts())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentTimeout, "{err}");
    assert!(err.message().contains("idle"), "{err}");
}

/// A request whose cancel notice came first is not served: its handler never
/// runs (over NATS the two travel on different subscriptions, and a server
/// that froze for a while delivers a request its caller gave up on together
/// with the notice). It is counted, and answered with an error frame.
async fn a_request_cancelled_before_it_arrives_is_not_served(kind: TransportKind) {
    let p = BusPair::plain(kind).await;
    let ran = Arc::new(AtomicUsize::new(0));
    let count = ran.clone();
    p.server
        .handle_invoke("stale.work", move |req| {
            count.fetch_add(1, Ordering::SeqCst);
            async move { Ok(req.into_payload()) }
        })
        .await
        .unwrap();
    p.settle().await;
    let request =
        Envelope::new(openagentio_core::event_type::MESSAGE_RECEIVED).with_payload(json!("late"));
    // The notice the caller's bus sends when it gives up, ahead of its request.
    let mut notice = Envelope::new(openagentio_core::CANCEL_EVENT);
    notice.correlation_id = request.event_id.clone();
    let cancel_subject = p.client.subjects().cancel();
    p.client
        .transport()
        .publish(Message::envelope(cancel_subject, notice))
        .await
        .unwrap();
    p.settle().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = p
        .client
        .stream_request("stale.work", request, CallOptions::new())
        .await
        .unwrap()
        .final_payload()
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentUnavailable, "{err}");
    assert!(err.to_string().contains("cancelled"), "{err}");
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the handler ran");
    assert_eq!(p.server.stats().stale_requests, 1);
    // Other requests to the target are served.
    let reply = p.client.invoke("stale.work", json!("fresh")).await.unwrap();
    assert_eq!(reply.payload, Some(json!("fresh")));
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}
