//! The reference project's MCP config files run unchanged: `openagentio run -c
//! examples/config/mcp_stdio.yaml` (the filesystem MCP server through `npx`) and
//! `examples/config/mcp_http.yaml` (a Streamable HTTP server at
//! `localhost:8000/mcp`, here our demo server), called through the gateway.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openagentio_testkit::{ChildGuard, free_port, run_service, wait_for_port};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_openagentio");

/// The npm prefix where scripts/test installs the MCP servers.
fn npm_prefix() -> PathBuf {
    let p = std::env::var("OPENAGENTIO_NPM_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/openagentio/npm")
        });
    assert!(
        p.join("node_modules/@modelcontextprotocol/server-filesystem")
            .is_dir(),
        "@modelcontextprotocol/server-filesystem is not installed in {}: run ./scripts/test, or `npm install --prefix {} @modelcontextprotocol/server-filesystem`",
        p.display(),
        p.display()
    );
    p
}

/// Runs the service on `config` with the gateway on a free port, from `cwd`;
/// returns it once it printed its summary, and the gateway's base URL.
fn start_service(config: &str, cwd: &Path) -> (ChildGuard, String, String) {
    let port = free_port();
    let path =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join(config);
    let listen = format!("127.0.0.1:{port}");
    let (service, summary) = run_service(BIN, &path, &["--listen", &listen], cwd);
    (service, format!("http://{listen}"), summary)
}

/// Invokes `target` through the gateway until the bridge has connected (its
/// targets appear once the server's tools are listed).
async fn invoke_when_ready(base: &str, target: &str, payload: Value) -> Value {
    // The workspace builds rustls without a default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let resp = client
            .post(format!("{base}/v1/agents/{target}/invoke"))
            .json(&payload)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{target} never answered: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_stdio_example_runs_unchanged() {
    // npx finds the installed server in ./node_modules of its working directory.
    let prefix = npm_prefix();
    let (_service, base, summary) = start_service("examples/config/mcp_stdio.yaml", &prefix);
    assert!(summary.contains("bridge mcp-fs (mcp_tool)"), "{summary}");
    let reply = invoke_when_ready(&base, "mcp-fs.list_allowed_directories", json!({})).await;
    assert!(
        reply["text"].as_str().unwrap_or("").contains("/tmp"),
        "{reply}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_http_example_runs_unchanged() {
    // The example names localhost:8000: our demo MCP server listens there.
    let server = ChildGuard(
        Command::new(BIN)
            .args(["mcp-demo", "--http", "8000"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_for_port(8000, Duration::from_secs(10)),
        "the demo MCP server did not listen on 8000"
    );
    let (_service, base, summary) = start_service("examples/config/mcp_http.yaml", Path::new("."));
    assert!(summary.contains("bridge mcp-http (mcp_tool)"), "{summary}");
    let reply = invoke_when_ready(&base, "mcp-http.echo", json!({"text": "unchanged"})).await;
    assert_eq!(reply["text"], "unchanged", "{reply}");
    drop(server);
}
