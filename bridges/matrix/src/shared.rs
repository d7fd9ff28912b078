//! What the bridge's handlers and its sync work share.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use openagentio_core::{Bus, BusError, ServiceStarted, WeakBus};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{MatrixConfig, Responder};
use crate::error::MatrixError;
use crate::session::Session;
use crate::state::{StateStore, SyncCursor};

/// Rooms the bridge knows.
#[derive(Default)]
pub(crate) struct Rooms {
    /// Room ids whose messages are published.
    pub listened: HashSet<String>,
    /// Responders by room id.
    pub responders: HashMap<String, Responder>,
    /// The responder of rooms without one of their own (room `*`).
    pub any_responder: Option<Responder>,
    /// Resolved aliases, with when they were resolved.
    pub aliases: HashMap<String, (String, tokio::time::Instant)>,
    /// Encrypted rooms already warned about (the bridge is degraded while
    /// it listens to one).
    pub warned_encrypted: HashSet<String>,
    /// Configured rooms the bot is not in, as configured, with their id
    /// when known and why: the bridge then serves in part (degraded).
    pub missing: Vec<(String, Option<String>, &'static str)>,
}

impl Rooms {
    /// The bridge's health as far as its rooms go.
    pub fn health(&self) -> openagentio_core::BridgeHealth {
        let mut problems = Vec::new();
        if !self.missing.is_empty() {
            let list: Vec<String> = self
                .missing
                .iter()
                .map(|(room, _, why)| format!("{room} ({why})"))
                .collect();
            problems.push(format!("not in configured rooms: {}", list.join(", ")));
        }
        if !self.warned_encrypted.is_empty() {
            let mut list: Vec<&str> = self.warned_encrypted.iter().map(String::as_str).collect();
            list.sort_unstable();
            problems.push(format!(
                "end-to-end encrypted rooms, which this bridge can neither read nor post to: {}",
                list.join(", ")
            ));
        }
        if problems.is_empty() {
            openagentio_core::BridgeHealth::healthy()
        } else {
            openagentio_core::BridgeHealth::degraded(problems.join("; "))
        }
    }

    /// The bot is in `room_id` now (joined, or its sync shows it there).
    pub fn joined(&mut self, room_id: &str) {
        self.missing
            .retain(|(_, id, _)| id.as_deref() != Some(room_id));
    }
}

/// How long a resolved alias is trusted before it is looked up again.
const ALIAS_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// State shared by the bus handlers, the sync work and the responders.
pub(crate) struct Shared {
    /// The bridge name.
    pub name: String,
    /// The configuration.
    pub cfg: MatrixConfig,
    /// The state directory.
    pub store: StateStore,
    /// The bus (weak: the bus holds our handlers).
    pub bus: WeakBus,
    /// The current session, once logged in.
    pub session: watch::Sender<Option<Arc<Session>>>,
    /// Why the sync work stopped for good, if it did (outbound calls then
    /// fail fast, with this error: `AUTH_FAILURE` for refused credentials).
    pub failed: watch::Sender<Option<BusError>>,
    /// Set after the first sync batch has been processed (or, when the
    /// service has yet to start, once it has arrived).
    pub ready: watch::Sender<bool>,
    /// Batches are processed once the service has started (see
    /// [`openagentio_core::Bridge::until_service_started`]).
    pub service_started: ServiceStarted,
    /// Known rooms.
    pub rooms: RwLock<Rooms>,
    /// The sync cursor, loaded on the first run.
    pub cursor: Mutex<Option<SyncCursor>>,
    /// Responder tasks.
    pub tasks: TaskTracker,
    /// Cancelled on stop.
    pub shutdown: CancellationToken,
}

impl Shared {
    /// New shared state for `bus`.
    pub fn new(
        name: String,
        cfg: MatrixConfig,
        store: StateStore,
        bus: &Bus,
        service_started: ServiceStarted,
    ) -> Self {
        Shared {
            service_started,
            name,
            cfg,
            store,
            bus: bus.downgrade(),
            session: watch::Sender::new(None),
            failed: watch::Sender::new(None),
            ready: watch::Sender::new(false),
            rooms: RwLock::new(Rooms::default()),
            cursor: Mutex::new(None),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// The bus, while it exists.
    pub fn bus(&self) -> Result<Bus, BusError> {
        self.bus
            .upgrade()
            .ok_or_else(|| BusError::unavailable("the bus is gone"))
    }

    /// The session, waiting up to `wait` for the login; fails at once when
    /// the bridge has stopped for good (bad credentials).
    pub async fn session(&self, wait: Duration) -> Result<Arc<Session>, BusError> {
        let mut sessions = self.session.subscribe();
        let mut failures = self.failed.subscribe();
        let wait_for = async {
            loop {
                if let Some(s) = sessions.borrow_and_update().clone() {
                    return Ok(s);
                }
                if let Some(err) = failures.borrow_and_update().clone() {
                    return Err(err);
                }
                tokio::select! {
                    r = sessions.changed() => if r.is_err() { break },
                    r = failures.changed() => if r.is_err() { break },
                }
            }
            Err(BusError::unavailable("the bridge is stopping"))
        };
        tokio::time::timeout(wait, wait_for)
            .await
            .unwrap_or_else(|_| {
                Err(BusError::unavailable(format!(
                    "matrix bridge {}: not logged in to the homeserver",
                    self.name
                )))
            })
    }

    /// The room id of a room id or alias (an alias's room is looked up again
    /// after [`ALIAS_TTL`]: an alias can be moved to another room).
    pub async fn resolve_room(&self, session: &Session, room: &str) -> Result<String, MatrixError> {
        if !room.starts_with('#') {
            return Ok(room.to_owned());
        }
        let cached = self.rooms.read().aliases.get(room).cloned();
        if let Some((id, at)) = &cached
            && at.elapsed() < ALIAS_TTL
        {
            return Ok(id.clone());
        }
        let id = match session.client.resolve_alias(room).await {
            Ok(id) => id,
            Err(MatrixError::Api { status: 404, .. }) => {
                return Err(MatrixError::Invalid(format!(
                    "room alias {room} does not exist"
                )));
            }
            // The homeserver cannot say now: the last answer stands.
            Err(e) if e.is_retryable() && cached.is_some() => {
                return Ok(cached.map(|(id, _)| id).unwrap_or_default());
            }
            Err(e) => return Err(e),
        };
        self.rooms
            .write()
            .aliases
            .insert(room.to_owned(), (id.clone(), tokio::time::Instant::now()));
        Ok(id)
    }

    /// Saves the cursor, if loaded (logs failures; used on drop paths).
    pub fn persist_cursor_quietly(&self) {
        let cursor = self.cursor.lock().clone();
        if let Some(c) = cursor
            && let Err(e) = self.store.save_cursor(&c)
        {
            tracing::warn!(bridge = %self.name, error = %e, "matrix: cannot save the sync cursor");
        }
    }
}
