//! A table split into independently locked parts.
//!
//! The bus keeps per-call state in a few tables that every call touches twice
//! (insert, remove). Split in parts, by key or by thread, the workers of a
//! runtime rarely wait for each other's lock or cache lines.

use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// The part of the calling thread, and its index (for [`Shards::part`]
    /// later, from any thread). Each thread keeps to one part, so the
    /// workers of a runtime do not pass a part's cache lines back and forth.
    pub fn here(&self) -> (usize, MutexGuard<'_, T>) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % PARTS;
        }
        let n = INDEX.with(|n| *n);
        (n, self.part(n))
    }

    /// Every part, one after the other.
    pub fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.parts.iter().map(|p| p.0.lock())
    }
}
