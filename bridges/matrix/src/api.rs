//! The parts of the client-server API's JSON the bridge reads.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// `GET /sync` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SyncResponse {
    /// Token for the next sync.
    pub next_batch: String,
    /// Room sections.
    pub rooms: SyncRooms,
}

/// `rooms` of a sync answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SyncRooms {
    /// Joined rooms by id.
    pub join: BTreeMap<String, JoinedRoom>,
    /// Pending invites by room id.
    pub invite: BTreeMap<String, InvitedRoom>,
    /// Rooms the bot left, or was kicked or banned from, by id.
    pub leave: BTreeMap<String, JoinedRoom>,
}

/// A joined room in a sync answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct JoinedRoom {
    /// New timeline events.
    pub timeline: Timeline,
    /// State (all of it on a `full_state` sync).
    pub state: EventList,
}

/// A room's timeline slice.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Timeline {
    /// Events, oldest first.
    pub events: Vec<Value>,
    /// True when events were left out between the previous sync and these.
    pub limited: bool,
    /// Token to paginate backwards from the first event.
    pub prev_batch: Option<String>,
}

/// A list of raw events.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct EventList {
    /// The events.
    pub events: Vec<Value>,
}

/// An invited room in a sync answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct InvitedRoom {
    /// Stripped state of the room, with our invite membership.
    pub invite_state: EventList,
}

/// `GET /rooms/{id}/messages` answer.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct MessagesResponse {
    /// Events in the direction asked.
    pub chunk: Vec<Value>,
    /// Token to continue from; absent at the end.
    pub end: Option<String>,
}

/// `GET /account/whoami` answer.
#[derive(Debug, Deserialize)]
pub(crate) struct WhoAmI {
    /// The account.
    pub user_id: String,
    /// The device of the token.
    #[serde(default)]
    pub device_id: Option<String>,
}

/// The fields of a room event the bridge reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RoomEvent {
    /// Event id, `$...`.
    pub event_id: String,
    /// Event type, e.g. `m.room.message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Sender user id.
    pub sender: String,
    /// Server timestamp (ms).
    pub origin_server_ts: Option<i64>,
    /// Content.
    pub content: Value,
    /// Unsigned data.
    pub unsigned: Value,
    /// State key for state events.
    pub state_key: Option<String>,
}

impl RoomEvent {
    /// Parses a raw event; `None` when it is not an object.
    pub fn parse(v: &Value) -> Option<RoomEvent> {
        if !v.is_object() {
            return None;
        }
        serde_json::from_value(v.clone()).ok()
    }
}
