//! docker-compose.yml checked against the rest of the project, without Docker:
//!
//! - the openagentio config the stack mounts passes `openagentio validate` with
//!   the environment the stack gives it (compose `environment:` over the
//!   Dockerfile's `ENV`), both as it is and with `docker/llm.env` (profile `llm`);
//! - every address that config names (NATS, homeserver, MCP server, LLM base
//!   URL) is a service of the stack, active in that profile, exposing that port;
//! - every service has a health check, every image a pinned tag (the image
//!   built here carries the workspace version), every `depends_on` waits for
//!   `service_healthy`;
//! - Synapse's data and the Matrix bridge's state live in named volumes, bind
//!   mounts point at files that exist, and the secrets two services share agree.
//!
//! Compose interpolation (`${VAR}`, `${VAR:-default}`, `$$`) is resolved here
//! the way `docker compose config` resolves it, from an empty environment or
//! from the env file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use openagentio_config::url::Url;
use openagentio_config::{BridgeKind, Config};
use serde_norway::{Mapping, Value};

/// Where the image documents its config file.
const CONFIG_IN_IMAGE: &str = "/etc/openagentio/config.yaml";
/// The service that runs openagentio.
const SERVICE: &str = "openagentio";

fn root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}

/// docker-compose.yml with YAML merge keys (`<<: *anchor`) applied.
fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml"))
        .expect("docker-compose.yml at the repository root");
    let mut doc: Value = serde_norway::from_str(&text).expect("docker-compose.yml is YAML");
    doc.apply_merge().expect("merge keys apply");
    doc
}

fn services(doc: &Value) -> &Mapping {
    doc["services"]
        .as_mapping()
        .expect("docker-compose.yml has services")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name:?}"))
}

fn names(m: &Mapping) -> impl Iterator<Item = (&str, &Value)> {
    m.iter().map(|(k, v)| (k.as_str().expect("string keys"), v))
}

/// A scalar as a string (compose accepts numbers and booleans in many places).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other).into_iter().collect(),
    }
}

/// Compose interpolation of one string.
fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"));
            let expr = &body[..end];
            let name_len = expr
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len());
            let (name, op) = expr.split_at(name_len);
            let value = vars.get(name).cloned();
            out.push_str(&match op {
                "" => value.unwrap_or_default(),
                _ if op.starts_with(":-") => value
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| op[2..].to_owned()),
                _ if op.starts_with('-') => value.unwrap_or_else(|| op[1..].to_owned()),
                _ if op.starts_with(":?") || op.starts_with('?') => {
                    value.unwrap_or_else(|| panic!("{s:?} requires {name}"))
                }
                _ => panic!("unsupported interpolation {expr:?} in {s:?}"),
            });
            rest = &body[end + 1..];
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            out.push_str(&vars.get(&after[..len]).cloned().unwrap_or_default());
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    out
}

/// `KEY=VALUE` lines of an env file (comments and blank lines skipped).
fn env_file(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: not KEY=VALUE: {l:?}", path.display()));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// The `ENV` instructions of the Dockerfile (the runtime stage's are the last).
fn dockerfile_env() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let mut env = BTreeMap::new();
    for line in joined.lines() {
        let Some(rest) = line.trim().strip_prefix("ENV ") else {
            continue;
        };
        for pair in rest.split_whitespace() {
            let (k, v) = pair
                .split_once('=')
                .unwrap_or_else(|| panic!("Dockerfile: ENV {pair:?} is not KEY=VALUE"));
            env.insert(k.to_owned(), v.trim_matches('"').to_owned());
        }
    }
    env
}

/// A service's `environment`, interpolated (map or list form).
fn service_env(svc: &Value, vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Mapping(m) => names(m)
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    interpolate(&scalar(v).unwrap_or_default(), vars),
                )
            })
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .filter_map(scalar)
            .map(|s| {
                let s = interpolate(&s, vars);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The ports a service's containers listen on, as `expose` and `ports` say.
fn container_ports(svc: &Value) -> BTreeSet<u16> {
    let port = |s: &str| -> u16 {
        let s = s.split('/').next().unwrap_or(s);
        s.parse()
            .unwrap_or_else(|_| panic!("not a port (ranges are not used here): {s:?}"))
    };
    let mut ports: BTreeSet<u16> = strings(&svc["expose"]).iter().map(|s| port(s)).collect();
    if let Value::Sequence(items) = &svc["ports"] {
        for item in items {
            match item {
                Value::Mapping(_) => ports.insert(port(&scalar(&item["target"]).expect("target"))),
                other => {
                    let spec = scalar(other).expect("a port spec");
                    ports.insert(port(spec.rsplit(':').next().unwrap_or(&spec)))
                }
            };
        }
    }
    ports
}

/// Volume mounts of a service, short or long syntax: (source, target).
fn mounts(svc: &Value) -> Vec<(String, String)> {
    let Value::Sequence(items) = &svc["volumes"] else {
        return Vec::new();
    };
    items
        .iter()
        .map(|v| match v {
            Value::Mapping(_) => (
                scalar(&v["source"]).unwrap_or_default(),
                scalar(&v["target"]).expect("volume target"),
            ),
            other => {
                let s = scalar(other).expect("volume spec");
                let mut parts = s.split(':');
                let source = parts.next().unwrap_or_default().to_owned();
                let target = parts.next().unwrap_or_default().to_owned();
                (source, target)
            }
        })
        .collect()
}

fn is_bind(source: &str) -> bool {
    source.starts_with('.') || source.starts_with('/') || source.starts_with('~')
}

/// Profiles enabled by `COMPOSE_PROFILES`; a service without profiles is always on.
fn active(svc: &Value, vars: &BTreeMap<String, String>) -> bool {
    let profiles = strings(&svc["profiles"]);
    let enabled: BTreeSet<&str> = vars
        .get("COMPOSE_PROFILES")
        .map(|p| p.split(',').map(str::trim).collect())
        .unwrap_or_default();
    profiles.is_empty() || profiles.iter().any(|p| enabled.contains(p.as_str()))
}

/// One way to start the stack: its name and the interpolation variables.
struct Scenario {
    name: &'static str,
    vars: BTreeMap<String, String>,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "docker compose up",
            vars: BTreeMap::new(),
        },
        Scenario {
            name: "docker compose --env-file docker/llm.env --profile llm up",
            vars: env_file(&root().join("docker/llm.env")),
        },
    ]
}

/// The openagentio config file the stack mounts, on the host.
fn mounted_config(doc: &Value) -> PathBuf {
    let svc = service(doc, SERVICE);
    let (source, _) = mounts(svc)
        .into_iter()
        .find(|(_, target)| target == CONFIG_IN_IMAGE)
        .unwrap_or_else(|| panic!("service {SERVICE} mounts no config at {CONFIG_IN_IMAGE}"));
    assert!(
        is_bind(&source),
        "the config is a bind mount of a file here"
    );
    let path = root().join(&source);
    assert!(path.is_file(), "{} does not exist", path.display());
    if let Some(command) = svc.get("command") {
        let command = strings(command);
        assert!(
            command
                .windows(2)
                .any(|w| (w[0] == "-c" || w[0] == "--config") && w[1] == CONFIG_IN_IMAGE),
            "service {SERVICE} runs {command:?}, not `run -c {CONFIG_IN_IMAGE}`"
        );
    }
    path
}

/// The environment openagentio's container has: the image's ENV, then compose's.
fn container_env(doc: &Value, vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = dockerfile_env();
    env.extend(service_env(service(doc, SERVICE), vars));
    env
}

fn load_config(path: &Path, env: &BTreeMap<String, String>) -> Config {
    let lookup = |name: &str| env.get(name).cloned();
    openagentio_config::load_file_with_env(path, &lookup).unwrap_or_else(|e| {
        panic!(
            "{} does not load with the stack's environment: {e}",
            path.display()
        )
    })
}

/// Every peer address in the config: (where in the config, URL).
fn endpoints(cfg: &Config) -> Vec<(String, Url)> {
    let mut out: Vec<(String, Url)> = cfg
        .bus
        .nats
        .url
        .iter()
        .map(|u| ("bus.nats.url".to_owned(), u.clone()))
        .collect();
    for (i, b) in cfg.bridges.iter().enumerate() {
        // No wildcard arm: a new bridge kind must say which addresses it names.
        match &b.kind {
            BridgeKind::Echo(_) => {}
            BridgeKind::McpTool(c) => {
                if let Some(u) = &c.config.http_url {
                    out.push((format!("bridges[{i}].config.http_url"), u.clone()));
                }
            }
            BridgeKind::MatrixEvent(c) => {
                out.push((
                    format!("bridges[{i}].config.homeserver_url"),
                    c.config.homeserver_url.clone(),
                ));
            }
            BridgeKind::OpenAiChatSse(c) => {
                out.push((
                    format!("bridges[{i}].config.base_url"),
                    c.config.base_url.clone(),
                ));
            }
        }
    }
    out
}

#[test]
fn the_stack_config_passes_openagentio_validate() {
    let doc = compose();
    let path = mounted_config(&doc);
    for s in scenarios() {
        let env = container_env(&doc, &s.vars);
        let out = Command::new(env!("CARGO_BIN_EXE_openagentio"))
            .arg("validate")
            .arg(&path)
            .env_clear()
            .envs(&env)
            .output()
            .expect("run openagentio validate");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("valid"),
            "{}: `openagentio validate {}` failed ({}):\n{stdout}{stderr}",
            s.name,
            path.display(),
            out.status
        );
    }
}

#[test]
fn every_address_in_the_config_is_a_service_and_port_of_the_stack() {
    let doc = compose();
    let path = mounted_config(&doc);
    let all = services(&doc);
    for s in scenarios() {
        let cfg = load_config(&path, &container_env(&doc, &s.vars));
        let found = endpoints(&cfg);
        for want in ["bus.nats.url", "homeserver_url", "http_url", "base_url"] {
            assert!(
                found.iter().any(|(at, _)| at.ends_with(want)),
                "{}: the config names no {want}",
                s.name
            );
        }
        for (at, url) in found {
            let host = url.host_str().unwrap_or_default();
            let port = url
                .port_or_known_default()
                .or_else(|| (url.scheme() == "nats").then_some(4222))
                .unwrap_or_else(|| panic!("{}: {at} = {url} has no port", s.name));
            let svc = all.get(host).unwrap_or_else(|| {
                panic!(
                    "{}: {at} = {url}: no service {host:?} in docker-compose.yml",
                    s.name
                )
            });
            assert!(
                active(svc, &s.vars),
                "{}: {at} = {url}: service {host:?} is not started in this profile",
                s.name
            );
            let ports = container_ports(svc);
            assert!(
                ports.contains(&port),
                "{}: {at} = {url}: service {host:?} exposes {ports:?}, not {port}",
                s.name
            );
        }
        let own = container_ports(service(&doc, SERVICE));
        assert!(
            own.contains(&cfg.http.listen.port()),
            "{}: the gateway listens on {} but service {SERVICE} exposes {own:?}",
            s.name,
            cfg.http.listen
        );
        assert!(
            cfg.http.listen.ip().is_unspecified(),
            "{}: the gateway must listen on all interfaces in a container, not {}",
            s.name,
            cfg.http.listen
        );
    }
}

#[test]
fn every_service_has_a_healthcheck() {
    let doc = compose();
    for (name, svc) in names(services(&doc)) {
        let hc = &svc["healthcheck"];
        let test = strings(&hc["test"]);
        assert!(
            !test.is_empty() && test[0] != "NONE" && hc["disable"] != Value::Bool(true),
            "service {name} has no health check"
        );
    }
}

#[test]
fn every_image_has_a_pinned_tag() {
    let doc = compose();
    for (name, svc) in names(services(&doc)) {
        let image = interpolate(
            &scalar(&svc["image"]).unwrap_or_else(|| panic!("service {name} names no image")),
            &BTreeMap::new(),
        );
        if image.contains("@sha256:") {
            continue;
        }
        let last = image.rsplit('/').next().unwrap_or(&image);
        let tag = last
            .split_once(':')
            .map(|(_, t)| t)
            .unwrap_or_else(|| panic!("service {name}: image {image:?} has no tag"));
        assert!(
            !tag.is_empty() && tag != "latest",
            "service {name}: image {image:?} is not pinned"
        );
        if svc.get("build").is_some() {
            assert_eq!(
                tag,
                env!("CARGO_PKG_VERSION"),
                "service {name} builds {image:?}: tag it with the workspace version"
            );
        }
    }
}

#[test]
fn depends_on_waits_for_healthy_services() {
    let doc = compose();
    let all = services(&doc);
    for (name, svc) in names(all) {
        let Some(deps) = svc.get("depends_on") else {
            continue;
        };
        let deps = deps.as_mapping().unwrap_or_else(|| {
            panic!("service {name}: depends_on is a list; use the long form with a condition")
        });
        for (dep, spec) in names(deps) {
            assert_eq!(
                spec["condition"].as_str(),
                Some("service_healthy"),
                "service {name}: depends_on {dep} must wait for service_healthy"
            );
            let target = all
                .get(dep)
                .unwrap_or_else(|| panic!("service {name} depends on unknown service {dep}"));
            assert!(
                target.get("healthcheck").is_some(),
                "service {name} waits for {dep}, which has no health check"
            );
            if target.get("profiles").is_some() {
                assert_eq!(
                    spec["required"],
                    Value::Bool(false),
                    "service {name}: {dep} runs only in a profile; mark the dependency required: false"
                );
            }
        }
    }
    let own = service(&doc, SERVICE)["depends_on"]
        .as_mapping()
        .expect("openagentio depends on its peers");
    for peer in ["nats", "synapse", "mcp", "llm"] {
        assert!(
            own.contains_key(peer),
            "service {SERVICE} does not wait for {peer}"
        );
    }
}

#[test]
fn state_lives_in_named_volumes_and_bind_mounts_exist() {
    let doc = compose();
    let declared = doc["volumes"]
        .as_mapping()
        .expect("top-level volumes are declared");
    for (name, svc) in names(services(&doc)) {
        for (source, target) in mounts(svc) {
            if is_bind(&source) {
                let p = root().join(&source);
                assert!(
                    p.exists(),
                    "service {name} mounts {} which does not exist",
                    p.display()
                );
            } else {
                assert!(
                    declared.contains_key(source.as_str()),
                    "service {name}: volume {source:?} (at {target}) is not declared"
                );
            }
        }
    }
    let named_at = |svc: &str, path: &Path| {
        mounts(service(&doc, svc))
            .into_iter()
            .any(|(source, target)| !is_bind(&source) && path.starts_with(&target))
    };
    assert!(
        named_at("synapse", Path::new("/data/homeserver.db")),
        "Synapse's /data is not a named volume"
    );
    let cfg = load_config(
        &mounted_config(&doc),
        &container_env(&doc, &BTreeMap::new()),
    );
    let mut matrix = 0;
    for b in &cfg.bridges {
        if let BridgeKind::MatrixEvent(c) = &b.kind {
            matrix += 1;
            let dir = c
                .config
                .state_dir
                .clone()
                .expect("the Matrix bridge names its state_dir");
            assert!(
                named_at(SERVICE, &dir),
                "the Matrix bridge keeps its state in {}, which is not in a named volume",
                dir.display()
            );
        }
    }
    assert_eq!(matrix, 1, "the stack runs one Matrix bridge");
}

#[test]
fn services_agree_on_shared_secrets_and_ports() {
    let doc = compose();
    for s in scenarios() {
        let ours = service_env(service(&doc, SERVICE), &s.vars);
        let synapse = service_env(service(&doc, "synapse"), &s.vars);
        assert_eq!(
            ours.get("MATRIX_BOT_PASSWORD"),
            synapse.get("MATRIX_BOT_PASSWORD"),
            "{}: the bot's password differs between synapse and openagentio",
            s.name
        );
        let mcp: Vec<String> = strings(&service(&doc, "mcp")["command"])
            .iter()
            .map(|a| interpolate(a, &s.vars))
            .collect();
        let arg = |flag: &str| {
            mcp.windows(2)
                .find(|w| w[0] == flag)
                .map(|w| w[1].clone())
                .unwrap_or_else(|| panic!("the mcp service's command has no {flag}"))
        };
        assert_eq!(
            Some(&arg("--token")),
            ours.get("MCP_TOKEN"),
            "{}: the MCP server's token differs from the one openagentio sends",
            s.name
        );
        let host = arg("--host");
        assert!(
            host == "0.0.0.0" || host == "::",
            "{}: the MCP server binds {host}; other containers cannot reach it",
            s.name
        );
        let listen = arg("--http");
        let cfg = load_config(&mounted_config(&doc), &container_env(&doc, &s.vars));
        let mcp_url = endpoints(&cfg)
            .into_iter()
            .find(|(at, _)| at.ends_with("http_url"))
            .map(|(_, u)| u)
            .expect("an MCP URL");
        assert_eq!(
            listen
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok()),
            mcp_url.port_or_known_default(),
            "{}: the MCP server listens on {listen}, openagentio calls {mcp_url}",
            s.name
        );
    }
}

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The MCP server runs as the stack runs it (its compose arguments, on a free
/// port), and a request addressed as openagentio addresses it, `Host:
/// mcp:8000` with the stack's token, must be served: a server that only
/// answers loopback names (DNS-rebinding protection) is unreachable from
/// another container. `openagentio mcp-demo` is the same server as the
/// image's `openagentio-mcp-demo` (both run `openagentio_mcp::demo`).
#[test]
fn the_mcp_server_serves_requests_addressed_to_its_service_name() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    let doc = compose();
    let vars = BTreeMap::new();
    let cfg = load_config(&mounted_config(&doc), &container_env(&doc, &vars));
    let url = endpoints(&cfg)
        .into_iter()
        .find(|(at, _)| at.ends_with("http_url"))
        .map(|(_, u)| u)
        .expect("an MCP URL");
    let token = service_env(service(&doc, SERVICE), &vars)["MCP_TOKEN"].clone();
    let port = openagentio_testkit::free_port();
    let mut args: Vec<String> = strings(&service(&doc, "mcp")["command"])
        .iter()
        .map(|a| interpolate(a, &vars))
        .collect();
    let i = args.iter().position(|a| a == "--http").expect("--http") + 1;
    args[i] = port.to_string();
    let log = tempfile::NamedTempFile::new().expect("a file for the server's log");
    let mut server = Child(
        Command::new(env!("CARGO_BIN_EXE_openagentio"))
            .arg("mcp-demo")
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .expect("run openagentio mcp-demo"),
    );
    let server_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"compose-test","version":"1"}}}"#;
    let host = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    );
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        url.path(),
        body.len()
    );
    let ask = || -> std::io::Result<String> {
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        conn.write_all(request.as_bytes())?;
        let mut head = [0u8; 64];
        let n = conn.read(&mut head)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    // Until the server listens, and past a transport failure (a reset, an
    // early close) while it starts: what is checked is the answer it gives.
    let start = Instant::now();
    let status = loop {
        match ask() {
            Ok(status) => break status,
            Err(e) => {
                if let Ok(Some(exit)) = server.0.try_wait() {
                    panic!(
                        "the MCP demo server ({args:?}) ended ({exit}): {}",
                        server_log()
                    );
                }
                if start.elapsed() > Duration::from_secs(20) {
                    panic!(
                        "the MCP demo server gave no answer on port {port}: {e}; its log: {}",
                        server_log()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "the MCP server refuses a request for {host} (as openagentio sends it from its \
         container): {}; its log: {}",
        status.lines().next().unwrap_or_default(),
        server_log()
    );
}

#[test]
fn interpolation_follows_compose() {
    let vars: BTreeMap<String, String> = [("SET", "x"), ("EMPTY", "")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(interpolate("${SET:-d}", &vars), "x");
    assert_eq!(interpolate("${EMPTY:-d}", &vars), "d");
    assert_eq!(interpolate("${EMPTY-d}", &vars), "");
    assert_eq!(interpolate("${UNSET-d}/$SET/$$HOME", &vars), "d/x/$HOME");
    assert_eq!(interpolate("${UNSET}", &vars), "");
}
