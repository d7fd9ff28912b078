//! Cancellation across processes.
//!
//! A caller that gives up on a call (its stream was dropped, or its deadline
//! passed) publishes a notice on `{prefix}.control.cancel` naming the request's
//! `event_id` in `correlation_id`. Every bus that serves handlers listens there
//! and cancels the token of that request if it is serving it. This is an
//! extension of this runtime: reference SDK peers neither send nor read it.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::codec::decode_body;
use crate::error::BusError;
use crate::transport::{Message, Sink, Subscription, Transport};

/// Event type of a cancellation notice.
pub const CANCEL_EVENT: &str = "acp.control.cancel";

pub(crate) struct CancelRegistry {
    tokens: Arc<Tokens>,
    subscription: OnceCell<Box<dyn Subscription>>,
}

#[derive(Default)]
struct Tokens(Mutex<HashMap<String, CancellationToken>>);

impl Sink for Tokens {
    fn deliver(&self, msg: Message) {
        let Ok(env) = decode_body(msg.body) else {
            return;
        };
        if env.event_type != CANCEL_EVENT {
            return;
        }
        if let Some(token) = self.0.lock().get(&env.correlation_id) {
            token.cancel();
        }
    }
}

/// Removes a request's token when its handler is done.
pub(crate) struct CancelGuard {
    tokens: Arc<Tokens>,
    id: String,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.tokens.0.lock().remove(&self.id);
    }
}

impl CancelRegistry {
    pub fn new() -> Self {
        CancelRegistry {
            tokens: Arc::default(),
            subscription: OnceCell::new(),
        }
    }

    /// Starts listening for notices (once per bus).
    pub async fn listen(
        &self,
        transport: &Arc<dyn Transport>,
        subject: &str,
    ) -> Result<(), BusError> {
        self.subscription
            .get_or_try_init(|| async {
                transport
                    .subscribe(subject, None, self.tokens.clone())
                    .await
                    .map_err(BusError::from)
            })
            .await?;
        Ok(())
    }

    /// Tracks the token of request `id` until the guard drops.
    pub fn register(&self, id: &str, token: CancellationToken) -> CancelGuard {
        self.tokens.0.lock().insert(id.to_owned(), token);
        CancelGuard {
            tokens: self.tokens.clone(),
            id: id.to_owned(),
        }
    }

    pub async fn close(&self) {
        if let Some(sub) = self.subscription.get() {
            let _ = sub.unsubscribe().await;
        }
        for (_, t) in self.tokens.0.lock().drain() {
            t.cancel();
        }
    }
}
