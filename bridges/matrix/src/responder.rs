//! The responder: a room wired to a bus stream target. Each inbound message is
//! sent to the target with the room's session; the answer is posted once and
//! edited as deltas arrive (throttled and capped), with a typing notice while
//! waiting. An error frame becomes a short notice in the room.

use std::sync::Arc;
use std::time::Duration;

use openagentio_core::{BusError, CallOptions, Envelope};
use serde_json::Value;
use tokio::time::Instant;

use crate::config::Responder;
use crate::error::MatrixError;
use crate::inbound::Inbound;
use crate::outbound::{edit_content, message_content};
use crate::session::Session;
use crate::shared::Shared;

/// How long one typing notice lasts; it is renewed before it runs out.
const TYPING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a finished answer is tried again while the homeserver is away.
const FINAL_RETRY_WINDOW: Duration = Duration::from_secs(300);
/// Longest error notice.
const MAX_NOTICE: usize = 300;
/// Longest answer text shown, in bytes. A Matrix event holds at most 64 KiB,
/// and an edit carries its text twice (`body` and `m.new_content`).
const MAX_ANSWER_BYTES: usize = 24_000;
/// What replaces the rest of an answer too long to show.
const TRUNCATED: &str = "\n\n[… the answer is too long for one Matrix message; cut here]";

/// `text`, cut (at a character boundary) to fit in one Matrix message.
fn fit(text: &str) -> std::borrow::Cow<'_, str> {
    if text.len() <= MAX_ANSWER_BYTES {
        return text.into();
    }
    let mut end = MAX_ANSWER_BYTES - TRUNCATED.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED}", &text[..end]).into()
}

/// Answers `question` (already published) in the background.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    session: Arc<Session>,
    room_id: String,
    responder: Responder,
    question: Envelope,
    msg: Inbound,
) {
    let stop = shared.shutdown.child_token();
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        let typing = responder
            .typing
            .then(|| spawn_typing(session.clone(), room_id.clone()));
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = respond(&shared, &session, &room_id, &responder, question, &msg) => {}
        }
        if let Some(typing) = typing {
            typing.abort();
            if let Err(e) = session.client.typing(&room_id, false, TYPING_TIMEOUT).await {
                tracing::debug!(error = %e, "matrix: cannot clear the typing notice");
            }
        }
    });
}

fn spawn_typing(session: Arc<Session>, room_id: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = session.client.typing(&room_id, true, TYPING_TIMEOUT).await {
                tracing::debug!(error = %e, "matrix: cannot send a typing notice");
            }
            tokio::time::sleep(TYPING_TIMEOUT - Duration::from_secs(5)).await;
        }
    })
}

/// The answer message being built.
struct Answer<'a> {
    shared: &'a Shared,
    session: &'a Session,
    room_id: &'a str,
    question: &'a Inbound,
    /// The posted message's event id.
    posted: Option<String>,
    /// What the room shows now.
    shown: String,
    edits: u32,
    last_edit: Instant,
}

impl Answer<'_> {
    fn txn(&self, suffix: &str) -> String {
        format!("oaio.resp.{}{suffix}", self.question.event_id)
    }

    async fn post(&mut self, text: &str) -> Result<(), MatrixError> {
        let text = &*fit(text);
        let content = message_content(
            self.shared.cfg.outbound_msgtype.as_str(),
            text,
            None,
            Some(&self.question.event_id),
            self.question.thread_root.as_deref(),
            None,
        );
        let id = self
            .session
            .client
            .send(self.room_id, "m.room.message", &self.txn(""), &content)
            .await?;
        self.posted = Some(id);
        self.shown = text.to_owned();
        self.last_edit = Instant::now();
        Ok(())
    }

    async fn edit(&mut self, text: &str) -> Result<(), MatrixError> {
        let Some(original) = self.posted.clone() else {
            return self.post(text).await;
        };
        let text = &*fit(text);
        if text == self.shown {
            return Ok(());
        }
        // Numbered once it is sent: an edit tried again keeps its
        // transaction id, so the homeserver posts it at most once.
        let next = self.edits + 1;
        let content = edit_content(self.shared.cfg.outbound_msgtype.as_str(), &original, text);
        self.session
            .client
            .send(
                self.room_id,
                "m.room.message",
                &self.txn(&format!(".{next}")),
                &content,
            )
            .await?;
        self.edits = next;
        self.shown = text.to_owned();
        self.last_edit = Instant::now();
        Ok(())
    }

    /// The whole answer shown, tried again through a homeserver outage for
    /// up to [`FINAL_RETRY_WINDOW`] (the answer is ready; only the room is
    /// away).
    async fn show_final(&mut self, text: &str) -> Result<(), MatrixError> {
        let until = Instant::now() + FINAL_RETRY_WINDOW;
        let mut wait = Duration::from_secs(1);
        loop {
            match self.edit(text).await {
                Err(e) if e.is_retryable() && Instant::now() + wait < until => {
                    tracing::debug!(bridge = %self.shared.name, error = %e, "matrix: the answer is not shown yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(30));
                }
                done => return done,
            }
        }
    }

    async fn notice(&self, what: &str, why: &str) {
        let mut text = format!("⚠️ {what}: {why}");
        if text.chars().count() > MAX_NOTICE {
            text = text.chars().take(MAX_NOTICE - 1).collect::<String>() + "…";
        }
        let content = message_content(
            "m.notice",
            &text,
            None,
            Some(&self.question.event_id),
            self.question.thread_root.as_deref(),
            None,
        );
        if let Err(e) = self
            .session
            .client
            .send(self.room_id, "m.room.message", &self.txn(".err"), &content)
            .await
        {
            tracing::warn!(bridge = %self.shared.name, error = %e, "matrix: cannot post the responder's error notice");
        }
    }
}

/// The text of a final payload: `result` (or the payload), as text.
fn final_text(payload: &Value) -> String {
    let v = payload.get("result").unwrap_or(payload);
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Object(o) => ["text", "content", "answer", "message"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

async fn respond(
    shared: &Shared,
    session: &Session,
    room_id: &str,
    r: &Responder,
    question: Envelope,
    msg: &Inbound,
) {
    let mut answer = Answer {
        shared,
        session,
        room_id,
        question: msg,
        posted: None,
        shown: String::new(),
        edits: 0,
        last_edit: Instant::now(),
    };
    match converse(&mut answer, r, question).await {
        Ok(()) => {}
        Err(Failed::Target(e)) => {
            tracing::warn!(bridge = %shared.name, room_id = %room_id, target = %r.target, error = %e, "matrix: responder failed");
            answer
                .notice(&format!("{} failed", r.target), e.message())
                .await;
        }
        // The target answered; the room could not be given it.
        Err(Failed::Homeserver(e)) => {
            tracing::warn!(bridge = %shared.name, room_id = %room_id, target = %r.target, error = %e, "matrix: the responder's answer could not be posted");
            answer
                .notice("the answer could not be posted", &e.to_string())
                .await;
        }
    }
}

/// Why a responder did not show its answer.
enum Failed {
    /// The target failed (its error frame, a timeout, no handler).
    Target(BusError),
    /// The homeserver would not take the answer.
    Homeserver(MatrixError),
}

impl From<BusError> for Failed {
    fn from(e: BusError) -> Self {
        Failed::Target(e)
    }
}

impl From<MatrixError> for Failed {
    fn from(e: MatrixError) -> Self {
        Failed::Homeserver(e)
    }
}

async fn converse(a: &mut Answer<'_>, r: &Responder, question: Envelope) -> Result<(), Failed> {
    let bus = a.shared.bus()?;
    let mut opts = CallOptions::new()
        .session(question.session_id.clone())
        .conversation(question.conversation_id.clone())
        .channel("matrix")
        .timeout(r.timeout);
    if !question.traceparent.is_empty() {
        opts = opts.traceparent(question.traceparent.clone());
    }
    // The target gets the question's text alone: it is a chat request, and a
    // chat target (the SSE bridge) passes a payload's other keys on to the
    // model as request parameters. The Matrix details stay in `matrix.*`
    // metadata, which the target sees and which no bridge forwards upstream.
    opts.metadata = question.metadata.clone();
    let payload = serde_json::json!({ "text": a.question.text });
    let mut stream = bus.stream_invoke_with(&r.target, payload, opts).await?;
    let mut text = String::new();
    let mut dirty = false;
    loop {
        let can_edit = a.edits + 1 < r.max_edits;
        let flush_at =
            (dirty && a.posted.is_some() && can_edit).then(|| a.last_edit + r.edit_interval);
        tokio::select! {
            frame = stream.next() => {
                let Some(frame) = frame else { break };
                let frame = frame?;
                if let Some(err) = frame.error() {
                    return Err(Failed::Target(err));
                }
                if frame.is_terminal() {
                    if text.trim().is_empty() {
                        text = final_text(frame.payload_or_null());
                    }
                    break;
                }
                if let Some(delta) = frame.payload_or_null().get("delta").and_then(Value::as_str) {
                    text.push_str(delta);
                    // A homeserver away mid-answer does not stop it: what
                    // could not be shown is shown with a later edit.
                    if a.posted.is_none() && !text.trim().is_empty() {
                        if let Err(e) = a.post(&text).await
                            && !e.is_retryable()
                        {
                            return Err(Failed::Homeserver(e));
                        }
                    } else {
                        dirty = text != a.shown;
                    }
                }
            }
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                match a.edit(&text).await {
                    Ok(()) => dirty = false,
                    Err(e) if e.is_retryable() => a.last_edit = Instant::now(),
                    Err(e) => return Err(Failed::Homeserver(e)),
                }
            }
        }
    }
    if text.trim().is_empty() {
        if a.posted.is_none() {
            tracing::info!(bridge = %a.shared.name, target = %r.target, "matrix: responder target gave an empty answer");
        }
        return Ok(());
    }
    Ok(a.show_final(&text).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn final_text_reads_common_shapes() {
        assert_eq!(final_text(&json!({"result": "hi"})), "hi");
        assert_eq!(final_text(&json!({"result": {"text": "a"}})), "a");
        assert_eq!(final_text(&json!({"content": "c"})), "c");
        assert_eq!(final_text(&json!(null)), "");
        assert_eq!(final_text(&json!({"result": 3})), "3");
    }

    #[test]
    fn long_answers_are_cut_to_fit_one_message() {
        assert_eq!(fit("short"), "short");
        let long = "é".repeat(MAX_ANSWER_BYTES); // two bytes each
        let cut = fit(&long);
        assert!(cut.len() <= MAX_ANSWER_BYTES, "{}", cut.len());
        assert!(cut.ends_with(TRUNCATED));
        assert!(cut.starts_with("éé"));
    }
}
