//! A running service: transport, bus, bridges and gateway, and their orderly shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openagentio_core::middleware::{Logging, Recover};
use openagentio_core::{Bridge, BridgeError, Bus, ServiceStatus};
use openagentio_nats::{ConnectError, NatsTransport};
use tokio::sync::RwLock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::spec::{ServiceSpec, TransportSpec};
use crate::status::{BridgeList, HostStatus};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The transport could not connect.
    #[error("bus transport: {0}")]
    Transport(String),
    /// A bridge failed to start (the ones started before it were stopped).
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// The gateway could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

struct Gateway {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// A running service.
pub struct Service {
    bus: Bus,
    bridges: BridgeList,
    status: Arc<HostStatus>,
    gateway: Option<Gateway>,
    drain_timeout: Duration,
    transport_label: String,
}

/// How shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every call in flight finished by itself before the drain deadline.
    pub drained: bool,
    /// Whether the drain was cut short ([`Service::shutdown_or_cut`]).
    pub cut: bool,
}

impl Service {
    /// Connects the transport, builds the bus, starts the bridges in order
    /// (stopping those already started, in reverse, if one fails) and the gateway.
    pub async fn start(spec: ServiceSpec) -> Result<Service, ServiceError> {
        let (transport_label, builder) = match &spec.transport {
            TransportSpec::Memory => ("memory".to_owned(), Bus::builder()),
            TransportSpec::Nats(opts) => {
                let t = NatsTransport::connect((**opts).clone())
                    .await
                    .map_err(|e| match e {
                        ConnectError::Unreachable { .. } => ServiceError::Transport(format!(
                            "{e} (is nats-server running there? To start before it \
                             does, set `bus.nats.retry_on_initial_connect: true`)"
                        )),
                        e => ServiceError::Transport(e.to_string()),
                    })?;
                let shown = openagentio_nats::redact_urls(&opts.url);
                (format!("nats ({shown})"), Bus::builder().transport(t))
            }
        };
        let metrics = spec.metrics.then(Metrics::new);
        let mut builder = match spec.serve_timeout {
            Some(d) => builder.serve_timeout(d),
            None => builder,
        };
        builder = builder
            .agent_id(&spec.agent_id)
            .subject_prefix(&spec.subject_prefix)
            .tenant(&spec.default_tenant)
            .default_timeout(spec.default_timeout)
            .cancel_grace(spec.cancel_grace)
            .middleware(crate::spans::HandleSpan)
            .preparer(crate::telemetry::stamp_current_span);
        if let Some(m) = &metrics {
            builder = builder.middleware(m.clone());
        }
        // Recover innermost: the metrics and the log line see a panic as the
        // error it becomes (the bus guards the layers outside it).
        let bus = builder.middleware(Logging).middleware(Recover).build();

        // Bind before starting bridges: a taken port fails at once, before any
        // child process or connection is made.
        let listener = match &spec.gateway {
            None => None,
            Some(cfg) => match tokio::net::TcpListener::bind(cfg.listen).await {
                Ok(l) => Some(l),
                Err(source) => {
                    bus.close().await;
                    return Err(ServiceError::Bind {
                        addr: cfg.listen,
                        source,
                    });
                }
            },
        };

        // Bridges that replay what they missed wait for this, so that the
        // bridges after them and the gateway are there to take it.
        let (service_started, started_gate) = openagentio_core::ServiceStarted::new();
        let mut started: Vec<Box<dyn Bridge>> = Vec::new();
        for mut bridge in spec.bridges {
            bridge.until_service_started(started_gate.clone());
            tracing::info!(
                bridge = bridge.name(),
                kind = bridge.kind(),
                "starting bridge"
            );
            if let Err(e) = bridge.start(&bus).await {
                tracing::error!(bridge = bridge.name(), error = %e, "bridge failed to start; stopping the others");
                let _ = bridge.stop().await;
                stop_in_reverse(&mut started).await;
                bus.close().await;
                return Err(e.into());
            }
            started.push(bridge);
        }
        let bridges: BridgeList = Arc::new(RwLock::new(started));
        let status = Arc::new(HostStatus {
            bus: bus.clone(),
            bridges: bridges.clone(),
            metrics,
        });

        if let Err(e) = serve_catalog(&bus, status.clone()).await {
            tracing::warn!(error = %e, "the catalog target could not be registered");
        }

        let gateway = match (spec.gateway, listener) {
            (Some(mut cfg), Some(listener)) => {
                // Metrics off for the service: none over HTTP either.
                cfg.metrics &= spec.metrics;
                let addr = listener.local_addr().unwrap_or(cfg.listen);
                let read_timeout = cfg.read_timeout;
                let router = openagentio_http_gateway::router(
                    bus.clone(),
                    cfg,
                    status.clone() as Arc<dyn ServiceStatus>,
                )
                .layer(axum::middleware::from_fn(crate::spans::gateway_span));
                let stop = CancellationToken::new();
                let signal = stop.clone();
                let task = tokio::spawn(async move {
                    if let Err(e) = openagentio_http_gateway::serve(
                        listener,
                        router,
                        read_timeout,
                        async move { signal.cancelled().await },
                    )
                    .await
                    {
                        tracing::error!(error = %e, "gateway stopped with an error");
                    }
                });
                Some(Gateway { addr, stop, task })
            }
            _ => None,
        };
        service_started.open();
        Ok(Service {
            bus,
            bridges,
            status,
            gateway,
            drain_timeout: spec.drain_timeout,
            transport_label,
        })
    }

    /// The bus.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The status view (health, targets, metrics).
    pub fn status(&self) -> Arc<dyn ServiceStatus> {
        self.status.clone()
    }

    /// Where the gateway listens, when enabled.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway.as_ref().map(|g| g.addr)
    }

    /// A short, human-readable summary: transport, gateway, bridges and their targets.
    pub async fn summary(&self) -> String {
        let mut s = format!(
            "openagentio {} running\n  bus: {}\n",
            env!("CARGO_PKG_VERSION"),
            self.transport_label
        );
        match self.gateway_addr() {
            Some(a) => s.push_str(&format!("  gateway: http://{a}\n")),
            None => s.push_str("  gateway: off\n"),
        }
        let bridges = self.bridges.read().await;
        if bridges.is_empty() {
            s.push_str("  bridges: none\n");
        }
        for b in bridges.iter() {
            let targets: Vec<String> = b.targets().into_iter().map(|t| t.name).collect();
            s.push_str(&format!(
                "  bridge {} ({}): {}\n",
                b.name(),
                b.kind(),
                if targets.is_empty() {
                    "no targets".to_owned()
                } else {
                    targets.join(", ")
                }
            ));
        }
        s
    }

    /// Stops intake (the gateway takes no new connections, handlers no new
    /// requests), lets calls in flight finish until the drain deadline, stops
    /// the bridges in reverse order and closes the bus.
    pub async fn shutdown(self) -> ShutdownReport {
        self.shutdown_or_cut(std::future::pending()).await
    }

    /// [`Service::shutdown`], cut short when `cut` completes (an operator's
    /// second signal): the drain ends there, and the calls still in flight
    /// end with an `AGENT_UNAVAILABLE` error frame, so that their callers
    /// (the gateway's HTTP clients among them) get an answer rather than a
    /// cut connection. Bridges then get a second at most to stop.
    pub async fn shutdown_or_cut(self, cut: impl Future<Output = ()>) -> ShutdownReport {
        tracing::info!(
            drain_timeout_ms = self.drain_timeout.as_millis() as u64,
            "shutting down"
        );
        let now = tokio::time::Instant::now();
        // A drain too long for the clock is one that does not end.
        let deadline = now
            .checked_add(self.drain_timeout)
            .unwrap_or(now + Duration::from_secs(30 * 365 * 24 * 3600));
        let grace = (self.drain_timeout / 4).min(Duration::from_secs(1));
        let mut gateway = self.gateway.map(|g| {
            g.stop.cancel();
            g.task
        });
        // The gateway's requests in flight wait for calls that other
        // services may serve, which the bus's drain does not see: they get
        // the same time, until the drain's grace before its deadline.
        let gateway_done = async {
            match &mut gateway {
                Some(task) => tokio::time::timeout_at(deadline - grace, task)
                    .await
                    .is_ok(),
                None => true,
            }
        };
        let drain = async { tokio::join!(self.bus.drain(self.drain_timeout), gateway_done) };
        let (mut drained, gateway_done, was_cut) = tokio::select! {
            (drained, gateway_done) = drain => (drained, gateway_done, false),
            () = cut => {
                tracing::warn!("drain cut short: ending the calls in flight");
                (false, gateway.is_none(), true)
            }
        };
        if was_cut {
            // Ends what this bus serves with an error frame, and what it
            // waits for (the gateway's calls) with an error.
            self.bus.close().await;
        }
        if !gateway_done && let Some(mut task) = gateway {
            // Closing the bus ends those calls, so their clients get an
            // error answer rather than a cut connection.
            drained = false;
            tracing::warn!("drain: ending calls the gateway is still waiting for");
            self.bus.close().await;
            if tokio::time::timeout(grace.max(Duration::from_millis(500)), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        let stop_bridges = async { stop_in_reverse(&mut *self.bridges.write().await).await };
        if was_cut {
            if tokio::time::timeout(Duration::from_secs(1), stop_bridges)
                .await
                .is_err()
            {
                tracing::warn!("bridges still stopping after the cut; leaving them");
            }
        } else {
            stop_bridges.await;
        }
        self.bus.close().await;
        tracing::info!(drained, "stopped");
        ShutdownReport {
            drained,
            cut: was_cut,
        }
    }
}

/// The invoke target that lists this service's targets (what `openagentio
/// targets` and the gateway's catalog gather: see [`openagentio_core::catalog`]).
/// Each service serves it in a queue group of its own, so a request reaches
/// every service on the bus.
pub use openagentio_core::catalog::CATALOG_TARGET;

async fn serve_catalog(
    bus: &Bus,
    status: Arc<HostStatus>,
) -> Result<(), openagentio_core::BusError> {
    let own_group = format!("openagentio-targets-{}", openagentio_core::new_span_id());
    bus.handle_invoke_with(
        CATALOG_TARGET,
        openagentio_core::HandleOptions::new().queue(own_group),
        move |_req| {
            let targets = status.targets();
            async move { Ok(serde_json::to_value(targets).unwrap_or_default()) }
        },
    )
    .await
    .map(|_| ())
}

async fn stop_in_reverse(bridges: &mut Vec<Box<dyn Bridge>>) {
    while let Some(mut b) = bridges.pop() {
        if let Err(e) = b.stop().await {
            tracing::warn!(bridge = b.name(), error = %e, "bridge did not stop cleanly");
        }
    }
}
