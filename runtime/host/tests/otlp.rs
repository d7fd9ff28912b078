//! OTLP export: a test collector (an OTLP/HTTP endpoint started here) receives
//! the spans of one trace from the gateway, the bus and a handler, across two
//! buses on a real nats-server, joined by the envelope's `traceparent`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use openagentio_core::Bus;
use openagentio_host::telemetry::{self, LogFormat, TelemetrySettings};
use openagentio_host::{Service, ServiceSpec, TransportSpec};
use openagentio_http_gateway::GatewayConfig;
use openagentio_nats::{NatsOptions, NatsTransport};
use openagentio_testkit::NatsServer;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use parking_lot::Mutex;
use prost::Message;
use serde_json::json;

#[derive(Clone, Debug)]
struct SeenSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_gateway_bus_and_handler() {
    // The collector.
    let seen: Arc<Mutex<Vec<SeenSpan>>> = Arc::default();
    let sink = seen.clone();
    let app = Router::new().route(
        "/v1/traces",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            sink.lock().push(SeenSpan {
                                name: s.name,
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                            });
                        }
                    }
                }
                ""
            }
        }),
    );
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(collector, app).await.unwrap() });

    let guard = telemetry::init(&TelemetrySettings {
        log_level: "info".into(),
        log_format: LogFormat::Text,
        otlp_endpoint: Some(format!("http://{collector_addr}")),
        service_name: "otlp-test".into(),
    })
    .unwrap();

    // A handler process (its own bus on NATS) with a nested call...
    let nats = NatsServer::start();
    let worker = Bus::builder()
        .transport(
            NatsTransport::connect(NatsOptions::new(nats.url()))
                .await
                .unwrap(),
        )
        .agent_id("worker")
        .middleware(openagentio_host::spans::HandleSpan)
        .preparer(telemetry::stamp_current_span)
        .build();
    worker
        .handle_invoke("outer", |req| async move {
            let _work = tracing::info_span!("handler.work").entered();
            drop(_work);
            let inner = req.bus().invoke("inner", json!({})).await?;
            Ok(json!({"inner": inner.payload}))
        })
        .await
        .unwrap();
    worker
        .handle_invoke("inner", |_req| async move { Ok(json!("deep")) })
        .await
        .unwrap();

    // ...and the service with the gateway, on the same NATS.
    let mut spec = ServiceSpec::memory();
    spec.transport = TransportSpec::Nats(Box::new(NatsOptions::new(nats.url())));
    spec.gateway = Some(GatewayConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..GatewayConfig::default()
    });
    let service = Service::start(spec).await.unwrap();
    let addr = service.gateway_addr().unwrap();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/v1/agents/outer/invoke"))
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"inner": "deep"})
    );

    // Spans are exported in batches: flush, then wait for them to arrive.
    let mut spans = Vec::new();
    for _ in 0..50 {
        guard.flush();
        spans = seen
            .lock()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect::<Vec<_>>();
        if spans.iter().any(|s| s.name == "bus invoke inner")
            && spans.iter().any(|s| s.name.starts_with("gateway "))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let find = |name: &str| {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} in {names:?}"))
    };
    let gateway = find("gateway POST /v1/agents/outer/invoke");
    let outer = find("bus invoke outer");
    let inner = find("bus invoke inner");
    let _work = find("handler.work");
    assert_eq!(
        gateway.parent, "00f067aa0ba902b7",
        "the gateway continues the caller's trace"
    );
    assert_eq!(
        outer.parent, gateway.span_id,
        "the handler's span is a child of the gateway's"
    );
    assert_eq!(
        inner.parent, outer.span_id,
        "the nested call's span is a child of the outer handler's"
    );
    service.shutdown().await;
    worker.close().await;
}
