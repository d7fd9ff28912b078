//! [`MatrixBridge`]: the [`Bridge`] the service host drives.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openagentio_core::supervisor::{RestartPolicy, Supervised};
use openagentio_core::{
    Bridge, BridgeError, BridgeHealth, Bus, HealthState, Registration, ServiceStarted, TargetInfo,
};
use serde_json::json;

use crate::config::MatrixConfig;
use crate::error::MatrixError;
use crate::outbound;
use crate::shared::Shared;
use crate::state::StateStore;
use crate::sync;

/// The bridge type name in config files.
pub const KIND: &str = "matrix_event";
/// Longest reconnect delay.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(300);
/// How long `stop` waits for the sync work and responders.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Bridges Matrix rooms and the bus (see the [crate docs](crate)).
///
/// ```no_run
/// # async fn demo(bus: openagentio_core::Bus) -> Result<(), openagentio_core::BridgeError> {
/// use openagentio_core::Bridge;
/// use openagentio_matrix::{MatrixAuth, MatrixBridge, MatrixConfig, Secret};
/// let cfg = MatrixConfig::new(
///     "https://matrix.example.org",
///     MatrixAuth::AccessToken { token: Secret::new("syt_..."), user_id: "@bot:example.org".into(), device_id: None },
///     vec!["#agents:example.org".into()],
///     "/var/lib/openagentio/matrix",
/// );
/// let mut bridge = MatrixBridge::new("matrix", cfg);
/// bridge.start(&bus).await?;
/// // ... `matrix.message.received` events flow; `matrix.send` is served.
/// bridge.stop().await
/// # }
/// ```
pub struct MatrixBridge {
    name: String,
    config: MatrixConfig,
    running: Option<Running>,
    service_started: ServiceStarted,
}

struct Running {
    shared: Arc<Shared>,
    work: Supervised,
    registrations: Vec<Registration>,
}

impl MatrixBridge {
    /// A bridge named `name` (targets are `{name}.send`). Nothing happens
    /// before [`Bridge::start`].
    pub fn new(name: impl Into<String>, config: MatrixConfig) -> Self {
        MatrixBridge {
            name: name.into(),
            config,
            running: None,
            service_started: ServiceStarted::open_now(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MatrixConfig {
        &self.config
    }

    /// The invoke target that posts a message: `{name}.send`.
    pub fn send_target(&self) -> String {
        format!("{}.send", self.name)
    }

    /// The logged-in device id, once known.
    pub fn device_id(&self) -> Option<String> {
        let running = self.running.as_ref()?;
        let session = running.shared.session.borrow().clone()?;
        session.device_id.clone()
    }

    /// Waits until the first sync batch is processed (true) or `timeout`
    /// passes or the work stops for good (false).
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let Some(running) = &self.running else {
            return false;
        };
        let mut ready = running.shared.ready.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if *ready.borrow_and_update() {
                return true;
            }
            if running.work.health().get().state == HealthState::Unhealthy {
                return false;
            }
            let tick = tokio::time::Instant::now() + Duration::from_millis(50);
            if tick >= deadline {
                return false;
            }
            let _ = tokio::time::timeout_at(tick, ready.changed()).await;
        }
    }

    async fn register(
        &self,
        bus: &Bus,
        shared: &Arc<Shared>,
    ) -> Result<Vec<Registration>, BridgeError> {
        let mut regs = Vec::new();
        let s = shared.clone();
        let sub = bus
            .subscribe(&self.config.outbound_message_event, move |env| {
                let s = s.clone();
                async move { outbound::send_event(&s, &env).await }
            })
            .await
            .map_err(|e| BridgeError::permanent(&self.name, format!("cannot subscribe: {e}")))?;
        regs.push(sub);
        let s = shared.clone();
        let target = self.send_target();
        match bus
            .handle_invoke(&target, move |req| {
                let s = s.clone();
                async move {
                    let (room_id, event_id) = outbound::send(&s, req.envelope()).await?;
                    Ok(json!({"event_id": event_id, "room_id": room_id}))
                }
            })
            .await
        {
            Ok(r) => regs.push(r),
            Err(e) => {
                for r in &regs {
                    let _ = r.unsubscribe().await;
                }
                return Err(BridgeError::permanent(
                    &self.name,
                    format!("cannot serve {target}: {e}"),
                ));
            }
        }
        Ok(regs)
    }
}

#[async_trait]
impl Bridge for MatrixBridge {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    /// Registers the outbound subscription and the `{name}.send` target, then
    /// starts the supervised sync work and waits (up to `start_timeout`) for
    /// its first batch. Bad credentials fail here, permanently; an unreachable
    /// homeserver does not (the bridge stays degraded and keeps trying).
    async fn start(&mut self, bus: &Bus) -> Result<(), BridgeError> {
        if self.running.is_some() {
            return Ok(());
        }
        self.config
            .validate()
            .map_err(|e| BridgeError::permanent(&self.name, e.to_string()))?;
        let store = open_state(&self.config.state_dir)
            .await
            .map_err(|e| e.to_bridge_error(&self.name))?;
        let shared = Arc::new(Shared::new(
            self.name.clone(),
            self.config.clone(),
            store,
            bus,
            self.service_started.clone(),
        ));
        let registrations = self.register(bus, &shared).await?;
        let policy = self.config.restart.clone().unwrap_or(RestartPolicy {
            initial_backoff: self.config.reconnect_delay,
            max_backoff: MAX_RECONNECT_DELAY,
            ..RestartPolicy::default()
        });
        let s = shared.clone();
        let work = Supervised::spawn(&self.name, policy, move |ctx| sync::run(s.clone(), ctx));
        self.running = Some(Running {
            shared,
            work,
            registrations,
        });
        let ready = self.wait_ready(self.config.start_timeout).await;
        let health = self.health();
        if !ready && health.state == HealthState::Unhealthy {
            let reason = health.reason.unwrap_or_default();
            let _ = self.stop().await;
            return Err(BridgeError::permanent(&self.name, reason));
        }
        if !ready {
            tracing::warn!(bridge = %self.name, health = ?health, "matrix: not connected yet; continuing in the background");
        }
        Ok(())
    }

    async fn stop(&mut self) -> Result<(), BridgeError> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        for r in &running.registrations {
            let _ = r.unsubscribe().await;
        }
        running.work.stop(STOP_GRACE).await;
        let shared = &running.shared;
        shared.shutdown.cancel();
        shared.tasks.close();
        let _ = tokio::time::timeout(STOP_GRACE, shared.tasks.wait()).await;
        shared.persist_cursor_quietly();
        shared.session.send_replace(None);
        Ok(())
    }

    fn until_service_started(&mut self, started: ServiceStarted) {
        // What was missed while the service was down goes out once the
        // bridges after this one (a responder's target) and the gateway are up.
        self.service_started = started;
    }

    fn health(&self) -> BridgeHealth {
        match &self.running {
            Some(r) => r.work.health().get(),
            None => BridgeHealth::unhealthy("not running"),
        }
    }

    fn targets(&self) -> Vec<TargetInfo> {
        vec![TargetInfo {
            name: self.send_target(),
            description: "Posts a message to a Matrix room and returns its event_id.".into(),
            streaming: false,
            input_schema: Some(json!({
                "type": "object",
                "required": ["text"],
                "properties": {
                    "text": {"type": "string", "minLength": 1},
                    "html": {"type": "string"},
                    "room_id": {"type": "string", "description": "room id or alias; else matrix.room_id metadata, else the session id"},
                    "reply_to_event_id": {"type": "string"},
                    "thread_root_event_id": {"type": "string"}
                }
            })),
            bridge: self.name.clone(),
            upstream_name: None,
        }]
    }

    fn restarts(&self) -> u64 {
        self.running
            .as_ref()
            .map_or(0, |r| r.work.health().restarts())
    }
}

/// Opens and locks the state directory, waiting a moment for a lock that
/// this bridge's previous run may hold while its last tasks end.
async fn open_state(dir: &std::path::Path) -> Result<StateStore, MatrixError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match StateStore::open(dir) {
            Err(MatrixError::StateInUse { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}
