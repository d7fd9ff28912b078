//! `openagentio targets` over the bus: every service's catalog, merged.
//!
//! Each service serves the catalog target in a queue group of its own, so one
//! request reaches them all. An `invoke` would keep the first answer only;
//! here every answer that arrives within a short grace after the first is
//! read, and the lists are merged (a target that replicas of one service
//! both list shows once).

use std::sync::Arc;
use std::time::Duration;

use openagentio_core::transport::{Body, Message, STATUS_NO_RESPONDERS, Sink};
use openagentio_core::{Bus, BusError, Envelope, codec};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long after the first answer the others are waited for: services on
/// one bus answer within milliseconds of each other.
const MORE_ANSWERS_GRACE: Duration = Duration::from_millis(300);

/// Hands the messages of the reply inbox over to the gathering task.
struct Inbox(mpsc::UnboundedSender<Message>);

impl Sink for Inbox {
    fn deliver(&self, msg: Message) {
        let _ = self.0.send(msg);
    }
}

/// The targets of every service on `bus` that answers within `timeout`, as
/// one JSON array sorted by name.
pub async fn gather(bus: &Bus, tenant: Option<&str>, timeout: Duration) -> Result<Value, BusError> {
    let transport = bus.transport().clone();
    let inbox = format!("{}.catalog", transport.new_inbox_prefix());
    let (tx, mut answers) = mpsc::unbounded_channel();
    let sub = transport
        .subscribe(&inbox, None, Arc::new(Inbox(tx)))
        .await?;
    transport.flush().await?;

    let tenant = tenant.unwrap_or(bus.settings().tenant.as_str());
    let mut req = Envelope::new("agent.message.received")
        .with_metadata(openagentio_core::context::STREAM_KEY, Value::Bool(false))
        .with_metadata(
            openagentio_core::context::TIMEOUT_MS_KEY,
            Value::from(timeout.as_millis() as u64),
        )
        .with_tenant(tenant);
    req.from = bus.settings().agent_id.clone();
    req.to = openagentio_host::CATALOG_TARGET.into();
    req.reply_to = inbox.as_str().into();
    let subject = bus
        .subjects()
        .invoke(openagentio_host::CATALOG_TARGET, tenant);
    // The transport's reply subject too: NATS says at once when nobody serves it.
    transport
        .publish(Message::envelope(subject, req).with_reply(inbox.as_str()))
        .await?;

    let result = collect(&mut answers, timeout).await;
    let _ = sub.unsubscribe().await;
    result
}

/// Reads answers until the grace after the first one passes (or `timeout`
/// without any).
async fn collect(
    answers: &mut mpsc::UnboundedReceiver<Message>,
    timeout: Duration,
) -> Result<Value, BusError> {
    let mut until = Instant::now() + timeout;
    let mut lists: Vec<Value> = Vec::new();
    let mut failure = None;
    loop {
        let msg = match tokio::time::timeout_at(until, answers.recv()).await {
            Ok(Some(msg)) => msg,
            Ok(None) | Err(_) => break,
        };
        if msg.status == Some(STATUS_NO_RESPONDERS) {
            if lists.is_empty() {
                return Err(BusError::no_handler(format!(
                    "no service on this bus serves {} (is a service running?)",
                    openagentio_host::CATALOG_TARGET
                )));
            }
            continue;
        }
        let frame = match msg.body {
            Body::Envelope(env) => Arc::unwrap_or_clone(env),
            Body::Bytes(bytes) => match codec::decode(&bytes) {
                Ok(env) => env,
                Err(_) => continue, // not an answer of ours
            },
        };
        if !frame.is_terminal() {
            continue;
        }
        // The first answer starts the grace; later ones do not move it.
        until = until.min(Instant::now() + MORE_ANSWERS_GRACE);
        match frame.error() {
            Some(e) => failure = Some(e),
            None => lists.push(frame.payload.unwrap_or(Value::Null)),
        }
    }
    if lists.is_empty() {
        return Err(failure.unwrap_or_else(|| {
            BusError::timeout(format!(
                "no service answered {} within {timeout:?}",
                openagentio_host::CATALOG_TARGET
            ))
        }));
    }
    Ok(merge(lists))
}

/// The targets of every list, once each (by name), sorted by name.
fn merge(lists: Vec<Value>) -> Value {
    let mut merged: Vec<Value> = Vec::new();
    for list in lists {
        let Value::Array(items) = list else { continue };
        for item in items {
            if !merged.iter().any(|m| m["name"] == item["name"]) {
                merged.push(item);
            }
        }
    }
    merged.sort_by(|a, b| {
        a["name"]
            .as_str()
            .unwrap_or("")
            .cmp(b["name"].as_str().unwrap_or(""))
    });
    Value::Array(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_are_merged_once_each_by_name() {
        let merged = merge(vec![
            json!([{"name": "b.x", "bridge": "b"}, {"name": "a.y", "bridge": "a"}]),
            json!([{"name": "b.x", "bridge": "b"}, {"name": "c.z", "bridge": "c"}]),
            json!("not a list"),
        ]);
        let names: Vec<&str> = merged
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a.y", "b.x", "c.z"]);
    }
}
