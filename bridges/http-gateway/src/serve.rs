//! Serving the router on a TCP listener.

use std::future::Future;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

/// Serves `router` on `listener` until `shutdown` resolves, then stops taking
/// connections and returns once the requests in progress have finished (open
/// streams end when their calls do; [`Bus::drain`](openagentio_core::Bus::drain)
/// ends them).
///
/// Every accepted socket gets `TCP_NODELAY`: with Nagle's algorithm, each small
/// SSE frame would wait for the client's delayed ACK.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted socket");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
