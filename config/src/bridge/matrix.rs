//! `type: matrix_event`: messages in Matrix rooms become bus events, and bus events
//! addressed to a room become Matrix messages; an invoke target `{name}.send`.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::{Claim, TargetClaim, ignore_reference_mappings, supervision::SupervisionConfig};
use crate::error::Report;
use crate::glob::Glob;
use crate::path::Path;
use crate::reader::Obj;
use crate::secret::Secret;
use crate::values::{
    Choice, Sign, boolean, choice, duration, file_path, glob, list, non_empty, secret, string,
    subject_name, url, whole,
};

/// The default `config.sync_timeout`: 30 s, as the reference.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// The default `config.reconnect_delay`: 2 s, as the reference.
pub const DEFAULT_RECONNECT_DELAY: Duration = Duration::from_secs(2);
/// The default `responder[].edit_throttle`: at most one edit per 500 ms.
pub const DEFAULT_EDIT_THROTTLE: Duration = Duration::from_millis(500);
/// The default `responder[].max_edits`.
pub const DEFAULT_MAX_EDITS: u32 = 100;

/// A `matrix_event` bridge.
#[derive(Clone, Debug, PartialEq)]
pub struct MatrixConfig {
    /// Its `config`.
    pub config: MatrixSettings,
    /// Its `mappings`.
    pub mappings: MatrixMappings,
}

/// `config` of a `matrix_event` bridge. Log in with `access_token`, or with `password`
/// (the session is then kept in `state_dir` and reused), not both.
#[derive(Clone, Debug, PartialEq, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    extend("allOf" = [
        { "oneOf": [{ "required": ["access_token"] }, { "required": ["password"] }] },
        { "anyOf": [{ "required": ["room_ids"] }, { "required": ["allowed_inviters"] }] }
    ])
)]
pub struct MatrixSettings {
    /// The homeserver's client-server API base URL (`http` or `https`).
    pub homeserver_url: Url,
    /// The bridge's Matrix user, `@localpart:server`.
    pub user_id: String,
    /// An access token of `user_id`.
    pub access_token: Option<Secret>,
    /// The password of `user_id` (instead of `access_token`).
    pub password: Option<Secret>,
    /// The device id to use; from `whoami` or the stored session when absent.
    pub device_id: Option<String>,
    /// Rooms to listen in: room ids (`!id:server`) or aliases (`#alias:server`).
    /// May be empty only when `allowed_inviters` is set.
    #[schemars(default)]
    pub room_ids: Vec<String>,
    /// The long-poll timeout of `/sync`.
    #[schemars(
        default = "default_sync_timeout",
        with = "crate::schema::PositiveDuration"
    )]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub sync_timeout: Duration,
    /// The first delay before reconnecting after a failed sync.
    #[schemars(
        default = "default_reconnect_delay",
        with = "crate::schema::PositiveDuration"
    )]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub reconnect_delay: Duration,
    /// On the very first start: `skip` history or `replay` it.
    #[schemars(default = "InitialSyncBehavior::default")]
    pub initial_sync_behavior: InitialSyncBehavior,
    /// The msgtype of outbound messages: `m.text` or `m.notice`.
    #[schemars(default = "OutboundMsgtype::default")]
    pub outbound_msgtype: OutboundMsgtype,
    /// The directory of the bridge's own state (sync token, login session); the host's
    /// default when absent.
    pub state_dir: Option<PathBuf>,
    /// Accept invites to the rooms of `room_ids`.
    #[schemars(default)]
    pub auto_join: bool,
    /// Globs of users (`@*:example.org`) whose invites to any room are accepted (needs `auto_join: true`).
    #[schemars(default)]
    pub allowed_inviters: Vec<Glob>,
    /// Globs of senders whose messages are bridged; everyone when empty.
    #[schemars(default)]
    pub sender_allowlist: Vec<Glob>,
    /// Ignore `m.notice` messages (bots answer with notices: this avoids loops).
    #[schemars(default = "yes")]
    pub ignore_notices: bool,
    /// Rooms wired to a stream target: each message is answered with the target's
    /// streamed reply, posted once and edited as it grows.
    #[schemars(default)]
    pub responder: Vec<ResponderConfig>,
    /// How a failing sync loop is restarted: by default at most 10 restarts a
    /// minute, backing off from `reconnect_delay` (`base_delay_seconds`) to
    /// 5 minutes (`max_delay_seconds`).
    #[schemars(default)]
    pub supervision: SupervisionConfig,
}

fn default_sync_timeout() -> Duration {
    DEFAULT_SYNC_TIMEOUT
}
fn default_reconnect_delay() -> Duration {
    DEFAULT_RECONNECT_DELAY
}
fn yes() -> bool {
    true
}

/// What the first sync does with the rooms' history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = crate::schema::any_case)]
pub enum InitialSyncBehavior {
    /// Start from now.
    #[default]
    Skip,
    /// Publish the history the first sync returns.
    Replay,
}

impl Choice for InitialSyncBehavior {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("skip", InitialSyncBehavior::Skip),
        ("replay", InitialSyncBehavior::Replay),
    ];
}

/// The msgtype of messages the bridge sends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(transform = crate::schema::any_case)]
pub enum OutboundMsgtype {
    /// `m.text`.
    #[default]
    #[serde(rename = "m.text")]
    Text,
    /// `m.notice` (what bots usually send).
    #[serde(rename = "m.notice")]
    Notice,
}

impl OutboundMsgtype {
    /// The msgtype as Matrix writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundMsgtype::Text => "m.text",
            OutboundMsgtype::Notice => "m.notice",
        }
    }
}

impl Choice for OutboundMsgtype {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("m.text", OutboundMsgtype::Text),
        ("m.notice", OutboundMsgtype::Notice),
    ];
}

/// One entry of `config.responder`: a room answered by a stream target.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ResponderConfig {
    /// The room: one of `room_ids`, or `*` for all of them.
    pub room: String,
    /// The stream target that answers (e.g. an `openai_chat_sse` bridge's target).
    pub target: String,
    /// The least time between two edits of the growing reply (`0` edits on every delta).
    #[schemars(
        default = "default_edit_throttle",
        with = "crate::schema::NonNegativeDuration"
    )]
    #[serde(serialize_with = "crate::duration::serialize")]
    pub edit_throttle: Duration,
    /// The most edits of one reply; later deltas wait for the final message.
    #[schemars(default = "default_max_edits", range(min = 1))]
    pub max_edits: u32,
    /// Show a typing notice while waiting for the reply.
    #[schemars(default = "yes")]
    pub typing: bool,
}

fn default_edit_throttle() -> Duration {
    DEFAULT_EDIT_THROTTLE
}
fn default_max_edits() -> u32 {
    DEFAULT_MAX_EDITS
}

/// `mappings` of a `matrix_event` bridge. Every key is optional; the
/// reference's generic keys (`tool`, `text_field`, ...) are accepted and ignored.
#[derive(Clone, Debug, PartialEq, Eq, JsonSchema)]
#[schemars(
    deny_unknown_fields,
    default,
    transform = crate::schema::add_reference_mapping_keys
)]
pub struct MatrixMappings {
    /// The namespace of the bridge's events (reference key).
    pub event_prefix: String,
    /// The event type published for each inbound message.
    pub inbound_message_event: String,
    /// The event type whose events are posted to rooms.
    pub outbound_message_event: String,
    /// How `session_id` is derived: per `room`, or per room and sender (`room_sender`).
    pub session_strategy: SessionStrategy,
}

impl Default for MatrixMappings {
    fn default() -> Self {
        MatrixMappings {
            event_prefix: "matrix".into(),
            inbound_message_event: "matrix.message.received".into(),
            outbound_message_event: "matrix.message.send".into(),
            session_strategy: SessionStrategy::Room,
        }
    }
}

/// How a Matrix message's `session_id` is derived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = crate::schema::any_case)]
pub enum SessionStrategy {
    /// One session per room.
    #[default]
    Room,
    /// One session per room and sender.
    RoomSender,
}

impl Choice for SessionStrategy {
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("room", SessionStrategy::Room),
        ("room_sender", SessionStrategy::RoomSender),
    ];
}

impl MatrixMappings {
    /// What the bridge serves: the invoke target `{name}.send`.
    pub(crate) fn targets(name: &str) -> Vec<TargetClaim> {
        vec![TargetClaim::Exact(format!("{name}.send"))]
    }
}

impl MatrixConfig {
    /// Reads `config` and `mappings` of the bridge at `path`.
    pub(crate) fn read(
        name: Option<&str>,
        config: &Value,
        mappings: &Value,
        path: &Path,
        r: &mut Report,
    ) -> (Option<Self>, Vec<Claim>) {
        let claims = name
            .map(|n| {
                MatrixMappings::targets(n)
                    .into_iter()
                    .map(|t| Claim::new(t, &path.key("name")))
                    .collect()
            })
            .unwrap_or_default();
        let mappings = read_mappings(mappings, &path.key("mappings"), r);
        let config = read_settings(config, &path.key("config"), r);
        let out = match (config, mappings) {
            (Some(config), Some(mappings)) => Some(MatrixConfig { config, mappings }),
            _ => None,
        };
        (out, claims)
    }
}

fn read_mappings(v: &Value, p: &Path, r: &mut Report) -> Option<MatrixMappings> {
    let d = MatrixMappings::default();
    let mut o = Obj::new(v, p, r)?;
    let m = MatrixMappings {
        event_prefix: o.or("event_prefix", d.event_prefix, subject_name),
        inbound_message_event: o.or(
            "inbound_message_event",
            d.inbound_message_event,
            subject_name,
        ),
        outbound_message_event: o.or(
            "outbound_message_event",
            d.outbound_message_event,
            subject_name,
        ),
        session_strategy: o.or(
            "session_strategy",
            d.session_strategy,
            choice::<SessionStrategy>,
        ),
    };
    ignore_reference_mappings(&mut o, &[]);
    o.finish();
    Some(m)
}

fn read_settings(v: &Value, p: &Path, r: &mut Report) -> Option<MatrixSettings> {
    let mut o = Obj::new(v, p, r)?;
    let homeserver_url = o.req("homeserver_url", url(&["http", "https"]));
    let user_id = o.req("user_id", user_id);
    let access_token = o.opt("access_token", secret);
    let password = o.opt("password", secret);
    let device_id = o.opt("device_id", non_empty);
    let room_ids = o.or("room_ids", Vec::new(), list(room));
    let sync_timeout = o.or(
        "sync_timeout",
        DEFAULT_SYNC_TIMEOUT,
        duration(Sign::Positive),
    );
    let reconnect_delay = o.or(
        "reconnect_delay",
        DEFAULT_RECONNECT_DELAY,
        duration(Sign::Positive),
    );
    let initial_sync_behavior = o.or("initial_sync_behavior", InitialSyncBehavior::Skip, choice);
    let outbound_msgtype = o.or("outbound_msgtype", OutboundMsgtype::Text, choice);
    let state_dir = o.opt("state_dir", file_path);
    let auto_join = o.or("auto_join", false, boolean);
    let allowed_inviters = o.or("allowed_inviters", Vec::new(), list(user_glob));
    let sender_allowlist = o.or("sender_allowlist", Vec::new(), list(user_glob));
    let ignore_notices = o.or("ignore_notices", true, boolean);
    let responder = o.or("responder", Vec::new(), list(read_responder));
    let supervision_defaults = SupervisionConfig::for_matrix(reconnect_delay);
    let supervision = o
        .opt(
            "supervision",
            SupervisionConfig::reader_with(supervision_defaults.clone()),
        )
        .unwrap_or(supervision_defaults);

    match (o.has("access_token"), o.has("password")) {
        (false, false) => o.error(
            "access_token",
            "missing required key (give `access_token`, or `password` to log in)",
        ),
        (true, true) => o.error(
            "password",
            "give either `access_token` or `password`, not both",
        ),
        _ => {}
    }
    // The bridge takes invites only with `auto_join`: inviters without it
    // would be ignored, and would not stand in for `room_ids`.
    if !allowed_inviters.is_empty() && !auto_join {
        o.error(
            "allowed_inviters",
            "invites are accepted only with `auto_join: true`",
        );
    }
    if allowed_inviters.is_empty() || !auto_join {
        if !o.has("room_ids") {
            o.error(
                "room_ids",
                "missing required key (or set `allowed_inviters` with `auto_join: true`)",
            );
        } else if o
            .raw("room_ids")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            o.error(
                "room_ids",
                "expected at least one room (or set `allowed_inviters` with `auto_join: true`)",
            );
        }
    }
    // A responder names a configured room (or `*`), once. Read from the
    // document, so that another bad field of a responder (or a bad room
    // elsewhere in `room_ids`) does not hide these errors.
    let text_of = |v: &Value| v.as_str().map(|s| s.trim().to_owned());
    let configured: Vec<String> = o
        .raw("room_ids")
        .and_then(Value::as_array)
        .map(|rooms| rooms.iter().filter_map(text_of).collect())
        .unwrap_or_default();
    let wired: Vec<Option<String>> = o
        .raw("responder")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .map(|x| x.get("room").and_then(text_of))
                .collect()
        })
        .unwrap_or_default();
    for (i, room) in wired.iter().enumerate() {
        // Absent or malformed: reported where the responder is read.
        let Some(room) = room.as_deref().filter(|r| *r == "*" || is_room(r)) else {
            continue;
        };
        let at = o.path_of("responder").index(i).key("room");
        if room != "*" && !configured.iter().any(|c| c == room) {
            o.report()
                .error(&at, "not one of `room_ids` (use `*` for all rooms)");
        } else if let Some(first) = wired[..i].iter().position(|x| x.as_deref() == Some(room)) {
            o.report()
                .error(&at, format!("room already wired by responder[{first}]"));
        }
    }
    o.finish();
    Some(MatrixSettings {
        homeserver_url: homeserver_url?,
        user_id: user_id?,
        access_token,
        password,
        device_id,
        room_ids,
        sync_timeout,
        reconnect_delay,
        initial_sync_behavior,
        outbound_msgtype,
        state_dir,
        auto_join,
        allowed_inviters,
        sender_allowlist,
        ignore_notices,
        responder,
        supervision,
    })
}

/// A Matrix user id, `@localpart:server`.
fn user_id(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    let s = string(v, p, r)?;
    let s = s.trim();
    if s.starts_with('@') && s.len() > 2 && s[1..].contains(':') && !s.contains(char::is_whitespace)
    {
        Some(s.to_owned())
    } else {
        r.error(p, "expected a Matrix user id like \"@bot:example.org\"");
        None
    }
}

/// A room id (`!id:server`, or `!id` alone as room version 12 makes them)
/// or an alias (`#alias:server`).
fn room(v: &Value, p: &Path, r: &mut Report) -> Option<String> {
    let s = string(v, p, r)?;
    let s = s.trim();
    if is_room(s) {
        Some(s.to_owned())
    } else {
        r.error(
            p,
            "expected a room id like \"!abc:example.org\" (or \"!abc\" in room version 12) \
             or an alias like \"#room:example.org\"",
        );
        None
    }
}

/// Whether `s` is a room id or an alias (see [`room`]).
fn is_room(s: &str) -> bool {
    !s.contains(char::is_whitespace)
        && match s.as_bytes().first() {
            Some(b'!') => s.len() > 1,
            Some(b'#') => s.len() > 3 && s[1..].contains(':'),
            _ => false,
        }
}

fn read_responder(v: &Value, p: &Path, r: &mut Report) -> Option<ResponderConfig> {
    let mut o = Obj::new(v, p, r)?;
    let room_v = o.req("room", |v: &Value, p: &Path, r: &mut Report| {
        if v.as_str() == Some("*") {
            Some("*".to_owned())
        } else {
            room(v, p, r)
        }
    });
    let target = o.req("target", subject_name);
    let edit_throttle = o.or(
        "edit_throttle",
        DEFAULT_EDIT_THROTTLE,
        duration(Sign::NonNegative),
    );
    let max_edits = o.or("max_edits", DEFAULT_MAX_EDITS, whole(1));
    let typing = o.or("typing", true, boolean);
    o.finish();
    Some(ResponderConfig {
        room: room_v?,
        target: target?,
        edit_throttle,
        max_edits,
        typing,
    })
}

/// A pattern of Matrix user ids (`@alice:example.org`, `@*:example.org`): one
/// that cannot match any (`alice`, without the `@`) is an error, not a list
/// that silently lets nobody in.
fn user_glob(v: &Value, p: &Path, r: &mut Report) -> Option<Glob> {
    let g = glob(v, p, r)?;
    let s = g.as_str();
    if !(s.starts_with('@') || s.starts_with('*') || s.starts_with('?')) {
        r.error(
            p,
            format!(
                "{s:?} matches no Matrix user id: they start with `@` (like \
                 \"@alice:example.org\", or \"@*:example.org\" for a whole server)"
            ),
        );
        return None;
    }
    Some(g)
}
