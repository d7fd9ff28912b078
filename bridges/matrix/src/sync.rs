//! The sync work: log in, set up rooms, then long-poll `/sync` and publish
//! every new room message once, in order.
//!
//! - The sync token is saved after each processed batch, with the ids of the
//!   events published lately; a batch cut short (stop, crash of the run) is
//!   fetched again and what was already published is skipped.
//! - `initial_sync_behavior: skip` applies only when no token was ever saved.
//! - After a restart the first sync resumes from the saved token with
//!   `full_state`; a `limited` timeline is back-filled with `/messages` down to
//!   that token, so messages sent while the bridge was down all arrive.
//! - In a room joined since the last batch (an accepted invite), messages
//!   from before our join are history and are not published.
//! - A rejected token ends the work with a permanent error at once (the
//!   client's auth-lost signal also interrupts a pending long-poll).

use std::sync::Arc;

use openagentio_core::BridgeError;
use openagentio_core::supervisor::WorkContext;
use openagentio_core::{BridgeHealth, Bus, BusError};
use serde_json::{Value, json};

use crate::api::{JoinedRoom, RoomEvent, SyncResponse};
use crate::config::{InitialSyncBehavior, MatrixAuth};
use crate::error::MatrixError;
use crate::inbound::{classify, to_envelope};
use crate::responder;
use crate::rooms;
use crate::session::{Session, login};
use crate::shared::Shared;
use crate::state::SyncCursor;

/// Timeline event types synced: messages, and memberships to see our own join.
const TIMELINE_TYPES: [&str; 3] = ["m.room.message", "m.room.member", "m.room.encryption"];
/// Back-fill pages of one gap at most (of 100 events each).
const MAX_BACKFILL_PAGES: usize = 100;

/// One run of the supervised sync work.
pub(crate) async fn run(shared: Arc<Shared>, ctx: WorkContext) -> Result<(), BridgeError> {
    match run_inner(&shared, &ctx).await {
        Ok(()) => Ok(()),
        Err(Failure::Matrix(e)) => Err(on_matrix_error(&shared, e)),
        Err(Failure::Bridge(e)) => Err(e),
    }
}

enum Failure {
    Matrix(MatrixError),
    Bridge(BridgeError),
}

impl From<MatrixError> for Failure {
    fn from(e: MatrixError) -> Self {
        Failure::Matrix(e)
    }
}

/// A rejected token is permanent for a configured token; with a password the
/// next run logs in again (same device). Permanent failures are recorded so
/// that outbound calls fail at once instead of waiting for a login.
fn on_matrix_error(shared: &Shared, e: MatrixError) -> BridgeError {
    let err = match &e {
        MatrixError::UnknownToken { .. } => {
            shared.session.send_replace(None);
            match (&shared.cfg.auth, shared.store.forget_token()) {
                (MatrixAuth::Password { .. }, Ok(())) => BridgeError::transient(
                    &shared.name,
                    format!("{e}; logging in again with the password"),
                ),
                (MatrixAuth::Password { .. }, Err(se)) => se.to_bridge_error(&shared.name),
                _ => e.to_bridge_error(&shared.name),
            }
        }
        // It served before: a proxy in front of it (restarting, reloading)
        // answered, not a wrong URL. Tried again like an outage.
        MatrixError::NotAHomeserver(m) if *shared.ready.borrow() => BridgeError::transient(
            &shared.name,
            format!("{m} (it served before: a proxy in front of the homeserver? trying again)"),
        ),
        _ => e.to_bridge_error(&shared.name),
    };
    if err.permanent {
        let message = format!("matrix bridge {}: {}", shared.name, err.message);
        // Refused credentials stay an auth failure; any other end, unavailable.
        let failure = match e.to_bus_error().code() {
            openagentio_core::ErrorCode::AuthFailure => BusError::auth(message),
            _ => BusError::unavailable(message),
        };
        shared.failed.send_replace(Some(failure));
    }
    err
}

async fn current_session(shared: &Shared) -> Result<Arc<Session>, MatrixError> {
    let existing = shared.session.borrow().clone();
    if let Some(s) = existing.filter(|s| !s.client.auth_lost().is_cancelled()) {
        return Ok(s);
    }
    let s = Arc::new(login(&shared.name, &shared.cfg, &shared.store).await?);
    shared.failed.send_replace(None);
    shared.session.send_replace(Some(s.clone()));
    Ok(s)
}

async fn run_inner(shared: &Arc<Shared>, ctx: &WorkContext) -> Result<(), Failure> {
    if !*shared.ready.borrow() {
        ctx.health
            .set(BridgeHealth::degraded("connecting to the homeserver"));
    }
    let session = current_session(shared).await?;
    {
        let mut cursor = shared.cursor.lock();
        let stale = cursor.as_ref().is_none_or(|c| c.user_id != session.user_id);
        if stale {
            *cursor = Some(
                shared
                    .store
                    .load_cursor(&session.user_id)?
                    .unwrap_or_else(|| SyncCursor {
                        user_id: session.user_id.clone(),
                        ..SyncCursor::default()
                    }),
            );
        }
    }
    rooms::setup(shared, &session).await?;
    let filter = sync_filter(shared.cfg.timeline_limit);
    let mut full_state = true;
    loop {
        let since = shared
            .cursor
            .lock()
            .as_ref()
            .and_then(|c| c.next_batch.clone());
        let initial = since.is_none();
        let timeout = if initial {
            std::time::Duration::ZERO
        } else {
            shared.cfg.sync_timeout
        };
        let resp = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return Ok(()),
            _ = session.client.auth_lost().cancelled() => {
                return Err(MatrixError::UnknownToken {
                    user_id: session.user_id.clone(),
                    errcode: "M_UNKNOWN_TOKEN".into(),
                    message: "a request was refused with this token".into(),
                    soft_logout: false,
                }.into());
            }
            r = session.client.sync(since.as_deref(), &filter, timeout, full_state && !initial) => r?,
        };
        if resp.next_batch.is_empty() {
            return Err(MatrixError::Protocol("sync answer without next_batch".into()).into());
        }
        if !shared.service_started.is_open() {
            // Connected and let in: the host may start the other bridges,
            // which this batch (what was missed) may need.
            ctx.health.set(shared.rooms.read().health());
            shared.ready.send_replace(true);
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return Ok(()),
                () = shared.service_started.wait() => {}
            }
        }
        process_batch(shared, &session, since.as_deref(), resp).await?;
        full_state = false;
        ctx.health.set(shared.rooms.read().health());
        shared.ready.send_replace(true);
    }
}

/// Saves the cursor (published event ids) if a batch ends early.
struct PersistOnDrop<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for PersistOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.shared.persist_cursor_quietly();
        }
    }
}

async fn process_batch(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    since: Option<&str>,
    resp: SyncResponse,
) -> Result<(), Failure> {
    let added = rooms::handle_invites(shared, session, &resp.rooms.invite).await?;
    let skip_history =
        since.is_none() && shared.cfg.initial_sync_behavior == InitialSyncBehavior::Skip;
    let bus = shared
        .bus()
        .map_err(|e| Failure::Bridge(BridgeError::transient(&shared.name, e.to_string())))?;
    let mut guard = PersistOnDrop {
        shared,
        armed: true,
    };
    for (room_id, room) in &resp.rooms.leave {
        rooms::left(shared, session, room_id, room);
    }
    for (room_id, room) in &resp.rooms.join {
        shared.rooms.write().joined(room_id);
        // On the first sync the whole state; later, encryption turned on
        // while running comes as a state change or in the timeline.
        rooms::check_state_for_encryption(shared, room_id, &room.state.events);
        rooms::check_state_for_encryption(shared, room_id, &room.timeline.events);
        if skip_history || !shared.rooms.read().listened.contains(room_id) {
            continue;
        }
        let events = room_events(shared, session, room_id, room, since).await?;
        for raw in &events {
            publish_event(shared, session, &bus, room_id, raw).await?;
        }
    }
    {
        let mut cursor = shared.cursor.lock();
        let c = cursor.get_or_insert_with(SyncCursor::default);
        c.invited_rooms.extend(added);
        c.next_batch = Some(resp.next_batch);
    }
    let cursor = shared.cursor.lock().clone();
    if let Some(c) = cursor {
        // The save ends in an fsync: keep it off the runtime's workers.
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || store.save_cursor(&c))
            .await
            .map_err(|e| {
                MatrixError::State(format!("the sync token save did not finish: {e}"))
            })??;
    }
    guard.armed = false;
    if skip_history {
        tracing::info!(bridge = %shared.name, "matrix: first start; history skipped, sync token saved");
    }
    Ok(())
}

/// The timeline of a room, with a `limited` gap back-filled (oldest first).
async fn room_events(
    shared: &Shared,
    session: &Session,
    room_id: &str,
    room: &JoinedRoom,
    since: Option<&str>,
) -> Result<Vec<Value>, MatrixError> {
    let mut events = Vec::new();
    if let (true, Some(prev), Some(since)) = (
        room.timeline.limited,
        room.timeline.prev_batch.as_deref(),
        since,
    ) {
        events = backfill(session, room_id, prev, since).await?;
        tracing::info!(bridge = %shared.name, room_id = %room_id, events = events.len(), "matrix: back-filled a limited timeline");
    }
    events.extend(room.timeline.events.iter().cloned());
    if since.is_some() {
        // Joined since the last batch: what came before our join is history.
        if let Some(pos) = events
            .iter()
            .rposition(|e| is_own_join(e, &session.user_id))
        {
            events.drain(..=pos);
        }
    }
    Ok(events)
}

/// Whether `ev` is our own join (not a profile change while joined).
fn is_own_join(ev: &Value, user_id: &str) -> bool {
    ev["type"] == "m.room.member"
        && ev["state_key"] == user_id
        && ev["content"]["membership"] == "join"
        && ev["unsigned"]["prev_content"]["membership"] != "join"
}

async fn backfill(
    session: &Session,
    room_id: &str,
    prev_batch: &str,
    since: &str,
) -> Result<Vec<Value>, MatrixError> {
    let filter = json!({"types": TIMELINE_TYPES, "lazy_load_members": true}).to_string();
    let mut out = Vec::new();
    let mut from = prev_batch.to_owned();
    for page_no in 0..MAX_BACKFILL_PAGES {
        if page_no + 1 == MAX_BACKFILL_PAGES {
            tracing::warn!(room_id = %room_id, pages = MAX_BACKFILL_PAGES, "matrix: gap too long to back-fill entirely; older messages are skipped");
        }
        let page = session
            .client
            .messages(room_id, &from, Some(since), true, 100, &filter)
            .await?;
        if page.chunk.is_empty() {
            break;
        }
        out.extend(page.chunk);
        match page.end {
            Some(end) if end != from => from = end,
            _ => break,
        }
    }
    out.reverse();
    Ok(out)
}

async fn publish_event(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    bus: &Bus,
    room_id: &str,
    raw: &Value,
) -> Result<(), Failure> {
    let Some(ev) = RoomEvent::parse(raw) else {
        return Ok(());
    };
    if ev.event_id.is_empty()
        || shared
            .cursor
            .lock()
            .as_ref()
            .is_some_and(|c| c.seen(&ev.event_id))
    {
        return Ok(());
    }
    let msg = match classify(&ev, &session.user_id, &shared.cfg) {
        Ok(m) => m,
        Err(crate::inbound::Skip::UnsupportedMsgtype) => {
            // Media and the like: someone posted it, so say where it went.
            let msgtype = ev.content["msgtype"].as_str().unwrap_or("");
            tracing::debug!(bridge = %shared.name, event_id = %ev.event_id, msgtype, "matrix: message not published: only text messages are");
            return Ok(());
        }
        Err(why) => {
            tracing::trace!(bridge = %shared.name, event_id = %ev.event_id, reason = ?why, "matrix: event not published");
            return Ok(());
        }
    };
    let env = to_envelope(room_id, &msg, &shared.cfg);
    // Edits are not new questions, and neither is history (a first sync
    // that replays the room's past, say).
    let history = is_history(msg.origin_server_ts);
    let is_question = msg.replaces.is_none() && !history;
    let responder_of = || {
        let rooms = shared.rooms.read();
        rooms
            .responders
            .get(room_id)
            .or(rooms.any_responder.as_ref())
            .cloned()
    };
    let responder = is_question.then(responder_of).flatten();
    if history && msg.replaces.is_none() && responder_of().is_some() {
        tracing::info!(
            bridge = %shared.name,
            room = %room_id,
            event_id = %ev.event_id,
            "matrix: published, not answered: older than {} minutes",
            QUESTION_MAX_AGE.as_secs() / 60
        );
    }
    let question = responder.as_ref().map(|_| env.clone());
    bus.publish(env).await.map_err(|e| {
        Failure::Bridge(BridgeError::transient(
            &shared.name,
            format!("cannot publish an inbound message: {e}"),
        ))
    })?;
    if let Some(c) = shared.cursor.lock().as_mut() {
        c.mark(&ev.event_id);
    }
    if let (Some(r), Some(q)) = (responder, question) {
        responder::spawn(
            shared.clone(),
            session.clone(),
            room_id.to_owned(),
            r,
            q,
            msg,
        );
    }
    Ok(())
}

/// How old a message may be and still get a responder's answer.
const QUESTION_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether a message sent at `origin_server_ts` (Unix milliseconds) is older
/// than [`QUESTION_MAX_AGE`]: read as history, not as a question waiting
/// for an answer.
fn is_history(origin_server_ts: Option<i64>) -> bool {
    let Some(sent) = origin_server_ts else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    now.saturating_sub(sent) > QUESTION_MAX_AGE.as_millis() as i64
}

/// The sync filter: room messages and memberships, encryption state, no presence.
fn sync_filter(timeline_limit: u32) -> String {
    json!({
        "presence": {"types": []},
        "account_data": {"types": []},
        "room": {
            "timeline": {"limit": timeline_limit, "types": TIMELINE_TYPES},
            "state": {"types": ["m.room.encryption"], "lazy_load_members": true},
            "ephemeral": {"types": []},
            "account_data": {"types": []},
        },
    })
    .to_string()
}
