//! `/v1/agents`, `/healthz`, `/readyz` and `/metrics`.

use openagentio_core::{BridgeHealth, TargetInfo};
use serde_json::{Value, json};

use crate::{Gateway, expect_error};

fn target(name: &str, streaming: bool) -> TargetInfo {
    TargetInfo {
        name: name.into(),
        description: format!("the {name} tool"),
        streaming,
        input_schema: Some(json!({"type": "object", "properties": {"path": {"type": "string"}}})),
        bridge: "mcp-fs".into(),
        upstream_name: None,
    }
}

#[tokio::test]
async fn catalog_lists_targets_and_finds_one() {
    let gw = Gateway::start_default().await;
    *gw.status.targets.lock() = vec![target("mcp-fs.write", false), target("mcp-fs.read", true)];
    let list: Value = gw
        .get("/v1/agents")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mcp-fs.read", "mcp-fs.write"]);
    assert_eq!(list[0]["streaming"], true);
    assert_eq!(list[0]["bridge"], "mcp-fs");

    let one: TargetInfo = gw
        .get("/v1/agents/mcp-fs.read")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one, target("mcp-fs.read", true));

    let resp = gw.get("/v1/agents/unknown").send().await.unwrap();
    expect_error(resp, 404, "NO_HANDLER").await;

    // Calls for another tenant than the bridges serve (here: none) reach
    // none of these targets, so they are not listed for them.
    let other: Value = gw
        .get("/v1/agents")
        .header("X-Tenant-Id", "acme")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other, json!([]));
    let resp = gw
        .get("/v1/agents/mcp-fs.read")
        .header("X-Tenant-Id", "acme")
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "NO_HANDLER").await;

    // A tenant no call could be made in is refused, as on the call routes.
    for tenant in ["a.b".to_owned(), "t".repeat(300)] {
        let resp = gw
            .get("/v1/agents")
            .header("X-Tenant-Id", tenant.as_str())
            .send()
            .await
            .unwrap();
        expect_error(resp, 400, "INVALID_REQUEST").await;
    }
}

#[tokio::test]
async fn a_tenant_bound_token_sees_the_targets_of_its_tenant_only() {
    use openagentio_http_gateway::{ApiToken, GatewayConfig};
    let config = || GatewayConfig {
        tokens: vec![
            ApiToken::for_tenant("acme-token", "acme"),
            ApiToken::new("admin"),
        ],
        ..GatewayConfig::default()
    };
    let names = |gw: &Gateway, token: &'static str| {
        let req = gw.get("/v1/agents").bearer_auth(token);
        async move {
            let list: Value = req.send().await.unwrap().json().await.unwrap();
            list.as_array().unwrap().len()
        }
    };
    // Bridges serving no tenant: the acme token could call none of them.
    let gw = Gateway::start(config()).await;
    *gw.status.targets.lock() = vec![target("mcp-fs.read", true)];
    assert_eq!(names(&gw, "acme-token").await, 0);
    assert_eq!(names(&gw, "admin").await, 1);
    // Bridges serving acme (the bus's default tenant): it sees them.
    let bus = openagentio_core::Bus::builder().tenant("acme").build();
    let gw = Gateway::start_on(bus, config()).await;
    *gw.status.targets.lock() = vec![target("mcp-fs.read", true)];
    assert_eq!(names(&gw, "acme-token").await, 1);
}

#[tokio::test]
async fn healthz_is_200() {
    let gw = Gateway::start_default().await;
    let resp = gw.get("/healthz").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
}

#[tokio::test]
async fn readyz_is_503_while_one_bridge_is_unhealthy_and_200_while_degraded() {
    let gw = Gateway::start_default().await;
    *gw.status.bridges.lock() = vec![
        ("mcp-fs".into(), BridgeHealth::healthy()),
        (
            "matrix".into(),
            BridgeHealth::unhealthy("homeserver unreachable"),
        ),
    ];
    let resp = gw.get("/readyz").send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({
            "status": "not_ready",
            "bridges": [
                {"name": "mcp-fs", "state": "healthy"},
                {"name": "matrix", "state": "unhealthy", "reason": "homeserver unreachable"}
            ]
        })
    );

    // Degraded still serves: ready, and said so.
    gw.status.bridges.lock()[1].1 = BridgeHealth::degraded("reconnecting");
    let resp = gw.get("/readyz").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        body["bridges"][1],
        json!({"name": "matrix", "state": "degraded", "reason": "reconnecting"})
    );

    gw.status.bridges.lock()[1].1 = BridgeHealth::healthy();
    let resp = gw.get("/readyz").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn metrics_join_the_service_and_gateway_counters() {
    let gw = Gateway::start_default().await;
    *gw.status.metrics.lock() =
        "# TYPE openagentio_calls_total counter\nopenagentio_calls_total 7".into();
    gw.bus
        .handle_invoke("echo", |req| async move { Ok(req.payload().clone()) })
        .await
        .unwrap();
    assert_eq!(
        gw.post("/v1/agents/echo/invoke")
            .body("1")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        gw.post("/v1/agents/nobody/invoke")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(gw.get("/no/such/route").send().await.unwrap().status(), 404);
    let resp = gw.get("/metrics").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with("# TYPE openagentio_calls_total counter\nopenagentio_calls_total 7\n"),
        "{text}"
    );
    for line in [
        "openagentio_http_requests_total{route=\"/v1/agents/{target}/invoke\",method=\"POST\",status=\"200\"} 1",
        "openagentio_http_requests_total{route=\"/v1/agents/{target}/invoke\",method=\"POST\",status=\"404\"} 1",
        "openagentio_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "openagentio_http_request_duration_seconds_count{route=\"/v1/agents/{target}/invoke\"} 2",
    ] {
        assert!(text.contains(line), "missing {line}\n{text}");
    }
}
