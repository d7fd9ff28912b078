//! The command line: `run`, `validate`, `schema`, and client commands against a running bus.

mod client;
mod exit;
mod gateway;
mod output;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use exit::{Exit, Interruption};

/// OpenAgentIO: a protocol bridge service for AI-agent systems.
#[derive(Parser, Debug)]
#[command(name = "openagentio", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `validate`'s arguments: the file as `run` takes it (`-c FILE`) or bare.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["file", "config"])))]
pub struct ValidateArgs {
    /// The config file (YAML or JSON).
    file: Option<PathBuf>,
    /// The config file, as `run -c` names it.
    #[arg(short, long, value_name = "FILE", conflicts_with = "file")]
    config: Option<PathBuf>,
}

impl ValidateArgs {
    /// The file to check (clap makes sure one of the two is given).
    fn file(&self) -> &std::path::Path {
        self.file
            .as_deref()
            .or(self.config.as_deref())
            .expect("clap requires FILE or --config")
    }
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the service from a config file.
    Run(RunArgs),
    /// Check a config file; prints every error with its path. Exit 0 when valid, 1 when not.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the config file.
    Schema,
    /// Call a target and print the result JSON.
    Invoke(CallArgs),
    /// Call a target and print its deltas as they arrive.
    Stream(StreamArgs),
    /// Publish an event.
    Publish(PublishArgs),
    /// Print events as they arrive, one JSON line each (wildcards `*` and `>` allowed).
    Subscribe(SubscribeArgs),
    /// List the targets a running service serves (name, streaming, description).
    Targets(TargetsArgs),
    /// Serve the demo MCP server (stdio; or `--http PORT [--host ADDR] [--token T]`).
    /// Configs name it as `command: ${OPENAGENTIO_EXE}` with `args: [mcp-demo]`.
    #[command(hide = true)]
    McpDemo {
        /// Arguments of the demo server.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `targets` arguments.
#[derive(Args, Debug)]
pub struct TargetsArgs {
    /// Print the catalog as JSON (with input schemas).
    #[arg(long)]
    pub json: bool,
    /// How long to wait.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub bus: BusArgs,
}

/// `run` arguments.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The config file (YAML or JSON).
    #[arg(short, long)]
    pub config: PathBuf,
    /// Override the bus: `memory` or a NATS URL.
    #[arg(long)]
    pub bus: Option<String>,
    /// Override the gateway's listen address.
    #[arg(long)]
    pub listen: Option<String>,
}

/// Where the client commands reach the bus.
#[derive(Args, Debug, Clone)]
pub struct BusArgs {
    /// The bus: a NATS URL; a service's HTTP gateway (`http://127.0.0.1:8080`:
    /// how to reach a service on the in-memory bus); or `memory` (an empty
    /// in-process bus; only useful for trying the CLI).
    #[arg(long, env = "OPENAGENTIO_BUS", default_value = "nats://127.0.0.1:4222")]
    pub bus: String,
    /// Bearer token for a gateway that requires one (`--bus http://...`).
    #[arg(long, env = "OPENAGENTIO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Subject prefix of the bus.
    #[arg(long, env = "OPENAGENTIO_SUBJECT_PREFIX", default_value = "acp.v1")]
    pub subject_prefix: String,
    /// Tenant scope.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Session id.
    #[arg(long)]
    pub session: Option<String>,
    /// Metadata entries `key=value` (the value is JSON if it parses, else a string).
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// NATS credentials file (`.creds`: JWT and NKey seed).
    #[arg(long, env = "OPENAGENTIO_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// CA certificates (PEM) that sign the NATS server's TLS certificate.
    #[arg(long, env = "OPENAGENTIO_NATS_CA", value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with NATS (with --nats-key).
    #[arg(
        long,
        env = "OPENAGENTIO_NATS_CERT",
        value_name = "FILE",
        requires = "nats_key"
    )]
    pub nats_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS with NATS (with --nats-cert).
    #[arg(
        long,
        env = "OPENAGENTIO_NATS_KEY",
        value_name = "FILE",
        requires = "nats_cert"
    )]
    pub nats_key: Option<PathBuf>,
}

impl BusArgs {
    /// The first NATS-only option given, by its flag.
    pub fn nats_only_option(&self) -> Option<&'static str> {
        [
            (self.nats_creds.is_some(), "--nats-creds"),
            (self.nats_ca.is_some(), "--nats-ca"),
            (self.nats_cert.is_some(), "--nats-cert"),
            (self.nats_key.is_some(), "--nats-key"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

/// `invoke` arguments.
#[derive(Args, Debug)]
pub struct CallArgs {
    /// The target.
    pub target: String,
    /// The payload as JSON (`-` reads standard input).
    pub payload: Option<String>,
    /// Send `{"text": TEXT}` as the payload.
    #[arg(long, conflicts_with = "payload")]
    pub text: Option<String>,
    /// How long to wait (e.g. `30s`, `500ms`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub bus: BusArgs,
}

/// `stream` arguments.
#[derive(Args, Debug)]
pub struct StreamArgs {
    #[command(flatten)]
    pub call: CallArgs,
    /// Print every frame as one JSON line instead of the delta text.
    #[arg(long)]
    pub json: bool,
    /// Longest quiet gap between frames.
    #[arg(long, value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
}

/// `publish` arguments.
#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The event type.
    pub event_type: String,
    /// The payload as JSON (`-` reads standard input).
    pub payload: Option<String>,
    /// Send `{"text": TEXT}` as the payload.
    #[arg(long, conflicts_with = "payload")]
    pub text: Option<String>,
    /// How long to wait for the bus (or the gateway) to take the event.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub bus: BusArgs,
}

/// `subscribe` arguments.
#[derive(Args, Debug)]
pub struct SubscribeArgs {
    /// The event type pattern.
    pub event_type: String,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    /// Exit after this long.
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    #[command(flatten)]
    pub bus: BusArgs,
}

/// Parses `500ms`, `10s`, `2m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{s:?}: expected a positive duration"));
    }
    // No wait is meant for longer, and deadlines past that leave the clock's range.
    const TEN_YEARS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;
    if secs > TEN_YEARS {
        return Err(format!("{s:?}: too long (at most 10 years)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs a command.
pub async fn dispatch(command: Command) -> Exit {
    match command {
        Command::Run(a) => run::run(a).await,
        Command::Validate(a) => run::validate(a.file()),
        Command::Schema => run::schema(),
        Command::Invoke(a) => client::invoke(a).await,
        Command::Stream(a) => client::stream(a).await,
        Command::Publish(a) => client::publish(a).await,
        Command::Subscribe(a) => client::subscribe(a).await,
        Command::Targets(a) => client::targets(a).await,
        Command::McpDemo { args } => match openagentio_mcp::demo::run(args).await {
            Ok(()) => Exit::Ok,
            Err(e) => Exit::Usage(e.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
        assert!(
            parse_duration("100000000000000000000000000000000000h")
                .unwrap_err()
                .contains("at most 10 years")
        );
    }
}
