//! Shared test helpers: locating real MCP peers, free ports, child servers,
//! a bus with a started bridge, and log capture.
//!
//! Peers that are not built by the workspace are found through:
//! - `OPENAGENTIO_NPM_PREFIX` (default `$HOME/.cache/openagentio/npm`): an npm
//!   prefix where `@modelcontextprotocol/server-everything` is installed;
//! - `OPENAGENTIO_MCP_PYTHON` (default `$HOME/.cache/openagentio/mcp-venv/bin/python`):
//!   a Python with the `mcp` package.
//!
//! A test that needs a missing peer fails with the command that installs it.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use openagentio_core::{Bridge, Bus};
use openagentio_mcp::{McpBridge, McpConfig};

/// Our demo server binary.
pub fn demo_bin() -> String {
    env!("CARGO_BIN_EXE_openagentio-mcp-demo").to_owned()
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
}

/// The npm prefix holding server-everything.
pub fn npm_prefix() -> PathBuf {
    std::env::var_os("OPENAGENTIO_NPM_PREFIX")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/openagentio/npm"))
}

/// `node` and the entry script of `@modelcontextprotocol/server-everything`.
pub fn everything() -> (String, String) {
    let script =
        npm_prefix().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok || !script.exists() {
        panic!(
            "@modelcontextprotocol/server-everything is not installed (looked for {}).\n\
             Install it with:\n    npm install --prefix {} @modelcontextprotocol/server-everything\n\
             (needs node and npm; set OPENAGENTIO_NPM_PREFIX to use another prefix)",
            script.display(),
            npm_prefix().display()
        );
    }
    ("node".to_owned(), script.to_string_lossy().into_owned())
}

/// A Python interpreter with the `mcp` package.
pub fn python() -> String {
    let py = std::env::var_os("OPENAGENTIO_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/openagentio/mcp-venv/bin/python"));
    let ok = Command::new(&py)
        .args(["-c", "import mcp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        panic!(
            "no Python with the `mcp` package at {}.\nInstall it with:\n    \
             python3 -m venv $HOME/.cache/openagentio/mcp-venv && \
             $HOME/.cache/openagentio/mcp-venv/bin/pip install mcp\n\
             (or set OPENAGENTIO_MCP_PYTHON to such an interpreter)",
            py.display()
        );
    }
    py.to_string_lossy().into_owned()
}

/// Our Python test server script.
pub fn python_server() -> String {
    test_script("mcp_test_server.py")
}

/// The path of `name` under `tests/python/`, found when the test runs (not
/// compiled in: a test binary may outlive the checkout that built it).
pub fn test_script(name: &str) -> String {
    format!(
        "{}/tests/python/{name}",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")
    )
}

pub use openagentio_testkit::free_port;

/// A server process, killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
}

impl ServerProcess {
    /// Starts `cmd` and waits until `port` accepts connections.
    pub fn start(mut cmd: Command, port: u16) -> ServerProcess {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn server");
        let mut p = ServerProcess { child, port };
        p.wait_ready();
        p
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited before listening: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not listen on port {} in 20 s", self.port);
    }

    /// The MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Kills the process and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Our demo server over Streamable HTTP on a free port.
pub fn demo_http(token: Option<&str>) -> ServerProcess {
    let port = free_port();
    demo_http_on(port, token)
}

/// Our demo server over Streamable HTTP on `port`.
pub fn demo_http_on(port: u16, token: Option<&str>) -> ServerProcess {
    let mut cmd = Command::new(demo_bin());
    cmd.args(["--http", &port.to_string()]);
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    ServerProcess::start(cmd, port)
}

/// Logs to the test output (once per process), filtered by `RUST_LOG`.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,openagentio_mcp=info".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A bus and a started bridge named `name`.
pub async fn start(name: &str, cfg: McpConfig) -> (Bus, McpBridge) {
    init_tracing();
    let bus = Bus::memory();
    let mut bridge = McpBridge::new(name, cfg).expect("valid config");
    bridge.start(&bus).await.expect("bridge starts");
    (bus, bridge)
}

/// Polls `f` every 50 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// Sends SIGKILL to `pid`.
pub fn kill_pid(pid: u32) {
    let ok = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -9 {pid} failed");
}

/// A writer that keeps everything written to it, for checking logs.
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
