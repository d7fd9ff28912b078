//! The gateway over a real socket: `serve` on 127.0.0.1:0, called with reqwest
//! (and raw TCP where the client's own behaviour must not matter).

mod auth;
mod body;
mod catalog_health;
mod errors;
mod feed;
mod headers;
mod routes;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openagentio_core::{BridgeHealth, Bus, ServiceStatus, TargetInfo};
use openagentio_http_gateway::{GatewayConfig, router, serve};
use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A `ServiceStatus` whose answers the test sets.
#[derive(Default)]
pub struct FakeStatus {
    /// What `bridges()` answers.
    pub bridges: Mutex<Vec<(String, BridgeHealth)>>,
    /// What `targets()` answers.
    pub targets: Mutex<Vec<TargetInfo>>,
    /// What `metrics()` answers.
    pub metrics: Mutex<String>,
}

impl ServiceStatus for FakeStatus {
    fn bridges(&self) -> Vec<(String, BridgeHealth)> {
        self.bridges.lock().clone()
    }
    fn targets(&self) -> Vec<TargetInfo> {
        self.targets.lock().clone()
    }
    fn metrics(&self) -> String {
        self.metrics.lock().clone()
    }
}

/// A gateway serving on a free loopback port; stopped on drop.
pub struct Gateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The bus it serves.
    pub bus: Bus,
    /// The status it reports.
    pub status: Arc<FakeStatus>,
    /// A client for it.
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Gateway {
    /// Starts on a new in-memory bus.
    pub async fn start(config: GatewayConfig) -> Gateway {
        Self::start_on(Bus::memory(), config).await
    }

    /// Starts with the default settings.
    pub async fn start_default() -> Gateway {
        Self::start(GatewayConfig::default()).await
    }

    /// Starts on `bus`.
    pub async fn start_on(bus: Bus, config: GatewayConfig) -> Gateway {
        let status = Arc::new(FakeStatus::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let read_timeout = config.read_timeout;
        let app = router(
            bus.clone(),
            config,
            status.clone() as Arc<dyn ServiceStatus>,
        );
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, app, read_timeout, async move {
            let _ = rx.await;
        }));
        Gateway {
            addr,
            bus,
            status,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A POST to `path`.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path))
    }

    /// A GET of `path`.
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path))
    }

    /// Stops the server and waits for `serve` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(5), self.task.take().unwrap())
            .await
            .expect("serve returns after shutdown")
            .unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Asserts the JSON error shape and returns the body.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "content type"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(body["retryable"].is_boolean(), "{body}");
    body
}
