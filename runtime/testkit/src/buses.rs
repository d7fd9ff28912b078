//! Bus pairs on either transport, for suites that must behave the same on both.

use std::time::Duration;

use openagentio_core::{Bus, BusBuilder, MemoryTransport};
use openagentio_nats::{NatsOptions, NatsTransport};

use crate::nats_server::NatsServer;

/// Which transport a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportKind {
    /// The in-memory transport.
    Memory,
    /// A real nats-server.
    Nats,
}

/// Two buses that reach each other (two connections to one server, or one
/// shared in-memory transport), as two processes would.
pub struct BusPair {
    /// The serving side.
    pub server: Bus,
    /// The calling side.
    pub client: Bus,
    /// The server process, for NATS.
    pub nats: Option<NatsServer>,
}

/// Connects a bus to a NATS URL with test-friendly settings.
pub async fn nats_bus(url: &str, builder: BusBuilder) -> Bus {
    let t = NatsTransport::connect(NatsOptions::new(url).name("testkit"))
        .await
        .expect("connect to nats-server");
    builder.transport(t).build()
}

impl BusPair {
    /// A pair on `kind`; `configure` adjusts each side's builder (middleware, limits).
    pub async fn new(
        kind: TransportKind,
        configure: impl Fn(BusBuilder, &str) -> BusBuilder,
    ) -> BusPair {
        let base = |side: &str| {
            configure(
                Bus::builder()
                    .agent_id(side)
                    .default_timeout(Duration::from_secs(5)),
                side,
            )
        };
        match kind {
            TransportKind::Memory => {
                let t = MemoryTransport::new();
                BusPair {
                    server: base("server").transport(t.clone()).build(),
                    client: base("client").transport(t).build(),
                    nats: None,
                }
            }
            TransportKind::Nats => {
                let nats = NatsServer::start();
                let server = nats_bus(&nats.url(), base("server")).await;
                let client = nats_bus(&nats.url(), base("client")).await;
                BusPair {
                    server,
                    client,
                    nats: Some(nats),
                }
            }
        }
    }

    /// A pair with default settings.
    pub async fn plain(kind: TransportKind) -> BusPair {
        Self::new(kind, |b, _| b).await
    }

    /// Waits until registrations made on the server side are visible to the client
    /// (a NATS round trip; immediate in memory).
    pub async fn settle(&self) {
        let _ = self.server.transport().flush().await;
        let _ = self.client.transport().flush().await;
    }
}
