//! [`McpBridge`]: the tools of one MCP server as bus targets, kept alive.
//!
//! `start` launches a supervised connection loop (core's [`Supervised`]) and
//! waits for its first attempt. Each run of the loop connects, lists every
//! tool, brings the registered targets in line with the list (adding and
//! removing handlers), marks the bridge healthy, and then serves until the
//! connection is lost, re-listing whenever the server sends
//! `notifications/tools/list_changed`. When the connection is lost (the
//! child exits, the stream ends, a session cannot be re-initialised) every
//! call in flight fails at once with `AGENT_UNAVAILABLE`, the targets stay
//! registered (calls fail fast with `AGENT_UNAVAILABLE` meanwhile), the bridge
//! is degraded, and the loop connects again after the policy's backoff.
//!
//! A first attempt that fails for good (bad credentials, a missing program)
//! fails `start`. One that fails for now (the server is not up yet) does not:
//! the bridge starts degraded and keeps trying in the background.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openagentio_core::supervisor::{Supervised, WorkContext};
use openagentio_core::{
    Bridge, BridgeError, BridgeHealth, Bus, BusError, HealthState, Registration, Request,
    StreamWriter, TargetInfo,
};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::call::{self, ToolSpec};
use crate::config::{ConfigError, McpConfig};
use crate::errors::McpError;
use crate::filter::ToolFilter;
use crate::redact::Redactor;
use crate::targets;
use crate::upstream::Upstream;

/// The bridge type name in the config file.
pub const KIND: &str = "mcp_tool";

/// How long `stop` waits for the connection loop before aborting it.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A bridge that serves every tool of one MCP server as `{prefix}.{tool}`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use openagentio_core::{Bridge, Bus};
/// use openagentio_mcp::{McpBridge, McpConfig, McpTransport};
/// let bus = Bus::memory();
/// let cfg = McpConfig::new(McpTransport::stdio("openagentio-mcp-demo", Vec::<String>::new()));
/// let mut bridge = McpBridge::new("demo", cfg)?;
/// bridge.start(&bus).await?;
/// let reply = bus.invoke("demo.echo", serde_json::json!({"text": "hi"})).await?;
/// assert_eq!(reply.payload.unwrap()["text"], "hi");
/// bridge.stop().await?;
/// # Ok(()) }
/// ```
pub struct McpBridge {
    shared: Arc<Shared>,
    supervised: Option<Supervised>,
    state: Lifecycle,
    /// Why `start` failed, for `health`.
    failed: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    New,
    Running,
    Stopped,
}

/// The outcome of a connection attempt, for `start` to wait on.
type Attempt = Option<Result<(), McpError>>;

struct Shared {
    name: String,
    prefix: String,
    cfg: McpConfig,
    filter: ToolFilter,
    redactor: Redactor,
    bus: Mutex<Option<Bus>>,
    conn: RwLock<Option<Arc<Upstream>>>,
    specs: RwLock<BTreeMap<String, Arc<ToolSpec>>>,
    regs: tokio::sync::Mutex<BTreeMap<String, Registration>>,
    problems: Mutex<Vec<String>>,
    attempts: watch::Sender<Attempt>,
    /// The connection loop's health, once started: whether it stopped for good.
    supervision: std::sync::OnceLock<openagentio_core::supervisor::SupervisedHealth>,
}

impl McpBridge {
    /// A bridge named `name` (the target prefix when the config sets none).
    /// The config is checked here: every problem is reported at once.
    pub fn new(name: impl Into<String>, config: McpConfig) -> Result<McpBridge, ConfigError> {
        let name = name.into();
        config.validate()?;
        let prefix = config.prefix_for(&name).to_owned();
        openagentio_core::subject::check_name("target prefix", &prefix, false)
            .map_err(|e| ConfigError::single("name", e.to_string()))?;
        let filter = ToolFilter::new(&config.include, &config.exclude)?;
        let redactor = Redactor::new(config.transport.secrets());
        Ok(McpBridge {
            shared: Arc::new(Shared {
                name,
                prefix,
                filter,
                redactor,
                cfg: config,
                bus: Mutex::new(None),
                conn: RwLock::new(None),
                specs: RwLock::new(BTreeMap::new()),
                regs: tokio::sync::Mutex::new(BTreeMap::new()),
                problems: Mutex::new(Vec::new()),
                attempts: watch::channel(None).0,
                supervision: std::sync::OnceLock::new(),
            }),
            supervised: None,
            state: Lifecycle::New,
            failed: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &McpConfig {
        &self.shared.cfg
    }

    /// The target prefix in force.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The process id of the MCP server child, while connected over stdio.
    pub fn server_pid(&self) -> Option<u32> {
        self.shared.conn.read().as_ref().and_then(|c| c.pid())
    }

    /// The connected server's name and version from its handshake.
    pub fn server_info(&self) -> Option<String> {
        self.shared
            .conn
            .read()
            .as_ref()
            .map(|c| c.server().to_owned())
    }

    /// Whether the bridge is connected to its server now.
    pub fn is_connected(&self) -> bool {
        self.shared
            .conn
            .read()
            .as_ref()
            .is_some_and(|c| !c.is_lost())
    }
}

#[async_trait]
impl Bridge for McpBridge {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    async fn start(&mut self, bus: &Bus) -> Result<(), BridgeError> {
        match self.state {
            Lifecycle::Running => return Ok(()),
            Lifecycle::Stopped => {
                return Err(BridgeError::permanent(
                    &self.shared.name,
                    "a stopped bridge cannot be started again",
                ));
            }
            Lifecycle::New => {}
        }
        *self.shared.bus.lock() = Some(bus.clone());
        let mut attempts = self.shared.attempts.subscribe();
        let shared = self.shared.clone();
        let supervised = Supervised::spawn(
            &self.shared.name,
            self.shared.cfg.restart.clone(),
            move |ctx| run_connection(shared.clone(), ctx),
        );
        let _ = self.shared.supervision.set(supervised.health().clone());
        self.supervised = Some(supervised);
        self.state = Lifecycle::Running;
        let first = attempts
            .wait_for(Option::is_some)
            .await
            .map(|v| v.clone())
            .unwrap_or(None);
        match first {
            Some(Err(e)) if e.is_permanent() => {
                let err = e.to_bridge(&self.shared.name, &self.shared.redactor);
                let _ = self.stop().await;
                self.failed = Some(err.message.clone());
                Err(err)
            }
            Some(Err(e)) => {
                tracing::warn!(
                    bridge = %self.shared.name,
                    error = %self.shared.redactor.clean(&e.to_string()),
                    "MCP server not reachable yet; retrying in the background"
                );
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn stop(&mut self) -> Result<(), BridgeError> {
        self.state = Lifecycle::Stopped;
        if let Some(mut s) = self.supervised.take() {
            s.stop(STOP_GRACE).await;
        }
        self.shared.unregister_all().await;
        let conn = self.shared.conn.write().take();
        if let Some(c) = conn {
            c.close().await;
        }
        self.shared.bus.lock().take();
        Ok(())
    }

    fn health(&self) -> BridgeHealth {
        match self.state {
            Lifecycle::New => return BridgeHealth::unhealthy("not started"),
            Lifecycle::Stopped => {
                return BridgeHealth::unhealthy(match &self.failed {
                    Some(why) => format!("start failed: {why}"),
                    None => "stopped".to_owned(),
                });
            }
            Lifecycle::Running => {}
        }
        let Some(s) = &self.supervised else {
            return BridgeHealth::unhealthy("not started");
        };
        let h = s.health().get();
        if h.state != HealthState::Healthy {
            return h;
        }
        if !self.is_connected() {
            return BridgeHealth::degraded("not connected to the MCP server");
        }
        let problems = self.shared.problems.lock();
        if !problems.is_empty() {
            return BridgeHealth::degraded(problems.join("; "));
        }
        h
    }

    fn targets(&self) -> Vec<TargetInfo> {
        if self.shared.stopped_for_good().is_some() {
            // None of them can be served any more.
            return Vec::new();
        }
        self.shared
            .specs
            .read()
            .values()
            .map(|s| targets::info(s, &self.shared.name))
            .collect()
    }

    fn restarts(&self) -> u64 {
        self.supervised
            .as_ref()
            .map_or(0, |s| s.health().restarts())
    }
}

impl Drop for McpBridge {
    fn drop(&mut self) {
        if self.state != Lifecycle::Running {
            return;
        }
        // Not stopped: stop in the background (the server child is killed either way).
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let supervised = self.supervised.take();
        let shared = self.shared.clone();
        rt.spawn(async move {
            if let Some(mut s) = supervised {
                s.stop(STOP_GRACE).await;
            }
            shared.unregister_all().await;
            let conn = shared.conn.write().take();
            if let Some(c) = conn {
                c.close().await;
            }
        });
    }
}

impl std::fmt::Debug for McpBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpBridge")
            .field("name", &self.shared.name)
            .field("prefix", &self.shared.prefix)
            .field("config", &self.shared.cfg)
            .finish()
    }
}

/// One run of the connection loop: connect, serve until lost, report.
async fn run_connection(shared: Arc<Shared>, ctx: WorkContext) -> Result<(), BridgeError> {
    let conn = match shared.connect().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(bridge = %shared.name, error = %shared.redactor.clean(&e.to_string()), "cannot connect to the MCP server");
            let err = e.to_bridge(&shared.name, &shared.redactor);
            shared.attempts.send_replace(Some(Err(e)));
            return Err(err);
        }
    };
    ctx.health.set(BridgeHealth::healthy());
    shared.attempts.send_replace(Some(Ok(())));
    loop {
        tokio::select! {
            _ = conn.lost() => break,
            _ = conn.tools_changed() => match conn.list_tools(shared.cfg.connect_timeout).await {
                Ok(tools) => {
                    shared.sync(tools).await;
                    ctx.health.set(BridgeHealth::healthy());
                }
                Err(e) if e.connection_lost() => {
                    conn.lose(e.to_string());
                    break;
                }
                Err(e) => {
                    let why = shared.redactor.clean(&e.to_string());
                    tracing::warn!(bridge = %shared.name, error = %why, "tools/list after tools/list_changed failed");
                    ctx.health.set(BridgeHealth::degraded(format!("tools/list failed: {why}")));
                }
            },
        }
    }
    let reason = shared.redactor.clean(&conn.lost_reason());
    {
        let mut slot = shared.conn.write();
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, &conn)) {
            *slot = None;
        }
    }
    tracing::warn!(bridge = %shared.name, %reason, "MCP connection lost; reconnecting");
    tokio::spawn(async move { conn.close().await });
    Err(BridgeError::transient(
        &shared.name,
        format!("connection lost: {reason}"),
    ))
}

impl Shared {
    /// Connects, lists the tools and registers their targets.
    async fn connect(self: &Arc<Self>) -> Result<Arc<Upstream>, McpError> {
        let conn = Upstream::connect(&self.name, &self.cfg, &self.redactor).await?;
        let tools = match conn.list_tools(self.cfg.connect_timeout).await {
            Ok(t) => t,
            Err(e) => {
                tokio::spawn(async move { conn.close().await });
                return Err(e);
            }
        };
        *self.conn.write() = Some(conn.clone());
        let n = self.sync(tools).await;
        tracing::info!(
            bridge = %self.name,
            server = %conn.server(),
            pid = conn.pid(),
            targets = n,
            "connected to the MCP server"
        );
        Ok(conn)
    }

    /// Brings the registered targets in line with `tools`; the number served.
    async fn sync(self: &Arc<Self>, tools: Vec<rmcp::model::Tool>) -> usize {
        let plan = targets::plan(tools, &self.prefix, &self.filter, &self.cfg);
        let mut problems = plan.problems;
        let bus = self.bus.lock().clone();
        let mut regs = self.regs.lock().await;
        let stale: Vec<String> = regs
            .keys()
            .filter(|t| !plan.specs.contains_key(*t))
            .cloned()
            .collect();
        for t in stale {
            self.specs.write().remove(&t);
            if let Some(r) = regs.remove(&t) {
                let _ = r.unsubscribe().await;
            }
            tracing::info!(bridge = %self.name, target = %t, "target removed");
        }
        for (t, spec) in plan.specs {
            {
                let mut specs = self.specs.write();
                if !specs.get(&t).is_some_and(|old| targets::same(old, &spec)) {
                    specs.insert(t.clone(), spec);
                }
            }
            if regs.contains_key(&t) {
                continue;
            }
            let registered = match &bus {
                Some(bus) => self.register(bus, &t).await,
                None => Err(BusError::unavailable("the bridge has no bus")),
            };
            match registered {
                Ok(r) => {
                    tracing::debug!(bridge = %self.name, target = %t, "target added");
                    regs.insert(t, r);
                }
                Err(e) => {
                    self.specs.write().remove(&t);
                    problems.push(format!("target {t} not registered: {e}"));
                }
            }
        }
        for p in &problems {
            tracing::warn!(bridge = %self.name, problem = %p, "tool not served");
        }
        *self.problems.lock() = problems;
        regs.len()
    }

    async fn register(self: &Arc<Self>, bus: &Bus, target: &str) -> Result<Registration, BusError> {
        let weak = Arc::downgrade(self);
        let t = target.to_owned();
        bus.handle_stream(target, move |req: Request, writer: StreamWriter| {
            let weak = weak.clone();
            let t = t.clone();
            async move {
                match weak.upgrade() {
                    Some(shared) => shared.serve(&t, req, writer).await,
                    None => Err(BusError::unavailable("the MCP bridge has stopped")),
                }
            }
        })
        .await
    }

    async fn serve(
        &self,
        target: &str,
        req: Request,
        writer: StreamWriter,
    ) -> Result<(), BusError> {
        let spec = self.specs.read().get(target).cloned();
        let Some(spec) = spec else {
            return Err(McpError::unavailable(format!(
                "the MCP server no longer offers the tool behind {target}"
            ))
            .to_bus(&self.name, &self.redactor));
        };
        let conn = self.conn.read().clone();
        if conn.as_ref().is_none_or(|c| c.is_lost())
            && let Some(reason) = self.stopped_for_good()
        {
            return Err(McpError::unavailable(format!(
                "the MCP server is not connected, and the bridge has stopped reconnecting \
                 ({reason}); restart the service once the server is fixed"
            ))
            .to_bus(&self.name, &self.redactor)
            .with_retryable(false));
        }
        call::serve(&self.name, &self.redactor, &spec, conn, &req, &writer).await
    }

    /// Why the connection loop stopped for good, once it has.
    fn stopped_for_good(&self) -> Option<String> {
        self.supervision.get().and_then(|h| h.stopped_for_good())
    }

    async fn unregister_all(&self) {
        let regs = std::mem::take(&mut *self.regs.lock().await);
        for r in regs.into_values() {
            let _ = r.unsubscribe().await;
        }
        self.specs.write().clear();
    }
}
