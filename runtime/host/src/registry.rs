//! The closed registry of bridge types: one match from a config entry to the
//! bridge that serves it.

use std::time::Duration;

use openagentio_config::{BridgeConfig, BridgeKind, OpenAiSseConfig};
use openagentio_core::Bridge;
use openagentio_openai_sse::{SseBridge, SseConfig};

use crate::echo_bridge::{EchoBridge, EchoConfig};

/// Why a bridge could not be built from its config.
#[derive(Debug, thiserror::Error)]
#[error("bridges[{index}] ({name}): {message}")]
pub struct BuildError {
    /// Position in the file.
    pub index: usize,
    /// The bridge name.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// Builds the bridge of config entry `index`.
pub fn build_bridge(index: usize, b: &BridgeConfig) -> Result<Box<dyn Bridge>, BuildError> {
    let fail = |message: String| BuildError {
        index,
        name: b.name.clone(),
        message,
    };
    Ok(match &b.kind {
        BridgeKind::Echo(c) => Box::new(EchoBridge::new(
            &b.name,
            EchoConfig {
                target: c.mappings.target.clone(),
                word_delay: c.config.word_delay,
            },
        )),
        BridgeKind::OpenAiChatSse(c) => {
            let cfg = sse_config(c, b.type_name == "openclaw_chat_sse");
            cfg.validate().map_err(|e| fail(e.to_string()))?;
            Box::new(SseBridge::new(&b.name, cfg))
        }
        BridgeKind::McpTool(_) | BridgeKind::MatrixEvent(_) => {
            return Err(fail(format!(
                "bridge type {:?} is not available in this build",
                b.type_name
            )));
        }
    })
}

fn sse_config(c: &OpenAiSseConfig, openclaw: bool) -> SseConfig {
    let s = &c.config;
    let mut cfg = SseConfig::new(s.base_url.clone(), s.model.clone());
    if openclaw {
        cfg = cfg.with_openclaw_defaults();
    }
    cfg.token = s.token.as_ref().map(|t| t.expose().to_owned());
    cfg.headers = s
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect();
    cfg.params = s.params.clone();
    cfg.system_prompt = s.system_prompt.clone();
    cfg.target = c.mappings.target.clone();
    cfg.text_field = c.mappings.text_field.clone();
    cfg.session_field = c.mappings.session_field.clone();
    cfg.metadata_prefix = c.mappings.metadata_prefix.clone();
    cfg.connect_timeout = s.connect_timeout;
    cfg.first_token_timeout = s.first_token_timeout;
    cfg.idle_timeout = s.idle_timeout;
    // `timeout` bounds each phase; a whole call is bounded by `total_timeout`
    // when given, else by ten times `timeout` (a long answer streams for a while).
    cfg.total_timeout = s
        .total_timeout
        .unwrap_or(s.timeout * 10)
        .max(Duration::from_secs(1));
    cfg.retries = s.retries;
    cfg.max_event_bytes = s.max_event_size;
    cfg
}
