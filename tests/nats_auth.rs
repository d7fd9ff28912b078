//! Credentials against a real nats-server that requires them: a token, and a
//! user with a password. The right ones connect and serve; wrong or missing
//! ones fail at once with an authorization error, not a hang or a retry loop.

use std::time::{Duration, Instant};

use openagentio_core::Bus;
use openagentio_nats::{ConnectError, NatsAuth, NatsOptions, NatsTransport};
use openagentio_testkit::NatsServer;
use serde_json::json;

/// Far above a refusal's round trip: a connection that retried would show.
const FAST: Duration = Duration::from_secs(5);

async fn connect(url: &str, auth: NatsAuth) -> Result<NatsTransport, ConnectError> {
    NatsTransport::connect(NatsOptions::new(url).auth(auth)).await
}

async fn serves(transport: NatsTransport) {
    let bus = Bus::builder().agent_id("auth").transport(transport).build();
    bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    bus.transport().flush().await.unwrap();
    let reply = bus.invoke("echo", json!({"ok": true})).await.unwrap();
    assert_eq!(reply.payload, Some(json!({"ok": true})));
    bus.close().await;
}

async fn refused(url: &str, auth: NatsAuth) {
    let what = format!("{auth:?}");
    let started = Instant::now();
    let err = match connect(url, auth).await {
        Ok(_) => panic!("{what}: connected"),
        Err(e) => e,
    };
    assert!(
        started.elapsed() < FAST,
        "{what}: took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, ConnectError::Auth { .. }), "{what}: {err}");
    assert!(err.to_string().contains("authorization failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_server_takes_the_token_and_refuses_others() {
    let nats = NatsServer::start_with_args(&["--auth", "t0ken"]);
    let url = nats.url();
    serves(
        connect(&url, NatsAuth::Token("t0ken".into()))
            .await
            .unwrap(),
    )
    .await;
    refused(&url, NatsAuth::Token("wrong".into())).await;
    refused(&url, NatsAuth::None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_server_takes_the_password_and_refuses_others() {
    let nats = NatsServer::start_with_args(&["--user", "alice", "--pass", "s3cret"]);
    let url = nats.url();
    let alice = |password: &str| NatsAuth::UserPassword {
        user: "alice".into(),
        password: password.into(),
    };
    serves(connect(&url, alice("s3cret")).await.unwrap()).await;
    refused(&url, alice("wrong")).await;
    refused(
        &url,
        NatsAuth::UserPassword {
            user: "mallory".into(),
            password: "s3cret".into(),
        },
    )
    .await;
    refused(&url, NatsAuth::None).await;
}
