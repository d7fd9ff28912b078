//! Restarts a bridge's background work under a policy, and reports its health.
//!
//! Work that fails with a transient error is restarted after an exponential,
//! jittered backoff; a permanent error (bad credentials, bad config) or too many
//! restarts in a window stops it and marks it unhealthy. While it waits to
//! restart it is degraded.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bridge::{BridgeError, BridgeHealth};

/// When and how often to restart.
#[derive(Clone, Debug)]
pub struct RestartPolicy {
    /// Restarts allowed within `window` before giving up.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in.
    pub window: Duration,
    /// Delay before the first restart.
    pub initial_backoff: Duration,
    /// Upper bound of the delay.
    pub max_backoff: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 10,
            window: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RestartPolicy {
    /// Delay before restart number `n` (from 1), with jitter in `[d/2, d]`.
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = 2f64.powi(n.saturating_sub(1).min(30) as i32);
        let d = self.initial_backoff.mul_f64(exp).min(self.max_backoff);
        d.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// Shared view of supervised work: its health and restart count.
#[derive(Clone)]
pub struct SupervisedHealth {
    inner: Arc<HealthInner>,
}

struct HealthInner {
    health: Mutex<BridgeHealth>,
    restarts: AtomicU64,
    /// Why the work stopped for good (a permanent error, or the policy's
    /// restarts used up), once it has.
    stopped: Mutex<Option<String>>,
}

impl SupervisedHealth {
    fn new() -> Self {
        SupervisedHealth {
            inner: Arc::new(HealthInner {
                health: Mutex::new(BridgeHealth::healthy()),
                restarts: AtomicU64::new(0),
                stopped: Mutex::new(None),
            }),
        }
    }
    /// The current health.
    pub fn get(&self) -> BridgeHealth {
        self.inner.health.lock().clone()
    }
    /// Sets the health (the work itself may report degradation).
    pub fn set(&self, h: BridgeHealth) {
        *self.inner.health.lock() = h;
    }
    /// Restarts so far.
    pub fn restarts(&self) -> u64 {
        self.inner.restarts.load(Ordering::Relaxed)
    }
    /// Why the work stopped for good, once it has (it is not restarted
    /// again: what it served stays unavailable until the bridge starts anew).
    pub fn stopped_for_good(&self) -> Option<String> {
        self.inner.stopped.lock().clone()
    }
    fn stop_for_good(&self, reason: String) {
        *self.inner.stopped.lock() = Some(reason.clone());
        self.set(BridgeHealth::unhealthy(reason));
    }
}

/// What one run of supervised work gets: a token cancelled on
/// [`Supervised::stop`], and the health view to report recovery on (set it
/// healthy once connected again).
#[derive(Clone)]
pub struct WorkContext {
    /// Cancelled when the work must stop.
    pub cancel: CancellationToken,
    /// The shared health view.
    pub health: SupervisedHealth,
}

/// Supervised background work. Dropping it does not stop the work; call [`Supervised::stop`].
pub struct Supervised {
    health: SupervisedHealth,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Supervised {
    /// Runs `work` until it returns `Ok`, fails permanently, or exceeds the
    /// policy.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use openagentio_core::supervisor::{RestartPolicy, Supervised};
    /// use openagentio_core::{BridgeError, HealthState};
    /// let runs = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    /// let r = runs.clone();
    /// let policy = RestartPolicy { initial_backoff: std::time::Duration::from_millis(1), ..Default::default() };
    /// let mut s = Supervised::spawn("demo", policy, move |_ctx| {
    ///     let r = r.clone();
    ///     async move {
    ///         if r.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
    ///             Err(BridgeError::transient("demo", "flaky"))
    ///         } else {
    ///             Err(BridgeError::permanent("demo", "bad token"))
    ///         }
    ///     }
    /// });
    /// s.join().await;
    /// assert_eq!(s.health().get().state, HealthState::Unhealthy);
    /// assert_eq!(s.health().restarts(), 2);
    /// assert_eq!(s.health().stopped_for_good().as_deref(), Some("bad token"));
    /// # }
    /// ```
    pub fn spawn<F, Fut>(name: &str, policy: RestartPolicy, work: F) -> Supervised
    where
        F: Fn(WorkContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BridgeError>> + Send + 'static,
    {
        let health = SupervisedHealth::new();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(supervise(
            name.to_owned(),
            policy,
            work,
            health.clone(),
            cancel.clone(),
        ));
        Supervised {
            health,
            cancel,
            task: Some(task),
        }
    }

    /// The health view.
    pub fn health(&self) -> &SupervisedHealth {
        &self.health
    }

    /// Waits until the work has ended for good.
    pub async fn join(&mut self) {
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Cancels the work and waits for it, at most `grace` before aborting it.
    pub async fn stop(&mut self, grace: Duration) {
        self.cancel.cancel();
        if let Some(mut t) = self.task.take()
            && tokio::time::timeout(grace, &mut t).await.is_err()
        {
            t.abort();
        }
    }
}

async fn supervise<F, Fut>(
    name: String,
    policy: RestartPolicy,
    work: F,
    health: SupervisedHealth,
    cancel: CancellationToken,
) where
    F: Fn(WorkContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), BridgeError>> + Send + 'static,
{
    let mut recent: Vec<Instant> = Vec::new();
    loop {
        let result = tokio::select! {
            r = work(WorkContext { cancel: cancel.child_token(), health: health.clone() }) => r,
            _ = cancel.cancelled() => return,
        };
        let err = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        if cancel.is_cancelled() {
            return;
        }
        if err.permanent {
            tracing::error!(bridge = %name, error = %err.message, "stopped: permanent error");
            health.stop_for_good(err.message);
            return;
        }
        let now = Instant::now();
        recent.retain(|t| now.duration_since(*t) < policy.window);
        if recent.len() as u32 >= policy.max_restarts {
            let reason = format!(
                "gave up after {} restarts in {:?}: {}",
                recent.len(),
                policy.window,
                err.message
            );
            tracing::error!(bridge = %name, %reason, "stopped");
            health.stop_for_good(reason);
            return;
        }
        recent.push(now);
        let n = health.inner.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        let delay = policy.backoff(recent.len() as u32);
        tracing::warn!(bridge = %name, error = %err.message, restart = n, delay_ms = delay.as_millis() as u64, "restarting");
        health.set(BridgeHealth::degraded(format!(
            "restarting after: {}",
            err.message
        )));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return,
        }
    }
}
