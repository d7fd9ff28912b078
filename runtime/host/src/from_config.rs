//! From a loaded config file to a [`ServiceSpec`].

use openagentio_config::{Config, HttpConfig, Transport};
use openagentio_http_gateway::{ApiToken, GatewayConfig};
use openagentio_nats::{NatsAuth, NatsOptions, NatsTls, OptionNames};

use crate::registry::{BuildError, build_bridge};
use crate::spec::{ServiceSpec, TransportSpec};
use crate::telemetry::{LogFormat, TelemetrySettings};

/// The service a config file describes. Builds every bridge; no I/O happens yet.
pub fn spec_from_config(cfg: &Config) -> Result<ServiceSpec, BuildError> {
    let bus = &cfg.bus;
    let transport = match bus.transport {
        Transport::Memory => TransportSpec::Memory,
        Transport::Nats => TransportSpec::Nats(Box::new(nats_options(cfg))),
    };
    let bridges = cfg
        .bridges
        .iter()
        .enumerate()
        .map(|(i, b)| build_bridge(i, b))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ServiceSpec {
        agent_id: bus.agent_id.clone(),
        transport,
        subject_prefix: bus.subject_prefix.clone(),
        default_tenant: bus.default_tenant.clone().unwrap_or_default(),
        default_timeout: bus.default_timeout,
        serve_timeout: bus.serve_timeout,
        cancel_grace: bus.cancel_grace,
        gateway: cfg.http.enabled.then(|| gateway_config(&cfg.http)),
        metrics: cfg.telemetry.metrics,
        drain_timeout: cfg.shutdown.drain_timeout,
        bridges,
    })
}

/// The NATS connection options of the `bus.nats` section.
pub fn nats_options(cfg: &Config) -> NatsOptions {
    let n = &cfg.bus.nats;
    let auth = if let Some(path) = &n.credentials_file {
        NatsAuth::CredentialsFile(path.clone())
    } else if let Some(token) = &n.token {
        NatsAuth::Token(token.expose().to_owned())
    } else if let (Some(user), Some(password)) = (&n.user, &n.password) {
        NatsAuth::UserPassword {
            user: user.clone(),
            password: password.expose().to_owned(),
        }
    } else {
        NatsAuth::None
    };
    let mut opts = NatsOptions::new(n.url_list()).auth(auth).tls(NatsTls {
        required: n.tls.required,
        ca_file: n.tls.ca_file.clone(),
        cert_file: n.tls.cert_file.clone(),
        key_file: n.tls.key_file.clone(),
    });
    opts.name = Some(n.name.clone().unwrap_or_else(|| cfg.bus.agent_id.clone()));
    opts.retry_on_initial_connect(n.retry_on_initial_connect)
        .option_names(OptionNames::CONFIG)
}

fn gateway_config(h: &HttpConfig) -> GatewayConfig {
    GatewayConfig {
        listen: h.listen,
        tokens: h
            .tokens
            .iter()
            .map(|t| match &t.tenant {
                Some(tenant) => ApiToken::for_tenant(t.token.expose(), tenant),
                None => ApiToken::new(t.token.expose()),
            })
            .collect(),
        body_limit: h.body_limit,
        cors_origins: h.cors_origins.clone(),
        default_timeout: h.default_timeout,
        idle_timeout: h.idle_timeout,
        read_timeout: h.read_timeout,
        ..GatewayConfig::default()
    }
}

/// The logging and tracing settings of the `telemetry` section.
pub fn telemetry_settings(cfg: &Config) -> TelemetrySettings {
    let t = &cfg.telemetry;
    TelemetrySettings {
        log_level: t.log_level.clone(),
        log_format: match t.log_format {
            openagentio_config::LogFormat::Text => LogFormat::Text,
            openagentio_config::LogFormat::Json => LogFormat::Json,
        },
        otlp_endpoint: t.otlp_endpoint.as_ref().map(|u| u.to_string()),
        service_name: cfg.bus.agent_id.clone(),
    }
}
