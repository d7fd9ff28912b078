//! The binary as a user runs it: `openagentio run` on a config with the NATS
//! transport, `openagentio invoke` and `openagentio stream` from other
//! processes, then SIGTERM while a stream is in flight: the stream ends with a
//! terminal frame and the service exits 0 within its drain deadline. And the
//! same client commands against a service on the in-memory bus, through its
//! HTTP gateway (`--bus http://...`). A service whose NATS server is not up
//! yet fails at start saying so, or, with `retry_on_initial_connect`, starts
//! not ready and serves once the server comes up. SIGTERM while the service
//! is still starting stops it gracefully too.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use openagentio_testkit::{NatsServer, free_port, run_service};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_openagentio");

fn client(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run the openagentio client")
}

/// A config file of `yaml` (after the `version` line).
fn config_file(yaml: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let text = format!("version: \"openagentio.bridge/v1\"\n{yaml}");
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

fn write_config(nats_url: &str, http_port: u16) -> tempfile::NamedTempFile {
    write_config_with(nats_url, "", http_port)
}

/// A NATS service config; `nats_extra` goes into `bus.nats` (`, key: value`).
fn write_config_with(nats_url: &str, nats_extra: &str, http_port: u16) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let yaml = format!(
        r#"version: "openagentio.bridge/v1"
bus:
  transport: nats
  nats: {{ url: "{nats_url}"{nats_extra} }}
http:
  listen: "127.0.0.1:{http_port}"
shutdown:
  drain_timeout: 1s
bridges:
  - name: echo
    type: echo
    config: {{ word_delay: 150ms }}
"#
    );
    std::io::Write::write_all(&mut f, yaml.as_bytes()).unwrap();
    f
}

/// Sends `signal` (`TERM`, or `INT` as Ctrl-C does) to `pid`.
fn signal(name: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} failed");
}

#[test]
fn run_invoke_stream_and_drain_on_sigterm() {
    let nats = NatsServer::start();
    let url = nats.url();
    let cfg = write_config(&url, free_port());

    let (mut service, summary) = run_service(BIN, cfg.path(), &[], Path::new("."));
    assert!(summary.contains(&format!("bus: nats ({url})")), "{summary}");
    assert!(summary.contains("bridge echo (echo): echo"), "{summary}");

    // invoke and stream from other processes.
    let out = client(&["invoke", "echo", r#"{"text": "hi"}"#, "--bus", &url]);
    assert!(out.status.success(), "{out:?}");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply, serde_json::json!({"text": "hi"}));

    let out = client(&["stream", "echo", "--text", "one two three", "--bus", &url]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one two three\n");

    let out = client(&["targets", "--bus", &url]);
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.starts_with("echo ") && listing.contains("stream"),
        "{listing}"
    );

    let out = client(&["invoke", "nobody", "--bus", &url, "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NO_HANDLER"),
        "{out:?}"
    );

    // A long stream, then SIGTERM while it is in flight.
    let words = vec!["word"; 100].join(" ");
    let mut stream = Command::new(BIN)
        .args([
            "stream",
            "echo",
            "--text",
            &words,
            "--json",
            "--bus",
            &url,
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut frames = BufReader::new(stream.stdout.take().unwrap()).lines();
    for _ in 0..3 {
        let line = frames.next().unwrap().unwrap();
        let _: Value = serde_json::from_str(&line).unwrap();
    }
    let term_at = Instant::now();
    signal("TERM", service.0.id());
    let mut last = Value::Null;
    for line in frames {
        last = serde_json::from_str(&line.unwrap()).unwrap();
    }
    assert_eq!(
        last["is_final"],
        Value::Bool(true),
        "the stream ended without a terminal frame: {last}"
    );
    assert!(
        matches!(
            last["event_type"].as_str(),
            Some("agent.response.final" | "agent.response.error")
        ),
        "{last}"
    );
    if last["event_type"] == "agent.response.error" {
        // Cut short by the drain, and told so (not that it gave up itself).
        let message = last["payload"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("shutting down"), "{last}");
    }
    let _ = stream.wait();

    let status = loop {
        if let Some(s) = service.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            term_at.elapsed() < Duration::from_secs(5),
            "the service did not exit within the drain deadline"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        term_at.elapsed() < Duration::from_secs(3),
        "exit took {:?}",
        term_at.elapsed()
    );
}

#[test]
fn client_commands_reach_an_in_memory_service_through_its_gateway() {
    let port = free_port();
    let mut cfg = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let yaml = format!(
        r#"version: "openagentio.bridge/v1"
bus: {{ transport: memory }}
http:
  listen: "127.0.0.1:{port}"
  tokens: [{{ token: "s3cret" }}]
  default_timeout: 300ms
shutdown: {{ drain_timeout: 1s }}
bridges:
  - name: echo
    type: echo
    config: {{ word_delay: 20ms }}
"#
    );
    std::io::Write::write_all(&mut cfg, yaml.as_bytes()).unwrap();
    let (mut service, summary) = run_service(BIN, cfg.path(), &[], Path::new("."));
    assert!(summary.contains("bus: memory"), "{summary}");
    let gw = format!("http://127.0.0.1:{port}");
    let with = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--bus", gw.as_str(), "--token", "s3cret"]);
        client(&all)
    };

    let out = with(&["invoke", "echo", r#"{"text": "hi"}"#]);
    assert!(out.status.success(), "{out:?}");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply, serde_json::json!({"text": "hi"}));

    let out = with(&["stream", "echo", "--text", "one two three"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one two three\n");

    let out = with(&[
        "stream",
        "echo",
        "--text",
        "a b",
        "--json",
        "--session",
        "s-9",
    ]);
    assert!(out.status.success(), "{out:?}");
    let frames: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = frames
        .iter()
        .map(|f| f["seq"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3], "{frames:?}");
    assert_eq!(frames[3]["is_final"], Value::Bool(true));
    assert!(
        frames.iter().all(|f| f["session_id"] == "s-9"),
        "{frames:?}"
    );

    // The client's --timeout is the call's deadline, not the gateway's
    // default (300 ms here): 30 words at 20 ms each take 600 ms.
    let words = vec!["w"; 30].join(" ");
    let out = with(&["stream", "echo", "--text", &words, "--timeout", "5s"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), words);
    let out = with(&["stream", "echo", "--text", &words, "--timeout", "100ms"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AGENT_TIMEOUT"),
        "{out:?}"
    );

    // A stream with no text deltas prints its result, as `invoke` does.
    let out = with(&["stream", "echo", r#"{"n": 1}"#]);
    assert!(out.status.success(), "{out:?}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result, serde_json::json!({"n": 1}));

    let out = with(&["targets"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("echo "),
        "{out:?}"
    );

    // subscribe over the gateway's event feed, publish from another process.
    let mut subscriber = Command::new(BIN)
        .args(["subscribe", "agent.>", "--count", "1", "--timeout", "10s"])
        .args(["--bus", gw.as_str(), "--token", "s3cret"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tries = 0;
    let out = loop {
        // The feed may not be subscribed yet: publish until it has one.
        tries += 1;
        assert!(tries < 50, "the subscriber never got an event");
        let out = with(&["publish", "agent.note", "--text", "a note"]);
        assert!(out.status.success(), "{out:?}");
        std::thread::sleep(Duration::from_millis(100));
        if subscriber.try_wait().unwrap().is_some() {
            break subscriber.wait_with_output().unwrap();
        }
    };
    assert!(out.status.success(), "{out:?}");
    let event: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(event["event_type"], "agent.note");
    assert_eq!(event["payload"], serde_json::json!({"text": "a note"}));

    // Errors keep the gateway's code; what HTTP cannot carry is refused.
    let out = with(&["invoke", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NO_HANDLER"),
        "{out:?}"
    );
    let out = client(&["invoke", "echo", "--bus", &gw]);
    assert_eq!(out.status.code(), Some(1), "no token");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("AUTH_FAILURE"),
        "{out:?}"
    );
    let out = with(&["invoke", "echo", "--meta", "k=v"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    signal("TERM", service.0.id());
    assert!(service.0.wait().unwrap().success());

    // Nobody there: a clear error, not a hang.
    let out = client(&["invoke", "echo", "--bus", &gw, "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AGENT_UNAVAILABLE") && err.contains("cannot reach the gateway"),
        "{err}"
    );
}

#[test]
fn validate_and_schema_exit_codes() {
    let out = client(&[
        "validate",
        &format!(
            "{}/examples/quickstart.yaml",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
        ),
    ]);
    assert!(out.status.success(), "{out:?}");
    // `-c FILE`, as `run` takes it, works too.
    let out = client(&[
        "validate",
        "-c",
        &format!(
            "{}/examples/quickstart.yaml",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
        ),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = client(&["validate"]);
    assert_eq!(out.status.code(), Some(2), "no file is a usage error");
    let out = client(&[
        "validate",
        &format!(
            "{}/config/tests/data/ten_mistakes.yaml",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
        ),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bridges[2].config.timeout: expected a positive number"),
        "{err}"
    );
    let out = client(&["schema"]);
    assert!(out.status.success());
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(schema["properties"]["bridges"].is_object());
    let out = client(&["invoke", "echo", "{not json", "--bus", "memory"]);
    assert_eq!(out.status.code(), Some(2));
    let out = client(&["run", "-c", "/nonexistent.yaml"]);
    assert_eq!(out.status.code(), Some(1));
}

/// Smaller edges of the command line: a config on standard input, a payload
/// with a byte-order mark, and flags that cannot work refused as usage errors.
#[test]
fn command_line_edges() {
    let with_stdin = |args: &[&str], input: &str| {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let out = with_stdin(&["validate", "-"], "version: openagentio.bridge/v1\n");
    assert!(out.status.success(), "{out:?}");
    let out = with_stdin(
        &["validate", "-"],
        r#"{"version": "openagentio.bridge/v1", "bus": 1}"#,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("<standard input>: "),
        "{out:?}"
    );

    // A payload with a BOM reaches the bus; the in-process bus has no
    // handler, which is the answer that shows it was read.
    let out = with_stdin(
        &["invoke", "echo", "-", "--bus", "memory"],
        "\u{feff}{\"a\": 1}",
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NO_HANDLER"),
        "{out:?}"
    );

    for (flag, value) in [
        ("--meta", "=v"),
        ("--subject-prefix", "a b"),
        ("--subject-prefix", ""),
    ] {
        let out = client(&["invoke", "echo", "--bus", "memory", flag, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value:?}: {stderr}");
    }
}

#[test]
fn a_service_started_before_its_nats_server() {
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");

    // By default it fails at start, saying what to do.
    let cfg = write_config(&url, free_port());
    let out = Command::new(BIN)
        .args(["run", "-c", cfg.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to NATS at {url}")),
        "{stderr}"
    );
    assert!(stderr.contains("retry_on_initial_connect"), "{stderr}");

    // With retry_on_initial_connect it starts, not ready, and serves once
    // the server is up: the bridges registered before are in force.
    let http = free_port();
    let cfg = write_config_with(&url, ", retry_on_initial_connect: true", http);
    let (_service, summary) = run_service(BIN, cfg.path(), &[], Path::new("."));
    assert!(summary.contains("bridge echo (echo): echo"), "{summary}");
    let (status, body) = http_get(http, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("the bus transport is not connected"),
        "{body}"
    );

    let _nats = NatsServer::start_on_port(port, &[]);
    let started = Instant::now();
    loop {
        let out = client(&[
            "invoke",
            "echo",
            r#""late""#,
            "--bus",
            &url,
            "--timeout",
            "1s",
        ]);
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#""late""#);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not served after the server came up: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let gateway = format!("http://127.0.0.1:{http}");
    let out = client(&["invoke", "echo", r#""via gateway""#, "--bus", &gateway]);
    assert!(out.status.success(), "{out:?}");
    let (status, body) = http_get(http, "/readyz");
    assert_eq!(status, 200, "{body}");
}

/// `GET path` on 127.0.0.1:`port`: the status code and the body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_call_in_flight() {
    use openagentio_core::{Bus, StreamWriter};
    use tokio::sync::mpsc;

    let nats = NatsServer::start();
    let url = nats.url();
    let bus = openagentio_testkit::nats_bus(&url, Bus::builder().agent_id("waiter")).await;
    // Both targets answer with nothing until told to stop, and say when
    // they start and when they see the cancellation.
    let (tx, mut seen) = mpsc::unbounded_channel::<&'static str>();
    let t = tx.clone();
    bus.handle_invoke("wait.invoke", move |req| {
        let t = t.clone();
        async move {
            let _ = t.send("invoke started");
            req.cancelled().await;
            let _ = t.send("invoke cancelled");
            Ok(Value::Null)
        }
    })
    .await
    .unwrap();
    bus.handle_stream("wait.stream", move |req, w: StreamWriter| {
        let t = tx.clone();
        async move {
            w.delta_text("first ").await?;
            let _ = t.send("stream started");
            req.cancelled().await;
            let _ = t.send("stream cancelled");
            w.finish(Value::Null).await
        }
    })
    .await
    .unwrap();
    bus.transport().flush().await.unwrap();

    // Ctrl-C and SIGTERM (`timeout`, systemd, `docker stop`) cancel the call;
    // so does a reader that goes away (`| head -c 1`), quietly.
    let cases = [
        ("invoke", "wait.invoke", "INT"),
        ("stream", "wait.stream", "INT"),
        ("invoke", "wait.invoke", "TERM"),
        ("stream", "wait.stream", "TERM"),
        ("stream", "wait.stream", "closed output"),
    ];
    for (command, target, how) in cases {
        let mut child = tokio::process::Command::new(BIN)
            .args([command, target, "--bus", &url, "--timeout", "60s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let limit = Duration::from_secs(10);
        let started = tokio::time::timeout(limit, seen.recv()).await.unwrap();
        assert_eq!(
            started,
            Some(if command == "invoke" {
                "invoke started"
            } else {
                "stream started"
            })
        );
        let interrupted_at = Instant::now();
        if how == "closed output" {
            let mut first = [0u8; 1];
            tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first)
                .await
                .unwrap();
            drop(stdout);
        } else {
            signal(how, child.id().unwrap());
        }
        let cancelled = tokio::time::timeout(limit, seen.recv()).await.unwrap();
        assert_eq!(
            cancelled,
            Some(if command == "invoke" {
                "invoke cancelled"
            } else {
                "stream cancelled"
            }),
            "{command} {how}"
        );
        assert!(
            interrupted_at.elapsed() < Duration::from_secs(2),
            "{command} {how}: the handler saw the cancellation after {:?}",
            interrupted_at.elapsed()
        );
        let out = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let (code, says) = match how {
            "INT" => (130, "interrupted"),
            "TERM" => (143, "interrupted"),
            _ => (0, ""),
        };
        assert_eq!(out.status.code(), Some(code), "{command} {how}: {out:?}");
        assert!(stderr.contains(says), "{command} {how}: {stderr}");
        assert!(!stderr.contains("panicked"), "{command} {how}: {stderr}");
    }
    bus.close().await;
}

/// A reader that goes away (`openagentio schema | head -1`) ends a command
/// quietly: no panic about a broken pipe.
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    let mut child = Command::new(BIN)
        .arg("schema")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn targets_lists_every_service_on_the_bus() {
    let nats = NatsServer::start();
    let url = nats.url();
    let service = |bridge: &str, http: &str| {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        let yaml = format!(
            r#"version: "openagentio.bridge/v1"
bus: {{ transport: nats, nats: {{ url: "{url}" }} }}
http: {http}
bridges:
  - {{ name: {bridge}, type: echo, mappings: {{ target: {bridge} }} }}
"#
        );
        std::io::Write::write_all(&mut f, yaml.as_bytes()).unwrap();
        f
    };
    let port = free_port();
    let gateway = format!("http://127.0.0.1:{port}");
    let (a, b, replica) = (
        service("first", &format!("{{ listen: \"127.0.0.1:{port}\" }}")),
        service("second", "{ enabled: false }"),
        service("second", "{ enabled: false }"),
    );
    let _first = run_service(BIN, a.path(), &[], Path::new("."));
    let _second = run_service(BIN, b.path(), &[], Path::new("."));
    let _replica = run_service(BIN, replica.path(), &[], Path::new("."));

    // Over the bus, and through one service's gateway: the same list.
    for bus in [&url, &gateway] {
        let out = client(&["targets", "--bus", bus, "--json"]);
        assert!(out.status.success(), "{out:?}");
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        let names: Vec<&str> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        // Both services' targets; the replica's once.
        assert_eq!(names, ["first", "second"], "{bus}: {list}");
    }
    // A target of another service, by name through the gateway.
    let (status, one) = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let resp = reqwest::get(format!("{gateway}/v1/agents/second"))
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    });
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["bridge"], "second");

    // With no service at all: NO_HANDLER at once, not a timeout.
    let empty = NatsServer::start();
    let started = Instant::now();
    let out = client(&["targets", "--bus", &empty.url(), "--timeout", "10s"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NO_HANDLER"),
        "{out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// Over NATS, and through a gateway on NATS, as a user that may not publish
/// an event type: `AUTH_FAILURE`, not a silent success (or 202).
#[test]
fn publish_reports_an_event_the_server_refuses() {
    let nats = NatsServer::start_with_config(
        r#"authorization {
  users = [
    {user: pub, password: pw, permissions: {publish: {deny: ["acp.v1.events.secret.>"]}}}
  ]
}
"#,
    );
    let url = format!("nats://pub:pw@127.0.0.1:{}", nats.port());
    let port = free_port();
    let mut cfg = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let yaml = format!(
        r#"version: "openagentio.bridge/v1"
bus: {{ transport: nats, nats: {{ url: "nats://127.0.0.1:{}", user: pub, password: pw }} }}
http: {{ listen: "127.0.0.1:{port}" }}
"#,
        nats.port()
    );
    std::io::Write::write_all(&mut cfg, yaml.as_bytes()).unwrap();
    let _service = run_service(BIN, cfg.path(), &[], Path::new("."));
    let gateway = format!("http://127.0.0.1:{port}");
    for bus in [&url, &gateway] {
        let out = client(&["publish", "open.note", "--text", "hi", "--bus", bus]);
        assert!(out.status.success(), "{out:?}");
        let out = client(&["publish", "secret.note", "--text", "hi", "--bus", bus]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("AUTH_FAILURE") && err.contains("secret.note") && err.contains("refused"),
            "{err}"
        );
        assert!(!err.contains(":pw@"), "the password leaked: {err}");
    }
}

/// A second SIGTERM (or Ctrl-C) during the drain stops at once, exit 1, and
/// the calls in flight end with an error frame rather than a cut connection:
/// a stream over NATS and one through the gateway's SSE.
#[test]
fn a_second_signal_stops_without_waiting_for_the_drain() {
    use std::io::{Read, Write};

    let nats = NatsServer::start();
    let url = nats.url();
    let port = free_port();
    let mut cfg = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let yaml = format!(
        r#"version: "openagentio.bridge/v1"
bus: {{ transport: nats, nats: {{ url: "{url}" }} }}
http: {{ listen: "127.0.0.1:{port}" }}
shutdown: {{ drain_timeout: 60s }}
bridges:
  - {{ name: echo, type: echo, config: {{ word_delay: 200ms }} }}
"#
    );
    std::io::Write::write_all(&mut cfg, yaml.as_bytes()).unwrap();
    let (mut service, _) = run_service(BIN, cfg.path(), &[], Path::new("."));
    // Streams of 20 s in flight: the drain would wait for them.
    let words = vec!["word"; 100].join(" ");
    let mut stream = Command::new(BIN)
        .args([
            "stream",
            "echo",
            "--text",
            &words,
            "--bus",
            &url,
            "--timeout",
            "60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(stream.stdout.take().unwrap());
    let mut first = [0u8; 4];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    let body = format!("{{\"text\": \"{words}\"}}");
    let mut sse = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        sse,
        "POST /v1/agents/echo/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("agent.response.delta") {
        let n = sse.read(&mut buf).unwrap();
        assert!(n > 0, "the SSE stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    signal("TERM", service.0.id());
    std::thread::sleep(Duration::from_millis(300));
    let again = Instant::now();
    signal("TERM", service.0.id());
    let status = loop {
        if let Some(s) = service.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            again.elapsed() < Duration::from_secs(5),
            "the second signal was not heeded"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    // The SSE client read an error frame before the end of the response.
    let _ = sse.read_to_end(&mut seen);
    let seen = String::from_utf8_lossy(&seen);
    let tail = &seen[seen.rfind("event:").unwrap_or(0)..];
    assert!(
        tail.starts_with("event: agent.response.error") && tail.contains("AGENT_UNAVAILABLE"),
        "the SSE stream did not end with an error frame: {tail}"
    );
    // The NATS caller was told at once too, not at its deadline.
    let waited = Instant::now();
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    let done = stream.wait().unwrap();
    assert!(
        waited.elapsed() < Duration::from_secs(5),
        "{:?}",
        waited.elapsed()
    );
    let mut err = String::new();
    let _ = stream.stderr.take().unwrap().read_to_string(&mut err);
    assert!(!done.success(), "{done:?}");
    assert!(err.contains("AGENT_UNAVAILABLE"), "{err}");
}

/// `subscribe` says when events may have been lost (its connection to NATS
/// was cut and made again), instead of going on as if nothing happened.
#[test]
fn subscribe_says_when_events_may_have_been_lost() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let mut sub = Command::new(BIN)
        .args(["subscribe", "note.>", "--bus", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    let publish =
        |url: &str, text: &str| client(&["publish", "note.x", "--text", text, "--bus", url]);
    // Until the subscription is in force, publishes go nowhere: retry.
    let started = Instant::now();
    loop {
        assert!(publish(&url, "first").status.success());
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    assert!(lines.next().unwrap().unwrap().contains("first"));
    nats.restart();
    // The client reconnects by itself; an event after that is printed with a warning.
    let started = Instant::now();
    while !publish(&url, "after").status.success() {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..50 {
        let _ = publish(&url, "after");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = sub.kill();
    let _ = sub.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut sub.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("events may have been lost"), "{err}");
}

/// The gateway's event feed is not fed across a gap either: once the
/// service's connection to NATS was cut and made again, the next event ends
/// the feed with an error saying events may have been lost (and `subscribe`
/// through the gateway reports it), instead of going on as if none were.
#[test]
fn a_gateway_feed_ends_when_events_may_have_been_lost() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let port = free_port();
    let cfg = write_config(&url, port);
    let (_service, _) = run_service(BIN, cfg.path(), &[], Path::new("."));
    let gateway = format!("http://127.0.0.1:{port}");
    let mut sub = Command::new(BIN)
        .args(["subscribe", "note.>", "--bus", &gateway])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    let publish =
        |url: &str, text: &str| client(&["publish", "note.x", "--text", text, "--bus", url]);
    let started = Instant::now();
    loop {
        assert!(publish(&url, "first").status.success());
        std::thread::sleep(Duration::from_millis(200));
        if started.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    assert!(lines.next().unwrap().unwrap().contains("first"));
    nats.restart();
    let started = Instant::now();
    let status = loop {
        let _ = publish(&url, "after");
        if let Some(status) = sub.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the feed went on after the gap"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "{status:?}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut sub.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("AGENT_UNAVAILABLE") && err.contains("may have been lost"),
        "{err}"
    );
    // Nothing after the gap was printed as if the feed were whole.
    for line in lines.map_while(Result::ok) {
        assert!(line.contains("first"), "fed across the gap: {line}");
    }
}

/// SIGTERM while the NATS server is away: the service still stops within
/// its drain timeout (nothing waits for a server that is not there), and the
/// gateway's streams end with `AGENT_UNAVAILABLE`, the service stopping.
#[test]
fn a_drain_during_an_outage_keeps_its_time_and_says_why() {
    use std::io::{Read, Write};

    let mut nats = NatsServer::start();
    let url = nats.url();
    let port = free_port();
    let cfg = config_file(&format!(
        "bus: {{ transport: nats, nats: {{ url: \"{url}\" }} }}\n\
         http: {{ listen: \"127.0.0.1:{port}\" }}\nshutdown: {{ drain_timeout: 2s }}\n\
         bridges:\n  - {{ name: echo, type: echo, config: {{ word_delay: 200ms }} }}\n"
    ));
    let (mut service, _) = run_service(BIN, cfg.path(), &[], Path::new("."));
    let words = vec!["word"; 100].join(" ");
    let body = format!("{{\"text\": \"{words}\"}}");
    let mut sse = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        sse,
        "POST /v1/agents/echo/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-Timeout-Ms: 30000\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("agent.response.delta") {
        let n = sse.read(&mut buf).unwrap();
        assert!(n > 0, "the SSE stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    nats.kill();
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    signal("TERM", service.0.id());
    let status = loop {
        if let Some(s) = service.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "the service did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = signalled.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_millis(2600),
        "a 2 s drain took {took:?}"
    );
    let _ = sse.read_to_end(&mut seen);
    let seen = String::from_utf8_lossy(&seen);
    let tail = &seen[seen.rfind("event:").unwrap_or(0)..];
    assert!(
        tail.starts_with("event: agent.response.error") && tail.contains("AGENT_UNAVAILABLE"),
        "the SSE stream did not end saying the service stops: {tail}"
    );
}

#[test]
fn a_gateway_url_password_is_masked_in_messages() {
    // Nothing listens there: the error names the gateway, password masked.
    let url = format!("http://alice:s3cret@127.0.0.1:{}", free_port());
    for args in [
        vec!["invoke", "echo", "--text", "hi", "--bus", &url],
        vec!["stream", "echo", "--text", "hi", "--bus", &url],
    ] {
        let out = client(&args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("alice:***@127.0.0.1"), "{err}");
        assert!(!err.contains("s3cret"), "the password leaked: {err}");
    }
}

#[test]
fn logs_written_to_a_pipe_are_plain_text() {
    let mut cfg = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    let yaml = format!(
        r#"version: "openagentio.bridge/v1"
bus: {{ transport: memory }}
http: {{ listen: "127.0.0.1:{}" }}
bridges:
  - {{ name: echo, type: echo }}
"#,
        free_port()
    );
    std::io::Write::write_all(&mut cfg, yaml.as_bytes()).unwrap();
    let mut service = Command::new(BIN)
        .args(["run", "-c", cfg.path().to_str().unwrap()])
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(service.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().contains("stop with Ctrl-C") {
            break;
        }
    }
    signal("TERM", service.id());
    let out = service.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.contains(" INFO ") && logs.contains("stopped"),
        "{logs}"
    );
    assert!(
        !logs.contains('\u{1b}'),
        "no colour escape codes in logs that are not on a terminal: {logs:?}"
    );
}

/// A supervisor may stop the service before it is up (a deploy rolled back,
/// a stuck start): SIGTERM is then a graceful stop with exit 0, never the
/// default action that kills the process on the spot. The service is held
/// in its start by a nats-server that accepts connections but does not
/// answer (stopped with SIGSTOP).
#[test]
fn sigterm_while_starting_is_a_graceful_stop() {
    let nats = NatsServer::start();
    let cfg = write_config(&nats.url(), free_port());
    nats.pause();
    let started = Instant::now();
    let service = Command::new(BIN)
        .args(["run", "-c", cfg.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal("TERM", service.id());
    let out = service.wait_with_output().unwrap();
    nats.resume();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("stopped while starting"), "{stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("stop with Ctrl-C"),
        "it was not up yet: {out:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Spans that cannot reach the OTLP collector are reported in the log, not
/// lost without a word.
#[test]
fn a_failing_otlp_export_is_logged() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let collector = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let port = free_port();
    let cfg = config_file(&format!(
        "bus: {{transport: memory}}\n\
             http: {{listen: \"127.0.0.1:{port}\"}}\ntelemetry: {{otlp_endpoint: \"{collector}\"}}\n\
             bridges:\n  - {{name: echo, type: echo}}\n"
    ));
    let mut child = Command::new(BIN)
        .args(["run", "-c", cfg.path().to_str().unwrap()])
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _service = openagentio_testkit::ChildGuard(child);
    let (found, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ExportError") {
                let _ = found.send(line);
                return;
            }
        }
    });
    // A call makes spans to export; the gateway may not be up at once.
    let gateway = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while !client(&["invoke", "echo", "{}", "--bus", &gateway])
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the service did not serve"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = seen
        .recv_timeout(Duration::from_secs(20))
        .expect("no log line about the failed export");
    assert!(line.contains("ERROR"), "{line}");
}

/// With `log_format: json` every line on standard error is a JSON log
/// record, the service's own messages (shutting down, a failed start)
/// included, so a log collector never meets a plain line.
#[test]
fn json_logs_have_no_plain_lines() {
    let write = |bus: &str| {
        let mut cfg = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        let yaml = format!(
            "version: \"openagentio.bridge/v1\"\nbus: {bus}\n\
             http: {{ listen: \"127.0.0.1:{}\" }}\ntelemetry: {{ log_format: json }}\n\
             bridges:\n  - {{ name: echo, type: echo }}\n",
            free_port()
        );
        std::io::Write::write_all(&mut cfg, yaml.as_bytes()).unwrap();
        cfg
    };
    let records = |stderr: &[u8]| -> Vec<Value> {
        String::from_utf8_lossy(stderr)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
            .collect()
    };
    let says = |records: &[Value], level: &str, text: &str| {
        records
            .iter()
            .any(|r| r["level"] == level && r["message"].as_str().is_some_and(|m| m.contains(text)))
    };

    // Started and stopped.
    let cfg = write("{ transport: memory }");
    let mut service = Command::new(BIN)
        .args(["run", "-c", cfg.path().to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(service.stdout.take().unwrap()).lines() {
        if line.unwrap().contains("stop with Ctrl-C") {
            break;
        }
    }
    signal("TERM", service.id());
    let out = service.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let logs = records(&out.stderr);
    assert!(says(&logs, "INFO", "shutting down"), "{logs:?}");

    // A start that fails: the reason is an ERROR record, and the exit code 1.
    let closed = free_port();
    let cfg = write(&format!(
        "{{ transport: nats, nats: {{ url: \"nats://127.0.0.1:{closed}\" }} }}"
    ));
    let out = Command::new(BIN)
        .args(["run", "-c", cfg.path().to_str().unwrap()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let logs = records(&out.stderr);
    assert!(says(&logs, "ERROR", "cannot connect to NATS"), "{logs:?}");
}

/// `--timeout` bounds the whole command: a NATS server that takes the
/// connection but does not answer (stopped with SIGSTOP) fails the call by
/// then, not after the handshake's own 5 s.
#[test]
fn the_timeout_bounds_the_nats_handshake_too() {
    let nats = NatsServer::start();
    let url = nats.url();
    nats.pause();
    let started = Instant::now();
    let out = client(&["invoke", "echo", "--timeout", "500ms", "--bus", &url]);
    let took = started.elapsed();
    nats.resume();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// `stream` in text mode prints what other SDKs' writers send as a delta: a
/// bare string is text, any other value its JSON on a line of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_prints_deltas_of_every_shape() {
    use openagentio_core::{Bus, FrameKind, StreamWriter};

    let nats = NatsServer::start();
    let url = nats.url();
    let bus = openagentio_testkit::nats_bus(&url, Bus::builder().agent_id("shapes")).await;
    bus.handle_stream("shapes", |_req, w: StreamWriter| async move {
        w.delta_text("typed ").await?;
        w.send(FrameKind::Delta, Some(Value::from("bare "))).await?;
        w.send(FrameKind::Delta, Some(serde_json::json!([1, 2])))
            .await?;
        w.send(FrameKind::Delta, None).await?;
        w.finish(Value::Null).await
    })
    .await
    .unwrap();
    bus.transport().flush().await.unwrap();
    let out = tokio::process::Command::new(BIN)
        .args(["stream", "shapes", "--bus", &url])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "typed bare [1,2]\n\n");
    bus.close().await;
}

/// A server at `--bus http://...` that is not a gateway: one that answers
/// every request with a web page, or one that takes the connection and
/// never answers. Client commands say so, and end within their timeouts.
#[test]
fn client_commands_tell_a_gateway_from_other_servers() {
    use std::io::{Read, Write};
    let serve = |answer: Option<&'static str>| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    match answer {
                        Some(page) => {
                            let _ = write!(
                                conn,
                                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\n\r\n{page}",
                                page.len()
                            );
                        }
                        None => std::thread::sleep(Duration::from_secs(30)),
                    }
                });
            }
        });
        url
    };
    let web_page = serve(Some("<html>hello</html>"));
    for args in [
        vec!["publish", "ev", "--text", "x"],
        vec!["subscribe", "ev", "--count", "1"],
        vec!["invoke", "echo"],
        vec!["stream", "echo"],
        vec!["targets"],
    ] {
        let mut all = args.clone();
        all.extend(["--bus", &web_page]);
        let out = client(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("which an OpenAgentIO gateway does not"),
            "{args:?}: {stderr}"
        );
    }

    let silent = serve(None);
    for args in [
        vec!["publish", "ev", "--text", "x", "--timeout", "1s"],
        vec!["subscribe", "ev", "--timeout", "1s"],
    ] {
        let mut all = args.clone();
        all.extend(["--bus", &silent]);
        let started = Instant::now();
        let out = client(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{args:?}: {:?}",
            started.elapsed()
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("AGENT_TIMEOUT"),
            "{out:?}"
        );
    }
}

/// `subscribe` through a gateway whose service stops says so and exits 1,
/// rather than ending as if it had been asked to.
#[test]
fn subscribe_through_a_gateway_reports_the_end_of_its_feed() {
    let port = free_port();
    let cfg = config_file(&format!(
        "bus: {{ transport: memory }}\n\
             http: {{ listen: \"127.0.0.1:{port}\" }}\n"
    ));
    let (service, _) = run_service(BIN, cfg.path(), &[], Path::new("."));
    let mut sub = Command::new(BIN)
        .args([
            "subscribe",
            "ev",
            "--bus",
            &format!("http://127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(sub.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("subscribed to ev"), "{line}");
    signal("TERM", service.0.id());
    let status = sub.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(1), "{rest}");
    assert!(rest.contains("TRANSPORT_FAILURE"), "{rest}");
}

/// On SIGTERM the gateway's requests in flight to targets that other
/// processes serve are drained like the service's own: a call that ends
/// within `drain_timeout` is answered; one still running at its grace gets
/// an error answer, not a cut connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_waits_for_the_gateways_calls_to_other_services() {
    use openagentio_core::Bus;

    let nats = NatsServer::start();
    let url = nats.url();
    let bus = openagentio_testkit::nats_bus(&url, Bus::builder().agent_id("elsewhere")).await;
    bus.handle_invoke("elsewhere.slow", |req| async move {
        let ms = req.payload()["ms"].as_u64().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(serde_json::json!({"slept": ms}))
    })
    .await
    .unwrap();
    bus.transport().flush().await.unwrap();
    let post = |port: u16, body: String| {
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(
                conn,
                "POST /v1/agents/elsewhere.slow/invoke HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut response = String::new();
            let _ = conn.read_to_string(&mut response);
            response
        })
    };
    for (ms, drain, answer) in [(2500, "10s", "200 OK"), (20_000, "2s", "502 Bad Gateway")] {
        let port = free_port();
        let cfg = config_file(&format!(
            "bus: {{ transport: nats, nats: {{ url: \"{url}\" }} }}\n\
                 http: {{ listen: \"127.0.0.1:{port}\" }}\nshutdown: {{ drain_timeout: {drain} }}\n"
        ));
        let (mut service, _) = run_service(BIN, cfg.path(), &[], Path::new("."));
        let call = post(port, format!("{{\"ms\": {ms}}}"));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let signalled = Instant::now();
        signal("TERM", service.0.id());
        let response = call.join().unwrap();
        assert!(
            response.starts_with(&format!("HTTP/1.1 {answer}")),
            "{ms} ms: {response}"
        );
        if ms == 2500 {
            assert!(response.contains("\"slept\":2500"), "{response}");
        } else {
            assert!(response.contains("\"code\""), "an error answer: {response}");
            assert!(
                signalled.elapsed() < Duration::from_secs(4),
                "{:?}",
                signalled.elapsed()
            );
        }
        let status = service.0.wait().unwrap();
        assert!(status.success(), "{status:?}");
    }
    bus.close().await;
}

/// A service whose standard output cannot be written (a full disk) serves
/// anyway: the start-up summary is for a person watching.
#[test]
fn a_service_serves_when_its_output_cannot_be_written() {
    let port = free_port();
    let cfg = config_file(&format!(
        "bus: {{ transport: memory }}\n\
             http: {{ listen: \"127.0.0.1:{port}\" }}\nbridges:\n  - {{ name: echo, type: echo }}\n"
    ));
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let service = openagentio_testkit::ChildGuard(
        Command::new(BIN)
            .args(["run", "-c", cfg.path().to_str().unwrap()])
            .stdout(full)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let gateway = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while !client(&["invoke", "echo", "{}", "--bus", &gateway])
        .status
        .success()
    {
        assert!(started.elapsed() < Duration::from_secs(10), "not served");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut service = service;
    signal("TERM", service.0.id());
    let status = service.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
