//! Listening for the signals that stop the service.

/// SIGINT (Ctrl-C) and SIGTERM, listened for from the moment this is made.
///
/// Made before the service starts, so that a SIGTERM from a supervisor that
/// stops the service while it is starting, or just after it printed that it
/// is up, is a graceful stop: until a listener is registered, SIGTERM's
/// default action kills the process on the spot, draining nothing. A signal
/// that arrives before [`ShutdownSignal::recv`] is called is not lost.
///
/// ```no_run
/// # async fn serve() {
/// use openagentio_host::signals::ShutdownSignal;
/// let mut stop = ShutdownSignal::listen();
/// // ... start the service ...
/// stop.recv().await;
/// // ... drain and stop it ...
/// # }
/// ```
pub struct ShutdownSignal {
    #[cfg(unix)]
    unix: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl ShutdownSignal {
    /// Starts listening. Must be called inside a tokio runtime.
    pub fn listen() -> ShutdownSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            // Registering fails only where signals cannot be handled at all;
            // `recv` then falls back to Ctrl-C alone.
            let unix = signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
                .ok();
            ShutdownSignal { unix }
        }
        #[cfg(not(unix))]
        {
            ShutdownSignal {}
        }
    }

    /// Resolves on the first SIGINT or SIGTERM since [`ShutdownSignal::listen`].
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.unix {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_sent_before_recv_is_not_lost() {
        let mut stop = ShutdownSignal::listen();
        // SIGINT, not SIGTERM: the listener now holds both, and Ctrl-C is
        // the one that nothing else sends this test process.
        let sent = std::process::Command::new("kill")
            .args(["-INT", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        tokio::time::timeout(std::time::Duration::from_secs(5), stop.recv())
            .await
            .expect("the signal sent before recv was delivered");
    }
}
