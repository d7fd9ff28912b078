//! Faults of the NATS server under load, with a real nats-server.
//!
//! Proves that:
//! - when the server is killed (SIGKILL) while 500 invokes (and a few streams)
//!   are in flight against a slow handler, every call ends within its 3 s
//!   timeout plus a small margin, with a result or a typed [`BusError`]: none
//!   hangs, none panics;
//! - calls made while the server is down also end in time with a typed error;
//! - once the server restarts on the same port, the same `Bus` instances (not
//!   rebuilt) reconnect by themselves and serve invokes and streams again;
//! - while the server is down, the client buffers publishes until its send
//!   buffer is full; past that, a publish fails with `TRANSPORT_FAILURE` and a
//!   call (even one that must first subscribe its reply inbox) with
//!   `AGENT_TIMEOUT`, each within its timeout, instead of waiting for the
//!   server to come back; after the restart both work again. A stream
//!   handler whose frames the client holds is stopped at the request's
//!   deadline (its write fails, it is cancelled) rather than at the restart.
//! - registering a handler or a subscription while the server is down
//!   returns at once and serves once the server is back (the client replays
//!   it); once the client's send buffer is full, registering fails with
//!   `TRANSPORT_FAILURE` within the bus's timeout and leaves nothing serving,
//!   as does a registration whose caller stops waiting; so does one that a
//!   connected but frozen server (SIGSTOP) never confirms;
//! - closing a bus while the server is down returns at once, and while it
//!   is frozen within about two seconds;
//! - a drain hands on the requests already on their way to it, even with
//!   other traffic on the connection;
//! - when a member of a two-server cluster dies, buses that were told only
//!   of it fail over to the other (learnt from the cluster) and serve on;
//! - a configured list of servers (a comma-separated string or a list) whose
//!   first member is down connects to a live one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use openagentio_core::{Bus, BusError, CallOptions, ErrorCode};
use openagentio_testkit::{NatsServer, free_port, nats_bus};
use serde_json::{Value, json};

const IN_FLIGHT: usize = 500;
const STREAMS: usize = 10;
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// Scheduling slack allowed past a call's own timeout.
const MARGIN: Duration = Duration::from_millis(1500);
/// The timeout of the buses of the outage tests.
const SHORT_TIMEOUT: Duration = Duration::from_secs(2);
const HANDLER_DELAY: Duration = Duration::from_millis(200);

/// How one call ended.
#[derive(Debug)]
enum Outcome {
    Ok,
    Failed(ErrorCode),
    /// Still running at timeout + margin: the failure this test exists to catch.
    Hung,
}

async fn wait_until(what: &str, limit: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Runs `call` and classifies its end, measuring that it ends in time.
async fn timed<F>(call: F) -> (Outcome, Duration)
where
    F: std::future::Future<Output = Result<(), BusError>>,
{
    let start = Instant::now();
    let outcome = match tokio::time::timeout(CALL_TIMEOUT + MARGIN, call).await {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(e)) => Outcome::Failed(e.code()),
        Err(_) => Outcome::Hung,
    };
    (outcome, start.elapsed())
}

/// A bus on `nats` whose calls and registrations time out after SHORT_TIMEOUT.
async fn short_timeout_bus(nats: &NatsServer, agent: &str) -> Bus {
    let builder = Bus::builder()
        .agent_id(agent)
        .default_timeout(SHORT_TIMEOUT);
    nats_bus(&nats.url(), builder).await
}

/// Kills the server and gives its clients time to notice.
async fn kill_and_settle(nats: &mut NatsServer) {
    nats.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// `probe` finds no handler for any of `targets`.
async fn assert_unserved(probe: &Bus, targets: &[&str]) {
    for target in targets {
        let err = probe.invoke(target, json!(1)).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::NoHandler, "{target}: {err}");
    }
}

/// Registers an echo handler on `target` of `bus` and calls it from `probe`.
async fn register_and_call(bus: &Bus, probe: &Bus, target: &str) {
    bus.handle_invoke(target, |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    let reply = probe.invoke(target, json!(target)).await.unwrap();
    assert_eq!(reply.payload, Some(json!(target)));
}

/// Starts registering an echo handler on `target` and stops waiting after
/// 500 ms; panics if the registration was done by then.
async fn give_up_registering(bus: &Bus, target: &str) {
    let registering = bus.handle_invoke(target, |req| async move { Ok(req.into_payload()) });
    let gave_up = tokio::time::timeout(Duration::from_millis(500), registering).await;
    assert!(
        gave_up.is_err(),
        "{target}: registered while it should wait"
    );
}

async fn invoke_slow(bus: &Bus, i: usize) -> Result<(), BusError> {
    let reply = bus
        .invoke_with(
            "slow",
            json!({"i": i}),
            CallOptions::new().timeout(CALL_TIMEOUT),
        )
        .await?;
    assert_eq!(
        reply.payload,
        Some(json!({"i": i})),
        "a reply to another call"
    );
    Ok(())
}

async fn stream_ticks(bus: &Bus, n: u64, timeout: Duration) -> Result<(), BusError> {
    let mut s = bus
        .stream_invoke_with("ticks", json!(n), CallOptions::new().timeout(timeout))
        .await?;
    let mut seqs = Vec::new();
    while let Some(frame) = s.next().await {
        let frame = frame?;
        if let Some(e) = frame.error() {
            return Err(e);
        }
        seqs.push(frame.seq);
    }
    assert_eq!(
        seqs,
        (0..=n).collect::<Vec<_>>(),
        "frames in order, once each"
    );
    Ok(())
}

fn tally(outcomes: &[(Outcome, Duration)]) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for (o, _) in outcomes {
        let key = match o {
            Outcome::Ok => "ok".to_owned(),
            Outcome::Failed(c) => c.to_string(),
            Outcome::Hung => "HUNG".to_owned(),
        };
        *t.entry(key).or_insert(0) += 1;
    }
    t
}

/// Every call ended, in time, with a result or a typed error.
fn assert_all_ended_in_time(what: &str, outcomes: &[(Outcome, Duration)]) {
    let t = tally(outcomes);
    let slowest = outcomes.iter().map(|(_, d)| *d).max().unwrap_or_default();
    assert!(
        !t.contains_key("HUNG"),
        "{what}: calls hung past timeout + margin: {t:?}"
    );
    assert!(
        slowest <= CALL_TIMEOUT + MARGIN,
        "{what}: slowest call took {slowest:?}: {t:?}"
    );
    for (o, d) in outcomes {
        if let Outcome::Failed(code) = o {
            assert!(
                matches!(
                    code,
                    ErrorCode::AgentTimeout
                        | ErrorCode::TransportFailure
                        | ErrorCode::AgentUnavailable
                        | ErrorCode::NoHandler
                ),
                "{what}: unexpected error code {code} after {d:?}"
            );
        }
    }
    eprintln!("{what}: {t:?}, slowest {slowest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_server_under_load_fails_calls_in_time_and_the_bus_recovers() {
    tokio::time::timeout(Duration::from_secs(90), scenario())
        .await
        .expect("the scenario finished within 90 s");
}

async fn scenario() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let builder = |id: &str| Bus::builder().agent_id(id).default_timeout(CALL_TIMEOUT);
    let server = nats_bus(&url, builder("server")).await;
    let client = nats_bus(&url, builder("client")).await;

    let entered = Arc::new(AtomicUsize::new(0));
    let counter = entered.clone();
    server
        .handle_invoke("slow", move |req| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(HANDLER_DELAY).await;
                Ok(req.payload().clone())
            }
        })
        .await
        .unwrap();
    server
        .handle_stream("ticks", |req, w| async move {
            let n = req.payload().as_u64().unwrap_or(3);
            for i in 0..n {
                w.delta_text(i.to_string()).await?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            w.finish(json!(n)).await
        })
        .await
        .unwrap();
    client.transport().flush().await.unwrap();

    // Healthy first: a call and a stream succeed.
    invoke_slow(&client, usize::MAX).await.unwrap();
    stream_ticks(&client, 3, CALL_TIMEOUT).await.unwrap();
    entered.store(0, Ordering::SeqCst);

    // 500 invokes and a few long streams in flight...
    let mut calls = FuturesUnordered::new();
    for i in 0..IN_FLIGHT {
        let c = client.clone();
        calls.push(tokio::spawn(async move { timed(invoke_slow(&c, i)).await }));
    }
    for _ in 0..STREAMS {
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            timed(stream_ticks(&c, 1_000, CALL_TIMEOUT)).await
        }));
    }
    // ...all delivered to the handler, which is still sleeping on them...
    wait_until(
        "the handler to hold every invoke",
        Duration::from_secs(10),
        || entered.load(Ordering::SeqCst) >= IN_FLIGHT,
    )
    .await;
    // ...when the server dies.
    nats.kill();
    let killed_at = Instant::now();

    let mut outcomes = Vec::new();
    while let Some(done) = calls.next().await {
        outcomes.push(done.expect("a call task panicked"));
    }
    assert_eq!(outcomes.len(), IN_FLIGHT + STREAMS);
    assert_all_ended_in_time("calls in flight at the kill", &outcomes);
    let failed = outcomes
        .iter()
        .filter(|(o, _)| matches!(o, Outcome::Failed(_)))
        .count();
    assert!(
        failed > 0,
        "the kill did not affect any call: {:?}",
        tally(&outcomes)
    );
    assert!(
        killed_at.elapsed() <= CALL_TIMEOUT + MARGIN,
        "the calls outlived the kill by {:?}",
        killed_at.elapsed()
    );

    // Calls made while the server is down end in time too.
    let mut down: Vec<(Outcome, Duration)> = futures::future::join_all((0..5).map(|i| {
        let c = client.clone();
        async move { timed(invoke_slow(&c, i)).await }
    }))
    .await;
    down.push(timed(stream_ticks(&client, 3, CALL_TIMEOUT)).await);
    assert_all_ended_in_time("calls while the server is down", &down);
    assert!(
        down.iter().all(|(o, _)| matches!(o, Outcome::Failed(_))),
        "a call succeeded with no server: {:?}",
        tally(&down)
    );

    // The server comes back on the same port: the same buses serve again.
    nats.restart();
    let restarted_at = Instant::now();
    let deadline = restarted_at + Duration::from_secs(10);
    loop {
        let last_error = match client
            .invoke_with(
                "slow",
                json!({"i": 0}),
                CallOptions::new().timeout(Duration::from_secs(1)),
            )
            .await
        {
            Ok(reply) => {
                assert_eq!(reply.payload, Some(json!({"i": 0})));
                eprintln!(
                    "serving again {:?} after the restart",
                    restarted_at.elapsed()
                );
                break;
            }
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "the bus did not serve again within 10 s of the restart; last error: {last_error}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut again = FuturesUnordered::new();
    for i in 0..50 {
        let c = client.clone();
        again.push(async move { invoke_slow(&c, i).await });
    }
    while let Some(r) = again.next().await {
        r.expect("invoke after the restart");
    }
    stream_ticks(&client, 5, CALL_TIMEOUT)
        .await
        .expect("stream after the restart");
    let events: Value = {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        server
            .subscribe("faults.after", move |env| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(env.payload.unwrap_or_default());
                    Ok(())
                }
            })
            .await
            .unwrap();
        client.emit("faults.after", json!("back")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("event after the restart")
            .unwrap()
    };
    assert_eq!(events, json!("back"));
    assert!(server.transport().stats().reconnects >= 1);
    assert!(client.transport().stats().reconnects >= 1);
    assert!(server.transport().is_connected() && client.transport().is_connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_send_buffer_during_an_outage_fails_publishes_and_calls_in_time() {
    let mut nats = NatsServer::start();
    // A bus that has made no call yet: its first call must subscribe its
    // reply inbox, through the same stuck send buffer.
    let bus = short_timeout_bus(&nats, "outage").await;
    kill_and_settle(&mut nats).await;

    // async-nats buffers 2,048 commands while disconnected; then it holds.
    let mut buffered = 0;
    let failed = loop {
        let started = Instant::now();
        match bus.emit("outage.tick", json!({"n": buffered})).await {
            Ok(()) => buffered += 1,
            Err(e) => break (e, started.elapsed()),
        }
        assert!(buffered <= 100_000, "publishes never stopped being taken");
    };
    let (err, took) = failed;
    assert_eq!(err.code(), ErrorCode::TransportFailure, "{err}");
    assert!(took < SHORT_TIMEOUT + MARGIN, "the publish took {took:?}");
    assert!(buffered > 0, "nothing was buffered");

    let call = async { bus.invoke("outage.echo", json!(null)).await.map(drop) };
    let (outcome, took) = timed(call).await;
    assert!(took < SHORT_TIMEOUT + MARGIN, "the call took {took:?}");
    assert!(
        matches!(outcome, Outcome::Failed(ErrorCode::AgentTimeout)),
        "{outcome:?}"
    );

    nats.restart();
    bus.handle_invoke("outage.echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    bus.transport().flush().await.unwrap();
    let reply = bus.invoke("outage.echo", json!("back")).await.unwrap();
    assert_eq!(reply.payload, Some(json!("back")));
    bus.emit("outage.tick", json!("back")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_handler_cut_off_from_the_server_stops_at_the_deadline() {
    let mut nats = NatsServer::start();
    let server = nats_bus(&nats.url(), Bus::builder().agent_id("server")).await;
    let client = nats_bus(&nats.url(), Bus::builder().agent_id("client")).await;
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let ended_tx = Arc::new(std::sync::Mutex::new(Some(ended_tx)));
    server
        .handle_stream("endless", move |req, w| {
            let ended_tx = ended_tx.clone();
            async move {
                // Writes until a write fails: the only way out.
                let err = loop {
                    if let Err(e) = w.delta_text("tick").await {
                        break e;
                    }
                    tokio::task::yield_now().await;
                };
                let cancelled = futures::FutureExt::now_or_never(req.cancelled()).is_some();
                if let Some(tx) = ended_tx.lock().unwrap().take() {
                    let _ = tx.send((err.code(), cancelled, Instant::now()));
                }
                Err(err)
            }
        })
        .await
        .unwrap();
    server.transport().flush().await.unwrap();
    let mut stream = client
        .stream_invoke_with(
            "endless",
            json!(null),
            CallOptions::new().timeout(SHORT_TIMEOUT),
        )
        .await
        .unwrap();
    let started = Instant::now();
    stream.next().await.unwrap().unwrap();
    nats.kill();
    let (code, cancelled, at) = tokio::time::timeout(SHORT_TIMEOUT + MARGIN, ended_rx)
        .await
        .expect("the handler was still writing after its deadline")
        .unwrap();
    assert_eq!(code, ErrorCode::AgentTimeout);
    assert!(cancelled, "the handler's request was not cancelled");
    assert!(at - started < SHORT_TIMEOUT + MARGIN, "{:?}", at - started);
    // The caller, cut off too, ends with a typed error in time.
    let ended = tokio::time::timeout(SHORT_TIMEOUT + MARGIN, async {
        while let Some(frame) = stream.next().await {
            if let Err(e) = frame {
                return e.code();
            }
        }
        ErrorCode::TransportFailure
    })
    .await
    .expect("the caller's stream outlived its deadline");
    assert_eq!(ended, ErrorCode::AgentTimeout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_during_an_outage_returns_at_once_and_serves_after_it() {
    let mut nats = NatsServer::start();
    let bus = short_timeout_bus(&nats, "outage").await;
    kill_and_settle(&mut nats).await;

    // While the client can still buffer, registering does not wait for the
    // server: the client replays the subscription when it reconnects.
    let started = Instant::now();
    bus.handle_invoke("outage.early", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    let (event_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    bus.subscribe("outage.event", move |env| {
        let event_tx = event_tx.clone();
        async move {
            let _ = event_tx.send(env.payload);
            Ok(())
        }
    })
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A call made now waits for its deadline (the server may be back by
    // then), and its error says why it likely failed.
    let err = bus.invoke("outage.early", json!(1)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AgentTimeout, "{err}");
    assert!(
        err.to_string().contains("transport is not connected"),
        "{err}"
    );

    // Once its send buffer is full, the client cannot take a subscription:
    // registering fails in time and leaves nothing behind.
    while bus.emit("outage.tick", json!(null)).await.is_ok() {}
    let started = Instant::now();
    let err = bus
        .handle_invoke("outage.late", |req| async move { Ok(req.into_payload()) })
        .await
        .err()
        .expect("registered through a full send buffer");
    let took = started.elapsed();
    assert_eq!(err.code(), ErrorCode::TransportFailure, "{err}");
    assert!(err.to_string().contains("is it connected"), "{err}");
    assert!(took < SHORT_TIMEOUT + MARGIN, "handle_invoke took {took:?}");
    // A caller that gives up first leaves no handler behind either.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(500),
        bus.handle_invoke(
            "outage.abandoned",
            |req| async move { Ok(req.into_payload()) },
        ),
    )
    .await;
    assert!(gave_up.is_err(), "registered through a full send buffer");

    nats.restart();
    let probe = nats_bus(&nats.url(), Bus::builder().agent_id("probe")).await;
    // The early registrations serve; the failed ones do not.
    let reply = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match probe.invoke("outage.early", json!("back")).await {
                Ok(reply) => break reply,
                // Until the client has reconnected and replayed its subscriptions.
                Err(e) if e.code() == ErrorCode::NoHandler => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("the handler registered during the outage never served");
    assert_eq!(reply.payload, Some(json!("back")));
    probe.emit("outage.event", json!("seen")).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
    assert_eq!(seen.unwrap().unwrap(), Some(json!("seen")));
    assert_unserved(&probe, &["outage.late", "outage.abandoned"]).await;
    // And registering confirms with the server again.
    register_and_call(&bus, &probe, "outage.late").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_with_a_server_that_stops_answering_fails_in_time() {
    let nats = NatsServer::start();
    let bus = short_timeout_bus(&nats, "frozen").await;
    // Connected, but the server answers nothing: the registration cannot be
    // confirmed.
    nats.pause();
    let started = Instant::now();
    let err = bus
        .handle_invoke("frozen.late", |req| async move { Ok(req.into_payload()) })
        .await
        .err()
        .expect("confirmed by a frozen server");
    let took = started.elapsed();
    assert_eq!(err.code(), ErrorCode::TransportFailure, "{err}");
    assert!(took < SHORT_TIMEOUT + MARGIN, "handle_invoke took {took:?}");
    // A caller that stops waiting for the confirmation leaves nothing behind.
    give_up_registering(&bus, "frozen.abandoned").await;
    // Let the removal of the abandoned one reach the client first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    nats.resume();

    let probe = nats_bus(&nats.url(), Bus::builder().agent_id("probe")).await;
    assert_unserved(&probe, &["frozen.late", "frozen.abandoned"]).await;
    register_and_call(&bus, &probe, "frozen.late").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_during_an_outage_does_not_wait_for_the_server() {
    let mut nats = NatsServer::start();
    let bus = short_timeout_bus(&nats, "closing").await;
    bus.handle_invoke("closing.echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    bus.emit("closing.tick", json!(1)).await.unwrap();
    kill_and_settle(&mut nats).await;
    bus.emit("closing.tick", json!(2)).await.unwrap();
    let started = Instant::now();
    bus.close().await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "close took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_a_cluster_member_fails_over_to_another() {
    // Two servers in one cluster; the buses are told of the first only and
    // learn of the second from the cluster.
    let (cluster_a, cluster_b) = (free_port(), free_port());
    let route = |port: u16| format!("nats://127.0.0.1:{port}");
    let (listen_a, listen_b) = (route(cluster_a), route(cluster_b));
    let mut a = NatsServer::start_with_args(&[
        "--cluster_name",
        "oaio",
        "--cluster",
        &listen_a,
        "--routes",
        &listen_b,
    ]);
    let _b = NatsServer::start_with_args(&[
        "--cluster_name",
        "oaio",
        "--cluster",
        &listen_b,
        "--routes",
        &listen_a,
    ]);
    let server = nats_bus(&a.url(), Bus::builder().agent_id("server")).await;
    let client = short_timeout_bus(&a, "client").await;
    server
        .handle_invoke("cluster.echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    // Until the route is up and both have heard of the second server.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = client.invoke("cluster.echo", json!("a")).await.unwrap();
    assert_eq!(reply.payload, Some(json!("a")));

    a.kill();
    let failed_over = Instant::now();
    let reply = loop {
        match client.invoke("cluster.echo", json!("b")).await {
            Ok(reply) => break reply,
            Err(e) => {
                assert!(
                    failed_over.elapsed() < Duration::from_secs(15),
                    "no fail-over to the other member: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(reply.payload, Some(json!("b")));
    assert!(client.transport().stats().reconnects >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_list_with_a_dead_member_connects_to_a_live_one() {
    let live = NatsServer::start();
    let dead = format!("nats://127.0.0.1:{}", free_port());
    let live_url = live.url();
    // As a user writes it: a comma-separated string, or a YAML list.
    for urls in [
        format!("\"{dead},{live_url}\""),
        format!("\"{live_url} , {dead}\""),
        format!("[{dead}, {live_url}]"),
    ] {
        let text = format!(
            "version: \"openagentio.bridge/v1\"\nbus:\n  transport: nats\n  nats:\n    url: {urls}\n"
        );
        let cfg =
            openagentio_config::load_with_env(&text, openagentio_config::Format::Yaml, &|_| None)
                .expect("a valid config");
        let opts = openagentio_host::from_config::nats_options(&cfg);
        let transport = openagentio_nats::NatsTransport::connect(opts)
            .await
            .unwrap_or_else(|e| panic!("{urls}: {e}"));
        let bus = Bus::builder()
            .agent_id("listed")
            .transport(transport)
            .build();
        bus.handle_invoke("listed.echo", |req| async move { Ok(req.into_payload()) })
            .await
            .unwrap();
        let reply = bus.invoke("listed.echo", json!(urls)).await.unwrap();
        assert_eq!(reply.payload, Some(json!(urls)));
        bus.close().await;
    }
}

/// Frames missing after the caller's connection was made again are lost for
/// good (core NATS drops what is sent to a subscription while it is being
/// made again): the stream ends at once with `TRANSPORT_FAILURE` that says
/// so, rather than holding the frames after the gap until its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_lost_frames_in_a_reconnect_ends_at_once() {
    use openagentio_core::{Envelope, codec};

    let mut nats = NatsServer::start();
    let bus = nats_bus(
        &nats.url(),
        Bus::builder().default_timeout(Duration::from_secs(30)),
    )
    .await;
    // A handler of its own making on another connection (as a reference
    // peer would be), sending the frames the test says.
    let raw = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(nats.url())
        .await
        .unwrap();
    let subject = bus
        .subjects()
        .invoke("lossy", bus.settings().tenant.as_str());
    let mut requests = raw.subscribe(subject).await.unwrap();
    raw.flush().await.unwrap();

    let mut stream = bus.stream_invoke("lossy", json!(null)).await.unwrap();
    let request = codec::decode(&requests.next().await.unwrap().payload).unwrap();
    let correlation = request.event_id.clone();
    let frame = move |seq: u64| {
        let mut env = Envelope::new("agent.response.delta").with_payload(json!({"delta": "x"}));
        env.correlation_id = correlation.clone();
        env.seq = seq;
        codec::encode(&env).unwrap()
    };
    let reply_to = request.reply_to.to_string();
    raw.publish(reply_to.clone(), frame(0)).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().seq, 0);

    nats.restart();
    wait_until("the caller reconnects", Duration::from_secs(10), || {
        bus.transport().stats().reconnects >= 1
    })
    .await;
    // Frames 1 to 3 went while the caller was away; 4 comes after (sent
    // until it arrives: the caller's subscription is made again a moment
    // after its connection).
    let sender = tokio::spawn(async move {
        loop {
            let _ = raw.publish(reply_to.clone(), frame(4)).await;
            let _ = raw.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("the stream waits for its deadline")
        .unwrap()
        .unwrap_err();
    sender.abort();
    assert_eq!(err.code(), ErrorCode::TransportFailure, "{err}");
    assert!(err.message().contains("frames 1 to 3 were lost"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A server that freezes (SIGSTOP: the socket stays open, nothing answers)
/// is found out by the client's pings: the transport reports itself
/// disconnected, which readiness shows, and serves again once the server
/// wakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_is_found_out_and_served_again_after() {
    use openagentio_nats::{NatsOptions, NatsTransport};

    let nats = NatsServer::start();
    let mut opts = NatsOptions::new(nats.url());
    opts.ping_interval = Duration::from_millis(300);
    let transport = NatsTransport::connect(opts).await.unwrap();
    let bus = Bus::builder()
        .agent_id("frozen")
        .transport(transport)
        .build();
    bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    bus.transport().flush().await.unwrap();
    assert!(bus.transport().is_connected());
    nats.pause();
    wait_until("the frozen server noticed", Duration::from_secs(10), || {
        !bus.transport().is_connected()
    })
    .await;
    nats.resume();
    wait_until("connected again", Duration::from_secs(15), || {
        bus.transport().is_connected()
    })
    .await;
    let mut served = false;
    for _ in 0..50 {
        let opts = openagentio_core::CallOptions::new().timeout(Duration::from_secs(2));
        if bus
            .invoke_with("echo", serde_json::json!(1), opts)
            .await
            .is_ok()
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "not served after the server woke");
    bus.close().await;
}

/// A drain does not lose a request already on its way: one this very
/// process sent just before the drain unsubscribed its handler (the
/// gateway's call at a SIGTERM) reaches the handler and is answered. Other
/// traffic on the connection meanwhile (events published here) wakes the
/// client between the unsubscribe and the request's arrival, which is when
/// async-nats's own drain forgot the subscription too early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_serves_a_request_already_on_its_way() {
    let nats = NatsServer::start();
    for round in 0..10 {
        let bus = nats_bus(&nats.url(), Bus::builder().agent_id("draining")).await;
        bus.handle_invoke("drain.echo", |req| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(req.into_payload())
        })
        .await
        .unwrap();
        bus.transport().flush().await.unwrap();
        let noise = {
            let bus = bus.clone();
            tokio::spawn(async move {
                loop {
                    let _ = bus
                        .publish(openagentio_core::Envelope::new("drain.noise"))
                        .await;
                    tokio::task::yield_now().await;
                }
            })
        };
        let mut call = bus
            .start_invoke("drain.echo", json!({"round": round}), CallOptions::new())
            .await
            .unwrap();
        let drained = bus.drain(Duration::from_secs(5)).await;
        noise.abort();
        let answer = tokio::time::timeout(Duration::from_secs(5), call.answer())
            .await
            .expect("no answer");
        assert_eq!(answer.unwrap(), json!({"round": round}), "round {round}");
        assert!(drained, "round {round}");
        bus.close().await;
    }
}

/// A call made while the server is away is answered once it is back before
/// the call's deadline, even when the caller's connection comes back before
/// the handler's (which then meets nobody for a moment: it is sent again,
/// and served once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_made_during_an_outage_is_answered_when_the_server_is_back() {
    let mut nats = NatsServer::start();
    let worker = nats_bus(&nats.url(), Bus::builder().agent_id("worker")).await;
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    worker
        .handle_invoke("outage.echo", move |req| {
            count.fetch_add(1, Ordering::SeqCst);
            async move { Ok(req.into_payload()) }
        })
        .await
        .unwrap();
    let caller = nats_bus(&nats.url(), Bus::builder().agent_id("caller")).await;
    let rounds = 5;
    for round in 0..rounds {
        kill_and_settle(&mut nats).await;
        let call = {
            let caller = caller.clone();
            tokio::spawn(async move {
                let opts = CallOptions::new().timeout(Duration::from_secs(8));
                caller.invoke_with("outage.echo", json!(round), opts).await
            })
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        nats.restart();
        let reply = call.await.unwrap();
        let reply = reply.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(reply.payload, Some(json!(round)));
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        rounds as usize,
        "a call served twice, or not at all"
    );
}

/// Gathering the catalog (what `GET /v1/agents` and `openagentio targets`
/// do) while the server is away fails at once, not after the client's own
/// flush limit: the gateway then lists its service's targets without
/// keeping its client waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gathering_the_catalog_during_an_outage_fails_at_once() {
    let mut nats = NatsServer::start();
    let bus = nats_bus(&nats.url(), Bus::builder().agent_id("lister")).await;
    kill_and_settle(&mut nats).await;
    let started = Instant::now();
    let err = openagentio_core::catalog::gather(
        &bus,
        None,
        Duration::from_secs(2),
        openagentio_core::catalog::MORE_ANSWERS_GRACE,
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(err.code(), ErrorCode::AgentUnavailable, "{err}");
}

/// Closing a bus whose server froze (SIGSTOP: connected, but nothing
/// answers) does not wait long for it: each subscription gives the server
/// a short while to hand on what it routed here, and they end together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_with_a_frozen_server_does_not_wait_long() {
    let nats = NatsServer::start();
    let bus = nats_bus(&nats.url(), Bus::builder().agent_id("frozen.close")).await;
    for target in ["frozen.a", "frozen.b", "frozen.c"] {
        bus.handle_invoke(target, |req| async move { Ok(req.into_payload()) })
            .await
            .unwrap();
    }
    bus.subscribe("frozen.events", |_e| async { Ok(()) })
        .await
        .unwrap();
    bus.invoke("frozen.a", json!(1)).await.unwrap();
    nats.pause();
    let started = Instant::now();
    bus.close().await;
    let took = started.elapsed();
    nats.resume();
    eprintln!("closing took {took:?}");
    // Two rounds of one second at most: the registrations, then the reply
    // inbox and the cancel subscription.
    assert!(took < Duration::from_millis(3500), "closing took {took:?}");
}
