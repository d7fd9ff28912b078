//! Credentials against a real nats-server that requires them: a token, and a
//! user with a password. The right ones connect and serve; wrong or missing
//! ones fail at once with an authorization error, not a hang or a retry loop.
//! Credentials written into the URL (`nats://user:password@host`,
//! `nats://token@host`) work too, and no error message shows the secret.
//! Subjects a user's permissions deny fail with `AUTH_FAILURE` naming the
//! server's refusal: a handler at registration, a call when it times out, a
//! caller that may not subscribe to its reply inbox at its first call (while
//! a worker without an inbox of its own registers and serves), a confirmed
//! event publish.

use std::time::{Duration, Instant};

use openagentio_core::{Bus, Envelope, ErrorCode};
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
    serves_on(&bus).await;
    bus.close().await;
}

/// Serves and calls an echo target on `bus`.
async fn serves_on(bus: &Bus) {
    bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    let reply = bus.invoke("echo", json!({"ok": true})).await.unwrap();
    assert_eq!(reply.payload, Some(json!({"ok": true})));
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
    // Credentials in both places: one would go unused, so neither is sent.
    let given = NatsAuth::Token("t0ken".into());
    let err = connect(&at("alice:hunter2", &tokens), given)
        .await
        .err()
        .expect("two credentials are refused");
    assert!(matches!(err, ConnectError::TwoCredentials { .. }), "{err}");
    assert!(
        !err.to_string().contains("hunter2"),
        "the secret leaked: {err}"
    );
    assert_eq!(
        openagentio_core::BusError::from(err).code(),
        ErrorCode::InvalidRequest
    );

    for url in [at("alice:hunter2", &users), at("hunter2", &tokens)] {
        let err = connect(&url, NatsAuth::None).await.err().expect("refused");
        assert!(matches!(err, ConnectError::Auth { .. }), "{err}");
        let shown = err.to_string();
        assert!(!shown.contains("hunter2"), "the secret leaked: {shown}");
        assert!(shown.contains("***@127.0.0.1"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subjects_the_user_may_not_use_fail_with_auth_failure() {
    let nats = NatsServer::start_with_config(
        r#"authorization {
  users = [
    {user: worker, password: pw, permissions: {
      subscribe: {deny: ["acp.v1.invoke.secret"]},
      publish: {deny: ["acp.v1.invoke.forbidden", "acp.v1.events.secret.>"]}
    }}
    {user: caller, password: pw, permissions: {subscribe: {allow: ["acp.>"]}}}
    {user: narrow, password: pw, permissions: {subscribe: {allow: ["acp.v1.invoke.narrow.>"]}}}
  ]
}
"#,
    );
    let worker = NatsAuth::UserPassword {
        user: "worker".into(),
        password: "pw".into(),
    };
    let transport = connect(&nats.url(), worker).await.unwrap();
    let bus = Bus::builder()
        .agent_id("worker")
        .transport(transport)
        .default_timeout(Duration::from_secs(2))
        .build();

    // A handler on a subject the user may not subscribe to is refused at
    // registration, naming the subject, and nothing is left registered.
    let err = bus
        .handle_invoke("secret", |req| async move { Ok(req.into_payload()) })
        .await
        .err()
        .expect("registered on a denied subject");
    assert_eq!(err.code(), ErrorCode::AuthFailure, "{err}");
    let shown = err.to_string();
    assert!(shown.contains("acp.v1.invoke.secret"), "{shown}");
    assert!(shown.contains("Permissions Violation"), "{shown}");
    let err = bus.invoke("secret", json!(1)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::NoHandler, "{err}");

    // A call the user may not publish fails as refused as soon as the
    // server says so, not as a bare timeout at its deadline; so does each of
    // many at once, streams too.
    bus.handle_invoke("forbidden", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    let started = Instant::now();
    let err = bus.invoke("forbidden", json!(1)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailure, "{err}");
    assert!(err.to_string().contains("refused the request"), "{err}");
    // Well before the bus's 2 s deadline.
    let early = Duration::from_secs(1);
    assert!(started.elapsed() < early, "{:?}", started.elapsed());
    let started = Instant::now();
    let calls = (0..20).map(|_| bus.invoke("forbidden", json!(1)));
    for result in futures::future::join_all(calls).await {
        let err = result.unwrap_err();
        assert_eq!(err.code(), ErrorCode::AuthFailure, "{err}");
    }
    let mut stream = bus.stream_invoke("forbidden", json!(1)).await.unwrap();
    let err = stream.next().await.unwrap().unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailure, "{err}");
    assert!(started.elapsed() < early, "{:?}", started.elapsed());

    // An event the user may not publish: the server says so after
    // `publish` returns, and `publish_confirmed` waits for it.
    bus.publish(Envelope::new("secret.note")).await.unwrap();
    let err = bus
        .publish_confirmed(Envelope::new("secret.note"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailure, "{err}");
    let shown = err.to_string();
    assert!(
        shown.contains("event secret.note") && shown.contains("refused"),
        "{shown}"
    );
    bus.publish_confirmed(Envelope::new("open.note"))
        .await
        .unwrap();

    // Everything else works on the same connection.
    serves_on(&bus).await;

    // A caller that may not subscribe to its reply inbox (the usual missing
    // `_INBOX.>`) is told so at its first call, not by timeouts.
    let caller = NatsAuth::UserPassword {
        user: "caller".into(),
        password: "pw".into(),
    };
    let caller = Bus::builder()
        .agent_id("caller")
        .transport(connect(&nats.url(), caller).await.unwrap())
        .build();
    let started = Instant::now();
    let err = caller.invoke("echo", json!(1)).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::AuthFailure, "{err}");
    assert!(err.to_string().contains("_INBOX"), "{err}");
    assert!(started.elapsed() < FAST, "{:?}", started.elapsed());

    // Such a user can still serve (a worker needs no inbox of its own): its
    // registration is confirmed without one.
    let started = Instant::now();
    caller
        .handle_invoke("least.echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    assert!(started.elapsed() < FAST, "{:?}", started.elapsed());
    let reply = bus.invoke("least.echo", json!("served")).await.unwrap();
    assert_eq!(reply.payload, Some(json!("served")));

    // Nor does it need the cancel notices' subject (only a warning says
    // that callers' cancellations will not reach it).
    let narrow = NatsAuth::UserPassword {
        user: "narrow".into(),
        password: "pw".into(),
    };
    let narrow = Bus::builder()
        .agent_id("narrow")
        .transport(connect(&nats.url(), narrow).await.unwrap())
        .build();
    narrow
        .handle_invoke("narrow.echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    let reply = bus.invoke("narrow.echo", json!("narrow")).await.unwrap();
    assert_eq!(reply.payload, Some(json!("narrow")));
}
