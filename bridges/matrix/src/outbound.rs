//! Bus event → Matrix message: payload checks, room resolution (payload, then
//! `matrix.room_id` metadata, then the session id, as the reference does), and
//! a transaction id derived from the envelope's `event_id`, so a redelivered
//! event never posts twice.

use openagentio_core::{BusError, Envelope, ErrorCode};
use serde_json::{Value, json};

use crate::config::{OutboundMsgType, SessionStrategy, is_room_ref};
use crate::inbound::{META_REPLY_TO, META_ROOM_ID, META_THREAD_ROOT};
use crate::shared::Shared;

/// A message ready to send.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Outbound {
    /// Room id or alias.
    pub room: String,
    /// `m.room.message` content.
    pub content: Value,
    /// Transaction id.
    pub txn_id: String,
}

/// The transaction id for the bus event `event_id`.
pub(crate) fn txn_id(event_id: &str) -> String {
    format!("oaio.{event_id}")
}

fn opt_str<'a>(payload: &'a Value, key: &str) -> Result<Option<&'a str>, BusError> {
    match &payload[key] {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.trim())),
        _ => Err(BusError::invalid(format!(
            "outbound payload '{key}' must be a string"
        ))),
    }
}

fn meta_str<'a>(env: &'a Envelope, key: &str) -> Option<&'a str> {
    env.metadata
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The room of an outbound event: payload `room_id`, then `matrix.room_id`
/// metadata, then the session id by strategy.
pub(crate) fn resolve_room(
    payload_room: Option<&str>,
    env: &Envelope,
    strategy: SessionStrategy,
) -> Result<String, BusError> {
    let check = |r: &str| {
        if is_room_ref(r) {
            Ok(r.to_owned())
        } else {
            Err(BusError::invalid(format!(
                "{r:?} is not a Matrix room id like '!room:example.org' or alias"
            )))
        }
    };
    if let Some(r) = payload_room {
        return check(r);
    }
    if let Some(r) = meta_str(env, META_ROOM_ID) {
        return check(r);
    }
    let sid = env.session_id.as_str();
    if sid.is_empty() {
        return Err(BusError::invalid(
            "outbound event has no 'room_id' and no session_id to derive it from",
        ));
    }
    match strategy {
        SessionStrategy::Room => check(sid),
        SessionStrategy::RoomSender => match sid.rsplit_once(":@") {
            Some((room, sender)) if sender.contains(':') => check(room),
            _ => Err(BusError::invalid(format!(
                "cannot derive the room from session_id {sid:?} with strategy room_sender"
            ))),
        },
    }
}

/// The content of a message.
pub(crate) fn message_content(
    msgtype: &str,
    text: &str,
    html: Option<&str>,
    reply_to: Option<&str>,
    thread_root: Option<&str>,
    traceparent: Option<&str>,
) -> Value {
    let mut c = json!({"msgtype": msgtype, "body": text});
    if let Some(h) = html {
        c["format"] = json!("org.matrix.custom.html");
        c["formatted_body"] = json!(h);
    }
    match (thread_root, reply_to) {
        (Some(root), reply) => {
            c["m.relates_to"] = json!({
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": reply.is_none(),
                "m.in_reply_to": {"event_id": reply.unwrap_or(root)},
            });
        }
        (None, Some(reply)) => {
            c["m.relates_to"] = json!({"m.in_reply_to": {"event_id": reply}});
        }
        (None, None) => {}
    }
    if let Some(tp) = traceparent.filter(|t| !t.is_empty()) {
        c["traceparent"] = json!(tp);
    }
    c
}

/// The edit of `original` to show `text`.
pub(crate) fn edit_content(msgtype: &str, original: &str, text: &str) -> Value {
    json!({
        "msgtype": msgtype,
        "body": format!("* {text}"),
        "m.new_content": {"msgtype": msgtype, "body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    })
}

/// Builds the message an outbound event asks for.
pub(crate) fn build(
    env: &Envelope,
    strategy: SessionStrategy,
    msgtype: OutboundMsgType,
) -> Result<Outbound, BusError> {
    let payload = env.payload_or_null();
    if !payload.is_object() {
        return Err(BusError::invalid(
            "outbound payload must be a JSON object with 'text'",
        ));
    }
    let text = match &payload["text"] {
        Value::String(s) if !s.is_empty() => s.as_str(),
        _ => {
            return Err(BusError::invalid(
                "outbound payload 'text' is required and must be a non-empty string",
            ));
        }
    };
    let html = opt_str(payload, "html")?;
    let room = resolve_room(opt_str(payload, "room_id")?, env, strategy)?;
    let reply_to = opt_str(payload, "reply_to_event_id")?.or_else(|| meta_str(env, META_REPLY_TO));
    let thread_root =
        opt_str(payload, "thread_root_event_id")?.or_else(|| meta_str(env, META_THREAD_ROOT));
    let tp = (!env.traceparent.is_empty()).then_some(env.traceparent.as_str());
    Ok(Outbound {
        room,
        content: message_content(msgtype.as_str(), text, html, reply_to, thread_root, tp),
        txn_id: txn_id(&env.event_id),
    })
}

/// Sends what `env` asks for; returns the room id and the Matrix event id.
/// How long an outbound event keeps being retried through a homeserver
/// outage before it is given up (an event has no caller to tell).
const EVENT_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);
/// The pause between two rounds of retries of an outbound event.
const EVENT_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Posts an outbound event, retrying through a homeserver outage for up to
/// [`EVENT_RETRY_WINDOW`] (the transaction id makes a retry post at most
/// once), until the bridge stops. Later events wait their turn, so the room
/// sees them in order.
pub(crate) async fn send_event(shared: &Shared, env: &Envelope) -> Result<(), BusError> {
    let started = tokio::time::Instant::now();
    loop {
        let err = match send(shared, env).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // A homeserver that cannot be reached (or is overloaded) may come
        // back; a refused message will not be accepted later either.
        let may_pass_later = err.retryable()
            || matches!(
                err.code(),
                ErrorCode::AgentUnavailable
                    | ErrorCode::TransportFailure
                    | ErrorCode::AgentTimeout
                    | ErrorCode::BackpressureDrop
            );
        // Nor will anything while the bridge has stopped for good (refused
        // credentials): later events should not wait behind this one.
        let stopped_for_good = shared.failed.borrow().is_some();
        if !may_pass_later
            || stopped_for_good
            || started.elapsed() + EVENT_RETRY_PAUSE > EVENT_RETRY_WINDOW
        {
            tracing::error!(bridge = %shared.name, event_id = %env.event_id, error = %err, "matrix: outbound event given up");
            return Err(err);
        }
        tracing::warn!(bridge = %shared.name, event_id = %env.event_id, error = %err, "matrix: outbound event not sent yet; retrying");
        tokio::select! {
            _ = tokio::time::sleep(EVENT_RETRY_PAUSE) => {}
            _ = shared.shutdown.cancelled() => return Err(err),
        }
    }
}

/// Posts `env` (one round of retries) and returns the room id and event id.
pub(crate) async fn send(shared: &Shared, env: &Envelope) -> Result<(String, String), BusError> {
    let out = build(
        env,
        shared.cfg.session_strategy,
        shared.cfg.outbound_msgtype,
    )?;
    let session = shared.session(shared.cfg.start_timeout).await?;
    let room = shared
        .resolve_room(&session, &out.room)
        .await
        .map_err(|e| e.to_bus_error())?;
    // This bridge cannot encrypt: plain text in an encrypted room would be
    // readable by the server and by anyone the room's history reaches.
    if shared.rooms.read().warned_encrypted.contains(&room) {
        return Err(BusError::invalid(format!(
            "room {room} is end-to-end encrypted, and this bridge cannot encrypt: the \
             message was not sent"
        )));
    }
    let event_id = session
        .client
        .send(&room, "m.room.message", &out.txn_id, &out.content)
        .await
        .map_err(|e| {
            tracing::warn!(bridge = %shared.name, room = %room, error = %e, "matrix: outbound message failed");
            e.to_bus_error()
        })?;
    tracing::debug!(bridge = %shared.name, room = %room, event_id = %event_id, "matrix: message sent");
    Ok((room, event_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(payload: Value) -> Envelope {
        Envelope::new("matrix.message.send").with_payload(payload)
    }

    #[test]
    fn room_resolves_from_payload_then_metadata_then_session() {
        let mut e = env(json!({"text": "x"}));
        e.session_id = "!s:x:@u:x".into();
        assert_eq!(
            resolve_room(None, &e, SessionStrategy::RoomSender).unwrap(),
            "!s:x"
        );
        assert!(resolve_room(None, &e, SessionStrategy::Room).is_ok());
        e.metadata.insert(META_ROOM_ID.into(), json!("!m:x"));
        assert_eq!(
            resolve_room(None, &e, SessionStrategy::Room).unwrap(),
            "!m:x"
        );
        assert_eq!(
            resolve_room(Some("#a:x"), &e, SessionStrategy::Room).unwrap(),
            "#a:x"
        );
        assert!(resolve_room(Some("room"), &e, SessionStrategy::Room).is_err());
        // Room version 12 ids have no server part.
        e.metadata.clear();
        e.session_id = "!abc:@u:x".into();
        assert_eq!(
            resolve_room(None, &e, SessionStrategy::RoomSender).unwrap(),
            "!abc"
        );
        let bare = env(json!({"text": "x"}));
        assert!(resolve_room(None, &bare, SessionStrategy::Room).is_err());
    }

    #[test]
    fn content_and_txn_follow_the_envelope() {
        let mut e = env(
            json!({"text": "hi", "html": "<i>hi</i>", "room_id": "!r:x", "reply_to_event_id": "$q"}),
        );
        e.metadata.insert(META_THREAD_ROOT.into(), json!("$root"));
        let out = build(&e, SessionStrategy::Room, OutboundMsgType::Notice).unwrap();
        assert_eq!(out.txn_id, format!("oaio.{}", e.event_id));
        assert_eq!(out.content["msgtype"], "m.notice");
        assert_eq!(out.content["formatted_body"], "<i>hi</i>");
        assert_eq!(out.content["m.relates_to"]["rel_type"], "m.thread");
        assert_eq!(out.content["m.relates_to"]["event_id"], "$root");
        assert_eq!(
            out.content["m.relates_to"]["m.in_reply_to"]["event_id"],
            "$q"
        );
        assert_eq!(out.content["m.relates_to"]["is_falling_back"], false);
        let again = build(&e, SessionStrategy::Room, OutboundMsgType::Notice).unwrap();
        assert_eq!(again.txn_id, out.txn_id);
    }

    #[test]
    fn bad_payloads_are_invalid_requests() {
        for p in [
            json!("text"),
            json!({"text": ""}),
            json!({"text": "x", "html": 3, "room_id": "!r:x"}),
        ] {
            let err = build(&env(p), SessionStrategy::Room, OutboundMsgType::Text).unwrap_err();
            assert_eq!(err.code(), openagentio_core::ErrorCode::InvalidRequest);
        }
    }
}
