//! A second Matrix client for tests: plain client-server API calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::synapse::{Synapse, TestUser};

static TXN: AtomicU64 = AtomicU64::new(0);

/// A user's client.
pub struct TestClient {
    http: reqwest::Client,
    base: String,
    /// The user.
    pub user: TestUser,
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl TestClient {
    /// A client of `user` on `hs`.
    pub fn new(hs: &Synapse, user: &TestUser) -> Self {
        TestClient {
            http: reqwest::Client::new(),
            base: hs.url(),
            user: user.clone(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{}", self.base, path))
                .bearer_auth(&self.user.token);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.expect("request");
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            if status.as_u16() == 429 {
                let ms = v["retry_after_ms"].as_u64().unwrap_or(200);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                continue;
            }
            assert!(status.is_success(), "{method} {path}: {status} {v}");
            return v;
        }
    }

    /// Creates a room; `alias` is a local alias name, `invite` user ids.
    pub async fn create_room(&self, alias: Option<&str>, invite: &[&str]) -> String {
        let mut body = json!({"preset": "private_chat", "invite": invite});
        if let Some(a) = alias {
            body["room_alias_name"] = json!(a);
        }
        let v = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(body),
            )
            .await;
        v["room_id"].as_str().unwrap().to_owned()
    }

    /// Creates a room from a full `createRoom` body.
    pub async fn create_room_with(&self, body: Value) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(body),
            )
            .await;
        v["room_id"].as_str().unwrap().to_owned()
    }

    /// Whether `user_id` has joined `room`.
    pub async fn is_joined(&self, room: &str, user_id: &str) -> bool {
        let v = self
            .call(
                reqwest::Method::GET,
                &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)),
                None,
            )
            .await;
        v["joined"].get(user_id).is_some()
    }

    /// Invites `user_id`.
    pub async fn invite(&self, room: &str, user_id: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(room)),
            Some(json!({"user_id": user_id})),
        )
        .await;
    }

    /// Turns end-to-end encryption on in a room (its state; nothing is
    /// encrypted by this client).
    pub async fn enable_encryption(&self, room: &str) {
        self.call(
            reqwest::Method::PUT,
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.encryption/",
                enc(room)
            ),
            Some(json!({"algorithm": "m.megolm.v1.aes-sha2"})),
        )
        .await;
    }

    /// Kicks `user_id` from a room.
    pub async fn kick(&self, room: &str, user_id: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(room)),
            Some(json!({"user_id": user_id, "reason": "test"})),
        )
        .await;
    }

    /// Joins a room.
    pub async fn join(&self, room: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(room)),
            Some(json!({})),
        )
        .await;
    }

    /// Sends `content` as `m.room.message`; returns the event id.
    pub async fn send(&self, room: &str, content: Value) -> String {
        let txn = format!(
            "t{}-{}",
            std::process::id(),
            TXN.fetch_add(1, Ordering::Relaxed)
        );
        let v = self
            .call(
                reqwest::Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
                    enc(room)
                ),
                Some(content),
            )
            .await;
        v["event_id"].as_str().unwrap().to_owned()
    }

    /// Sends a text message.
    pub async fn send_text(&self, room: &str, body: &str) -> String {
        self.send(room, json!({"msgtype": "m.text", "body": body}))
            .await
    }

    /// Every `m.room.message` of the room, oldest first.
    pub async fn messages(&self, room: &str) -> Vec<Value> {
        let filter = enc(&json!({"types": ["m.room.message"]}).to_string());
        let v = self
            .call(
                reqwest::Method::GET,
                &format!(
                    "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000&filter={filter}",
                    enc(room)
                ),
                None,
            )
            .await;
        let mut chunk = v["chunk"].as_array().cloned().unwrap_or_default();
        chunk.reverse();
        chunk
    }

    /// Messages by `sender`, waiting until `pred` holds for them (or panicking after `limit`).
    pub async fn wait_messages_from(
        &self,
        room: &str,
        sender: &str,
        limit: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let msgs: Vec<Value> = self
                .messages(room)
                .await
                .into_iter()
                .filter(|m| m["sender"] == sender)
                .collect();
            if pred(&msgs) {
                return msgs;
            }
            assert!(
                start.elapsed() < limit,
                "condition not met within {limit:?}; messages from {sender}: {msgs:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Logs this client's token out.
    pub async fn logout(&self) {
        self.call(
            reqwest::Method::POST,
            "/_matrix/client/v3/logout",
            Some(json!({})),
        )
        .await;
    }
}
