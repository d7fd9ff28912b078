//! The flow-control windows of many streams at once over NATS, with a real
//! nats-server: every stream's frames come back through the caller's one
//! reply subscription, which the client holds to a fixed number of messages
//! (and drops more, as a slow consumer). Proves that the windows a caller
//! offers shrink as streams pile up, so that together they stay within that
//! subscription's buffer, and come back as streams end; and that many fast
//! streams at once, each read slowly, all end complete.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use openagentio_core::context::WINDOW_KEY;
use openagentio_core::{Bus, CallOptions};
use openagentio_nats::{NatsOptions, NatsTransport};
use openagentio_testkit::{NatsServer, nats_bus};
use serde_json::{Value, json};

const BUFFER: usize = 4096;
const STREAMS: usize = 12;
const FRAMES: u64 = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_share_the_reply_buffer_and_lose_nothing() {
    let nats = NatsServer::start();
    let transport = NatsTransport::connect(
        NatsOptions::new(nats.url())
            .name("caller")
            .subscription_capacity(BUFFER),
    )
    .await
    .unwrap();
    let caller = Bus::builder()
        .agent_id("caller")
        .transport(transport)
        .build();
    let server = nats_bus(&nats.url(), Bus::builder().agent_id("server")).await;
    let windows = Arc::new(Mutex::new(Vec::new()));
    let seen = windows.clone();
    server
        .handle_stream("burst", move |req, w| {
            let offered = req
                .envelope()
                .metadata
                .get(WINDOW_KEY)
                .and_then(Value::as_u64);
            seen.lock()
                .unwrap()
                .push(offered.expect("a window is offered"));
            async move {
                for _ in 0..FRAMES {
                    w.delta_text("abcdefgh").await?;
                }
                w.finish(json!("done")).await
            }
        })
        .await
        .unwrap();

    // All open at once, none read for a while: the handlers fill what they
    // are offered.
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        let opts = CallOptions::default().timeout(Duration::from_secs(60));
        streams.push(
            caller
                .stream_invoke_with("burst", json!(null), opts)
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let offered = windows.lock().unwrap().clone();
    assert_eq!(offered.len(), STREAMS);
    // Frames a window lets out: itself, a quarter for the notices, the final.
    let outstanding: u64 = offered.iter().map(|w| w + w / 4 + 1).sum();
    assert!(
        outstanding <= BUFFER as u64,
        "windows {offered:?} let {outstanding} frames out, more than the {BUFFER} the reply \
         subscription holds"
    );
    let (largest, smallest) = (
        *offered.iter().max().unwrap(),
        *offered.iter().min().unwrap(),
    );
    assert!(largest > smallest, "{offered:?}");

    let reads = streams.into_iter().map(|mut s| async move {
        let mut deltas = 0;
        while let Some(frame) = s.next().await {
            let frame = frame.expect("no frame is lost");
            if frame.is_terminal() {
                return (deltas, frame.payload);
            }
            deltas += 1;
            if deltas % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        panic!("ended without a terminal frame");
    });
    for (deltas, last) in futures::future::join_all(reads).await {
        assert_eq!(deltas, FRAMES);
        assert_eq!(last, Some(json!({"result": "done"})));
    }
    assert_eq!(caller.transport().stats().dropped, 0);

    // The streams ended: the next one is offered a whole window again.
    windows.lock().unwrap().clear();
    let s = caller.stream_invoke("burst", json!(null)).await.unwrap();
    s.final_payload().await.unwrap();
    assert_eq!(windows.lock().unwrap()[0], largest);
}

/// More slow streams than the reply subscription can hold (the smallest
/// window times their number overflows it): the transport drops frames,
/// and every stream still ends soon after, complete or with a typed error
/// naming the loss, none waiting for its deadline (a stream whose whole
/// window was dropped used to, its handler waiting for a notice). Whether
/// the client drops depends on how far its reader gets ahead of the
/// subscription's task: a round that happened to drop nothing is run again
/// with more streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_reply_buffer_end_in_time_when_frames_are_dropped() {
    let nats = NatsServer::start();
    let server = nats_bus(&nats.url(), Bus::builder().agent_id("server")).await;
    server
        .handle_stream("burst", |_req, w| async move {
            for _ in 0..300 {
                w.delta_text("abcdefgh").await?;
            }
            w.finish(json!("done")).await
        })
        .await
        .unwrap();
    for many in [50, 200, 400] {
        if slow_streams_end_in_time(&nats, many).await > 0 {
            return;
        }
        eprintln!("{many} streams: nothing was dropped; again with more");
    }
    panic!("nothing was dropped: the test does not test");
}

/// Runs `many` streams of `burst`, unread for a while, through a reply
/// subscription that holds 512 messages; checks that each ends in time,
/// complete or with `BACKPRESSURE_DROP`. Returns how many messages the
/// client dropped.
async fn slow_streams_end_in_time(nats: &NatsServer, many: usize) -> u64 {
    const SMALL: usize = 512;
    let transport = NatsTransport::connect(
        NatsOptions::new(nats.url())
            .name("caller")
            .subscription_capacity(SMALL),
    )
    .await
    .unwrap();
    let caller = Bus::builder()
        .agent_id("caller")
        .transport(transport)
        .build();
    let mut streams = Vec::new();
    for _ in 0..many {
        let opts = CallOptions::default().timeout(Duration::from_secs(60));
        streams.push(
            caller
                .stream_invoke_with("burst", json!(null), opts)
                .await
                .unwrap(),
        );
    }
    // Unread for a while: the handlers send what they may, more than fits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = std::time::Instant::now();
    let reads = streams.into_iter().map(|mut s| async move {
        while let Some(frame) = s.next().await {
            match frame {
                Ok(f) if f.is_terminal() => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        panic!("ended without a terminal frame");
    });
    let outcomes = futures::future::join_all(reads).await;
    let took = started.elapsed();
    for outcome in &outcomes {
        if let Err(e) = outcome {
            assert_eq!(
                e.code(),
                openagentio_core::ErrorCode::BackpressureDrop,
                "{e}"
            );
        }
    }
    let complete = outcomes.iter().filter(|o| o.is_ok()).count();
    eprintln!("{complete} of {many} complete, the rest lost frames; {took:?}");
    // Well before the streams' 60 s deadline: at most about a second to see
    // a gap, or the 10 s of silence after a drop, and scheduling slack.
    assert!(took < Duration::from_secs(30), "the streams took {took:?}");
    let dropped = caller.transport().stats().dropped;
    caller.close().await;
    dropped
}

/// Messages another subscription of the caller's connection dropped do not
/// end a stream: a slow handler that stays silent past the 10 s a stream
/// waits after a drop of its own still answers. (Drops are counted per
/// subscription; counted for the whole connection, this stream ended with
/// `BACKPRESSURE_DROP`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_subscriptions_drops_do_not_end_a_silent_stream() {
    use openagentio_core::transport::{Message, Sink};

    /// Holds up its subscription at the first message, so what comes
    /// behind it overflows the client's buffer.
    struct Stuck(std::sync::atomic::AtomicBool);
    impl Sink for Stuck {
        fn deliver(&self, _msg: Message) {
            if !self.0.swap(true, std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(2));
            }
        }
    }

    let nats = NatsServer::start();
    let transport = NatsTransport::connect(
        NatsOptions::new(nats.url())
            .name("caller")
            .subscription_capacity(64),
    )
    .await
    .unwrap();
    let caller = Bus::builder()
        .agent_id("caller")
        .transport(transport.clone())
        .build();
    let server = nats_bus(&nats.url(), Bus::builder().agent_id("server")).await;
    server
        .handle_stream("slow.answer", |_req, w| async move {
            tokio::time::sleep(Duration::from_millis(11_500)).await;
            w.finish(json!("late but whole")).await
        })
        .await
        .unwrap();
    let stuck = Arc::new(Stuck(false.into()));
    let flood_subject = caller.subjects().event("flood.events", "");
    let _flooded = openagentio_core::Transport::subscribe(&transport, &flood_subject, None, stuck)
        .await
        .unwrap();
    caller.transport().flush().await.unwrap();
    let opts = CallOptions::default().timeout(Duration::from_secs(30));
    let stream = caller
        .stream_invoke_with("slow.answer", json!(null), opts)
        .await
        .unwrap();
    for i in 0..1000 {
        server
            .publish(openagentio_core::Envelope::new("flood.events").with_payload(json!(i)))
            .await
            .unwrap();
    }
    server.transport().flush().await.unwrap();
    let answer = stream.final_payload().await;
    assert!(
        caller.transport().stats().dropped > 0,
        "the flooded subscription dropped nothing: the test does not test"
    );
    assert_eq!(answer.unwrap(), json!({"result": "late but whole"}));
}
