//! The bridge's runtime configuration. The service host maps the config file
//! (`type: matrix_event`, the reference keys) into [`MatrixConfig`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::secret::Secret;

/// Default event type of inbound room messages.
pub const DEFAULT_INBOUND_MESSAGE_EVENT: &str = "matrix.message.received";
/// Default event type of inbound edits.
pub const DEFAULT_INBOUND_EDIT_EVENT: &str = "matrix.message.edited";
/// Default event type of outbound messages.
pub const DEFAULT_OUTBOUND_MESSAGE_EVENT: &str = "matrix.message.send";

/// How the bridge logs in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MatrixAuth {
    /// An existing access token (config keys `access_token`, `user_id`).
    AccessToken {
        /// The token.
        token: Secret,
        /// The account it belongs to, `@bot:example.org` (checked with `whoami`).
        user_id: String,
        /// The device id; taken from `whoami` when absent.
        device_id: Option<String>,
    },
    /// A password login. The session (token, device) is kept in the state
    /// directory and reused, so a restart does not create a new device.
    Password {
        /// The account, `@bot:example.org`.
        user_id: String,
        /// Its password.
        password: Secret,
        /// The device to log in as, the first time (a stored session's
        /// device is reused after that); the homeserver makes one when absent.
        device_id: Option<String>,
    },
}

impl MatrixAuth {
    /// The configured user id.
    pub fn user_id(&self) -> &str {
        match self {
            MatrixAuth::AccessToken { user_id, .. } | MatrixAuth::Password { user_id, .. } => {
                user_id
            }
        }
    }
}

/// What the very first sync (no saved sync token) does with room history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InitialSyncBehavior {
    /// Skip it: only messages sent after the first start are published (default).
    #[default]
    Skip,
    /// Publish the messages the first sync returns.
    Replay,
}

/// How `session_id` is derived for inbound events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionStrategy {
    /// One session per room: the room id (default).
    #[default]
    Room,
    /// One session per sender in a room: `{room_id}:{sender}`.
    RoomSender,
}

/// The `msgtype` of outbound messages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutboundMsgType {
    /// `m.text` (default).
    #[default]
    Text,
    /// `m.notice` (bots usually ignore notices; use it to avoid bot loops).
    Notice,
}

impl OutboundMsgType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboundMsgType::Text => "m.text",
            OutboundMsgType::Notice => "m.notice",
        }
    }
}

/// A config value that is not one of the allowed spellings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {allowed}")]
pub struct ParseEnumError {
    value: String,
    allowed: &'static str,
}

impl FromStr for InitialSyncBehavior {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "skip" => Ok(Self::Skip),
            "replay" => Ok(Self::Replay),
            other => Err(ParseEnumError {
                value: other.to_owned(),
                allowed: "skip, replay",
            }),
        }
    }
}

impl FromStr for SessionStrategy {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "room" => Ok(Self::Room),
            "room_sender" => Ok(Self::RoomSender),
            other => Err(ParseEnumError {
                value: other.to_owned(),
                allowed: "room, room_sender",
            }),
        }
    }
}

impl FromStr for OutboundMsgType {
    type Err = ParseEnumError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "m.text" => Ok(Self::Text),
            "m.notice" => Ok(Self::Notice),
            other => Err(ParseEnumError {
                value: other.to_owned(),
                allowed: "m.text, m.notice",
            }),
        }
    }
}

/// Wires a room to a stream target: each inbound message of the room is sent
/// to `target`; the answer is posted as one message, edited as deltas arrive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Responder {
    /// Room id or alias (it must also be a room the bridge listens in), or
    /// `*` for every room without a responder of its own.
    pub room: String,
    /// The bus stream target to ask (for example an `openai_chat_sse` bridge's target).
    pub target: String,
    /// At most one edit per interval while deltas arrive (default 500 ms).
    pub edit_interval: Duration,
    /// Most edits of one answer, the final one included (default 100, as
    /// in the config file).
    pub max_edits: u32,
    /// How long to wait for the whole answer (default 120 s).
    pub timeout: Duration,
    /// Show a typing notice while the answer is awaited (default true).
    pub typing: bool,
}

impl Responder {
    /// A responder with default throttling.
    pub fn new(room: impl Into<String>, target: impl Into<String>) -> Self {
        Responder {
            room: room.into(),
            target: target.into(),
            edit_interval: Duration::from_millis(500),
            max_edits: 100,
            timeout: Duration::from_secs(120),
            typing: true,
        }
    }
}

/// The Matrix bridge's configuration. `Debug` never shows secrets.
#[derive(Clone, Debug)]
pub struct MatrixConfig {
    /// Client-server API base URL, e.g. `https://matrix.example.org`.
    pub homeserver_url: String,
    /// How to log in.
    pub auth: MatrixAuth,
    /// Rooms to listen in: ids (`!id:server`) or aliases (`#alias:server`).
    pub room_ids: Vec<String>,
    /// Long-poll timeout of `/sync` (default 30 s).
    pub sync_timeout: Duration,
    /// First delay before reconnecting after a failure; doubles up to 5 min (default 2 s).
    pub reconnect_delay: Duration,
    /// What the very first sync does with history (default skip).
    pub initial_sync_behavior: InitialSyncBehavior,
    /// `msgtype` of outbound messages (default `m.text`).
    pub outbound_msgtype: OutboundMsgType,
    /// Event type of inbound messages (default `matrix.message.received`).
    pub inbound_message_event: String,
    /// Event type of inbound edits (default `matrix.message.edited`).
    pub inbound_edit_event: String,
    /// Event type that posts to a room (default `matrix.message.send`).
    pub outbound_message_event: String,
    /// How inbound `session_id` is derived (default per room).
    pub session_strategy: SessionStrategy,
    /// Directory for the sync token and (password login) the session.
    pub state_dir: PathBuf,
    /// Accept invites to configured rooms and from `allowed_inviters` (default false).
    pub auto_join: bool,
    /// Globs of user ids whose invites are accepted (rooms joined so are listened in).
    pub allowed_inviters: Vec<String>,
    /// Globs of senders to publish; empty = everyone.
    pub sender_allowlist: Vec<String>,
    /// Ignore `m.notice` messages (default true: bots talk in notices).
    pub ignore_notices: bool,
    /// Room → stream target wiring.
    pub responders: Vec<Responder>,
    /// How the sync loop is restarted after a failure; `None`: at most 10
    /// restarts a minute, backing off from `reconnect_delay` to 5 minutes.
    pub restart: Option<openagentio_core::supervisor::RestartPolicy>,
    /// Timeline events per room per sync (default 50); a longer gap is back-filled.
    pub timeline_limit: u32,
    /// How long `start` waits for the first sync before returning (default 30 s).
    pub start_timeout: Duration,
}

impl MatrixConfig {
    /// A config with the reference defaults for everything but the essentials.
    pub fn new(
        homeserver_url: impl Into<String>,
        auth: MatrixAuth,
        room_ids: Vec<String>,
        state_dir: impl Into<PathBuf>,
    ) -> Self {
        MatrixConfig {
            homeserver_url: homeserver_url.into(),
            auth,
            room_ids,
            sync_timeout: Duration::from_secs(30),
            reconnect_delay: Duration::from_secs(2),
            initial_sync_behavior: InitialSyncBehavior::Skip,
            outbound_msgtype: OutboundMsgType::Text,
            inbound_message_event: DEFAULT_INBOUND_MESSAGE_EVENT.to_owned(),
            inbound_edit_event: DEFAULT_INBOUND_EDIT_EVENT.to_owned(),
            outbound_message_event: DEFAULT_OUTBOUND_MESSAGE_EVENT.to_owned(),
            session_strategy: SessionStrategy::Room,
            state_dir: state_dir.into(),
            auto_join: false,
            allowed_inviters: Vec::new(),
            sender_allowlist: Vec::new(),
            ignore_notices: true,
            responders: Vec::new(),
            restart: None,
            timeline_limit: 50,
            start_timeout: Duration::from_secs(30),
        }
    }

    /// The base URL without a trailing slash.
    pub(crate) fn base_url(&self) -> &str {
        self.homeserver_url.trim().trim_end_matches('/')
    }

    /// Checks every field and reports every problem with its config path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut issues = Vec::new();
        let mut bad = |path: &str, msg: String| issues.push((path.to_owned(), msg));
        let url = self.base_url();
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || url.split("://").nth(1).is_none_or(str::is_empty) {
            bad(
                "homeserver_url",
                format!("must be an HTTP(S) URL, got {url:?}"),
            );
        }
        let user = self.auth.user_id();
        if !is_user_id(user) {
            bad(
                "user_id",
                format!("must be a Matrix user id like '@bot:example.org', got {user:?}"),
            );
        }
        match &self.auth {
            MatrixAuth::AccessToken {
                token, device_id, ..
            } => {
                if token.is_blank() {
                    bad("access_token", "must be a non-empty string".into());
                }
                if device_id.as_deref().is_some_and(|d| d.trim().is_empty()) {
                    bad("device_id", "must be non-empty when set".into());
                }
            }
            MatrixAuth::Password { password, .. } => {
                if password.is_blank() {
                    bad("password", "must be a non-empty string".into());
                }
            }
        }
        let invites_only = self.auto_join && !self.allowed_inviters.is_empty();
        if self.room_ids.is_empty() && !invites_only {
            bad(
                "room_ids",
                "must contain at least one room (or enable auto_join with allowed_inviters)".into(),
            );
        }
        for (i, r) in self.room_ids.iter().enumerate() {
            if !is_room_ref(r) {
                bad(
                    &format!("room_ids[{i}]"),
                    format!("must be a room id '!id:server' or alias '#alias:server', got {r:?}"),
                );
            }
        }
        for (key, d) in [
            ("sync_timeout", self.sync_timeout),
            ("reconnect_delay", self.reconnect_delay),
        ] {
            if d.is_zero() {
                bad(key, "must be positive".into());
            }
        }
        for (key, v) in [
            (
                "mappings.inbound_message_event",
                &self.inbound_message_event,
            ),
            ("mappings.inbound_edit_event", &self.inbound_edit_event),
            (
                "mappings.outbound_message_event",
                &self.outbound_message_event,
            ),
        ] {
            if v.trim().is_empty() || v.contains(['*', '>', ' ']) {
                bad(key, format!("must be a plain event type, got {v:?}"));
            }
        }
        if self.state_dir.as_os_str().is_empty() {
            bad("state_dir", "must be set".into());
        }
        if self.timeline_limit == 0 {
            bad("timeline_limit", "must be at least 1".into());
        }
        for (i, r) in self.responders.iter().enumerate() {
            if r.room != ANY_ROOM && !is_room_ref(&r.room) {
                bad(
                    &format!("responders[{i}].room"),
                    format!("must be a room id or alias, got {:?}", r.room),
                );
            }
            if r.target.trim().is_empty() {
                bad(
                    &format!("responders[{i}].target"),
                    "must be a target name".into(),
                );
            }
            if r.max_edits == 0 {
                bad(
                    &format!("responders[{i}].max_edits"),
                    "must be at least 1".into(),
                );
            }
        }
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { issues })
        }
    }
}

/// Every problem found in a [`MatrixConfig`], each with its path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// `(path, message)` pairs.
    pub issues: Vec<(String, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (path, msg)) in self.issues.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "config '{path}' {msg}")?;
        }
        Ok(())
    }
}

/// `@local:server`.
pub(crate) fn is_user_id(s: &str) -> bool {
    s.len() > 3 && s.starts_with('@') && s[1..].contains(':') && !s.contains(char::is_whitespace)
}

/// A room id (`!id:server`, or `!id` without a server part as in room
/// version 12) or an alias (`#alias:server`).
/// The responder room that stands for every room.
pub(crate) const ANY_ROOM: &str = "*";

pub(crate) fn is_room_ref(s: &str) -> bool {
    if s.contains(char::is_whitespace) {
        return false;
    }
    match s.as_bytes().first() {
        Some(b'!') => s.len() > 1,
        Some(b'#') => s.len() > 3 && s[1..].contains(':'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MatrixConfig {
        MatrixConfig::new(
            "http://127.0.0.1:8008/",
            MatrixAuth::AccessToken {
                token: Secret::new("syt_supersecret"),
                user_id: "@bot:localhost".into(),
                device_id: None,
            },
            vec!["!room:localhost".into(), "#alias:localhost".into()],
            "/tmp/x",
        )
    }

    #[test]
    fn defaults_validate_and_debug_hides_the_token() {
        let c = cfg();
        c.validate().unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8008");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("supersecret"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let mut c = cfg();
        c.homeserver_url = "ftp://x".into();
        c.room_ids = vec!["room".into()];
        c.sync_timeout = Duration::ZERO;
        c.responders = vec![Responder::new("nope", "")];
        let e = c.validate().unwrap_err();
        let paths: Vec<_> = e.issues.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "homeserver_url",
                "room_ids[0]",
                "sync_timeout",
                "responders[0].room",
                "responders[0].target"
            ]
        );
    }

    #[test]
    fn enums_parse_reference_spellings() {
        assert_eq!(
            "room_sender".parse::<SessionStrategy>().unwrap(),
            SessionStrategy::RoomSender
        );
        assert_eq!(
            "replay".parse::<InitialSyncBehavior>().unwrap(),
            InitialSyncBehavior::Replay
        );
        assert_eq!(
            "m.notice".parse::<OutboundMsgType>().unwrap(),
            OutboundMsgType::Notice
        );
        assert!("x".parse::<OutboundMsgType>().is_err());
    }
}
