//! Matrix room message → bus event: the reference payload, `matrix.*`
//! metadata, session by strategy, trace context from the message content.

use openagentio_core::{Envelope, Text, TraceContext};
use serde_json::{Map, json};

use crate::api::RoomEvent;
use crate::config::{MatrixConfig, SessionStrategy};
use crate::glob::any_match;

/// Metadata key: the room id.
pub const META_ROOM_ID: &str = "matrix.room_id";
/// Metadata key: the sender.
pub const META_SENDER: &str = "matrix.sender";
/// Metadata key: the Matrix event id.
pub const META_EVENT_ID: &str = "matrix.event_id";
/// Metadata key: the event id the message replies to (not set for the
/// fallback reply of a thread message).
pub const META_IN_REPLY_TO: &str = "matrix.in_reply_to_event_id";
/// Metadata key: the thread root of a message in a thread. Outbound messages
/// carrying it (as agents' answers inherit metadata) go to the same thread.
pub const META_THREAD_ROOT: &str = "matrix.thread_root_event_id";
/// Metadata key: the event id an edit replaces.
pub const META_REPLACES: &str = "matrix.replaces_event_id";
/// Metadata key read on outbound events: the event to reply to (reference key).
pub const META_REPLY_TO: &str = "matrix.reply_to_event_id";

/// A room message the bridge publishes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Inbound {
    pub event_id: String,
    pub sender: String,
    pub text: String,
    pub html: Option<String>,
    pub msgtype: String,
    pub origin_server_ts: Option<i64>,
    pub traceparent: Option<String>,
    pub in_reply_to: Option<String>,
    pub thread_root: Option<String>,
    /// Set for edits: the event edited.
    pub replaces: Option<String>,
}

/// Why an event is not published (for debug logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    NotAMessage,
    OwnMessage,
    Notice,
    UnsupportedMsgtype,
    NoBody,
    SenderNotAllowed,
}

/// Classifies a timeline event.
pub(crate) fn classify(
    ev: &RoomEvent,
    own_user: &str,
    cfg: &MatrixConfig,
) -> Result<Inbound, Skip> {
    if ev.kind != "m.room.message" || ev.event_id.is_empty() || !ev.content.is_object() {
        return Err(Skip::NotAMessage);
    }
    if ev.sender.is_empty() || ev.sender == own_user {
        return Err(Skip::OwnMessage);
    }
    if !cfg.sender_allowlist.is_empty() && !any_match(&cfg.sender_allowlist, &ev.sender) {
        return Err(Skip::SenderNotAllowed);
    }
    let rel = &ev.content["m.relates_to"];
    let rel_type = rel["rel_type"].as_str().unwrap_or("");
    let (content, replaces) = if rel_type == "m.replace" && ev.content["m.new_content"].is_object()
    {
        (
            &ev.content["m.new_content"],
            rel["event_id"].as_str().map(str::to_owned),
        )
    } else {
        (&ev.content, None)
    };
    let msgtype = content["msgtype"].as_str().unwrap_or("");
    match msgtype {
        "m.text" | "m.emote" => {}
        "m.notice" if !cfg.ignore_notices => {}
        "m.notice" => return Err(Skip::Notice),
        _ => return Err(Skip::UnsupportedMsgtype),
    }
    let Some(mut text) = content["body"].as_str().map(str::to_owned) else {
        return Err(Skip::NoBody);
    };
    let mut html = (content["format"].as_str() == Some("org.matrix.custom.html"))
        .then(|| content["formatted_body"].as_str().map(str::to_owned))
        .flatten();
    let (mut in_reply_to, mut thread_root) = (None, None);
    if replaces.is_none() {
        let reply = rel["m.in_reply_to"]["event_id"].as_str().map(str::to_owned);
        if rel_type == "m.thread" {
            thread_root = rel["event_id"].as_str().map(str::to_owned);
            if rel["is_falling_back"].as_bool() != Some(true) {
                in_reply_to = reply;
            }
        } else {
            in_reply_to = reply;
        }
    }
    if in_reply_to.is_some() {
        text = strip_reply_fallback(&text);
        html = html.map(|h| strip_mx_reply(&h));
    }
    if text.trim().is_empty() {
        return Err(Skip::NoBody);
    }
    let traceparent = [&ev.content["traceparent"], &ev.unsigned["traceparent"]]
        .into_iter()
        .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned));
    Ok(Inbound {
        event_id: ev.event_id.clone(),
        sender: ev.sender.clone(),
        text,
        html,
        msgtype: msgtype.to_owned(),
        origin_server_ts: ev.origin_server_ts,
        traceparent,
        in_reply_to,
        thread_root,
        replaces,
    })
}

/// The session id of a message by `sender` in `room_id`.
pub(crate) fn session_id(strategy: SessionStrategy, room_id: &str, sender: &str) -> String {
    match strategy {
        SessionStrategy::Room => room_id.to_owned(),
        SessionStrategy::RoomSender => format!("{room_id}:{sender}"),
    }
}

/// The bus event for `msg` in `room_id`.
pub(crate) fn to_envelope(room_id: &str, msg: &Inbound, cfg: &MatrixConfig) -> Envelope {
    let event_type = if msg.replaces.is_some() {
        &cfg.inbound_edit_event
    } else {
        &cfg.inbound_message_event
    };
    let mut payload = json!({
        "text": msg.text,
        "html": msg.html,
        "room_id": room_id,
        "sender": msg.sender,
        "event_id": msg.event_id,
        "origin_server_ts": msg.origin_server_ts,
        "msgtype": msg.msgtype,
    });
    let mut meta = Map::new();
    meta.insert(META_ROOM_ID.into(), json!(room_id));
    meta.insert(META_SENDER.into(), json!(msg.sender));
    meta.insert(META_EVENT_ID.into(), json!(msg.event_id));
    meta.insert(
        "matrix.origin_server_ts".into(),
        json!(msg.origin_server_ts),
    );
    meta.insert("matrix.msgtype".into(), json!(msg.msgtype));
    if let Some(h) = &msg.html {
        meta.insert("matrix.html".into(), json!(h));
    }
    if let Some(t) = &msg.traceparent {
        meta.insert("matrix.traceparent".into(), json!(t));
    }
    if let Some(r) = &msg.in_reply_to {
        meta.insert(META_IN_REPLY_TO.into(), json!(r));
    }
    if let Some(r) = &msg.thread_root {
        meta.insert(META_THREAD_ROOT.into(), json!(r));
    }
    if let Some(r) = &msg.replaces {
        meta.insert(META_REPLACES.into(), json!(r));
        payload["replaces_event_id"] = json!(r);
    }
    let mut env = Envelope::new(event_type.as_str()).with_payload(payload);
    env.metadata = meta;
    env.conversation_id = room_id.into();
    env.correlation_id = msg.event_id.as_str().into();
    env.channel = Text::new_static("matrix");
    env.session_id = session_id(cfg.session_strategy, room_id, &msg.sender).into();
    if let Some(tp) = &msg.traceparent {
        env.traceparent = tp.as_str().into();
        if let Some(t) = TraceContext::parse(tp) {
            env.trace_id = t.trace_id;
            env.span_id = t.span_id;
        }
    }
    env
}

/// Removes the reply fallback a client puts before a reply's text, in the
/// shape the spec gives it: `> <@sender:server> ...` (or `> * <@...` for an
/// emote), more `> ` lines, then a blank line. Quoted lines of the user's own
/// (clients since Matrix 1.13 send no fallback) are kept.
fn strip_reply_fallback(body: &str) -> String {
    if !(body.starts_with("> <@") || body.starts_with("> * <@")) {
        return body.to_owned();
    }
    let mut lines = body.lines().peekable();
    while lines.peek().is_some_and(|l| l.starts_with('>')) {
        lines.next();
    }
    if lines.peek().is_some_and(|l| l.is_empty()) {
        lines.next();
        return lines.collect::<Vec<_>>().join("\n");
    }
    body.to_owned()
}

/// Removes an `<mx-reply>…</mx-reply>` block from HTML.
fn strip_mx_reply(html: &str) -> String {
    match (html.find("<mx-reply>"), html.find("</mx-reply>")) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}", &html[..a], &html[b + "</mx-reply>".len()..])
        }
        _ => html.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MatrixAuth;
    use crate::secret::Secret;
    use serde_json::Value;

    fn cfg() -> MatrixConfig {
        MatrixConfig::new(
            "http://x",
            MatrixAuth::AccessToken {
                token: Secret::new("t"),
                user_id: "@bot:x".into(),
                device_id: None,
            },
            vec!["!r:x".into()],
            "/tmp",
        )
    }

    fn ev(v: Value) -> RoomEvent {
        RoomEvent::parse(&v).unwrap()
    }

    fn msg(content: Value) -> RoomEvent {
        ev(
            json!({"type": "m.room.message", "event_id": "$e", "sender": "@u:x", "origin_server_ts": 5, "content": content}),
        )
    }

    #[test]
    fn text_message_maps_to_the_reference_payload() {
        let m = classify(&msg(json!({"msgtype": "m.text", "body": "hi", "format": "org.matrix.custom.html", "formatted_body": "<b>hi</b>", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})), "@bot:x", &cfg()).unwrap();
        let env = to_envelope("!r:x", &m, &cfg());
        assert_eq!(env.event_type, "matrix.message.received");
        assert_eq!(
            env.payload.unwrap(),
            json!({"text": "hi", "html": "<b>hi</b>", "room_id": "!r:x", "sender": "@u:x", "event_id": "$e", "origin_server_ts": 5, "msgtype": "m.text"})
        );
        assert_eq!(env.session_id, "!r:x");
        assert_eq!(env.conversation_id, "!r:x");
        assert_eq!(env.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(env.metadata["matrix.html"], "<b>hi</b>");
        assert_eq!(
            env.metadata["matrix.traceparent"],
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
    }

    #[test]
    fn own_notices_and_unknown_are_skipped() {
        let c = cfg();
        let own = ev(
            json!({"type": "m.room.message", "event_id": "$e", "sender": "@bot:x", "content": {"msgtype": "m.text", "body": "x"}}),
        );
        assert_eq!(classify(&own, "@bot:x", &c), Err(Skip::OwnMessage));
        let notice = msg(json!({"msgtype": "m.notice", "body": "x"}));
        assert_eq!(classify(&notice, "@bot:x", &c), Err(Skip::Notice));
        let mut c2 = cfg();
        c2.ignore_notices = false;
        assert!(classify(&notice, "@bot:x", &c2).is_ok());
        assert_eq!(
            classify(
                &msg(json!({"msgtype": "m.image", "body": "a.png"})),
                "@bot:x",
                &c
            ),
            Err(Skip::UnsupportedMsgtype)
        );
        c2.sender_allowlist = vec!["@admin*:x".into()];
        assert_eq!(
            classify(&notice, "@bot:x", &c2),
            Err(Skip::SenderNotAllowed)
        );
    }

    #[test]
    fn replies_threads_and_edits_are_described() {
        let c = cfg();
        let reply = classify(&msg(json!({"msgtype": "m.text", "body": "> <@a:x> old\n\nnew", "m.relates_to": {"m.in_reply_to": {"event_id": "$old"}}})), "@bot:x", &c).unwrap();
        assert_eq!(reply.text, "new");
        assert_eq!(reply.in_reply_to.as_deref(), Some("$old"));
        let thread = classify(&msg(json!({"msgtype": "m.text", "body": "t", "m.relates_to": {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": true, "m.in_reply_to": {"event_id": "$last"}}})), "@bot:x", &c).unwrap();
        assert_eq!(thread.thread_root.as_deref(), Some("$root"));
        assert_eq!(thread.in_reply_to, None);
        let edit = classify(&msg(json!({"msgtype": "m.text", "body": "* fixed", "m.new_content": {"msgtype": "m.text", "body": "fixed"}, "m.relates_to": {"rel_type": "m.replace", "event_id": "$orig"}})), "@bot:x", &c).unwrap();
        assert_eq!(edit.text, "fixed");
        let env = to_envelope("!r:x", &edit, &c);
        assert_eq!(env.event_type, "matrix.message.edited");
        assert_eq!(env.metadata[META_REPLACES], "$orig");
        assert_eq!(env.payload.unwrap()["replaces_event_id"], "$orig");
    }

    #[test]
    fn room_sender_sessions() {
        assert_eq!(
            session_id(SessionStrategy::RoomSender, "!r:x", "@u:x"),
            "!r:x:@u:x"
        );
    }

    #[test]
    fn only_the_specs_fallback_shape_is_stripped() {
        assert_eq!(strip_reply_fallback("> <@a:x> old\n> more\n\nnew"), "new");
        assert_eq!(strip_reply_fallback("> * <@a:x> waves\n\nhi"), "hi");
        let own = "> quoted by user on purpose\nnot a fallback";
        assert_eq!(strip_reply_fallback(own), own);
        let no_blank = "> <@a:x> looks like one\nbut no blank line";
        assert_eq!(strip_reply_fallback(no_blank), no_blank);
    }

    #[test]
    fn mx_reply_is_stripped() {
        assert_eq!(
            strip_mx_reply("<mx-reply><blockquote>q</blockquote></mx-reply>answer"),
            "answer"
        );
    }
}
