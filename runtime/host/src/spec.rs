//! What a service is made of, once the config file has been read.

use std::time::Duration;

use openagentio_core::Bridge;
use openagentio_http_gateway::GatewayConfig;
use openagentio_nats::NatsOptions;

/// The transport of the bus.
#[derive(Clone, Debug)]
pub enum TransportSpec {
    /// In-process.
    Memory,
    /// A NATS server.
    Nats(Box<NatsOptions>),
}

/// Everything [`crate::Service::start`] needs.
pub struct ServiceSpec {
    /// The agent id written into `from`.
    pub agent_id: String,
    /// The transport.
    pub transport: TransportSpec,
    /// Subject prefix (`acp.v1`).
    pub subject_prefix: String,
    /// Default tenant ("" for none).
    pub default_tenant: String,
    /// Timeout of calls that set none.
    pub default_timeout: Duration,
    /// How long a request that carries no deadline may be served (none: unbounded).
    pub serve_timeout: Option<Duration>,
    /// How long a cancelled handler has to end before it is dropped.
    pub cancel_grace: Duration,
    /// The HTTP gateway, when enabled.
    pub gateway: Option<GatewayConfig>,
    /// Whether to count calls for `/metrics`.
    pub metrics: bool,
    /// How long shutdown lets calls in flight finish.
    pub drain_timeout: Duration,
    /// The bridges, in start order.
    pub bridges: Vec<Box<dyn Bridge>>,
}

impl ServiceSpec {
    /// A service on the in-memory bus with no gateway and no bridges.
    pub fn memory() -> Self {
        ServiceSpec {
            agent_id: "openagentio".into(),
            transport: TransportSpec::Memory,
            subject_prefix: openagentio_core::subject::DEFAULT_PREFIX.into(),
            default_tenant: String::new(),
            default_timeout: Duration::from_secs(30),
            serve_timeout: None,
            cancel_grace: Duration::from_secs(5),
            gateway: None,
            metrics: true,
            drain_timeout: Duration::from_secs(10),
            bridges: Vec::new(),
        }
    }
}
