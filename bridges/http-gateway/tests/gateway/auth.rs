//! Bearer auth: missing, wrong, another tenant, a tenant-bound token reaching
//! its own tenant's targets; health routes stay open. A tenant-bound token
//! naming another tenant is refused with 403 AUTH_FAILURE.

use openagentio_core::HandleOptions;
use openagentio_http_gateway::{ApiToken, GatewayConfig};
use serde_json::{Value, json};

use crate::{Gateway, expect_error};

async fn gateway() -> Gateway {
    let gw = Gateway::start(GatewayConfig {
        tokens: vec![
            ApiToken::new("admin-token"),
            ApiToken::for_tenant("acme-token", "acme"),
        ],
        ..GatewayConfig::default()
    })
    .await;
    for tenant in [None, Some("acme"), Some("globex")] {
        let opts = tenant.map_or_else(HandleOptions::new, |t| HandleOptions::new().tenant(t));
        gw.bus
            .handle_invoke_with("whoami", opts, |req| async move {
                Ok(json!({"tenant": req.envelope().tenant_id}))
            })
            .await
            .unwrap();
    }
    gw.bus
        .handle_stream_with(
            "count",
            HandleOptions::new().tenant("acme"),
            |_r, w| async move { w.finish(json!(1)).await },
        )
        .await
        .unwrap();
    gw
}

#[tokio::test]
async fn missing_or_wrong_tokens_are_401() {
    let gw = gateway().await;
    for path in [
        "/v1/agents/whoami/invoke",
        "/v1/agents/count/stream",
        "/v1/events/x.y",
    ] {
        let resp = gw.post(path).send().await.unwrap();
        assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        expect_error(resp, 401, "AUTH_FAILURE").await;
        let resp = gw.post(path).bearer_auth("nope").send().await.unwrap();
        expect_error(resp, 401, "AUTH_FAILURE").await;
        let resp = gw
            .post(path)
            .header("Authorization", "Basic YWRtaW4tdG9rZW4=")
            .send()
            .await
            .unwrap();
        expect_error(resp, 401, "AUTH_FAILURE").await;
    }
    for path in ["/v1/agents", "/v1/agents/whoami"] {
        let resp = gw.get(path).send().await.unwrap();
        expect_error(resp, 401, "AUTH_FAILURE").await;
    }
}

#[tokio::test]
async fn error_text_never_holds_a_token() {
    let gw = gateway().await;
    let resp = gw
        .post("/v1/agents/whoami/invoke")
        .bearer_auth("almost-admin-token")
        .send()
        .await
        .unwrap();
    let body = resp.text().await.unwrap();
    assert!(
        !body.contains("almost-admin-token") && !body.contains("acme-token"),
        "{body}"
    );
}

#[tokio::test]
async fn an_unbound_token_may_name_any_tenant() {
    let gw = gateway().await;
    let v: Value = gw
        .post("/v1/agents/whoami/invoke")
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"tenant": ""}));
    let v: Value = gw
        .post("/v1/agents/whoami/invoke")
        .header("Authorization", "bearer admin-token")
        .header("X-Tenant-Id", "globex")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"tenant": "globex"}));
}

#[tokio::test]
async fn a_tenant_bound_token_reaches_its_own_tenant_only() {
    let gw = gateway().await;
    // Without X-Tenant-Id the token's tenant applies.
    let v: Value = gw
        .post("/v1/agents/whoami/invoke")
        .bearer_auth("acme-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"tenant": "acme"}));
    // Naming its own tenant is fine.
    let resp = gw
        .post("/v1/agents/whoami/invoke")
        .bearer_auth("acme-token")
        .header("X-Tenant-Id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Streams too.
    let resp = gw
        .post("/v1/agents/count/stream")
        .bearer_auth("acme-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("agent.response.final"));
    // Another tenant is refused, on every route.
    for path in [
        "/v1/agents/whoami/invoke",
        "/v1/agents/count/stream",
        "/v1/events/x.y",
    ] {
        let resp = gw
            .post(path)
            .bearer_auth("acme-token")
            .header("X-Tenant-Id", "globex")
            .send()
            .await
            .unwrap();
        let body = expect_error(resp, 403, "AUTH_FAILURE").await;
        assert!(body["message"].as_str().unwrap().contains("acme"));
    }
}

#[tokio::test]
async fn a_tenant_bound_token_cannot_reach_untenanted_targets() {
    let gw = gateway().await;
    gw.bus
        .handle_invoke("global.only", |_req| async move { Ok(json!("secret")) })
        .await
        .unwrap();
    let resp = gw
        .post("/v1/agents/global.only/invoke")
        .bearer_auth("acme-token")
        .send()
        .await
        .unwrap();
    expect_error(resp, 404, "NO_HANDLER").await;
    let resp = gw
        .post("/v1/agents/global.only/invoke")
        .bearer_auth("admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn health_and_metrics_stay_open() {
    let gw = gateway().await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(gw.get(path).send().await.unwrap().status(), 200, "{path}");
    }
}
