//! The closed registry of bridge types: one match from a config entry to the
//! bridge that serves it.

use std::time::Duration;

use std::path::PathBuf;

use openagentio_config::{
    BridgeConfig, BridgeKind, MatrixConfig as MatrixFile, McpToolConfig, McpUpstream,
    OpenAiSseConfig, SupervisionConfig,
};
use openagentio_core::Bridge;
use openagentio_core::supervisor::RestartPolicy;
use openagentio_matrix::{MatrixAuth, MatrixBridge, MatrixConfig, Responder};
use openagentio_mcp::{McpBridge, McpConfig, McpTransport};
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
        BridgeKind::MatrixEvent(c) => {
            let cfg = matrix_config(&b.name, c);
            cfg.validate().map_err(|e| fail(e.to_string()))?;
            Box::new(MatrixBridge::new(&b.name, cfg))
        }
        BridgeKind::McpTool(c) => {
            let cfg = mcp_config(c).ok_or_else(|| {
                fail("no upstream: set `command` (stdio) or `http_url` (streamable_http)".into())
            })?;
            Box::new(McpBridge::new(&b.name, cfg).map_err(|e| fail(e.to_string()))?)
        }
    })
}

fn restart_policy(s: &SupervisionConfig) -> RestartPolicy {
    RestartPolicy {
        max_restarts: s.max_restarts,
        window: s.restart_window,
        initial_backoff: s.base_delay,
        max_backoff: s.max_delay,
    }
}

fn mcp_config(c: &McpToolConfig) -> Option<McpConfig> {
    let s = &c.config;
    let expose = |m: &std::collections::BTreeMap<String, openagentio_config::Secret>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .collect()
    };
    let transport = match s.upstream()? {
        McpUpstream::Stdio {
            command,
            args,
            env,
            cwd,
        } => McpTransport::Stdio {
            command: command.to_owned(),
            args: args.to_vec(),
            env: expose(env),
            cwd: cwd.map(|p| p.to_path_buf()),
        },
        McpUpstream::StreamableHttp {
            url,
            headers,
            token,
        } => McpTransport::StreamableHttp {
            url: url.to_string(),
            headers: expose(headers),
            token: token.map(|t| t.expose().to_owned()),
        },
    };
    let mut cfg = McpConfig::new(transport);
    cfg.target_prefix = c.mappings.target_prefix.clone();
    cfg.timeout = s.timeout;
    cfg.connect_timeout = s.connect_timeout;
    cfg.tool_timeouts = s.tool_timeouts.clone();
    cfg.include = s.include.iter().map(|g| g.as_str().to_owned()).collect();
    cfg.exclude = s.exclude.iter().map(|g| g.as_str().to_owned()).collect();
    cfg.restart = restart_policy(&s.supervision);
    Some(cfg)
}

/// Where a Matrix bridge keeps its state (sync token, session) when the file
/// does not say: `$OPENAGENTIO_STATE_DIR/matrix/{name}`, by default under
/// `~/.local/state/openagentio`.
fn default_state_dir(bridge: &str) -> PathBuf {
    let base = std::env::var_os("OPENAGENTIO_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."));
            home.join(".local/state/openagentio")
        });
    base.join("matrix").join(bridge)
}

fn matrix_config(name: &str, c: &MatrixFile) -> MatrixConfig {
    use openagentio_config::{
        InitialSyncBehavior as FileSync, OutboundMsgtype as FileMsgtype,
        SessionStrategy as FileSession,
    };
    let s = &c.config;
    let auth = match (&s.access_token, &s.password) {
        (Some(token), _) => MatrixAuth::AccessToken {
            token: token.expose().into(),
            user_id: s.user_id.clone(),
            device_id: s.device_id.clone(),
        },
        (None, Some(password)) => MatrixAuth::Password {
            user_id: s.user_id.clone(),
            password: password.expose().into(),
            device_id: s.device_id.clone(),
        },
        // The config crate requires one of the two; an empty token fails validation.
        (None, None) => MatrixAuth::AccessToken {
            token: "".into(),
            user_id: s.user_id.clone(),
            device_id: None,
        },
    };
    let state_dir = s
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(name));
    let mut cfg = MatrixConfig::new(
        s.homeserver_url.to_string(),
        auth,
        s.room_ids.clone(),
        state_dir,
    );
    cfg.sync_timeout = s.sync_timeout;
    cfg.restart = Some(restart_policy(&s.supervision));
    cfg.reconnect_delay = s.reconnect_delay;
    cfg.initial_sync_behavior = match s.initial_sync_behavior {
        FileSync::Skip => openagentio_matrix::InitialSyncBehavior::Skip,
        FileSync::Replay => openagentio_matrix::InitialSyncBehavior::Replay,
    };
    cfg.outbound_msgtype = match s.outbound_msgtype {
        FileMsgtype::Text => openagentio_matrix::OutboundMsgType::Text,
        FileMsgtype::Notice => openagentio_matrix::OutboundMsgType::Notice,
    };
    cfg.inbound_message_event = c.mappings.inbound_message_event.clone();
    cfg.outbound_message_event = c.mappings.outbound_message_event.clone();
    cfg.session_strategy = match c.mappings.session_strategy {
        FileSession::Room => openagentio_matrix::SessionStrategy::Room,
        FileSession::RoomSender => openagentio_matrix::SessionStrategy::RoomSender,
    };
    cfg.auto_join = s.auto_join;
    cfg.allowed_inviters = s
        .allowed_inviters
        .iter()
        .map(|g| g.as_str().to_owned())
        .collect();
    cfg.sender_allowlist = s
        .sender_allowlist
        .iter()
        .map(|g| g.as_str().to_owned())
        .collect();
    cfg.ignore_notices = s.ignore_notices;
    cfg.responders = s
        .responder
        .iter()
        .map(|r| Responder {
            room: r.room.clone(),
            target: r.target.clone(),
            edit_interval: r.edit_throttle,
            max_edits: r.max_edits,
            typing: r.typing,
            ..Responder::new(r.room.clone(), r.target.clone())
        })
        .collect();
    cfg
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

#[cfg(test)]
mod tests {
    use openagentio_config::{BridgeKind, Format, load_with_env};
    use std::time::Duration;

    #[test]
    fn matrix_supervision_reaches_the_bridge() {
        let yaml = "version: openagentio.bridge/v1\nbridges:\n  - {name: mx, type: matrix_event, config: {homeserver_url: 'http://hs', user_id: '@a:hs', access_token: t, room_ids: ['!r'], supervision: {max_restarts: 3, base_delay_seconds: 4}}}\n";
        let cfg = load_with_env(yaml, Format::Yaml, &|_| None).unwrap();
        let BridgeKind::MatrixEvent(mx) = &cfg.bridges[0].kind else {
            panic!("not a matrix bridge")
        };
        let restart = super::matrix_config("mx", mx).restart.unwrap();
        assert_eq!(restart.max_restarts, 3);
        assert_eq!(restart.initial_backoff, Duration::from_secs(4));
        // Keys not given keep the Matrix defaults.
        assert_eq!(restart.window, Duration::from_secs(60));
        assert_eq!(restart.max_backoff, Duration::from_secs(300));
    }

    #[test]
    fn mcp_defaults_are_the_same_from_a_file_and_from_the_library() {
        use openagentio_config::bridge::mcp::{DEFAULT_MCP_CONNECT_TIMEOUT, DEFAULT_MCP_TIMEOUT};
        assert_eq!(
            DEFAULT_MCP_CONNECT_TIMEOUT,
            openagentio_mcp::DEFAULT_CONNECT_TIMEOUT
        );
        assert_eq!(DEFAULT_MCP_TIMEOUT, openagentio_mcp::DEFAULT_TIMEOUT);
    }
}
