use std::time::Duration;

use serde_json::Value;

use super::{Middleware, Next};
use crate::error::BusError;
use crate::request::Call;

/// Metadata key holding the attempt number (from 1) of the current try.
pub const RETRY_ATTEMPT_KEY: &str = "acp.retry.attempt";

/// How the [`Retry`] layer retries.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Upper bound of any delay.
    pub max_backoff: Duration,
    /// Growth factor between delays.
    pub multiplier: f64,
    /// Randomize each delay in `[delay/2, delay]` so that retries do not synchronise.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt `attempt` (from 1).
    ///
    /// Never more than `max_backoff`, however many attempts and whatever
    /// the multiplier (one below 1, or not a number, counts as 1).
    ///
    /// ```
    /// use std::time::Duration;
    /// use openagentio_core::middleware::RetryPolicy;
    /// let p = RetryPolicy { jitter: false, ..RetryPolicy::default() };
    /// assert_eq!(p.backoff(1000), p.max_backoff);
    /// let odd = RetryPolicy { multiplier: f64::NAN, jitter: false, ..RetryPolicy::default() };
    /// assert_eq!(odd.backoff(3), odd.initial_backoff.min(odd.max_backoff));
    /// ```
    pub fn backoff(&self, attempt: u32) -> Duration {
        let multiplier = if self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let exp = multiplier.powi(attempt.saturating_sub(1).min(i32::MAX as u32) as i32);
        // Past the cap the product may leave `Duration`'s range: compare in seconds first.
        let secs = self.initial_backoff.as_secs_f64() * exp;
        let base = Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff);
        if self.jitter {
            base.mul_f64(0.5 + fastrand::f64() * 0.5)
        } else {
            base
        }
    }
}

/// Retries failures whose error is retryable, with exponential backoff. A call
/// that has already sent a frame is never retried (the caller has seen output).
#[derive(Clone, Debug, Default)]
pub struct Retry {
    policy: RetryPolicy,
}

impl Retry {
    /// A retry layer with `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Retry { policy }
    }
}

#[async_trait::async_trait]
impl Middleware for Retry {
    async fn handle(&self, call: Call, next: Next<'_>) -> Result<(), BusError> {
        let max = self.policy.max_attempts.max(1);
        // A dead letter's attempt count is its original's (the reference's
        // key too): what its handler reads, so it is left as it came.
        let stamp = !super::dead_letter::is_dead_letter(call.envelope());
        let mut attempt = 1;
        loop {
            call.set_attempt(attempt);
            let mut this_try = call.clone();
            if stamp {
                this_try
                    .request
                    .envelope_mut()
                    .metadata
                    .insert(RETRY_ATTEMPT_KEY.to_owned(), Value::from(attempt));
            }
            let err = match next.run(this_try).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if attempt >= max
                || !err.retryable()
                || call.frames_sent() > 0
                || call.request.is_cancelled()
            {
                return Err(err);
            }
            tokio::select! {
                _ = tokio::time::sleep(self.policy.backoff(attempt)) => {}
                _ = call.request.cancelled() => return Err(err),
            }
            attempt += 1;
        }
    }
}
