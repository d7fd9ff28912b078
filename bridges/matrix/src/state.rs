//! The bridge's small state directory: the sync cursor and, for password
//! logins, the session. Files are replaced atomically (write, fsync, rename).
//! A bridge holds a lock on the directory while it runs: two bridges on one
//! directory (a second service started by mistake) would each publish every
//! message and overwrite each other's cursor.

use std::collections::{BTreeSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::MatrixError;

/// How many published event ids the cursor remembers (to publish each once).
pub(crate) const RECENT_EVENTS: usize = 1024;

const SYNC_FILE: &str = "sync.json";
const SESSION_FILE: &str = "session.json";
/// Locked while a bridge uses the directory; holds that process's id.
const LOCK_FILE: &str = ".lock";

/// Where sync resumes, and what was already published.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct SyncCursor {
    /// The account the cursor belongs to (a different account starts afresh).
    pub user_id: String,
    /// The token of the last fully processed sync batch.
    pub next_batch: Option<String>,
    /// Rooms joined through an accepted invite from an allowed inviter.
    #[serde(default)]
    pub invited_rooms: BTreeSet<String>,
    /// Ids of the last events published, newest last.
    #[serde(default)]
    pub recent: VecDeque<String>,
}

impl SyncCursor {
    /// Whether `event_id` was published already.
    pub fn seen(&self, event_id: &str) -> bool {
        self.recent.iter().rev().any(|e| e == event_id)
    }

    /// Records `event_id` as published.
    pub fn mark(&mut self, event_id: &str) {
        self.recent.push_back(event_id.to_owned());
        while self.recent.len() > RECENT_EVENTS {
            self.recent.pop_front();
        }
    }
}

/// A password login's session, reused across restarts.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct StoredSession {
    pub homeserver_url: String,
    pub user_id: String,
    pub device_id: Option<String>,
    pub access_token: String,
}

/// The state directory, locked for this bridge while any clone lives.
#[derive(Clone, Debug)]
pub(crate) struct StateStore {
    dir: PathBuf,
    _lock: std::sync::Arc<std::fs::File>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> MatrixError {
    MatrixError::State(format!("cannot {what} {}: {e}", path.display()))
}

impl StateStore {
    /// Opens (creating) the directory and locks it. Another bridge holding
    /// the lock is [`MatrixError::StateInUse`].
    pub fn open(dir: &Path) -> Result<Self, MatrixError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_err("open", &path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(MatrixError::StateInUse {
                    dir: dir.display().to_string(),
                    holder: holder.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err("lock", &path, e)),
        }
        // Who holds it, for the message another process would give.
        let _ = lock
            .set_len(0)
            .and_then(|()| lock.write_all(std::process::id().to_string().as_bytes()));
        Ok(StateStore {
            dir: dir.to_owned(),
            _lock: std::sync::Arc::new(lock),
        })
    }

    fn read<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, MatrixError> {
        let path = self.dir.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                MatrixError::State(format!(
                    "{} is damaged ({e}): remove it to start again from now (what \
                         was posted since it was saved is then skipped)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path, e)),
        }
    }

    fn write<T: Serialize>(&self, name: &str, value: &T, private: bool) -> Result<(), MatrixError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| MatrixError::State(format!("cannot encode {name}: {e}")))?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        // The directory may have been removed while the bridge ran: made
        // again, rather than losing the sync position for good.
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("create", &self.dir, e))?;
        let mut f = opts.open(&tmp).map_err(|e| io_err("write", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| io_err("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_err("replace", &path, e))
    }

    /// The saved cursor of `user_id`; `None` on the very first start.
    pub fn load_cursor(&self, user_id: &str) -> Result<Option<SyncCursor>, MatrixError> {
        Ok(self
            .read::<SyncCursor>(SYNC_FILE)?
            .filter(|c| c.user_id == user_id))
    }

    /// Saves the cursor.
    pub fn save_cursor(&self, cursor: &SyncCursor) -> Result<(), MatrixError> {
        self.write(SYNC_FILE, cursor, false)
    }

    /// The saved session, if any.
    pub fn load_session(&self) -> Result<Option<StoredSession>, MatrixError> {
        self.read(SESSION_FILE)
    }

    /// Saves the session (owner-only permissions).
    pub fn save_session(&self, s: &StoredSession) -> Result<(), MatrixError> {
        self.write(SESSION_FILE, s, true)
    }

    /// Forgets the session's token, keeping its device id for the next login.
    pub fn forget_token(&self) -> Result<(), MatrixError> {
        if let Some(mut s) = self.load_session()? {
            s.access_token.clear();
            self.save_session(&s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_belongs_to_its_user() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s")).unwrap();
        assert_eq!(store.load_cursor("@a:x").unwrap(), None);
        let mut c = SyncCursor {
            user_id: "@a:x".into(),
            next_batch: Some("s1".into()),
            ..Default::default()
        };
        for i in 0..(RECENT_EVENTS + 5) {
            c.mark(&format!("$e{i}"));
        }
        assert!(!c.seen("$e0") && c.seen(&format!("$e{}", RECENT_EVENTS + 4)));
        store.save_cursor(&c).unwrap();
        assert_eq!(store.load_cursor("@a:x").unwrap(), Some(c));
        assert_eq!(store.load_cursor("@b:x").unwrap(), None);
    }

    #[test]
    fn a_state_directory_removed_while_running_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let store = StateStore::open(&path).unwrap();
        std::fs::remove_dir_all(&path).unwrap();
        let c = SyncCursor {
            user_id: "@a:x".into(),
            next_batch: Some("s2".into()),
            ..Default::default()
        };
        store.save_cursor(&c).unwrap();
        assert_eq!(store.load_cursor("@a:x").unwrap(), Some(c));
    }

    #[test]
    fn a_directory_in_use_is_refused_until_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateStore::open(dir.path()).unwrap();
        let again = first.clone();
        drop(first);
        // Held while any clone lives.
        let err = StateStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, MatrixError::StateInUse { holder: Some(pid), .. } if pid == std::process::id()),
            "{err:?}"
        );
        assert!(err.to_string().contains("in use"), "{err}");
        drop(again);
        StateStore::open(dir.path()).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn session_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        store
            .save_session(&StoredSession {
                homeserver_url: "http://x".into(),
                user_id: "@a:x".into(),
                device_id: Some("D".into()),
                access_token: "t".into(),
            })
            .unwrap();
        let mode = std::fs::metadata(dir.path().join(SESSION_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        store.forget_token().unwrap();
        let s = store.load_session().unwrap().unwrap();
        assert!(s.access_token.is_empty());
        assert_eq!(s.device_id.as_deref(), Some("D"));
    }
}
