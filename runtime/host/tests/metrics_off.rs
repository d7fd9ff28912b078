//! `telemetry.metrics: false` turns metrics off everywhere, `GET /metrics`
//! included; on (the default), the gateway serves them.

use openagentio_config::{Format, load_with_env};
use openagentio_host::Service;
use openagentio_host::from_config::spec_from_config;

async fn metrics_status(yaml: &str) -> (u16, u16) {
    let cfg = load_with_env(yaml, Format::Yaml, &|_| None).unwrap();
    let service = Service::start(spec_from_config(&cfg).unwrap())
        .await
        .unwrap();
    let addr = service.gateway_addr().unwrap();
    let get = |path: &'static str| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.write_all(req.as_bytes()).await.unwrap();
        let mut resp = String::new();
        conn.read_to_string(&mut resp).await.unwrap();
        // "HTTP/1.1 200 OK"
        resp[9..12].parse::<u16>().unwrap()
    };
    let statuses = (get("/metrics").await, get("/healthz").await);
    service.shutdown().await;
    statuses
}

#[tokio::test]
async fn metrics_off_means_no_metrics_route() {
    let base = "version: openagentio.bridge/v1\nhttp: {listen: '127.0.0.1:0'}\n";
    assert_eq!(metrics_status(base).await, (200, 200));
    let off = format!("{base}telemetry: {{metrics: false}}\n");
    assert_eq!(metrics_status(&off).await, (404, 200));
}

/// A handler that panics on a service's bus is counted as a failed call and
/// as a panic: the metrics see it, not only its caller.
#[tokio::test]
async fn a_panicking_handler_is_counted() {
    let yaml = "version: openagentio.bridge/v1\nhttp: {enabled: false}\n";
    let cfg = load_with_env(yaml, Format::Yaml, &|_| None).unwrap();
    let service = Service::start(spec_from_config(&cfg).unwrap())
        .await
        .unwrap();
    service
        .bus()
        .handle_invoke("tk.panic", |_req| async move {
            if true {
                panic!("bridge handler panic");
            }
            Ok(serde_json::Value::Null)
        })
        .await
        .unwrap();
    let e = service
        .bus()
        .invoke("tk.panic", serde_json::json!(null))
        .await
        .unwrap_err();
    assert!(
        e.message()
            .contains("handler panicked: bridge handler panic"),
        "{e}"
    );
    let text = service.status().metrics();
    assert!(
        text.contains(
            "openagentio_call_errors_total{target=\"tk.panic\",code=\"AGENT_UNAVAILABLE\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("openagentio_handler_panics_total 1"),
        "{text}"
    );
    service.shutdown().await;
}
