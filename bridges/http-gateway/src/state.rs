//! What every route shares: the bus, the settings, the service status and the counters.

use std::sync::Arc;

use openagentio_core::{Bus, ServiceStatus};

use crate::auth::Authenticator;
use crate::config::GatewayConfig;
use crate::metrics::GatewayMetrics;

/// The router's state. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Inner>);

struct Inner {
    bus: Bus,
    config: GatewayConfig,
    status: Arc<dyn ServiceStatus>,
    auth: Authenticator,
    metrics: GatewayMetrics,
}

impl AppState {
    pub fn new(bus: Bus, config: GatewayConfig, status: Arc<dyn ServiceStatus>) -> Self {
        AppState(Arc::new(Inner {
            auth: Authenticator::new(config.tokens.clone()),
            bus,
            config,
            status,
            metrics: GatewayMetrics::default(),
        }))
    }
    pub fn bus(&self) -> &Bus {
        &self.0.bus
    }
    pub fn config(&self) -> &GatewayConfig {
        &self.0.config
    }
    pub fn status(&self) -> &dyn ServiceStatus {
        &*self.0.status
    }
    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.0.metrics
    }
}
