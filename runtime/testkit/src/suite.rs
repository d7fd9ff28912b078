//! Running one behavioural test on every transport, bounded in time.

use std::future::Future;
use std::time::Duration;

/// Runs `test`, failing it if it takes more than 60 s: no test may hang.
pub async fn bounded(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test did not finish within 60 s");
}

/// For each `async fn name(kind: TransportKind)` named, makes a module `name`
/// with two tests, `memory` and `nats`, that run it on that transport (bounded
/// by [`bounded`]).
#[macro_export]
macro_rules! on_both_transports {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                $crate::bounded(super::$name($crate::TransportKind::Memory)).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nats() {
                $crate::bounded(super::$name($crate::TransportKind::Nats)).await
            }
        })*
    };
}
