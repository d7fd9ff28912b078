//! A real `nats-server` on a free loopback port, stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::ports::{free_port, wait_for_port};

/// A running nats-server child process.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    extra_args: Vec<String>,
    /// Holds the config file of [`NatsServer::start_with_config`] (a restart reads it again).
    config_dir: Option<tempfile::TempDir>,
}

/// The nats-server binary: `$NATS_SERVER_BIN`, else `nats-server` on PATH or in /usr/sbin.
pub fn nats_server_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain([
        "/usr/sbin",
        "/usr/local/bin",
        "/usr/bin",
    ]) {
        let p = PathBuf::from(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "nats-server is not installed: run ./scripts/test, or `apt-get install nats-server`, or set NATS_SERVER_BIN"
    );
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        Self::start_with_args(&[])
    }

    /// Starts a server with extra command-line arguments (e.g. `--auth TOKEN`).
    pub fn start_with_args(args: &[&str]) -> NatsServer {
        Self::start_on_port(free_port(), args)
    }

    /// Starts a server with `config`, in nats-server's configuration syntax
    /// (users and permissions, accounts, ...).
    pub fn start_with_config(config: &str) -> NatsServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("server.conf");
        std::fs::write(&path, config).expect("write the server config");
        let mut s = Self::start_with_args(&["-c", path.to_str().expect("a UTF-8 path")]);
        s.config_dir = Some(dir);
        s
    }

    /// Starts a server on `port` (one a client was told about before the
    /// server existed, say).
    pub fn start_on_port(port: u16, args: &[&str]) -> NatsServer {
        let mut s = NatsServer {
            child: None,
            port,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            config_dir: None,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start nats-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !wait_for_port(self.port, Duration::from_millis(200)) {
            // A server that cannot start (its port taken, a bad config)
            // exits at once: say so rather than wait out the deadline.
            let child = self.child.as_mut().expect("just spawned");
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "nats-server exited at start ({status}) with {:?}: a port taken, or a bad argument or config",
                    self.extra_args
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
        }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): its connections stay open, but it answers
    /// nothing until [`NatsServer::resume`].
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let sent = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill {signal} nats-server failed");
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        // The port may linger briefly after the kill.
        for _ in 0..50 {
            if std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
