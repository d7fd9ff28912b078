//! The three bus routes on the happy path, the JSON fallbacks, CORS and shutdown.

use std::time::Duration;

use openagentio_core::{Envelope, HandleOptions};
use openagentio_http_gateway::GatewayConfig;
use serde_json::json;

use crate::{Gateway, expect_error};

#[tokio::test]
async fn invoke_answers_200_with_the_payload_and_204_when_empty() {
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_invoke("echo", |req| async move { Ok(req.payload().clone()) })
        .await
        .unwrap();

    let resp = gw
        .post("/v1/agents/echo/invoke")
        .json(&json!({"msg": "hi", "n": [1, 2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"msg": "hi", "n": [1, 2]})
    );

    // Scalars are payloads too.
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .body("42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "42");

    // An empty body is a null payload, and a null answer is 204.
    let resp = gw.post("/v1/agents/echo/invoke").send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn invoke_of_a_stream_target_answers_its_final_payload() {
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_stream("count", |_req, w| async move {
            w.started(json!({})).await?;
            w.delta_text("a").await?;
            w.finish(json!("done")).await
        })
        .await
        .unwrap();
    let resp = gw.post("/v1/agents/count/invoke").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap(),
        json!({"result": "done"})
    );
}

#[tokio::test]
async fn publish_answers_202_and_the_event_reaches_subscribers() {
    let gw = Gateway::start_default().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Envelope>();
    gw.bus
        .subscribe("user.signed_up", move |env| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(env);
                Ok(())
            }
        })
        .await
        .unwrap();
    let resp = gw
        .post("/v1/events/user.signed_up")
        .header("X-Session-Id", "s-1")
        .json(&json!({"user": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let env = tokio::time::timeout(Duration::from_secs(2), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(env.event_type, "user.signed_up");
    assert_eq!(env.payload, Some(json!({"user": "ann"})));
    assert_eq!(env.session_id, "s-1");

    // A tenant's event goes to that tenant's subscribers.
    let (ttx, mut trx) = tokio::sync::mpsc::unbounded_channel::<Envelope>();
    gw.bus
        .subscribe_with(
            "order.placed",
            openagentio_core::SubscribeOptions::new().tenant("acme"),
            move |env| {
                let ttx = ttx.clone();
                async move {
                    let _ = ttx.send(env);
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
    let resp = gw
        .post("/v1/events/order.placed")
        .header("X-Tenant-Id", "acme")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let env = tokio::time::timeout(Duration::from_secs(2), trx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(env.tenant_id, "acme");
}

#[tokio::test]
async fn bad_event_types_and_targets_are_400() {
    let gw = Gateway::start_default().await;
    let resp = gw.post("/v1/events/bad%20name").send().await.unwrap();
    expect_error(resp, 400, "INVALID_REQUEST").await;
    let resp = gw.post("/v1/agents/a*b/invoke").send().await.unwrap();
    expect_error(resp, 400, "INVALID_REQUEST").await;
    let resp = gw
        .post("/v1/agents/x/invoke")
        .header("X-Tenant-Id", "no.dots")
        .send()
        .await
        .unwrap();
    expect_error(resp, 400, "INVALID_REQUEST").await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let gw = Gateway::start_default().await;
    let resp = gw.get("/nope").send().await.unwrap();
    let body = expect_error(resp, 404, "INVALID_REQUEST").await;
    assert!(body["message"].as_str().unwrap().contains("/nope"));
    let resp = gw.get("/v1/agents/echo/invoke").send().await.unwrap();
    expect_error(resp, 405, "INVALID_REQUEST").await;
    let resp = gw.post("/healthz").send().await.unwrap();
    expect_error(resp, 405, "INVALID_REQUEST").await;
}

#[tokio::test]
async fn cors_allows_the_configured_origins() {
    let gw = Gateway::start(GatewayConfig {
        cors_origins: vec!["https://app.example".into()],
        tokens: vec![openagentio_http_gateway::ApiToken::new("t")],
        ..GatewayConfig::default()
    })
    .await;
    // A preflight needs no token.
    let resp = gw
        .http
        .request(reqwest::Method::OPTIONS, gw.url("/v1/agents/echo/invoke"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-session-id",
        )
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let allowed = resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        allowed.contains("authorization") && allowed.contains("x-session-id"),
        "{allowed}"
    );

    let resp = gw
        .get("/healthz")
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // Error answers carry CORS headers too, so browsers can read them.
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .header("Origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    // A page of another origin cannot run a call even by a request that
    // needs no preflight (it could not read the answer, but the call ran).
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .header("Origin", "https://evil.example")
        .header("Content-Type", "text/plain")
        .bearer_auth("t")
        .body("{}")
        .send()
        .await
        .unwrap();
    let body = expect_error(resp, 403, "AUTH_FAILURE").await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("https://evil.example"),
        "{body}"
    );
    // Clients that send no Origin (every non-browser one) are not affected.
    let resp = gw
        .post("/v1/agents/echo/invoke")
        .bearer_auth("t")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.status(), 403);
}

#[tokio::test]
async fn many_calls_in_flight_on_keep_alive_connections() {
    let gw = Gateway::start_default().await;
    gw.bus
        .handle_invoke_with("echo", HandleOptions::new(), |req| async move {
            Ok(req.payload().clone())
        })
        .await
        .unwrap();
    let calls = (0..64).map(|i| {
        let req = gw.post("/v1/agents/echo/invoke").json(&json!({ "i": i }));
        async move {
            req.send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    });
    let answers = futures::future::join_all(calls).await;
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a["i"], i);
    }
}

#[tokio::test]
async fn serve_returns_after_shutdown() {
    let gw = Gateway::start_default().await;
    assert_eq!(gw.get("/healthz").send().await.unwrap().status(), 200);
    let addr = gw.addr;
    gw.shutdown().await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
