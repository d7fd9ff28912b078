//! Credentials against a real nats-server that requires them: a token, and a
//! user with a password. The right ones connect and serve; wrong or missing
//! ones fail at once with an authorization error, not a hang or a retry loop.
//! Credentials written into the URL (`nats://user:password@host`,
//! `nats://token@host`) work too, and no error message shows the secret.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_are_used_and_never_shown() {
    let users = NatsServer::start_with_args(&["--user", "alice", "--pass", "s3cr%t"]);
    let tokens = NatsServer::start_with_args(&["--auth", "t0ken"]);
    let at = |creds: &str, server: &NatsServer| {
        server
            .url()
            .replacen("nats://", &format!("nats://{creds}@"), 1)
    };
    // `%` percent-encoded, as a URL needs it.
    serves(
        connect(&at("alice:s3cr%25t", &users), NatsAuth::None)
            .await
            .unwrap(),
    )
    .await;
    serves(
        connect(&at("t0ken", &tokens), NatsAuth::None)
            .await
            .unwrap(),
    )
    .await;
    // Credentials given otherwise win over the URL's.
    let given = NatsAuth::Token("t0ken".into());
    serves(connect(&at("wrong", &tokens), given).await.unwrap()).await;

    for url in [at("alice:hunter2", &users), at("hunter2", &tokens)] {
        let err = connect(&url, NatsAuth::None).await.err().expect("refused");
        assert!(matches!(err, ConnectError::Auth { .. }), "{err}");
        let shown = err.to_string();
        assert!(!shown.contains("hunter2"), "the secret leaked: {shown}");
        assert!(shown.contains("***@127.0.0.1"), "{shown}");
    }
}
