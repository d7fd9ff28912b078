//! TLS to a real nats-server, configured as a user writes it (`bus.nats.tls`
//! in the config file), with certificates made for the test by a test CA.
//!
//! Proves that the service's connection options reach the wire: a server
//! that requires TLS is reached with the CA given in `ca_file`; without it the
//! certificate is refused, clearly and at once; a server that requires client
//! certificates (mutual TLS) takes `cert_file`/`key_file` and refuses a client
//! without them; a server without TLS, asked for it, is named as the cause;
//! NATS over WebSocket with TLS (`wss://`) takes the same CA.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use openagentio_config::{Format, load_with_env};
use openagentio_core::Bus;
use openagentio_nats::NatsTransport;
use openagentio_testkit::NatsServer;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use serde_json::json;

use common::cli;

const FAST: Duration = Duration::from_secs(5);

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM
/// files in `dir`.
fn make_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "openagentio test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |name: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    };
    leaf(
        "server",
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    leaf(
        "client",
        vec!["client".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
}

fn start_tls_server(dir: &Path, mutual: bool) -> NatsServer {
    let p = |f: &str| dir.join(f).display().to_string();
    let (cert, key, ca) = (p("server.pem"), p("server-key.pem"), p("ca.pem"));
    let mut args = vec!["--tls", "--tlscert", &cert, "--tlskey", &key];
    if mutual {
        args.extend(["--tlsverify", "--tlscacert", &ca]);
    }
    NatsServer::start_with_args(&args)
}

/// Connects with the NATS options of a config file whose `bus.nats` section
/// is `nats` (YAML, indented under it).
async fn connect(url: &str, nats: &str) -> Result<NatsTransport, String> {
    let text = format!(
        "version: \"openagentio.bridge/v1\"\nbus:\n  transport: nats\n  nats:\n    url: {url}\n{nats}"
    );
    let cfg = load_with_env(&text, Format::Yaml, &|_| None).expect("a valid config");
    let opts = openagentio_host::from_config::nats_options(&cfg);
    NatsTransport::connect(opts)
        .await
        .map_err(|e| e.to_string())
}

async fn serves(transport: NatsTransport) {
    let bus = Bus::builder().agent_id("tls").transport(transport).build();
    bus.handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    bus.transport().flush().await.unwrap();
    let reply = bus.invoke("echo", json!({"over": "tls"})).await.unwrap();
    assert_eq!(reply.payload, Some(json!({"over": "tls"})));
    bus.close().await;
}

async fn refused(url: &str, nats: &str) -> String {
    let started = Instant::now();
    let err = match connect(url, nats).await {
        Ok(_) => panic!("connected with {nats:?}"),
        Err(e) => e,
    };
    assert!(started.elapsed() < FAST, "took {:?}", started.elapsed());
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_server_is_reached_with_the_configured_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let nats = start_tls_server(dir.path(), false);
    let url = nats.url();
    let ca = dir.path().join("ca.pem").display().to_string();

    let with_ca = format!("    tls:\n      required: true\n      ca_file: {ca}\n");
    serves(connect(&url, &with_ca).await.unwrap()).await;
    // The server asks for TLS: the CA alone is enough.
    serves(
        connect(&url, &format!("    tls:\n      ca_file: {ca}\n"))
            .await
            .unwrap(),
    )
    .await;
    // So is a `tls://` URL.
    let tls_url = url.replacen("nats://", "tls://", 1);
    serves(
        connect(&tls_url, &format!("    tls:\n      ca_file: {ca}\n"))
            .await
            .unwrap(),
    )
    .await;

    let err = refused(&url, "    tls:\n      required: true\n").await;
    assert!(err.contains("bus.nats.tls.ca_file"), "{err}");
    assert!(err.contains("cannot connect to NATS"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_file_that_cannot_be_read_is_named_even_when_the_server_asks_for_no_tls() {
    let nats = NatsServer::start();
    let err = refused(
        &nats.url(),
        "    tls:\n      ca_file: /nonexistent/ca.pem\n",
    )
    .await;
    assert!(
        err.contains("/nonexistent/ca.pem") && err.contains("bus.nats.tls.ca_file"),
        "{err}"
    );
}

/// A TLS file that holds nothing of what it should (an empty CA file, a key
/// given as the certificate) is named with its setting, not accepted in
/// silence or left to fail later as a bare TLS error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_file_without_what_it_should_hold_is_named() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let nats = NatsServer::start();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let key = dir.path().join("server-key.pem");
    let err = refused(
        &nats.url(),
        &format!("    tls:\n      ca_file: {}\n", empty.display()),
    )
    .await;
    assert!(
        err.contains("bus.nats.tls.ca_file") && err.contains("no PEM CERTIFICATE"),
        "{err}"
    );
    let err = refused(
        &nats.url(),
        &format!(
            "    tls:\n      cert_file: {}\n      key_file: {}\n",
            key.display(),
            key.display()
        ),
    )
    .await;
    assert!(
        err.contains("bus.nats.tls.cert_file") && err.contains("no PEM CERTIFICATE"),
        "{err}"
    );
}

/// A file that holds the right kind of PEM block but nothing the handshake
/// can use (a broken certificate, a key of another certificate, a block
/// without its end) is named with its setting and why, before connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_file_the_handshake_cannot_use_is_named() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let nats = NatsServer::start();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let broken = p("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nMIIBbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = refused(&nats.url(), &format!("    tls:\n      ca_file: {broken}\n")).await;
    assert!(
        err.contains(&broken)
            && err.contains("bus.nats.tls.ca_file")
            && err.contains("certificate 1 of 1 is not a valid X.509 certificate"),
        "{err}"
    );
    let unended = p("unended.pem");
    std::fs::write(&unended, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
    let err = refused(
        &nats.url(),
        &format!("    tls:\n      ca_file: {unended}\n"),
    )
    .await;
    assert!(
        err.contains("bus.nats.tls.ca_file") && err.contains("not valid PEM"),
        "{err}"
    );

    // The server's key with the client's certificate.
    let err = refused(
        &nats.url(),
        &format!(
            "    tls:\n      cert_file: {}\n      key_file: {}\n",
            p("client.pem"),
            p("server-key.pem")
        ),
    )
    .await;
    assert!(
        err.contains("bus.nats.tls.key_file")
            && err.contains("is not the key of the client certificate")
            && err.contains("bus.nats.tls.cert_file"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_takes_the_client_certificate_and_refuses_a_client_without_one() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let nats = start_tls_server(dir.path(), true);
    let url = nats.url();
    let p = |f: &str| dir.path().join(f).display().to_string();

    let mutual = format!(
        "    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        p("ca.pem"),
        p("client.pem"),
        p("client-key.pem")
    );
    serves(connect(&url, &mutual).await.unwrap()).await;

    let err = refused(&url, &format!("    tls:\n      ca_file: {}\n", p("ca.pem"))).await;
    assert!(err.contains("bus.nats.tls.cert_file"), "{err}");
    assert!(err.contains("cannot connect to NATS"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requiring_tls_of_a_plain_server_says_so() {
    let nats = NatsServer::start();
    let err = refused(&nats.url(), "    tls:\n      required: true\n").await;
    assert!(err.contains("did not answer in TLS"), "{err}");
    assert!(err.contains("bus.nats.tls.required"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_tls_is_reached_with_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let p = |f: &str| dir.path().join(f).display().to_string();
    let port = openagentio_testkit::free_port();
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        format!(
            "websocket {{\n  listen: \"127.0.0.1:{port}\"\n  tls {{\n    cert_file: \"{}\"\n    key_file: \"{}\"\n  }}\n}}\n",
            p("server.pem"),
            p("server-key.pem")
        ),
    )
    .unwrap();
    let _nats = NatsServer::start_with_args(&["-c", conf.to_str().unwrap()]);
    let url = format!("wss://127.0.0.1:{port}");
    let with_ca = format!("    tls:\n      ca_file: {}\n", p("ca.pem"));
    serves(connect(&url, &with_ca).await.unwrap()).await;
    let err = refused(&url, "").await;
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_takes_a_ca_and_a_client_certificate_and_names_their_flags() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let nats = start_tls_server(dir.path(), true);
    let url = nats.url();
    let p = |f: &str| dir.path().join(f).display().to_string();
    let mutual = format!(
        "    tls:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n",
        p("ca.pem"),
        p("client.pem"),
        p("client-key.pem")
    );
    let handler = Bus::builder()
        .agent_id("tls")
        .transport(connect(&url, &mutual).await.unwrap())
        .build();
    handler
        .handle_invoke("echo", |req| async move { Ok(req.into_payload()) })
        .await
        .unwrap();
    handler.transport().flush().await.unwrap();

    let (ca, cert, key) = (p("ca.pem"), p("client.pem"), p("client-key.pem"));
    let out = cli(&[
        "invoke",
        "echo",
        r#"{"tls": "cli"}"#,
        "--bus",
        &url,
        "--nats-ca",
        &ca,
        "--nats-cert",
        &cert,
        "--nats-key",
        &key,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap(),
        json!({"tls": "cli"})
    );

    // The hints name the flags, not the config keys.
    let without_ca = cli(&["invoke", "echo", "--bus", &url]);
    let stderr = String::from_utf8_lossy(&without_ca.stderr);
    assert_eq!(without_ca.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`--nats-ca`"), "{stderr}");
    let without_cert = cli(&["invoke", "echo", "--bus", &url, "--nats-ca", &ca]);
    let stderr = String::from_utf8_lossy(&without_cert.stderr);
    assert!(
        stderr.contains("`--nats-cert` and `--nats-key`"),
        "{stderr}"
    );
    assert!(!stderr.contains("bus.nats"), "{stderr}");
    // A certificate given as the CA is named by its flag; a certificate without its key is a usage error.
    let wrong = cli(&["invoke", "echo", "--bus", &url, "--nats-ca", &key]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("(`--nats-ca`) holds no PEM CERTIFICATE"),
        "{stderr}"
    );
    let half = cli(&["invoke", "echo", "--bus", &url, "--nats-cert", &cert]);
    assert_eq!(half.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&half.stderr).contains("--nats-key"));
    handler.close().await;
}
