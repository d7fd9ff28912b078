//! Matrix bridge latency benchmark, run on demand:
//! `cargo bench -p openagentio-matrix --bench matrix_latency`.
//!
//! On one real Synapse (the test harness in `tests/support/`), measures over
//! `OAIO_BENCH_MESSAGES` messages (default 200, after 10 warm-up messages),
//! one message at a time:
//!
//! - **inbound**: from just before another user's plain `PUT /send` until the
//!   `matrix.message.received` handler runs on the bus;
//! - **outbound**: from just before `bus.publish(matrix.message.send)` until
//!   another client, long-polling `/sync`, sees the message;
//!
//! for our bridge on the in-memory bus and for the reference Python
//! `MatrixEventBridge` (openagentio 0.3.0, on its in-memory bus), which
//! `matrix_reference.py` runs and measures the same way in its own process.
//! Each bridge has its own bot account, room and other client; their messages
//! alternate (ours, reference, reference, ours, ...), so both see the same
//! machine load. Bridges and observers use the same `/sync` long-poll
//! timeout (`SYNC_TIMEOUT`). Prints a Markdown table.
//!
//! Needs Synapse (see `tests/support/synapse.rs`) and a python with
//! `openagentio[bridge]==0.3.0`: `$OAIO_REF_PYTHON`, else
//! `$HOME/.cache/openagentio/bench-venv/bin/python`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use openagentio_core::{Bridge, Bus, BusError, Envelope};
use openagentio_matrix::{MatrixAuth, MatrixBridge, MatrixConfig, Secret};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use support::client::TestClient;
use support::synapse::{Synapse, TestUser};

/// Long-poll timeout of every `/sync` (both bridges and both observers): the
/// reference default.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages each way before measuring.
const WARMUP: usize = 10;
/// Longest wait for one message.
const WAIT: Duration = Duration::from_secs(30);

const REF_HINT: &str = "the reference bridge needs a python with openagentio[bridge]==0.3.0: \
python3 -m venv $HOME/.cache/openagentio/bench-venv && \
$HOME/.cache/openagentio/bench-venv/bin/pip install 'openagentio[bridge]==0.3.0' \
(or set OAIO_REF_PYTHON)";

type Arrivals = mpsc::UnboundedReceiver<(String, Instant)>;

/// The observer's `/sync` filter (the Python side uses the same one).
fn observer_filter(room: &str) -> String {
    json!({
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "rooms": [room],
            "timeline": {"limit": 100, "types": ["m.room.message"]},
            "state": {"types": []},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    })
    .to_string()
}

/// Another client of `room` long-polling `/sync`; reports each message of
/// `sender` (body, arrival time). Returns once its first sync is done.
async fn observer(
    hs: &Synapse,
    client: &TestUser,
    room: &str,
    sender: &str,
) -> (tokio::task::JoinHandle<()>, Arrivals) {
    let http = reqwest::Client::new();
    let url = format!("{}/_matrix/client/v3/sync", hs.url());
    let filter = observer_filter(room);
    let token = client.token.clone();
    let sync = move |since: Option<String>, timeout: Duration| {
        let mut q = vec![
            ("filter", filter.clone()),
            ("timeout", timeout.as_millis().to_string()),
            ("set_presence", "offline".to_owned()),
        ];
        if let Some(s) = since {
            q.push(("since", s));
        }
        let req = http
            .get(&url)
            .bearer_auth(&token)
            .timeout(timeout + Duration::from_secs(15))
            .query(&q);
        async move {
            let v: Value = req
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .expect("observer sync")
                .json()
                .await
                .expect("observer sync body");
            v
        }
    };
    let first = sync(None, Duration::ZERO).await;
    let mut since = first["next_batch"].as_str().expect("next_batch").to_owned();
    let (tx, rx) = mpsc::unbounded_channel();
    let (room, sender) = (room.to_owned(), sender.to_owned());
    let task = tokio::spawn(async move {
        loop {
            let v = sync(Some(since.clone()), SYNC_TIMEOUT).await;
            let now = Instant::now();
            if let Some(events) = v["rooms"]["join"][&room]["timeline"]["events"].as_array() {
                for ev in events {
                    if ev["sender"] == sender.as_str() && ev["type"] == "m.room.message" {
                        let body = ev["content"]["body"].as_str().unwrap_or("").to_owned();
                        let _ = tx.send((body, now));
                    }
                }
            }
            since = v["next_batch"].as_str().expect("next_batch").to_owned();
        }
    });
    (task, rx)
}

/// Waits for `text` among the arrivals; returns its arrival time.
async fn arrival(rx: &mut Arrivals, text: &str) -> Instant {
    loop {
        let (body, at) = tokio::time::timeout(WAIT, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("{text:?} did not arrive within {WAIT:?}"))
            .expect("arrivals closed");
        if body == text {
            return at;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Our bridge on the in-memory bus, with its room's other client.
struct Ours {
    bus: Bus,
    bridge: MatrixBridge,
    client: TestClient,
    room: String,
    received: Arrivals,
    observer: Option<(tokio::task::JoinHandle<()>, Arrivals)>,
    _state: tempfile::TempDir,
}

impl Ours {
    async fn start(hs: &Synapse, client: TestClient, bot: &TestUser, room: &str) -> Ours {
        let bus = Bus::memory();
        let (tx, received) = mpsc::unbounded_channel();
        bus.subscribe("matrix.message.received", move |env| {
            let at = Instant::now();
            let text = env.payload.as_ref().and_then(|p| p["text"].as_str());
            let _ = tx.send((text.unwrap_or("").to_owned(), at));
            async { Ok::<(), BusError>(()) }
        })
        .await
        .expect("subscribe");
        let state = tempfile::tempdir().expect("state dir");
        let mut cfg = MatrixConfig::new(
            hs.url(),
            MatrixAuth::AccessToken {
                token: Secret::new(bot.token.clone()),
                user_id: bot.user_id.clone(),
                device_id: None,
            },
            vec![room.to_owned()],
            state.path(),
        );
        cfg.sync_timeout = SYNC_TIMEOUT;
        let mut bridge = MatrixBridge::new("matrix", cfg);
        bridge.start(&bus).await.expect("bridge starts");
        assert!(bridge.wait_ready(WAIT).await, "bridge not ready");
        Ours {
            bus,
            bridge,
            client,
            room: room.to_owned(),
            received,
            observer: None,
            _state: state,
        }
    }

    async fn inbound(&mut self, text: &str) -> f64 {
        let t0 = Instant::now();
        self.client.send_text(&self.room, text).await;
        ms(arrival(&mut self.received, text).await - t0)
    }

    async fn observe(&mut self, hs: &Synapse, bot: &TestUser) {
        self.observer = Some(observer(hs, &self.client.user, &self.room, &bot.user_id).await);
    }

    async fn outbound(&mut self, text: &str) -> f64 {
        let env = Envelope::new("matrix.message.send")
            .with_payload(json!({"text": text, "room_id": self.room}));
        let (_, seen) = self.observer.as_mut().expect("observer started");
        let t0 = Instant::now();
        self.bus.publish(env).await.expect("publish");
        ms(arrival(seen, text).await - t0)
    }

    async fn stop(mut self) {
        if let Some((task, _)) = self.observer.take() {
            task.abort();
        }
        self.bridge.stop().await.expect("bridge stops");
    }
}

fn reference_python() -> PathBuf {
    let py = std::env::var_os("OAIO_REF_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/openagentio/bench-venv/bin/python")
        });
    assert!(py.is_file(), "{REF_HINT} ({} does not exist)", py.display());
    py
}

/// The reference bridge in its Python process (`matrix_reference.py`),
/// driven one command per line.
struct Reference {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Reference {
    async fn start(hs: &Synapse, client: &TestUser, bot: &TestUser, room: &str) -> Reference {
        let script = format!(
            "{}/benches/matrix_reference.py",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
        );
        let mut child = tokio::process::Command::new(reference_python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{REF_HINT} ({e})"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut r = Reference {
            child,
            stdin,
            stdout,
        };
        let args = json!({
            "homeserver": hs.url(), "bot_user_id": bot.user_id, "bot_token": bot.token,
            "client_token": client.token, "room_id": room,
            "sync_timeout": SYNC_TIMEOUT.as_secs_f64(),
        });
        assert_eq!(r.ask(&args.to_string()).await, "ready");
        r
    }

    async fn ask(&mut self, line: &str) -> String {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the reference");
        match tokio::time::timeout(WAIT * 2, self.stdout.next_line()).await {
            Ok(Ok(Some(answer))) => answer,
            other => panic!("the reference bench stopped answering ({other:?}); {REF_HINT}"),
        }
    }

    async fn latency(&mut self, line: &str) -> f64 {
        let answer = self.ask(line).await;
        answer
            .parse()
            .unwrap_or_else(|_| panic!("bad answer {answer:?}"))
    }

    async fn stop(mut self) {
        let _ = self.stdin.write_all(b"quit\n").await;
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

/// Nearest-rank percentile of sorted `v`.
fn pct(v: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn row(direction: &str, bridge: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    format!(
        "| {direction} | {bridge} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
        v.len(),
        pct(&v, 50.0),
        pct(&v, 99.0),
        mean,
        v[v.len() - 1]
    )
}

fn main() {
    let n: usize = std::env::var("OAIO_BENCH_MESSAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let hs = Synapse::start().await;
        // Each bridge has its own bot, room and other client, so that neither
        // wakes the other's long-polls. Room version 11: the reference accepts
        // only room ids with a server part, which version 12 (Synapse's
        // default) drops.
        let alice = TestClient::new(&hs, &hs.register("alice").await);
        let bob = hs.register("bob").await;
        let bot = hs.register("bot").await;
        let refbot = hs.register("refbot").await;
        let new_room = |invite: &str| {
            json!({"preset": "private_chat", "invite": [invite], "room_version": "11"})
        };
        let room = alice.create_room_with(new_room(&bot.user_id)).await;
        TestClient::new(&hs, &bot).join(&room).await;
        let ref_room = TestClient::new(&hs, &bob)
            .create_room_with(new_room(&refbot.user_id))
            .await;
        TestClient::new(&hs, &refbot).join(&ref_room).await;

        let mut ours = Ours::start(&hs, alice, &bot, &room).await;
        let mut reference = Reference::start(&hs, &bob, &refbot, &ref_room).await;
        eprintln!("matrix_latency: {n} messages each way per bridge (+{WARMUP} warm-up), alternating");
        let (mut our_in, mut ref_in) = (Vec::new(), Vec::new());
        for i in 0..WARMUP + n {
            // Alternate who goes first, so neither always follows the other.
            let (a, b) = if i % 2 == 0 {
                let a = ours.inbound(&format!("rs-in-{i}")).await;
                (a, reference.latency(&format!("in ref-in-{i}")).await)
            } else {
                let b = reference.latency(&format!("in ref-in-{i}")).await;
                (ours.inbound(&format!("rs-in-{i}")).await, b)
            };
            if i >= WARMUP {
                our_in.push(a);
                ref_in.push(b);
            }
        }
        ours.observe(&hs, &bot).await;
        assert_eq!(reference.ask("observe").await, "ready");
        let (mut our_out, mut ref_out) = (Vec::new(), Vec::new());
        for i in 0..WARMUP + n {
            let (a, b) = if i % 2 == 0 {
                let a = ours.outbound(&format!("rs-out-{i}")).await;
                (a, reference.latency(&format!("out ref-out-{i}")).await)
            } else {
                let b = reference.latency(&format!("out ref-out-{i}")).await;
                (ours.outbound(&format!("rs-out-{i}")).await, b)
            };
            if i >= WARMUP {
                our_out.push(a);
                ref_out.push(b);
            }
        }
        reference.stop().await;
        ours.stop().await;

        println!(
            "Latency in ms, one message at a time, /sync long-poll timeout {} s",
            SYNC_TIMEOUT.as_secs()
        );
        println!();
        println!("| direction | bridge | messages | p50 | p99 | mean | max |");
        println!("|---|---|---|---|---|---|---|");
        let inbound = "Matrix client send → bus event";
        let outbound = "bus publish → visible to another client";
        println!("{}", row(inbound, "ours (Rust, in-memory bus)", our_in));
        println!("{}", row(inbound, "reference (Python 0.3.0, in-memory bus)", ref_in));
        println!("{}", row(outbound, "ours (Rust, in-memory bus)", our_out));
        println!("{}", row(outbound, "reference (Python 0.3.0, in-memory bus)", ref_out));
    });
}
