//! `.creds` (JWT and NKey) authentication against a real nats-server in
//! operator mode, configured as a user writes it (`bus.nats.credentials_file`).
//!
//! The test makes what `nsc` would (which cannot be installed here): an
//! operator, an account and users, as NKeys, and their JWTs signed the way
//! NATS decentralized auth signs them; the server trusts the operator and
//! has the account preloaded.
//!
//! Proves that a user's `.creds` file connects and serves; that a user the
//! account did not sign, a user's JWT with another key's seed, and a client
//! without credentials are refused at once with an authorization error; and
//! that an error never shows the seed.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use openagentio_config::{Format, load_with_env};
use openagentio_core::Bus;
use openagentio_nats::NatsTransport;
use openagentio_testkit::NatsServer;
use serde_json::{Value, json};

use common::cli;

const FAST: Duration = Duration::from_secs(5);

/// A JWT for `subject` with the `nats` claims, signed by `issuer`.
fn jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let claims = json!({
        // Unique per token here (nsc puts a hash of the claims).
        "jti": subject,
        "iat": 1_700_000_000u64,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    let signed = format!("{}.{}", encode(&header), encode(&claims));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn user_jwt(account: &KeyPair, user: &KeyPair) -> String {
    jwt(
        account,
        &user.public_key(),
        "app",
        json!({"type": "user", "version": 2, "pub": {}, "sub": {},
               "subs": -1, "data": -1, "payload": -1}),
    )
}

/// The `.creds` file format of `nsc generate creds`.
fn creds(jwt: &str, user: &KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().unwrap()
    )
}

/// An operator-mode server trusting a new operator, with one account
/// preloaded; returns it with the account's key.
fn start_operator_server(dir: &Path) -> (NatsServer, KeyPair) {
    let operator = KeyPair::new_operator();
    let account = KeyPair::new_account();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        json!({"type": "operator", "version": 2}),
    );
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "test-account",
        json!({"type": "account", "version": 2,
               "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1,
                          "exports": -1, "wildcards": true, "conn": -1, "leaf": -1}}),
    );
    std::fs::write(dir.join("operator.jwt"), &operator_jwt).unwrap();
    let conf = format!(
        "operator: \"{}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{account_jwt}\"\n}}\n",
        dir.join("operator.jwt").display(),
        account.public_key(),
    );
    let conf_path = dir.join("server.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let server = NatsServer::start_with_args(&["-c", conf_path.to_str().unwrap()]);
    (server, account)
}

/// Connects with the NATS options of a config file whose `bus.nats` section
/// has `extra` (YAML lines indented under it).
async fn connect(url: &str, extra: &str) -> Result<NatsTransport, String> {
    let text = format!(
        "version: \"openagentio.bridge/v1\"\nbus:\n  transport: nats\n  nats:\n    url: {url}\n{extra}"
    );
    let cfg = load_with_env(&text, Format::Yaml, &|_| None).expect("a valid config");
    let opts = openagentio_host::from_config::nats_options(&cfg);
    NatsTransport::connect(opts)
        .await
        .map_err(|e| e.to_string())
}

async fn refused(url: &str, extra: &str) -> String {
    let started = Instant::now();
    let err = match connect(url, extra).await {
        Ok(_) => panic!("connected with {extra:?}"),
        Err(e) => e,
    };
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    assert!(err.contains("authorization failed"), "{err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creds_file_signed_by_the_account_connects_and_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (nats, account) = start_operator_server(dir.path());
    let url = nats.url();

    let user = KeyPair::new_user();
    let good = dir.path().join("app.creds");
    std::fs::write(&good, creds(&user_jwt(&account, &user), &user)).unwrap();
    let transport = connect(&url, &format!("    credentials_file: {}\n", good.display()))
        .await
        .expect("the account's user connects");
    let bus = Bus::builder()
        .agent_id("creds")
        .transport(transport)
        .build();
    bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    let reply = bus.invoke("echo", json!({"creds": true})).await.unwrap();
    assert_eq!(reply.payload, Some(json!({"creds": true})));
    bus.close().await;

    // A user signed by another account the server does not know.
    let stranger = KeyPair::new_user();
    let other_account = KeyPair::new_account();
    let bad = dir.path().join("stranger.creds");
    std::fs::write(&bad, creds(&user_jwt(&other_account, &stranger), &stranger)).unwrap();
    let err = refused(&url, &format!("    credentials_file: {}\n", bad.display())).await;
    assert!(!err.contains(&stranger.seed().unwrap()), "{err}");

    // The account's user JWT with someone else's seed: the nonce signature
    // does not match.
    let thief = KeyPair::new_user();
    let stolen = dir.path().join("stolen.creds");
    std::fs::write(&stolen, creds(&user_jwt(&account, &user), &thief)).unwrap();
    refused(
        &url,
        &format!("    credentials_file: {}\n", stolen.display()),
    )
    .await;

    // No credentials at all.
    refused(&url, "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_connects_with_a_creds_file_and_names_its_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (nats, account) = start_operator_server(dir.path());
    let url = nats.url();
    let user = KeyPair::new_user();
    let good = dir.path().join("app.creds");
    std::fs::write(&good, creds(&user_jwt(&account, &user), &user)).unwrap();
    let handler = Bus::builder()
        .agent_id("creds")
        .transport(
            connect(&url, &format!("    credentials_file: {}\n", good.display()))
                .await
                .unwrap(),
        )
        .build();
    handler
        .handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    handler.transport().flush().await.unwrap();

    let creds_path = good.display().to_string();
    let out = cli(&[
        "invoke",
        "echo",
        r#"{"cli": 1}"#,
        "--bus",
        &url,
        "--nats-creds",
        &creds_path,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap(),
        json!({"cli": 1})
    );

    // Without it the server refuses; a file that is not there is named by its flag.
    let out = cli(&["invoke", "echo", "--bus", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("authorization failed"));
    let missing = dir.path().join("missing.creds").display().to_string();
    let out = cli(&["invoke", "echo", "--bus", &url, "--nats-creds", &missing]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`--nats-creds`"), "{stderr}");
    assert!(!stderr.contains("bus.nats"), "{stderr}");

    // Two sources of credentials, or NATS options for the gateway or the
    // in-process bus, are usage errors.
    let with_password = url.replacen("nats://", "nats://me:pw@", 1);
    for bus in [with_password.as_str(), "http://127.0.0.1:1", "memory"] {
        let out = cli(&["invoke", "echo", "--bus", bus, "--nats-creds", &creds_path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bus}: {stderr}");
        assert!(stderr.contains("--nats-creds"), "{stderr}");
    }
    handler.close().await;
}
