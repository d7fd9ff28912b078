//! Serving the router on a TCP listener.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// Serves `router` on `listener` until `shutdown` resolves, then stops taking
/// connections and returns once the requests in progress have finished (open
/// streams end when their calls do; [`Bus::drain`](openagentio_core::Bus::drain)
/// ends them).
///
/// Every accepted socket gets `TCP_NODELAY`: with Nagle's algorithm, each small
/// SSE frame would wait for the client's delayed ACK. A client has
/// `read_timeout` ([`GatewayConfig::read_timeout`](crate::GatewayConfig::read_timeout))
/// to send its headers; the router bounds the wait for a body.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    read_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(read_timeout);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let (mut failed_accepts, mut last_said) = (0u64, None);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it
                    // was taken: wait a little rather than spin, and go on,
                    // saying so once a second at most.
                    failed_accepts += 1;
                    if last_said.is_none_or(|at: tokio::time::Instant| at.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, failed = failed_accepts, "could not accept connections");
                        last_said = Some(tokio::time::Instant::now());
                        failed_accepts = 0;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted socket");
        }
        let service = TowerToHyperService::new(router.clone());
        let connection = connections.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}
