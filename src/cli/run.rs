//! `run`, `validate` and `schema`: the service side of the command line.

use std::net::SocketAddr;
use std::path::Path;

use openagentio_config::{Config, Transport};
use openagentio_host::from_config::{spec_from_config, telemetry_settings};
use openagentio_host::signals::ShutdownSignal;
use openagentio_host::telemetry::LogFormat;
use openagentio_host::{Service, telemetry};

use super::{Exit, RunArgs, output};

/// Variables a config file may use besides the environment: `OPENAGENTIO_EXE`,
/// this binary's path (so a config can start the demo MCP server it carries).
fn lookup(name: &str) -> Option<String> {
    openagentio_config::process_env(name).or_else(|| {
        (name == "OPENAGENTIO_EXE")
            .then(|| std::env::current_exe().ok())
            .flatten()
            .map(|p| p.display().to_string())
    })
}

/// The config at `path`; `-` reads standard input (JSON when it starts
/// with `{`, YAML otherwise).
fn load(path: &Path) -> Result<Config, Exit> {
    let loaded = if path == Path::new("-") {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| Exit::usage(format!("cannot read the config from standard input: {e}")))?;
        let format = if text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{')
        {
            openagentio_config::Format::Json
        } else {
            openagentio_config::Format::Yaml
        };
        openagentio_config::load_with_env(&text, format, &lookup)
    } else {
        openagentio_config::load_file_with_env(path, &lookup)
    };
    loaded.map_err(|e| {
        let shown = if path == Path::new("-") {
            "<standard input>".to_owned()
        } else {
            path.display().to_string()
        };
        eprintln!("{shown}: {e}");
        Exit::Config
    })
}

/// `openagentio validate FILE`.
pub fn validate(path: &Path) -> Exit {
    match load(path) {
        Ok(cfg) => output::line(format_args!(
            "{}: valid ({} bridge{})",
            path.display(),
            cfg.bridges.len(),
            if cfg.bridges.len() == 1 { "" } else { "s" }
        ))
        .map_or_else(|e| e, |()| Exit::Ok),
        Err(e) => e,
    }
}

/// `openagentio schema`.
pub fn schema() -> Exit {
    match serde_json::to_string_pretty(&openagentio_config::json_schema()) {
        Ok(s) => output::line(s).map_or_else(|e| e, |()| Exit::Ok),
        Err(e) => Exit::Service(format!("cannot print the schema: {e}")),
    }
}

/// Applies `--bus` and `--listen` over the file.
fn apply_overrides(cfg: &mut Config, args: &RunArgs) -> Result<(), Exit> {
    if let Some(bus) = &args.bus {
        if bus == "memory" {
            cfg.bus.transport = Transport::Memory;
        } else {
            let url = url_of(bus)?;
            cfg.bus.transport = Transport::Nats;
            cfg.bus.nats.url = vec![url];
        }
    }
    if let Some(listen) = &args.listen {
        // A host name (`localhost:8080`) is resolved, as `http.listen` is.
        let addr: SocketAddr = match listen.parse() {
            Ok(addr) => addr,
            Err(_) => {
                let port_given = listen
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_given {
                    return Err(Exit::usage(format!(
                        "--listen {listen:?}: expected HOST:PORT, e.g. 127.0.0.1:8080"
                    )));
                }
                match std::net::ToSocketAddrs::to_socket_addrs(listen.as_str()) {
                    Ok(mut addrs) => addrs.next().ok_or_else(|| {
                        Exit::usage(format!("--listen {listen:?}: the host has no address"))
                    })?,
                    Err(e) => {
                        return Err(Exit::usage(format!(
                            "--listen {listen:?}: the host does not resolve ({e})"
                        )));
                    }
                }
            }
        };
        cfg.http.listen = addr;
        cfg.http.enabled = true;
    }
    Ok(())
}

fn url_of(bus: &str) -> Result<openagentio_config::url::Url, Exit> {
    let url = openagentio_config::url::Url::parse(bus).map_err(|e| {
        Exit::usage(format!(
            "--bus {bus:?}: {e}; expected `memory` or nats://HOST:PORT"
        ))
    })?;
    if !matches!(url.scheme(), "nats" | "tls" | "ws" | "wss") {
        return Err(Exit::usage(format!(
            "--bus {bus:?}: expected `memory` or a NATS URL (nats://, tls://, ws://, wss://)"
        )));
    }
    Ok(url)
}

/// `openagentio run -c FILE`.
pub async fn run(args: RunArgs) -> Exit {
    // First of all: a SIGTERM from here on stops the service gracefully.
    let mut stop = ShutdownSignal::listen();
    let mut cfg = match load(&args.config) {
        Ok(c) => c,
        Err(e) => return e,
    };
    if let Err(e) = apply_overrides(&mut cfg, &args) {
        return e;
    }
    let settings = telemetry_settings(&cfg);
    let _telemetry = match telemetry::init(&settings) {
        Ok(g) => g,
        Err(e) => return Exit::Service(e.to_string()),
    };
    let say = Say {
        json: settings.log_format == LogFormat::Json,
    };
    let spec = match spec_from_config(&cfg) {
        Ok(s) => s,
        Err(e) => return say.failed(e.to_string()),
    };
    let started = tokio::select! {
        started = Service::start(spec) => started,
        () = stop.recv() => {
            say.info("stopped while starting");
            return Exit::Ok;
        }
    };
    let service = match started {
        Ok(s) => s,
        Err(e) => return say.failed(e.to_string()),
    };
    // The summary is for a person watching; a service whose standard
    // output cannot be written (a full disk, a closed pipe) serves anyway.
    let summary = format!(
        "{}  stop with Ctrl-C (drains calls in flight for up to {:?})\n",
        service.summary().await,
        cfg.shutdown.drain_timeout
    );
    if output::write(summary).is_err() {
        tracing::warn!("could not write the start-up summary to standard output");
    }
    stop.recv().await;
    say.info("shutting down (a second Ctrl-C or SIGTERM stops at once)");
    // A second signal is an operator who will not wait for the drain: the
    // calls in flight end with an error frame, not a cut connection.
    let report = service.shutdown_or_cut(stop.recv()).await;
    if report.cut {
        return say.failed(
            "stopped by a second signal: the calls in flight were ended, not drained".into(),
        );
    }
    if !report.drained {
        say.warn(
            "some calls were still running at the drain deadline and were ended with an error",
        );
    }
    Exit::Ok
}

/// What `run` tells the operator once logging is set up. With
/// `log_format: json` it goes out as log events, so that every line on
/// standard error is JSON for the log collector; with text, as plain lines.
struct Say {
    json: bool,
}

impl Say {
    fn info(&self, message: &str) {
        if self.json {
            tracing::info!("{message}");
        } else {
            eprintln!("{message}");
        }
    }

    fn warn(&self, message: &str) {
        if self.json {
            tracing::warn!("{message}");
        } else {
            eprintln!("{message}");
        }
    }

    /// The service failed: exit 1 with `message`.
    fn failed(&self, message: String) -> Exit {
        // Not to a log filter that would drop it: the exit code alone says too little.
        if self.json && tracing::enabled!(tracing::Level::ERROR) {
            tracing::error!("{message}");
            Exit::Logged
        } else {
            Exit::Service(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overridden(listen: &str) -> Result<SocketAddr, String> {
        let mut cfg = openagentio_config::load_with_env(
            "version: openagentio.bridge/v1\n",
            openagentio_config::Format::Yaml,
            &|_| None,
        )
        .unwrap();
        let args = RunArgs {
            config: "unused.yaml".into(),
            bus: None,
            listen: Some(listen.to_owned()),
        };
        match apply_overrides(&mut cfg, &args) {
            Ok(()) => Ok(cfg.http.listen),
            Err(Exit::Usage(m)) => Err(m),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn listen_takes_an_address_or_a_host_name() {
        assert_eq!(overridden("127.0.0.1:18081").unwrap().port(), 18081);
        let by_name = overridden("localhost:18081").unwrap();
        assert!(
            by_name.ip().is_loopback() && by_name.port() == 18081,
            "{by_name}"
        );
        assert!(
            overridden("localhost")
                .unwrap_err()
                .contains("expected HOST:PORT")
        );
        assert!(
            overridden("nosuchhost.invalid:8080")
                .unwrap_err()
                .contains("the host does not resolve")
        );
    }
}
