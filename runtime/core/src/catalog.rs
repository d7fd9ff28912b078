//! The catalog of a whole bus: every service built on this runtime serves
//! [`CATALOG_TARGET`] (its targets, as [`TargetInfo`]s) in a queue group of
//! its own, so one request reaches them all. An `invoke` would keep the first
//! answer only; [`gather`] reads every answer that arrives within a short
//! grace after the first and merges the lists (a target that replicas of one
//! service both list shows once). Reference-SDK peers serve no catalog: their
//! targets are not listed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::bridge::TargetInfo;
use crate::transport::{Body, Message, STATUS_NO_RESPONDERS, Sink};
use crate::{Bus, BusError, Envelope, codec};

/// The invoke target that lists a service's targets (what `openagentio
/// targets` and the gateway's `GET /v1/agents` gather).
pub const CATALOG_TARGET: &str = "openagentio.targets";

/// How long after the first answer [`gather`] waits for the others by
/// default: services on one bus answer within milliseconds of each other.
pub const MORE_ANSWERS_GRACE: Duration = Duration::from_millis(300);

/// Hands the messages of the reply inbox over to the gathering task.
struct Inbox(mpsc::UnboundedSender<Message>);

impl Sink for Inbox {
    fn deliver(&self, msg: Message) {
        let _ = self.0.send(msg);
    }
}

/// The targets of every service on `bus` serving `tenant` (the bus's default
/// when `None`) that answers within `timeout`, sorted by name. After the
/// first answer, others are read for `grace`. `NO_HANDLER` when no service
/// serves the catalog there; `AGENT_TIMEOUT` when none answered in time;
/// `AGENT_UNAVAILABLE` at once when the transport is not connected. The
/// whole gathering is bounded by `timeout` (and `grace`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), openagentio_core::BusError> {
/// use std::time::Duration;
/// use openagentio_core::{Bus, catalog};
/// let bus = Bus::memory();
/// let none = catalog::gather(&bus, None, Duration::from_secs(1), catalog::MORE_ANSWERS_GRACE).await;
/// assert_eq!(none.unwrap_err().code(), openagentio_core::ErrorCode::NoHandler);
/// # Ok(()) }
/// ```
pub async fn gather(
    bus: &Bus,
    tenant: Option<&str>,
    timeout: Duration,
    grace: Duration,
) -> Result<Vec<TargetInfo>, BusError> {
    if let Some(t) = tenant {
        crate::subject::check_tenant(t).map_err(|e| BusError::invalid(e.to_string()))?;
    }
    let transport = bus.transport().clone();
    // Nobody could answer; and the steps below would wait for the
    // connection (a NATS flush for its own limit), not for `timeout`.
    if !transport.is_connected() {
        return Err(BusError::unavailable(
            "the bus transport is not connected: no catalog can be gathered",
        ));
    }
    let until = crate::call::later_by(Instant::now(), timeout);
    let inbox = format!("{}.catalog", transport.new_inbox_prefix());
    let (tx, mut answers) = mpsc::unbounded_channel();
    let subscribing = async {
        let sub = transport
            .subscribe(&inbox, None, Arc::new(Inbox(tx)))
            .await?;
        transport.flush().await?;
        Ok::<_, crate::transport::TransportError>(sub)
    };
    let sub = match tokio::time::timeout_at(until, subscribing).await {
        Ok(sub) => sub?,
        Err(_) => {
            return Err(BusError::timeout(format!(
                "the catalog's reply subscription was not made within {timeout:?}"
            )));
        }
    };

    let tenant = tenant.unwrap_or(bus.settings().tenant.as_str());
    let mut req = Envelope::new(crate::event_type::MESSAGE_RECEIVED)
        .with_metadata(crate::context::STREAM_KEY, Value::Bool(false))
        .with_metadata(
            crate::context::TIMEOUT_MS_KEY,
            Value::from(crate::call::whole_millis(timeout)),
        )
        .with_tenant(tenant);
    req.from = bus.settings().agent_id.clone();
    req.to = CATALOG_TARGET.into();
    req.reply_to = inbox.as_str().into();
    let subject = bus.subjects().invoke(CATALOG_TARGET, tenant);
    // The transport's reply subject too: NATS says at once when nobody serves it.
    let publishing = transport.publish(Message::envelope(subject, req).with_reply(inbox.as_str()));
    let sent = tokio::time::timeout_at(until, publishing)
        .await
        .unwrap_or(Err(crate::transport::TransportError::NotConnected(
            "the catalog request was not taken in time".into(),
        )));
    let left = until.saturating_duration_since(Instant::now());
    let result = match sent {
        Ok(()) => collect(&mut answers, left, grace).await,
        Err(e) => Err(e.into()),
    };
    let _ = sub.unsubscribe().await;
    result
}

/// Reads answers until `grace` after the first one passes (or `timeout`
/// without any).
async fn collect(
    answers: &mut mpsc::UnboundedReceiver<Message>,
    timeout: Duration,
    grace: Duration,
) -> Result<Vec<TargetInfo>, BusError> {
    let mut until = crate::call::later_by(Instant::now(), timeout);
    let mut lists: Vec<Vec<TargetInfo>> = Vec::new();
    let mut failure = None;
    loop {
        let msg = match tokio::time::timeout_at(until, answers.recv()).await {
            Ok(Some(msg)) => msg,
            Ok(None) | Err(_) => break,
        };
        if msg.status == Some(STATUS_NO_RESPONDERS) {
            if lists.is_empty() {
                return Err(BusError::no_handler(format!(
                    "no service on this bus serves {CATALOG_TARGET} (is a service running?)"
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
        until = until.min(crate::call::later_by(Instant::now(), grace));
        match frame.error() {
            Some(e) => failure = Some(e),
            None => lists.push(targets_of(frame.payload.unwrap_or(Value::Null))),
        }
    }
    if lists.is_empty() {
        return Err(failure.unwrap_or_else(|| {
            BusError::timeout(format!(
                "no service answered {CATALOG_TARGET} within {timeout:?}"
            ))
        }));
    }
    Ok(merge(lists))
}

/// The targets of one answer; entries that are not targets are passed over.
fn targets_of(answer: Value) -> Vec<TargetInfo> {
    match answer {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|t| serde_json::from_value(t).ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// The targets of every list, once each (by name), sorted by name.
fn merge(lists: Vec<Vec<TargetInfo>>) -> Vec<TargetInfo> {
    let mut merged: Vec<TargetInfo> = lists.into_iter().flatten().collect();
    // Stable: of two entries with one name, the first answer's stays.
    merged.sort_by(|a, b| a.name.cmp(&b.name));
    merged.dedup_by(|later, earlier| later.name == earlier.name);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target(name: &str, bridge: &str) -> TargetInfo {
        TargetInfo {
            name: name.into(),
            description: String::new(),
            streaming: false,
            input_schema: None,
            bridge: bridge.into(),
            upstream_name: None,
        }
    }

    #[test]
    fn lists_are_merged_once_each_by_name() {
        let merged = merge(vec![
            targets_of(
                json!([{"name": "b.x", "bridge": "b", "streaming": false}, {"name": "a.y", "bridge": "a", "streaming": true}]),
            ),
            targets_of(
                json!([{"name": "b.x", "bridge": "other", "streaming": false}, {"name": "c.z", "bridge": "c", "streaming": false}, {"no": "name"}]),
            ),
            targets_of(json!("not a list")),
        ]);
        let names: Vec<(&str, &str)> = merged
            .iter()
            .map(|t| (t.name.as_str(), t.bridge.as_str()))
            .collect();
        assert_eq!(names, [("a.y", "a"), ("b.x", "b"), ("c.z", "c")]);
    }

    #[tokio::test]
    async fn every_service_on_a_bus_is_heard() {
        let transport = crate::MemoryTransport::new();
        let bus = |id: &str| {
            Bus::builder()
                .agent_id(id)
                .transport(transport.clone())
                .build()
        };
        let (a, b, caller) = (bus("a"), bus("b"), bus("caller"));
        for (service, name) in [(&a, "a.one"), (&b, "b.one"), (&b, "a.one")] {
            let list =
                serde_json::to_value(vec![target(name, service.settings().agent_id.as_str())])
                    .unwrap();
            service
                .handle_invoke_with(
                    CATALOG_TARGET,
                    crate::HandleOptions::new()
                        .queue(format!("own-{name}-{}", service.settings().agent_id)),
                    move |_| {
                        let list = list.clone();
                        async move { Ok(list) }
                    },
                )
                .await
                .unwrap();
        }
        let all = gather(
            &caller,
            None,
            Duration::from_secs(2),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        let names: Vec<&str> = all.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.one", "b.one"]);
        // Another tenant: nobody serves the catalog there.
        let err = gather(
            &caller,
            Some("acme"),
            Duration::from_secs(2),
            MORE_ANSWERS_GRACE,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::NoHandler);
    }
}
