//! Registrations: the handlers and subscriptions a bus keeps, and how they
//! are made in force on the transport.

use std::future::Future;
use std::sync::{Arc, Weak};

use crate::bus::{Bus, BusInner};
use crate::error::{BusError, ErrorCode};
use crate::transport::{Operation, Subscription};

/// A handler or subscription registered on the bus. It stays until
/// [`Registration::unsubscribe`] or [`Bus::close`]; dropping the handle does not
/// remove it.
#[derive(Clone)]
pub struct Registration {
    inner: Arc<RegistrationInner>,
}

struct RegistrationInner {
    subject: String,
    subscription: tokio::sync::Mutex<Option<Box<dyn Subscription>>>,
    worker: Option<tokio::task::AbortHandle>,
    /// The bus that keeps it until `close` (weak: the bus owns its list).
    bus: Weak<BusInner>,
}

/// A registration not yet confirmed: removed if its caller stops waiting
/// (a dropped `subscribe` future must not leave a handler serving).
struct Unconfirmed(Option<Registration>);

impl Unconfirmed {
    /// The registration, now that its caller has the outcome.
    fn settled(mut self) -> Registration {
        self.0.take().expect("settled once")
    }
}

impl Drop for Unconfirmed {
    fn drop(&mut self) {
        if let Some(reg) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = reg.unsubscribe().await;
            });
        }
    }
}

/// `reg`, made while the transport is disconnected, logged as such.
fn registered_offline(reg: Registration) -> Registration {
    tracing::info!(
        subject = %reg.inner.subject,
        "registered while the transport is disconnected: in force once it reconnects"
    );
    reg
}

impl Registration {
    /// The subject it listens on.
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// Stops deliveries to the handler. Idempotent.
    pub async fn unsubscribe(&self) -> Result<(), BusError> {
        // The bus forgets it too: subscriptions that come and go (one per
        // client of a gateway feed, say) must not pile up until `close`.
        if let Some(bus) = self.inner.bus.upgrade() {
            bus.registrations
                .lock()
                .retain(|r| !Arc::ptr_eq(&r.inner, &self.inner));
        }
        let sub = self.inner.subscription.lock().await.take();
        if let Some(worker) = &self.inner.worker {
            worker.abort();
        }
        match sub {
            Some(s) => s.unsubscribe().await.map_err(BusError::from),
            None => Ok(()),
        }
    }
}

/// One attempt at registering: when it began, and by when it must be made
/// (a disconnected NATS client with a full send buffer holds new
/// subscriptions until it reconnects, so registering is bounded like a call).
#[derive(Clone, Copy)]
pub(crate) struct Attempt {
    began: std::time::Instant,
    pub deadline: tokio::time::Instant,
}

impl Bus {
    /// A registration attempt starting now.
    pub(crate) fn registration_attempt(&self) -> Attempt {
        Attempt {
            began: std::time::Instant::now(),
            deadline: crate::call::later_by(
                tokio::time::Instant::now(),
                self.inner.settings.default_timeout,
            ),
        }
    }

    /// `step` of registering on `subject`, unless `deadline` passes first
    /// (then `TRANSPORT_FAILURE`).
    pub(crate) async fn registering<T, E: Into<BusError>>(
        &self,
        subject: &str,
        deadline: tokio::time::Instant,
        step: impl Future<Output = Result<T, E>>,
    ) -> Result<T, BusError> {
        match crate::call::finish_by(deadline, step).await {
            Ok(done) => done.map_err(Into::into),
            Err(_) => Err(BusError::transport(format!(
                "{subject}: the transport did not take the subscription within {:?} \
                 (is it connected?)",
                self.inner.settings.default_timeout
            ))),
        }
    }

    /// Returns `reg` once the transport has it in force, so a peer that is
    /// told "registered" can call at once. While the transport is
    /// disconnected it returns at once instead: the client replays its
    /// subscriptions when it reconnects, so the registration is in force from
    /// then on, and waiting for the server would hold the caller for the
    /// whole outage. One the server refused (NATS permissions) fails with
    /// `AUTH_FAILURE`. A registration that fails, or whose caller stops
    /// waiting, is removed.
    pub(crate) async fn confirm(
        &self,
        reg: Registration,
        attempt: Attempt,
    ) -> Result<Registration, BusError> {
        let reg = self.confirm_in_force(reg, attempt).await?;
        // A drain that began meanwhile removed what it found; this one came
        // too late for it, and must not take requests either.
        if let Err(e) = self.ensure_taking() {
            let _ = reg.unsubscribe().await;
            return Err(e);
        }
        Ok(reg)
    }

    async fn confirm_in_force(
        &self,
        reg: Registration,
        attempt: Attempt,
    ) -> Result<Registration, BusError> {
        let transport = &self.inner.transport;
        if !transport.is_connected() {
            return Ok(registered_offline(reg));
        }
        let subject = reg.inner.subject.clone();
        let pending = Unconfirmed(Some(reg));
        let in_force = transport.confirm(Operation::Subscribe, &subject, attempt.began);
        let confirmed = self.registering(&subject, attempt.deadline, in_force).await;
        let reg = pending.settled();
        match confirmed {
            Ok(()) => Ok(reg),
            Err(e) if e.code() != ErrorCode::AuthFailure && !transport.is_connected() => {
                Ok(registered_offline(reg))
            }
            Err(e) => {
                let _ = reg.unsubscribe().await;
                Err(e)
            }
        }
    }

    /// A registration of `sub` on `subject`, kept in the bus's list until it
    /// is unsubscribed or the bus closes.
    pub(crate) fn track(
        &self,
        subject: String,
        sub: Box<dyn Subscription>,
        worker: Option<tokio::task::AbortHandle>,
    ) -> Registration {
        let reg = Registration {
            inner: Arc::new(RegistrationInner {
                subject,
                subscription: tokio::sync::Mutex::new(Some(sub)),
                worker,
                bus: Arc::downgrade(&self.inner),
            }),
        };
        self.inner.registrations.lock().push(reg.clone());
        reg
    }

    /// Removes every registration (handlers and subscriptions).
    pub(crate) async fn unsubscribe_all(&self) {
        let regs: Vec<Registration> = std::mem::take(&mut *self.inner.registrations.lock());
        // All at once: each may wait for its transport to confirm (a NATS
        // subscription drains what the server already sent it).
        futures::future::join_all(regs.iter().map(Registration::unsubscribe)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscriptions_that_end_are_forgotten() {
        let bus = Bus::memory();
        let keep = bus.subscribe("kept", |_e| async { Ok(()) }).await.unwrap();
        for _ in 0..100 {
            let reg = bus.subscribe("a.*", |_e| async { Ok(()) }).await.unwrap();
            reg.unsubscribe().await.unwrap();
            reg.unsubscribe().await.unwrap();
        }
        assert_eq!(bus.inner.registrations.lock().len(), 1);
        keep.unsubscribe().await.unwrap();
        assert!(bus.inner.registrations.lock().is_empty());
    }
}
