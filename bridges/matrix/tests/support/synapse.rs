//! A real Synapse homeserver on a free loopback port (SQLite, no federation),
//! stopped on drop. Users are created through the shared-secret admin
//! registration API.
//!
//! Synapse comes from a virtualenv: `$SYNAPSE_PYTHON` (a python with
//! `matrix-synapse` installed), else `$HOME/.cache/openagentio/synapse-venv/bin/python`.
//! When it is missing the test FAILS with an install hint.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};

/// How to install what these tests need.
pub const INSTALL_HINT: &str = "Synapse is not installed. Run ./scripts/test, or: \
python3 -m venv $HOME/.cache/openagentio/synapse-venv && \
$HOME/.cache/openagentio/synapse-venv/bin/pip install matrix-synapse \
(or set SYNAPSE_PYTHON to a python that has matrix-synapse)";

const SHARED_SECRET: &str = "openagentio-test-registration-secret";
/// A fixed ed25519 signing key (tests only; the server never federates).
const SIGNING_KEY: &str = "ed25519 a_oaio kVAdOG43dY+nHHl7AxocWVtMH3JmNHLrou8T9IFHFZ8";

/// A message rate limit (`rc_message`).
#[derive(Clone, Copy, Debug)]
pub struct RateLimit {
    /// Tokens per second.
    pub per_second: f64,
    /// Bucket size.
    pub burst_count: u32,
}

/// Options of a Synapse instance.
#[derive(Clone, Debug, Default)]
pub struct SynapseOptions {
    /// `rc_message`; `None` = effectively unlimited.
    pub rc_message: Option<RateLimit>,
}

/// A running Synapse.
pub struct Synapse {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

/// A registered account.
#[derive(Clone, Debug)]
pub struct TestUser {
    /// `@local:localhost`.
    pub user_id: String,
    /// Its password.
    pub password: String,
    /// An access token from registration.
    pub token: String,
}

/// The python of the Synapse virtualenv; panics with the install hint when missing.
pub fn synapse_python() -> PathBuf {
    let candidate = std::env::var_os("SYNAPSE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/openagentio/synapse-venv/bin/python")
        });
    assert!(
        candidate.is_file(),
        "{} ({} does not exist)",
        INSTALL_HINT,
        candidate.display()
    );
    candidate
}

fn rate(per_second: f64, burst: u32) -> String {
    format!("{{per_second: {per_second}, burst_count: {burst}}}")
}

fn write_config(dir: &Path, port: u16, opts: &SynapseOptions) -> PathBuf {
    let d = dir.display();
    let high = rate(10000.0, 10000);
    let msg = opts
        .rc_message
        .map(|r| rate(r.per_second, r.burst_count))
        .unwrap_or_else(|| high.clone());
    let config = format!(
        r#"server_name: "localhost"
pid_file: "{d}/homeserver.pid"
public_baseurl: "http://127.0.0.1:{port}/"
listeners:
  - port: {port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
log_config: "{d}/log.config"
media_store_path: "{d}/media"
signing_key_path: "{d}/signing.key"
registration_shared_secret: "{SHARED_SECRET}"
enable_registration: false
report_stats: false
macaroon_secret_key: "openagentio-test-macaroon"
form_secret: "openagentio-test-form"
trusted_key_servers: []
suppress_key_server_warning: true
federation_domain_whitelist: []
use_presence: false
enable_metrics: false
rc_message: {msg}
rc_registration: {high}
rc_login:
  address: {high}
  account: {high}
  failed_attempts: {high}
rc_joins:
  local: {high}
  remote: {high}
rc_joins_per_room: {high}
rc_invites:
  per_room: {high}
  per_user: {high}
  per_issuer: {high}
rc_room_creation: {high}
rc_admin_redaction: {high}
"#
    );
    let log = format!(
        r#"version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(levelname)s - %(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: "{d}/homeserver.log"
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"#
    );
    std::fs::write(dir.join("log.config"), log).unwrap();
    std::fs::write(dir.join("signing.key"), SIGNING_KEY).unwrap();
    let path = dir.join("homeserver.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

/// Runs Synapse on the config in `dir`.
fn spawn(python: &std::path::Path, dir: &std::path::Path) -> Child {
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    Command::new(python)
        .args(["-m", "synapse.app.homeserver", "--config-path"])
        .arg(dir.join("homeserver.yaml"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("{INSTALL_HINT} (cannot run {}: {e})", python.display()))
}

impl Synapse {
    /// Starts Synapse with default options.
    pub async fn start() -> Synapse {
        Self::start_with(SynapseOptions::default()).await
    }

    /// Starts Synapse and waits until `/_matrix/client/versions` answers.
    pub async fn start_with(opts: SynapseOptions) -> Synapse {
        let python = synapse_python();
        let dir = tempfile::tempdir().expect("tempdir");
        let port = openagentio_testkit::free_port();
        write_config(dir.path(), port, &opts);
        let child = spawn(&python, dir.path());
        let mut s = Synapse {
            child: Some(child),
            port,
            dir,
            http: reqwest::Client::new(),
        };
        s.wait_ready(Duration::from_secs(90)).await;
        s
    }

    /// Kills the server (an outage); [`Synapse::restart`] brings it back
    /// with the same data.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the killed server again on the same port and data.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(&synapse_python(), self.dir.path()));
        self.wait_ready(Duration::from_secs(90)).await;
    }

    async fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        let url = format!("{}/_matrix/client/versions", self.url());
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let err =
                    std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default();
                let hint = if err.contains("No module named") {
                    INSTALL_HINT
                } else {
                    ""
                };
                panic!("synapse exited with {status} before it was ready. {hint}\n{err}");
            }
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "synapse did not answer on port {} within {limit:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The client-server base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's log (warnings and errors).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("homeserver.log")).unwrap_or_default()
    }

    /// Registers `localpart` (not an admin) through the shared-secret API.
    pub async fn register(&self, localpart: &str) -> TestUser {
        let password = format!("pw-{localpart}-0123456789");
        let url = format!("{}/_synapse/admin/v1/register", self.url());
        let nonce: Value = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let nonce = nonce["nonce"].as_str().expect("nonce").to_owned();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).unwrap();
        mac.update(nonce.as_bytes());
        mac.update(b"\0");
        mac.update(localpart.as_bytes());
        mac.update(b"\0");
        mac.update(password.as_bytes());
        mac.update(b"\0notadmin");
        let digest: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let resp = self
            .http
            .post(&url)
            .json(&json!({
                "nonce": nonce, "username": localpart, "password": password,
                "admin": false, "mac": digest,
            }))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "registration failed: {status} {body}");
        TestUser {
            user_id: body["user_id"].as_str().unwrap().to_owned(),
            password,
            token: body["access_token"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for Synapse {
    fn drop(&mut self) {
        self.kill();
    }
}
