//! The Matrix bridge against a real Synapse (see `support/synapse.rs`).
//! Without Synapse installed these tests FAIL with an install hint.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openagentio_core::{Bridge, Bus, BusError, Envelope, HealthState};
use openagentio_matrix::{
    MatrixAuth, MatrixBridge, MatrixConfig, Responder, Secret, SessionStrategy,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use support::client::TestClient;
use support::logs;
use support::synapse::{RateLimit, Synapse, SynapseOptions, TestUser};

const WAIT: Duration = Duration::from_secs(30);

fn token_config(hs: &Synapse, bot: &TestUser, rooms: Vec<String>, state: &Path) -> MatrixConfig {
    let mut c = MatrixConfig::new(
        hs.url(),
        MatrixAuth::AccessToken {
            token: Secret::new(bot.token.clone()),
            user_id: bot.user_id.clone(),
            device_id: None,
        },
        rooms,
        state,
    );
    c.sync_timeout = Duration::from_secs(5);
    c.reconnect_delay = Duration::from_millis(200);
    c
}

/// Events of `event_type` as they reach the bus.
async fn collect(bus: &Bus, event_type: &str) -> mpsc::UnboundedReceiver<Envelope> {
    let (tx, rx) = mpsc::unbounded_channel();
    bus.subscribe(event_type, move |env| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(env);
            Ok::<(), BusError>(())
        }
    })
    .await
    .unwrap();
    rx
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Envelope>) -> Envelope {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no event within the wait limit")
        .expect("channel closed")
}

/// Alice and the bot (its account and its client), in a room of Alice's
/// that the bot has joined.
async fn alice_and_bot_in_a_room(hs: &Synapse) -> (TestClient, TestUser, TestClient, String) {
    let alice = TestClient::new(hs, &hs.register("alice").await);
    let bot_user = hs.register("bot").await;
    let bot = TestClient::new(hs, &bot_user);
    let room = alice.create_room(None, &[&bot_user.user_id]).await;
    bot.join(&room).await;
    (alice, bot_user, bot, room)
}

/// A started bridge, healthy.
async fn started(name: &str, cfg: MatrixConfig, bus: &Bus) -> MatrixBridge {
    let b = ready(name, cfg, bus).await;
    assert_eq!(b.health().state, HealthState::Healthy);
    b
}

/// A started bridge, through its first sync.
async fn ready(name: &str, cfg: MatrixConfig, bus: &Bus) -> MatrixBridge {
    let mut b = MatrixBridge::new(name, cfg);
    b.start(bus).await.expect("bridge starts");
    assert!(
        b.wait_ready(WAIT).await,
        "bridge not ready: {:?}",
        b.health()
    );
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_messages_reach_the_bus_with_payload_metadata_and_session() {
    logs::capture();
    let hs = Synapse::start().await;
    let alice = TestClient::new(&hs, &hs.register("alice").await);
    let carol = TestClient::new(&hs, &hs.register("carol").await);
    let bot = hs.register("bot").await;
    // A private room known by its alias: the bot accepts the invite (auto_join).
    let room = alice
        .create_room(Some("agents"), &[&bot.user_id, &carol.user.user_id])
        .await;
    carol.join(&room).await;
    alice
        .send_text(&room, "history before the first start")
        .await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(&hs, &bot, vec!["#agents:localhost".into()], state.path());
    cfg.auto_join = true;
    cfg.allowed_inviters = vec!["@alice:localhost".into()];
    cfg.session_strategy = SessionStrategy::RoomSender;
    cfg.sender_allowlist = vec!["@ali*:localhost".into()];
    let bus = Bus::memory();
    let mut received = collect(&bus, "matrix.message.received").await;
    let mut edited = collect(&bus, "matrix.message.edited").await;
    let mut bridge = started("matrix", cfg, &bus).await;

    // A plain message with HTML and a traceparent.
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let first = alice
        .send(&room, json!({"msgtype": "m.text", "body": "hello bot", "format": "org.matrix.custom.html", "formatted_body": "<b>hello</b> bot", "traceparent": tp}))
        .await;
    let env = next(&mut received).await;
    let p = env.payload.clone().unwrap();
    assert_eq!(
        p["text"], "hello bot",
        "history was not skipped on the first start"
    );
    assert_eq!(p["html"], "<b>hello</b> bot");
    assert_eq!(p["room_id"], room.as_str());
    assert_eq!(p["sender"], "@alice:localhost");
    assert_eq!(p["event_id"], first.as_str());
    assert_eq!(p["msgtype"], "m.text");
    assert!(p["origin_server_ts"].as_i64().unwrap() > 0);
    assert_eq!(env.metadata["matrix.room_id"], room.as_str());
    assert_eq!(env.metadata["matrix.sender"], "@alice:localhost");
    assert_eq!(env.metadata["matrix.event_id"], first.as_str());
    assert_eq!(env.metadata["matrix.msgtype"], "m.text");
    assert_eq!(env.metadata["matrix.traceparent"], tp);
    assert_eq!(env.conversation_id, room);
    assert_eq!(env.session_id, format!("{room}:@alice:localhost"));
    assert_eq!(env.correlation_id, first);
    assert_eq!(env.trace_id, "0af7651916cd43dd8448eb211c80319c");

    // Notices, our own echoes and senders outside the allowlist are not published.
    alice
        .send(&room, json!({"msgtype": "m.notice", "body": "a notice"}))
        .await;
    carol.send_text(&room, "carol is not allowed").await;
    bus.publish(
        Envelope::new("matrix.message.send")
            .with_payload(json!({"text": "bot speaking", "room_id": room})),
    )
    .await
    .unwrap();
    alice
        .wait_messages_from(&room, &bot.user_id, WAIT, |m| m.len() == 1)
        .await;
    // A reply: described in metadata, fallback quote stripped.
    let reply = alice
        .send(&room, json!({"msgtype": "m.text", "body": "> <@alice:localhost> hello bot\n\nreplying", "m.relates_to": {"m.in_reply_to": {"event_id": first}}}))
        .await;
    let env = next(&mut received).await;
    assert_eq!(
        env.payload.as_ref().unwrap()["text"],
        "replying",
        "notice, echo or carol leaked: {env:?}"
    );
    assert_eq!(env.metadata["matrix.in_reply_to_event_id"], first.as_str());
    assert_eq!(env.metadata["matrix.event_id"], reply.as_str());
    assert!(env.metadata.get("matrix.thread_root_event_id").is_none());

    // A thread message.
    alice
        .send(&room, json!({"msgtype": "m.text", "body": "in a thread", "m.relates_to": {"rel_type": "m.thread", "event_id": first, "is_falling_back": true, "m.in_reply_to": {"event_id": first}}}))
        .await;
    let env = next(&mut received).await;
    assert_eq!(env.payload.as_ref().unwrap()["text"], "in a thread");
    assert_eq!(env.metadata["matrix.thread_root_event_id"], first.as_str());
    assert!(env.metadata.get("matrix.in_reply_to_event_id").is_none());

    // An edit: published as an edit, not as a new message.
    let edit = alice
        .send(&room, json!({"msgtype": "m.text", "body": "* hello bot!", "m.new_content": {"msgtype": "m.text", "body": "hello bot!"}, "m.relates_to": {"rel_type": "m.replace", "event_id": first}}))
        .await;
    let env = next(&mut edited).await;
    assert_eq!(env.payload.as_ref().unwrap()["text"], "hello bot!");
    assert_eq!(
        env.payload.as_ref().unwrap()["replaces_event_id"],
        first.as_str()
    );
    assert_eq!(env.metadata["matrix.replaces_event_id"], first.as_str());
    assert_eq!(env.metadata["matrix.event_id"], edit.as_str());
    alice.send_text(&room, "last").await;
    let env = next(&mut received).await;
    assert_eq!(
        env.payload.as_ref().unwrap()["text"],
        "last",
        "the edit leaked as a message"
    );
    // An invite from an allowed inviter to a room not configured: joined and
    // listened to, without the messages from before the join.
    let room2 = alice.create_room(None, &[&bot.user_id]).await;
    alice.send_text(&room2, "before the bot joined").await;
    let t0 = Instant::now();
    while !alice.is_joined(&room2, &bot.user_id).await {
        assert!(t0.elapsed() < WAIT, "the invite was not accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    alice.send_text(&room2, "in room two").await;
    let env = next(&mut received).await;
    assert_eq!(env.payload.as_ref().unwrap()["text"], "in room two");
    assert_eq!(env.conversation_id, room2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(received.try_recv().is_err(), "published more than once");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_events_post_messages_once() {
    logs::capture();
    let hs = Synapse::start().await;
    let (alice, bot_user, bot, room) = alice_and_bot_in_a_room(&hs).await;
    let secret_room = alice
        .create_room_with(json!({"preset": "private_chat", "invite": [bot_user.user_id], "initial_state": [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ]}))
        .await;
    bot.join(&secret_room).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = token_config(
        &hs,
        &bot_user,
        vec![room.clone(), secret_room.clone()],
        state.path(),
    );
    let bus = Bus::memory();
    let mut bridge = ready("mx", cfg, &bus).await;
    assert!(
        logs::captured()
            .lines()
            .any(|l| l.contains("end-to-end encrypted") && l.contains(&secret_room)),
        "no warning about the encrypted room"
    );
    let health = bridge.health();
    assert_eq!(health.state, HealthState::Degraded, "{health:?}");
    assert!(
        health
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains(&secret_room),
        "{health:?}"
    );

    // A bus event (room from the payload) posts a message; published twice, it posts once.
    let env = Envelope::new("matrix.message.send").with_payload(
        json!({"text": "from the bus", "html": "<i>from the bus</i>", "room_id": room}),
    );
    bus.publish(env.clone()).await.unwrap();
    bus.publish(env.clone()).await.unwrap();
    // Room from `matrix.room_id` metadata, then from the session id.
    bus.publish(
        Envelope::new("matrix.message.send")
            .with_payload(json!({"text": "via metadata"}))
            .with_metadata("matrix.room_id", json!(room)),
    )
    .await
    .unwrap();
    bus.publish(
        Envelope::new("matrix.message.send")
            .with_payload(json!({"text": "via session"}))
            .with_session(room.clone()),
    )
    .await
    .unwrap();
    let msgs = alice
        .wait_messages_from(&room, &bot_user.user_id, WAIT, |m| m.len() >= 3)
        .await;
    // The invoke target answers with the Matrix event id.
    let reply = bus
        .invoke(
            "mx.send",
            json!({"text": "invoked", "room_id": room, "reply_to_event_id": msgs[0]["event_id"]}),
        )
        .await
        .unwrap();
    let event_id = reply.payload.unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let msgs = alice
        .wait_messages_from(&room, &bot_user.user_id, WAIT, |m| m.len() >= 4)
        .await;
    let bodies: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["from the bus", "via metadata", "via session", "invoked"]
    );
    assert_eq!(msgs[0]["content"]["formatted_body"], "<i>from the bus</i>");
    assert_eq!(msgs[3]["event_id"], event_id.as_str());
    assert_eq!(
        msgs[3]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        msgs[0]["event_id"]
    );
    // A bad payload is an INVALID_REQUEST for the caller.
    let err = bus
        .invoke("mx.send", json!({"text": ""}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), openagentio_core::ErrorCode::InvalidRequest);
    assert_eq!(bridge.targets()[0].name, "mx.send");
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_delivers_missed_messages_once_in_order_and_reuses_the_session() {
    logs::capture();
    let hs = Synapse::start().await;
    let alice = TestClient::new(&hs, &hs.register("alice").await);
    let bot = hs.register("bot").await;
    let room = alice.create_room(None, &[&bot.user_id]).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(&hs, &bot, vec![room.clone()], state.path());
    cfg.auth = MatrixAuth::Password {
        user_id: bot.user_id.clone(),
        password: Secret::new(bot.password.clone()),
        device_id: None,
    };
    cfg.auto_join = true;
    cfg.timeline_limit = 5; // 50 messages are many sync pages
    let bus = Bus::memory();
    let mut rx = collect(&bus, "matrix.message.received").await;

    let mut bridge = started("matrix", cfg.clone(), &bus).await;
    let device = bridge.device_id().expect("device id");
    alice.send_text(&room, "before").await;
    assert_eq!(next(&mut rx).await.payload.unwrap()["text"], "before");
    bridge.stop().await.unwrap();

    for i in 0..50 {
        alice.send_text(&room, &format!("m{i}")).await;
    }
    let mut bridge = started("matrix", cfg.clone(), &bus).await;
    assert_eq!(
        bridge.device_id().as_deref(),
        Some(device.as_str()),
        "a new device was created"
    );
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(
            next(&mut rx).await.payload.unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let want: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    alice.send_text(&room, "after").await;
    assert_eq!(next(&mut rx).await.payload.unwrap()["text"], "after");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(rx.try_recv().is_err(), "an event was published twice");
    bridge.stop().await.unwrap();
    let session = std::fs::read_to_string(state.path().join("session.json")).unwrap();
    assert!(session.contains(&device));

    // A device named in the config is the one logged in as.
    cfg.auth = MatrixAuth::Password {
        user_id: bot.user_id.clone(),
        password: Secret::new(bot.password.clone()),
        device_id: Some("OAIOFIXED".into()),
    };
    let mut bridge = started("matrix", cfg, &bus).await;
    assert_eq!(bridge.device_id().as_deref(), Some("OAIOFIXED"));
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_makes_the_bridge_unhealthy_without_logging_it() {
    logs::capture();
    let hs = Synapse::start().await;
    let (_, bot_user, bot, room) = alice_and_bot_in_a_room(&hs).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    let sync_timeout = cfg.sync_timeout;
    let bus = Bus::memory();
    let mut bridge = started("matrix", cfg.clone(), &bus).await;

    bot.logout().await;
    let t0 = Instant::now();
    while bridge.health().state != HealthState::Unhealthy {
        assert!(
            t0.elapsed() < sync_timeout + Duration::from_secs(3),
            "still {:?} after one sync cycle",
            bridge.health()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = bridge.health();
    let reason = health.reason.unwrap();
    assert!(
        reason.contains("revoked") && reason.contains("M_UNKNOWN_TOKEN"),
        "{reason}"
    );
    assert!(!reason.contains(&bot_user.token));
    // It does not retry in a loop, and outbound calls fail at once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(bridge.restarts(), 0);
    let t1 = Instant::now();
    let err = bus
        .invoke("matrix.send", json!({"text": "x", "room_id": room}))
        .await
        .unwrap_err();
    assert!(t1.elapsed() < Duration::from_secs(2), "{err:?}");
    assert!(err.message().contains("revoked"), "{err:?}");
    assert_eq!(
        err.code(),
        openagentio_core::ErrorCode::AuthFailure,
        "{err:?}"
    );
    // An outbound event is given up at once, not retried for minutes with
    // later ones waiting behind it.
    let event = Envelope::new("matrix.message.send")
        .with_payload(json!({"text": "after the revocation", "room_id": room}));
    let id = event.event_id.to_string();
    bus.publish(event).await.unwrap();
    // (The log is the whole process's: other tests' lines are in it too.)
    let given_up = || {
        logs::captured()
            .lines()
            .any(|l| l.contains("outbound event given up") && l.contains(&id))
    };
    let t2 = Instant::now();
    while !given_up() {
        assert!(
            t2.elapsed() < Duration::from_secs(3),
            "the event is still being retried"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bridge.stop().await.unwrap();

    // Starting with the revoked token fails permanently, with the same reason.
    let mut again = MatrixBridge::new("matrix", cfg);
    let err = again.start(&bus).await.unwrap_err();
    assert!(err.permanent && err.message.contains("revoked"), "{err:?}");
    assert!(!err.to_string().contains(&bot_user.token));

    let logs = logs::captured();
    assert!(logs.contains("revoked"), "the failure is logged");
    assert!(
        !logs.contains(&bot_user.token),
        "the token appears in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_burst_of_100_arrives_in_order() {
    logs::capture();
    let hs = Synapse::start_with(SynapseOptions {
        rc_message: Some(RateLimit {
            per_second: 10.0,
            burst_count: 5,
        }),
    })
    .await;
    let (alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    let bus = Bus::memory();
    let mut bridge = started("matrix", cfg, &bus).await;

    let t0 = Instant::now();
    for i in 0..100 {
        bus.publish(
            Envelope::new("matrix.message.send")
                .with_payload(json!({"text": format!("burst {i}"), "room_id": room})),
        )
        .await
        .unwrap();
    }
    let msgs = alice
        .wait_messages_from(&room, &bot_user.user_id, Duration::from_secs(120), |m| {
            m.len() >= 100
        })
        .await;
    let elapsed = t0.elapsed();
    let bodies: Vec<String> = msgs
        .iter()
        .map(|m| m["content"]["body"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = (0..100).map(|i| format!("burst {i}")).collect();
    assert_eq!(bodies, want);
    // 95 messages beyond the burst at 10/s: the limit was really hit and waited out.
    assert!(
        elapsed >= Duration::from_secs(8),
        "rate limit not exercised: {elapsed:?}"
    );
    assert_eq!(bridge.health().state, HealthState::Healthy);
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responder_posts_the_streamed_answer_as_one_message() {
    logs::capture();
    let hs = Synapse::start().await;
    let (alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let bus = Bus::memory();
    let expected_session = room.clone();
    let asked = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = asked.clone();
    bus.handle_stream("test.answer", move |req, w| {
        let expected_session = expected_session.clone();
        seen.lock().push(req.envelope().clone());
        async move {
            let text = req.payload()["text"].as_str().unwrap_or("").to_owned();
            assert_eq!(req.envelope().session_id, expected_session);
            if text.contains("fail") {
                return Err(BusError::unavailable("the model is down"));
            }
            for part in ["The ", "answer ", "is ", "forty", "-two."] {
                w.delta_text(part).await?;
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            w.finish(json!("The answer is forty-two.")).await
        }
    })
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    let mut r = Responder::new(room.clone(), "test.answer");
    r.edit_interval = Duration::from_millis(200);
    r.max_edits = 3;
    cfg.responders = vec![r];
    let mut bridge = started("matrix", cfg, &bus).await;

    let question = alice.send_text(&room, "what is the answer?").await;
    let is_edit = |m: &Value| m["content"]["m.relates_to"]["rel_type"] == "m.replace";
    let latest = |msgs: &[Value]| -> Option<String> {
        let last_edit = msgs.iter().rev().find(|m| is_edit(m));
        last_edit
            .map(|m| {
                m["content"]["m.new_content"]["body"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .or_else(|| {
                msgs.first()
                    .map(|m| m["content"]["body"].as_str().unwrap().to_owned())
            })
    };
    let msgs = alice
        .wait_messages_from(&room, &bot_user.user_id, WAIT, |m| {
            latest(m).as_deref() == Some("The answer is forty-two.")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let msgs_after = alice
        .wait_messages_from(&room, &bot_user.user_id, WAIT, |_| true)
        .await;
    assert_eq!(
        msgs.len(),
        msgs_after.len(),
        "more was posted after the final answer"
    );
    let originals: Vec<&Value> = msgs.iter().filter(|m| !is_edit(m)).collect();
    assert_eq!(
        originals.len(),
        1,
        "one message holds the answer: {msgs:#?}"
    );
    assert_eq!(
        originals[0]["content"]["m.relates_to"]["m.in_reply_to"]["event_id"],
        question.as_str()
    );
    let edits = msgs.iter().filter(|m| is_edit(m)).count();
    assert!((1..=3).contains(&edits), "{edits} edits");
    // The target was asked with the text alone (a chat target passes other
    // payload keys to its model); the Matrix details came as metadata.
    {
        let asked = asked.lock();
        assert_eq!(
            asked[0].payload_or_null(),
            &json!({"text": "what is the answer?"})
        );
        assert_eq!(asked[0].metadata["matrix.room_id"], room.as_str());
        assert_eq!(
            asked[0].metadata["matrix.sender"],
            alice.user.user_id.as_str()
        );
    }
    for e in msgs.iter().filter(|m| is_edit(m)) {
        assert_eq!(
            e["content"]["m.relates_to"]["event_id"],
            originals[0]["event_id"]
        );
    }

    // An error frame becomes a short notice.
    alice.send_text(&room, "please fail").await;
    let msgs = alice
        .wait_messages_from(&room, &bot_user.user_id, WAIT, |m| {
            m.iter().any(|m| m["content"]["msgtype"] == "m.notice")
        })
        .await;
    let notice = msgs
        .iter()
        .find(|m| m["content"]["msgtype"] == "m.notice")
        .unwrap();
    let body = notice["content"]["body"].as_str().unwrap();
    assert!(
        body.contains("test.answer") && body.contains("the model is down"),
        "{body}"
    );
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_responder_for_room_star_answers_in_every_room() {
    logs::capture();
    let hs = Synapse::start().await;
    let alice_user = hs.register("alice").await;
    let alice = TestClient::new(&hs, &alice_user);
    let bot_user = hs.register("bot").await;
    let bot = TestClient::new(&hs, &bot_user);
    let first = alice.create_room(None, &[&bot_user.user_id]).await;
    let second = alice.create_room(None, &[&bot_user.user_id]).await;
    bot.join(&first).await;
    bot.join(&second).await;
    let bus = Bus::memory();
    bus.handle_stream("test.any", |req, w| async move {
        let text = req.payload()["text"].as_str().unwrap_or("").to_owned();
        if text == "long" {
            // Longer than one Matrix event holds: cut, not refused.
            return w.finish(json!("word ".repeat(10_000))).await;
        }
        w.finish(json!(format!("you said: {text}"))).await
    })
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(
        &hs,
        &bot_user,
        vec![first.clone(), second.clone()],
        state.path(),
    );
    let mut r = Responder::new("*", "test.any");
    r.typing = false;
    cfg.responders = vec![r];
    let mut bridge = started("matrix", cfg, &bus).await;

    for (room, text) in [(&first, "one"), (&second, "two")] {
        alice.send_text(room, text).await;
        let want = format!("you said: {text}");
        alice
            .wait_messages_from(room, &bot_user.user_id, WAIT, |m| {
                m.iter().any(|m| m["content"]["body"] == want.as_str())
            })
            .await;
    }
    alice.send_text(&first, "long").await;
    let msgs = alice
        .wait_messages_from(&first, &bot_user.user_id, WAIT, |m| {
            m.iter().any(|m| {
                m["content"]["body"]
                    .as_str()
                    .is_some_and(|b| b.starts_with("word word") && b.contains("too long"))
            })
        })
        .await;
    assert!(
        !msgs.iter().any(|m| m["content"]["msgtype"] == "m.notice"),
        "{msgs:#?}"
    );
    bridge.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_events_sent_during_a_homeserver_outage_are_posted_once_it_is_back() {
    logs::capture();
    let mut hs = Synapse::start().await;
    let (alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    let bus = Bus::memory();
    let mut bridge = started("mx", cfg, &bus).await;

    hs.kill();
    for text in ["first while down", "second while down"] {
        bus.publish(
            Envelope::new("matrix.message.send")
                .with_payload(json!({"text": text, "room_id": room})),
        )
        .await
        .unwrap();
    }
    // Down longer than one round of send retries (7.5 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    hs.restart().await;
    let msgs = alice
        .wait_messages_from(&room, &bot_user.user_id, Duration::from_secs(60), |m| {
            m.len() >= 2
        })
        .await;
    let bodies: Vec<&str> = msgs
        .iter()
        .map(|m| m["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["first while down", "second while down"]);
    bridge.stop().await.unwrap();
}

/// What was missed while the service was down waits for the service to have
/// started: a responder whose target is served by a bridge started after the
/// Matrix bridge answers the missed question (not `NO_HANDLER`), and a
/// subscriber that comes up after the bridge (the gateway's feed) gets the
/// missed message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_messages_wait_until_the_service_has_started() {
    logs::capture();
    let hs = Synapse::start().await;
    let (alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let bus = Bus::memory();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    cfg.responders = vec![Responder::new(room.clone(), "late.answer")];
    // A first run saves the sync position; the question comes while down.
    let mut bridge = started("matrix", cfg.clone(), &bus).await;
    bridge.stop().await.unwrap();
    alice.send_text(&room, "asked while down").await;

    let (open, service_started) = openagentio_core::ServiceStarted::new();
    let mut bridge = MatrixBridge::new("matrix", cfg);
    bridge.until_service_started(service_started);
    bridge.start(&bus).await.expect("bridge starts");
    assert!(bridge.wait_ready(WAIT).await, "{:?}", bridge.health());
    // Started after the bridge, as the bridges after it in a config are.
    bus.handle_stream("late.answer", |req, w| async move {
        let text = req.payload()["text"].as_str().unwrap_or("").to_owned();
        w.finish(json!(format!("late answer to: {text}"))).await
    })
    .await
    .unwrap();
    let mut rx = collect(&bus, "matrix.message.received").await;
    open.open();

    assert_eq!(
        next(&mut rx).await.payload.unwrap()["text"],
        "asked while down"
    );
    let msgs = alice
        .wait_messages_from(&room, &bot_user.user_id, WAIT, |m| {
            m.iter()
                .any(|m| m["content"]["body"] == "late answer to: asked while down")
        })
        .await;
    assert!(
        !msgs.iter().any(|m| m["content"]["body"]
            .as_str()
            .unwrap_or("")
            .contains("failed")),
        "{msgs:?}"
    );
    bridge.stop().await.unwrap();
}

/// A configured room the bot cannot be in makes the bridge degraded, naming
/// the room, until the bot is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_room_the_bot_is_not_in_makes_it_degraded() {
    logs::capture();
    let hs = Synapse::start().await;
    let alice = TestClient::new(&hs, &hs.register("alice").await);
    let bot_user = hs.register("bot").await;
    let bot = TestClient::new(&hs, &bot_user);
    let joined = alice.create_room(None, &[&bot_user.user_id]).await;
    bot.join(&joined).await;
    // Not invited: the bot cannot join it.
    let closed = alice.create_room(None, &[]).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(
        &hs,
        &bot_user,
        vec![joined.clone(), closed.clone(), "#nowhere:localhost".into()],
        state.path(),
    );
    cfg.auto_join = true;
    let bus = Bus::memory();
    let mut bridge = MatrixBridge::new("matrix", cfg);
    bridge.start(&bus).await.expect("bridge starts");
    assert!(bridge.wait_ready(WAIT).await, "{:?}", bridge.health());
    let health = bridge.health();
    assert_eq!(health.state, HealthState::Degraded, "{health:?}");
    let reason = health.reason.unwrap();
    assert!(
        reason.contains(&closed)
            && reason.contains("#nowhere:localhost")
            && !reason.contains(&joined),
        "{reason}"
    );

    // Invited, the bot joins (auto_join): the room is no longer missing.
    alice.invite(&closed, &bot_user.user_id).await;
    let t0 = Instant::now();
    loop {
        let reason = bridge.health().reason.unwrap_or_default();
        if !reason.contains(&closed) {
            assert!(reason.contains("#nowhere:localhost"), "{reason}");
            break;
        }
        assert!(t0.elapsed() < WAIT, "{reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bridge.stop().await.unwrap();
}

/// A proxy in front of `upstream` (one request a connection) that answers
/// a bare 404, as a reverse proxy does while what it fronts restarts, while
/// `failing` is set.
async fn flaky_proxy(upstream: String, failing: Arc<std::sync::atomic::AtomicBool>) -> String {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = upstream.trim_start_matches("http://").to_owned();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (failing, upstream) = (failing.clone(), upstream.clone());
            tokio::spawn(async move {
                // The request: headers, then as much body as they announce.
                let mut req = Vec::new();
                let mut buf = [0u8; 8192];
                let head_end = loop {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&req[..head_end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                while req.len() < head_end + length {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    req.extend_from_slice(&buf[..n]);
                }
                if failing.load(Ordering::SeqCst) {
                    let page = "404 page not found";
                    let _ = conn
                        .write_all(
                            format!(
                                "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\n\
                                 content-length: {}\r\nconnection: close\r\n\r\n{page}",
                                page.len()
                            )
                            .as_bytes(),
                        )
                        .await;
                    return;
                }
                // Forwarded with `connection: close`, so the answer ends at EOF.
                let first_line_end = req.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
                let mut forwarded = req[..first_line_end].to_vec();
                forwarded.extend_from_slice(b"connection: close\r\n");
                for line in String::from_utf8_lossy(&req[first_line_end..head_end]).split("\r\n") {
                    if !line.is_empty() && !line.to_lowercase().starts_with("connection:") {
                        forwarded.extend_from_slice(line.as_bytes());
                        forwarded.extend_from_slice(b"\r\n");
                    }
                }
                forwarded.extend_from_slice(b"\r\n");
                forwarded.extend_from_slice(&req[head_end..]);
                let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                if up.write_all(&forwarded).await.is_err() {
                    return;
                }
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer).await;
                let _ = conn.write_all(&answer).await;
            });
        }
    });
    format!("http://{addr}")
}

/// A bare 404 from a proxy in front of the homeserver, once the bridge has
/// synced, is an outage to ride out (a restarting reverse proxy), not the
/// wrong `homeserver_url` it means at start: messages flow again after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_404_after_the_first_sync_is_ridden_out() {
    logs::capture();
    let hs = Synapse::start().await;
    let (alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy = flaky_proxy(hs.url(), failing.clone()).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    cfg.homeserver_url = proxy;
    cfg.sync_timeout = Duration::from_secs(1);
    let bus = Bus::memory();
    let mut received = collect(&bus, "matrix.message.received").await;
    let mut bridge = started("mx", cfg, &bus).await;
    alice.send_text(&room, "before").await;
    assert_eq!(next(&mut received).await.payload.unwrap()["text"], "before");

    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    alice.send_text(&room, "after").await;
    assert_eq!(next(&mut received).await.payload.unwrap()["text"], "after");
    bridge.stop().await.unwrap();
}

/// The bot kicked from a configured room while running: the bridge is
/// degraded naming the room and why, and healthy again once it is back in
/// (invited again, with auto_join).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_from_a_configured_room_makes_it_degraded_until_it_is_back() {
    logs::capture();
    let hs = Synapse::start().await;
    let (alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    cfg.auto_join = true;
    cfg.sync_timeout = Duration::from_secs(1);
    let bus = Bus::memory();
    let mut bridge = started("mx", cfg, &bus).await;
    assert_eq!(
        bridge.health().state,
        HealthState::Healthy,
        "{:?}",
        bridge.health()
    );

    alice.kick(&room, &bot_user.user_id).await;
    let t0 = Instant::now();
    while bridge.health().state != HealthState::Degraded {
        assert!(t0.elapsed() < WAIT, "{:?}", bridge.health());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = bridge.health().reason.unwrap();
    assert!(
        reason.contains(&room) && reason.contains("kicked"),
        "{reason}"
    );

    alice.invite(&room, &bot_user.user_id).await;
    let t0 = Instant::now();
    while bridge.health().state != HealthState::Healthy {
        assert!(t0.elapsed() < WAIT, "{:?}", bridge.health());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bridge.stop().await.unwrap();
}

/// The homeserver away while a responder's answer streams: the answer is
/// finished and shown whole once it is back, and no notice blames the
/// target (which answered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_homeserver_outage_mid_answer_is_ridden_out() {
    logs::capture();
    let mut hs = Synapse::start().await;
    let (alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let bus = Bus::memory();
    bus.handle_stream("test.slow", |_req, w| async move {
        for i in 0..30 {
            w.delta_text(format!("w{i} ")).await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w.finish(json!(null)).await
    })
    .await
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    let mut r = Responder::new(room.clone(), "test.slow");
    r.edit_interval = Duration::from_millis(200);
    cfg.responders = vec![r];
    let mut bridge = started("matrix", cfg, &bus).await;

    alice.send_text(&room, "tell me a long story").await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    hs.kill();
    // Down past the end of the answer (3 s from the question), and longer
    // than one send's own retries (about 8 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    hs.restart().await;
    let whole: String = (0..30).map(|i| format!("w{i} ")).collect();
    let whole = whole.trim_end().to_owned();
    let shown = |msgs: &[Value]| {
        msgs.iter().any(|m| {
            let body = m["content"]["m.new_content"]["body"]
                .as_str()
                .or(m["content"]["body"].as_str());
            body.map(str::trim_end) == Some(whole.as_str())
        })
    };
    // A request the restarting homeserver took but had not answered waits
    // for its 30 s timeout, and the answer is tried again with backoff (for
    // up to 5 minutes): on a busy machine that can take more than a minute.
    let msgs = alice
        .wait_messages_from(&room, &bot_user.user_id, Duration::from_secs(150), |m| {
            shown(m)
        })
        .await;
    assert!(shown(&msgs), "{msgs:#?}");
    assert!(
        !msgs.iter().any(|m| m["content"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("failed"))),
        "{msgs:#?}"
    );
    bridge.stop().await.unwrap();
}

/// A room that turns on end-to-end encryption while the bridge runs is
/// noticed, and the bridge (which cannot encrypt) refuses to post plain
/// text into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_encrypted_while_running_gets_no_plain_text() {
    logs::capture();
    let hs = Synapse::start().await;
    let (alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let state = tempfile::tempdir().unwrap();
    let mut cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    cfg.sync_timeout = Duration::from_secs(1);
    let bus = Bus::memory();
    let mut bridge = started("mx", cfg, &bus).await;
    let sent = bus
        .invoke("mx.send", json!({"text": "before", "room_id": room}))
        .await;
    assert!(sent.is_ok(), "{sent:?}");

    alice.enable_encryption(&room).await;
    let t0 = Instant::now();
    let err = loop {
        match bus
            .invoke("mx.send", json!({"text": "secret", "room_id": room}))
            .await
        {
            Err(e) => break e,
            Ok(_) => {
                assert!(t0.elapsed() < WAIT, "still posting plain text");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(
        err.code(),
        openagentio_core::ErrorCode::InvalidRequest,
        "{err}"
    );
    assert!(err.message().contains("end-to-end encrypted"), "{err}");
    // And the bridge says so in its health: it serves that room in no way.
    let t0 = Instant::now();
    while bridge.health().state != HealthState::Degraded {
        assert!(t0.elapsed() < WAIT, "still healthy: {:?}", bridge.health());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reason = bridge.health().reason.unwrap_or_default();
    assert!(
        reason.contains("end-to-end encrypted") && reason.contains(&room),
        "{reason}"
    );
    bridge.stop().await.unwrap();
}

/// Two bridges on one state directory (a second service started by
/// mistake) would each publish every message: the second is refused at
/// start, naming the directory, until the first has stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_directory_in_use_refuses_a_second_bridge() {
    let hs = Synapse::start().await;
    let (_alice, bot_user, _, room) = alice_and_bot_in_a_room(&hs).await;
    let state = tempfile::tempdir().unwrap();
    let cfg = token_config(&hs, &bot_user, vec![room.clone()], state.path());
    let bus = Bus::memory();
    let mut first = started("mx", cfg.clone(), &bus).await;
    let mut second = MatrixBridge::new("mx2", cfg.clone());
    let err = second.start(&bus).await.unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.contains("in use") && shown.contains(&state.path().display().to_string()),
        "{shown}"
    );
    first.stop().await.unwrap();
    let mut again = started("mx2", cfg, &bus).await;
    again.stop().await.unwrap();
}
