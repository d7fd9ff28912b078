//! Rooms: configured ids and aliases resolved, joins, invites from allowed
//! inviters, and warnings about encrypted rooms (this bridge has no E2EE).

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use crate::api::{InvitedRoom, JoinedRoom, RoomEvent};
use crate::error::MatrixError;
use crate::glob::any_match;
use crate::session::Session;
use crate::shared::Shared;

/// Resolves configured rooms and responders, joins where allowed, and warns
/// about rooms not joined or encrypted.
pub(crate) async fn setup(shared: &Shared, session: &Session) -> Result<(), MatrixError> {
    let cfg = &shared.cfg;
    let joined: HashSet<String> = session.client.joined_rooms().await?.into_iter().collect();
    let mut listened = HashSet::new();
    let mut missing = Vec::new();
    for room in &cfg.room_ids {
        let id = match shared.resolve_room(session, room).await {
            Ok(id) => id,
            Err(e) if !e.is_retryable() && !e.is_permanent() => {
                tracing::warn!(bridge = %shared.name, room = %room, error = %e, "matrix: configured room cannot be resolved; skipping it");
                missing.push((room.clone(), None, "cannot be resolved"));
                continue;
            }
            Err(e) => return Err(e),
        };
        if !joined.contains(&id) {
            if cfg.auto_join {
                match session.client.join(room).await {
                    Ok(_) => {
                        tracing::info!(bridge = %shared.name, room = %room, room_id = %id, "matrix: joined configured room");
                    }
                    Err(e) if e.is_retryable() || e.is_permanent() => return Err(e),
                    Err(e) => {
                        tracing::warn!(bridge = %shared.name, room = %room, error = %e, "matrix: cannot join configured room (invite the bot)");
                        missing.push((
                            room.clone(),
                            Some(id.clone()),
                            "cannot join: invite the bot",
                        ));
                    }
                }
            } else {
                tracing::warn!(bridge = %shared.name, room = %room, room_id = %id, "matrix: the bot is not in this configured room; invite it and enable auto_join, or join it by hand");
                missing.push((room.clone(), Some(id.clone()), "the bot is not in it"));
            }
        }
        listened.insert(id);
    }
    if let Some(c) = shared.cursor.lock().as_ref() {
        listened.extend(c.invited_rooms.iter().cloned());
    }
    let mut responders = std::collections::HashMap::new();
    let mut any_responder = None;
    for r in &cfg.responders {
        if r.room == crate::config::ANY_ROOM {
            any_responder = Some(r.clone());
            continue;
        }
        match shared.resolve_room(session, &r.room).await {
            Ok(id) => {
                listened.insert(id.clone());
                responders.insert(id, r.clone());
            }
            Err(e) if e.is_retryable() || e.is_permanent() => return Err(e),
            Err(e) => {
                tracing::warn!(bridge = %shared.name, room = %r.room, error = %e, "matrix: responder room cannot be resolved; skipping it");
            }
        }
    }
    for id in &listened {
        if let Ok(Some(_)) = session
            .client
            .state_event(id, "m.room.encryption", "")
            .await
        {
            warn_encrypted(shared, id);
        }
    }
    let mut rooms = shared.rooms.write();
    rooms.listened = listened;
    rooms.missing = missing;
    rooms.responders = responders;
    rooms.any_responder = any_responder;
    Ok(())
}

/// Warns once that `room_id` is encrypted.
pub(crate) fn warn_encrypted(shared: &Shared, room_id: &str) {
    if shared
        .rooms
        .write()
        .warned_encrypted
        .insert(room_id.to_owned())
    {
        tracing::warn!(bridge = %shared.name, room_id = %room_id, "matrix: room is end-to-end encrypted; this bridge has no encryption support and cannot read its messages");
    }
}

/// Warns about listened rooms whose (full) state shows encryption.
pub(crate) fn check_state_for_encryption(shared: &Shared, room_id: &str, state: &[Value]) {
    if state
        .iter()
        .any(|e| e["type"].as_str() == Some("m.room.encryption"))
        && shared.rooms.read().listened.contains(room_id)
    {
        warn_encrypted(shared, room_id);
    }
}

/// Accepts invites to configured rooms, or from allowed inviters, when
/// `auto_join` is on. Returns rooms newly listened to through an inviter.
pub(crate) async fn handle_invites(
    shared: &Shared,
    session: &Session,
    invites: &BTreeMap<String, InvitedRoom>,
) -> Result<Vec<String>, MatrixError> {
    let mut added = Vec::new();
    if !shared.cfg.auto_join {
        return Ok(added);
    }
    for (room_id, inv) in invites {
        let inviter = inv
            .invite_state
            .events
            .iter()
            .filter_map(RoomEvent::parse)
            .find(|e| {
                e.kind == "m.room.member"
                    && e.state_key.as_deref() == Some(session.user_id.as_str())
                    && e.content["membership"] == "invite"
            })
            .map(|e| e.sender)
            .unwrap_or_default();
        let configured = shared.rooms.read().listened.contains(room_id);
        let allowed = !inviter.is_empty() && any_match(&shared.cfg.allowed_inviters, &inviter);
        if !configured && !allowed {
            tracing::info!(bridge = %shared.name, room_id = %room_id, inviter = %inviter, "matrix: ignoring invite (room not configured, inviter not allowed)");
            continue;
        }
        match session.client.join(room_id).await {
            Ok(_) => {
                tracing::info!(bridge = %shared.name, room_id = %room_id, inviter = %inviter, "matrix: accepted invite");
                if !configured {
                    shared.rooms.write().listened.insert(room_id.clone());
                    added.push(room_id.clone());
                }
            }
            Err(e) if e.is_retryable() || e.is_permanent() => return Err(e),
            Err(e) => {
                tracing::warn!(bridge = %shared.name, room_id = %room_id, error = %e, "matrix: cannot accept invite");
            }
        }
    }
    Ok(added)
}

/// The bot is out of `room_id` (its sync lists it under `leave`): when it is
/// a configured room, the bridge is degraded naming it, and says why, until
/// it is back in (invited again, with `auto_join`).
pub(crate) fn left(shared: &Shared, session: &Session, room_id: &str, room: &JoinedRoom) {
    let configured = {
        let rooms = shared.rooms.read();
        shared
            .cfg
            .room_ids
            .iter()
            .find(|r| {
                r.as_str() == room_id
                    || rooms
                        .aliases
                        .get(r.as_str())
                        .is_some_and(|(id, _)| id == room_id)
            })
            .cloned()
    };
    let Some(configured) = configured else {
        return;
    };
    let own_membership = room
        .timeline
        .events
        .iter()
        .rev()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == session.user_id.as_str());
    let why = match own_membership {
        Some(e) if e["content"]["membership"] == "ban" => "the bot was banned from it",
        Some(e) if e["sender"] != session.user_id.as_str() => "the bot was kicked from it",
        _ => "the bot left it",
    };
    tracing::warn!(bridge = %shared.name, room = %configured, room_id = %room_id, "matrix: {why}");
    let mut rooms = shared.rooms.write();
    rooms.joined(room_id);
    rooms
        .missing
        .push((configured, Some(room_id.to_owned()), why));
}
