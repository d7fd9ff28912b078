//! The service status the gateway reports: bridge health, targets, metrics.

use std::sync::Arc;

use openagentio_core::{Bridge, BridgeHealth, Bus, ServiceStatus, TargetInfo};
use tokio::sync::RwLock;

use crate::metrics::Metrics;

/// The running bridges, shared between the service and its status view.
pub type BridgeList = Arc<RwLock<Vec<Box<dyn Bridge>>>>;

/// [`ServiceStatus`] over the running bridges.
pub struct HostStatus {
    pub(crate) bus: Bus,
    pub(crate) bridges: BridgeList,
    pub(crate) metrics: Option<Metrics>,
}

impl HostStatus {
    fn with_bridges<T>(&self, f: impl FnOnce(&[Box<dyn Bridge>]) -> T) -> Option<T> {
        // Status is read from sync code; a bridge list being changed (start or
        // stop) reads as "not ready".
        self.bridges.try_read().ok().map(|b| f(&b))
    }
}

impl ServiceStatus for HostStatus {
    fn bridges(&self) -> Vec<(String, BridgeHealth)> {
        let mut list = self
            .with_bridges(|b| {
                b.iter()
                    .map(|b| (b.name().to_owned(), b.health()))
                    .collect()
            })
            .unwrap_or_else(|| {
                vec![(
                    "service".into(),
                    BridgeHealth::unhealthy("bridges are starting or stopping"),
                )]
            });
        if !self.bus.transport().is_connected() {
            list.push((
                format!("bus ({})", self.bus.transport().kind()),
                BridgeHealth::unhealthy("the bus transport is not connected"),
            ));
        }
        list
    }

    fn targets(&self) -> Vec<TargetInfo> {
        self.with_bridges(|b| b.iter().flat_map(|b| b.targets()).collect())
            .unwrap_or_default()
    }

    fn metrics(&self) -> String {
        let Some(m) = &self.metrics else {
            return String::new();
        };
        let restarts: Vec<(String, u64)> = self
            .with_bridges(|b| {
                b.iter()
                    .map(|b| (b.name().to_owned(), b.restarts()))
                    .collect()
            })
            .unwrap_or_default();
        m.render(&self.bus, &restarts)
    }
}
