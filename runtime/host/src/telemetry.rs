//! Logs and traces: `tracing` to standard error as text or JSON lines, and,
//! when an OTLP endpoint is configured, spans exported over OTLP/HTTP with the
//! W3C trace context carried by the envelope's `traceparent` across processes.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use openagentio_core::{Envelope, TraceContext};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What [`init`] sets up.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    /// Log level filter (`info`, `debug`, `openagentio=debug,info`); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Log format.
    pub log_format: LogFormat,
    /// OTLP/HTTP endpoint (`http://collector:4318`); spans go to `{endpoint}/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported spans.
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            log_level: "info".into(),
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            service_name: "openagentio".into(),
        }
    }
}

/// Keeps span export running; dropping it flushes and stops the exporter.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports every finished span now.
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown_with_timeout(Duration::from_secs(5));
        }
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[error("telemetry: {0}")]
pub struct TelemetryError(String);

/// The filter for `log_level`: a bare level also quiets async-nats to
/// warnings, as the NATS transport logs the connection's events itself (at
/// info, async-nats logs each failed reconnect attempt). Directives with a
/// target (`debug,async_nats=info`) are taken as they are.
fn default_directives(log_level: &str) -> String {
    if log_level.contains('=') {
        log_level.to_owned()
    } else {
        format!("{log_level},async_nats=warn")
    }
}

/// Whether text logs are coloured: on a terminal, unless `NO_COLOR` is set
/// (no-color.org). Logs piped to a file, journald or `docker logs` carry no
/// escape codes.
fn colour_logs(stderr_is_terminal: bool, no_color: bool) -> bool {
    stderr_is_terminal && !no_color
}

/// Installs the global logger and, with an OTLP endpoint, the span exporter.
/// A second call keeps the first logger.
pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    // `RUST_LOG` set but empty counts as unset (not as "errors only"); one
    // that does not parse is said, not silently dropped.
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            EnvFilter::try_new(&v).map_err(|e| {
                eprintln!("RUST_LOG={v:?} is not a log filter ({e}); using log_level");
            })
        });
    let filter = match from_env {
        Some(Ok(filter)) => filter,
        _ => EnvFilter::new(default_directives(&settings.log_level)),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR").is_some(),
        ));
    let fmt = match settings.log_format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    let Some(endpoint) = &settings.otlp_endpoint else {
        let _ = registry.try_init();
        return Ok(TelemetryGuard { provider: None });
    };
    let url = traces_url(endpoint);
    // The workspace builds rustls without a default crypto provider (to avoid
    // aws-lc's C build); the exporter's HTTP client needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .build()
        .map_err(|e| TelemetryError(format!("OTLP exporter for {url}: {e}")))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_attribute(KeyValue::new("service.name", settings.service_name.clone()))
                .build(),
        )
        .build();
    let tracer = provider.tracer("openagentio");
    let _ = registry
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init();
    tracing::info!(endpoint = %url, "exporting spans over OTLP/HTTP");
    Ok(TelemetryGuard {
        provider: Some(provider),
    })
}

use tracing_subscriber::Layer as _;

fn traces_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/traces") {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/v1/traces")
    }
}

/// The OpenTelemetry context a W3C `traceparent` names (remote parent).
pub fn remote_context(traceparent: &str) -> Option<Context> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    let t = TraceContext::parse(traceparent)?;
    let sc = SpanContext::new(
        TraceId::from_hex(&t.trace_id).ok()?,
        SpanId::from_hex(&t.span_id).ok()?,
        TraceFlags::new(t.flags),
        true,
        TraceState::default(),
    );
    Some(Context::new().with_remote_span_context(sc))
}

/// Makes `span` a child of the trace `traceparent` names, if it names one.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(cx) = remote_context(traceparent) {
        let _ = span.set_parent(cx);
    }
}

/// Writes the current span (when it is being exported) into the envelope's
/// trace fields, so the receiver's spans become its children. Install it as a
/// bus envelope preparer.
pub fn stamp_current_span(env: &mut Envelope) {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    let t = TraceContext {
        trace_id: sc.trace_id().to_string().into(),
        span_id: sc.span_id().to_string().into(),
        flags: sc.trace_flags().to_u8(),
    };
    env.traceparent = t.traceparent();
    env.trace_id = t.trace_id;
    env.span_id = t.span_id;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_on_a_terminal_only_and_never_with_no_color() {
        assert!(colour_logs(true, false));
        assert!(
            !colour_logs(false, false),
            "a pipe or a file gets plain text"
        );
        assert!(!colour_logs(true, true), "NO_COLOR wins");
    }

    #[test]
    fn a_bare_level_quiets_async_nats_and_directives_are_kept() {
        assert_eq!(default_directives("info"), "info,async_nats=warn");
        assert_eq!(default_directives("debug"), "debug,async_nats=warn");
        assert_eq!(
            default_directives("debug,async_nats=info"),
            "debug,async_nats=info"
        );
    }

    #[test]
    fn endpoint_gets_the_traces_path_once() {
        assert_eq!(traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn remote_context_reads_traceparent() {
        let cx = remote_context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(remote_context("garbage").is_none());
    }
}
