//! A table split into independently locked parts.
//!
//! The bus keeps per-call state in a few tables that every call touches twice
//! (insert, remove). Split in parts by key, the workers of a runtime rarely
//! wait for each other's lock.

use parking_lot::{Mutex, MutexGuard};

const PARTS: usize = 16;

/// `T` (normally a map) in [`PARTS`] parts; the caller picks the part from the key.
pub(crate) struct Shards<T> {
    parts: [Part<T>; PARTS],
}

/// One part, on cache lines of its own: parts that shared a line would make
/// the workers that lock them wait for each other's cache after all.
#[repr(align(128))]
struct Part<T>(Mutex<T>);

impl<T: Default> Default for Shards<T> {
    fn default() -> Self {
        Shards {
            parts: std::array::from_fn(|_| Part(Mutex::new(T::default()))),
        }
    }
}

impl<T> Shards<T> {
    /// The part for a key whose spread-out number is `n`.
    pub fn part(&self, n: usize) -> MutexGuard<'_, T> {
        self.parts[n % PARTS].0.lock()
    }

    /// The part for a string key, chosen by its last bytes (ids end in random digits).
    pub fn part_for(&self, key: &str) -> MutexGuard<'_, T> {
        let b = key.as_bytes();
        let n = b
            .iter()
            .rev()
            .take(2)
            .fold(0usize, |acc, &x| acc * 31 + x as usize);
        self.part(n)
    }

    /// Every part, one after the other.
    pub fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.parts.iter().map(|p| p.0.lock())
    }
}
