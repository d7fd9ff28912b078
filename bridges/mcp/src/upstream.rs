//! One live connection to an MCP server: spawn or reach it, the handshake,
//! `tools/list`, and knowing at once when the connection is gone.
//!
//! - **stdio**: the server runs as our child process (its own process group,
//!   killed if the bridge is dropped). Its stderr lines go to the log under
//!   the target `openagentio_mcp::stderr` with the bridge name. When it exits
//!   the connection is lost at that instant.
//! - **Streamable HTTP**: rmcp's client over reqwest, with the bearer token and
//!   the configured headers (marked sensitive), on a [`WatchedClient`] that
//!   notices a server going away. An expired session (HTTP 404) is
//!   re-initialised by rmcp; when that fails the connection is lost and the
//!   bridge connects anew.
//!
//! Every message from the server passes through [`Observed`] first, in order:
//! progress notifications go to the [`ProgressRouter`], `tools/list_changed`
//! wakes the bridge, and the end of the stream marks the connection lost.
//! Losing the connection cancels one token that every call in flight waits on.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientRequest, Implementation, ListToolsRequest,
    PaginatedRequestParams, ServerJsonRpcMessage, ServerNotification, ServerResult, Tool,
};
use rmcp::service::serve_client_with_ct;
use rmcp::service::{RoleClient, RunningService, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, Peer};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::{McpConfig, McpTransport};
use crate::errors::{self, McpError};
use crate::http_client::WatchedClient;
use crate::progress::ProgressRouter;
use crate::redact::Redactor;

/// How long a stopping server gets to exit after its stdin closes, before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// The most `tools/list` pages read before giving up on a server that never ends its list.
const MAX_PAGES: usize = 1000;

/// What the transport observer shares with the connection.
pub(crate) struct ConnEvents {
    lost: CancellationToken,
    pub(crate) reason: Mutex<Option<String>>,
    /// How the last HTTP request failed, if one did: what the handshake's
    /// own error ("connection closed") does not say.
    pub(crate) post_failure: Mutex<Option<String>>,
    pub(crate) progress: Arc<ProgressRouter>,
    pub(crate) tools_changed: Notify,
}

impl ConnEvents {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(ConnEvents {
            lost: CancellationToken::new(),
            reason: Mutex::new(None),
            post_failure: Mutex::new(None),
            progress: Arc::default(),
            tools_changed: Notify::new(),
        })
    }

    /// Marks the connection lost (the first reason wins).
    pub(crate) fn lose(&self, reason: impl Into<String>) {
        {
            let mut r = self.reason.lock();
            if r.is_none() {
                *r = Some(reason.into());
            }
        }
        self.lost.cancel();
    }
}

/// A transport that watches what the server sends (see the module docs).
pub(crate) struct Observed<T> {
    inner: T,
    events: Arc<ConnEvents>,
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for Observed<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        let msg = self.inner.receive().await;
        match &msg {
            None => self.events.lose("the MCP server closed the connection"),
            Some(ServerJsonRpcMessage::Notification(n)) => match &n.notification {
                ServerNotification::ProgressNotification(p) => {
                    self.events.progress.dispatch(p.params.clone())
                }
                ServerNotification::ToolListChangedNotification(_) => {
                    self.events.tools_changed.notify_one()
                }
                _ => {}
            },
            _ => {}
        }
        msg
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Our side of the MCP session: no client capabilities (no sampling, roots or
/// elicitation), so servers do not send us requests we cannot serve.
#[derive(Clone)]
struct BridgeClient {
    info: ClientConfig,
}

impl ClientHandler for BridgeClient {
    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

/// Control of a child server process.
struct ChildControl {
    pid: Option<u32>,
    stop: CancellationToken,
    exited: CancellationToken,
}

impl Drop for ChildControl {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One live connection to the MCP server.
pub(crate) struct Upstream {
    events: Arc<ConnEvents>,
    peer: Peer<RoleClient>,
    service: tokio::sync::Mutex<Option<RunningService<RoleClient, BridgeClient>>>,
    child: Option<ChildControl>,
    server: String,
}

impl Upstream {
    /// Connects: spawns or reaches the server and completes the handshake, all
    /// within `cfg.connect_timeout`.
    pub(crate) async fn connect(
        bridge: &str,
        cfg: &McpConfig,
        redactor: &Redactor,
    ) -> Result<Arc<Upstream>, McpError> {
        let events = ConnEvents::new();
        let handler = BridgeClient {
            info: ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new("openagentio-mcp", env!("CARGO_PKG_VERSION")),
            ),
        };
        let ct = CancellationToken::new();
        let (child, handshake) = match &cfg.transport {
            McpTransport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut cmd = Command::new(command);
                cmd.args(args)
                    .envs(env)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                #[cfg(unix)]
                cmd.process_group(0);
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let mut proc = cmd
                    .spawn()
                    .map_err(|e| spawn_error(command, cwd.as_deref(), &e))?;
                let stdout = proc.stdout.take().expect("stdout is piped");
                let stdin = proc.stdin.take().expect("stdin is piped");
                if let Some(stderr) = proc.stderr.take() {
                    tokio::spawn(crate::stderr::log_stderr(
                        bridge.to_owned(),
                        redactor.clone(),
                        stderr,
                    ));
                }
                let child = watch_child(bridge.to_owned(), proc, events.clone());
                let transport = Observed {
                    inner: AsyncRwTransport::new_client(
                        crate::line_guard::LineGuard::new(stdout, events.clone()),
                        stdin,
                    ),
                    events: events.clone(),
                };
                let fut = serve_client_with_ct(handler, transport, ct.clone());
                (
                    Some(child),
                    tokio::time::timeout(cfg.connect_timeout, fut).await,
                )
            }
            McpTransport::StreamableHttp {
                url,
                headers,
                token,
            } => {
                install_crypto_provider();
                let mut custom = HashMap::new();
                for (name, value) in headers {
                    if token.is_some() && name.eq_ignore_ascii_case("authorization") {
                        continue; // the token replaces it, as in the reference
                    }
                    let name = http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        McpError::InvalidRequest(format!(
                            "header {name:?} is not a valid header name"
                        ))
                    })?;
                    let mut value = http::HeaderValue::from_str(value).map_err(|_| {
                        McpError::InvalidRequest(format!("header {name} has an invalid value"))
                    })?;
                    value.set_sensitive(true);
                    custom.insert(name, value);
                }
                let mut config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom)
                    .reinit_on_expired_session(true);
                if let Some(t) = token {
                    config = config.auth_header(t.clone());
                }
                let client = WatchedClient::new(events.clone()).map_err(|e| {
                    McpError::Transport(format!("cannot build the HTTP client: {e}"))
                })?;
                let transport = Observed {
                    inner: StreamableHttpClientTransport::with_client(client, config),
                    events: events.clone(),
                };
                let fut = serve_client_with_ct(handler, transport, ct.clone());
                (None, tokio::time::timeout(cfg.connect_timeout, fut).await)
            }
        };
        let service = match handshake {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                ct.cancel();
                let mut err = errors::from_init(&e);
                // A child that died during the handshake says why on exit.
                if let Some(c) = &child {
                    let _ = tokio::time::timeout(Duration::from_millis(500), c.exited.cancelled())
                        .await;
                    if let Some(reason) = events.reason.lock().clone()
                        && (err.connection_lost() || matches!(err, McpError::Transport(_)))
                    {
                        err = McpError::lost(reason);
                    }
                }
                // Over HTTP, a server that cannot be reached says so.
                if child.is_none()
                    && let Some(reason) = events.reason.lock().clone()
                    && (err.connection_lost() || matches!(err, McpError::Transport(_)))
                {
                    err = McpError::lost(reason);
                }
                // Over HTTP, an answer that is not MCP (a wrong path, a web
                // page, another API) fails the handshake as a closed connection.
                if let Some(failure) = events.post_failure.lock().clone()
                    && child.is_none()
                    && (err.connection_lost()
                        || matches!(err, McpError::Transport(_) | McpError::InvalidRequest(_)))
                {
                    err = McpError::Transport(format!(
                        "the server does not answer as an MCP server ({failure}): is http_url \
                         the MCP endpoint (often ending in /mcp)?"
                    ));
                }
                tracing::debug!(bridge, error = %redactor.clean(&e.to_string()), "MCP handshake failed");
                return Err(err);
            }
            Err(_) => {
                ct.cancel();
                return Err(McpError::Timeout(format!(
                    "the MCP server did not complete the handshake within {:?}",
                    cfg.connect_timeout
                )));
            }
        };
        let server = service
            .peer()
            .peer_info()
            .and_then(|i| {
                i.server_info
                    .as_ref()
                    .map(|s| format!("{} {}", s.name, s.version).trim().to_owned())
            })
            .unwrap_or_else(|| "unknown server".to_owned());
        Ok(Arc::new(Upstream {
            peer: service.peer().clone(),
            events,
            service: tokio::sync::Mutex::new(Some(service)),
            child,
            server,
        }))
    }

    /// The peer to send requests on.
    pub(crate) fn peer(&self) -> &Peer<RoleClient> {
        &self.peer
    }

    /// The progress router of this connection.
    pub(crate) fn progress(&self) -> &Arc<ProgressRouter> {
        &self.events.progress
    }

    /// Resolves when the server says its tool list changed.
    pub(crate) async fn tools_changed(&self) {
        self.events.tools_changed.notified().await
    }

    /// Resolves when the connection is lost.
    pub(crate) async fn lost(&self) {
        self.events.lost.cancelled().await
    }

    /// Whether the connection is lost.
    pub(crate) fn is_lost(&self) -> bool {
        self.events.lost.is_cancelled()
    }

    /// Why the connection was lost.
    pub(crate) fn lost_reason(&self) -> String {
        self.events
            .reason
            .lock()
            .clone()
            .unwrap_or_else(|| "connection lost".to_owned())
    }

    /// Marks the connection lost: every call in flight fails at once.
    pub(crate) fn lose(&self, reason: impl Into<String>) {
        self.events.lose(reason)
    }

    /// The server's name and version, from its handshake.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    /// The child process id (stdio only).
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.pid)
    }

    /// Every tool, reading all pages of `tools/list` (bypassing rmcp's cache,
    /// which may still hold the list a `list_changed` just invalidated).
    pub(crate) async fn list_tools(&self, timeout: Duration) -> Result<Vec<Tool>, McpError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let req = ListToolsRequest {
                params: Some(PaginatedRequestParams::default().with_cursor(cursor.take())),
                ..Default::default()
            };
            let sent = self.peer.send_request(ClientRequest::ListToolsRequest(req));
            let answer = tokio::select! {
                r = tokio::time::timeout(timeout, sent) => r,
                _ = self.lost() => return Err(McpError::lost(self.lost_reason())),
            };
            let (page, next) = match answer {
                Err(_) => return Err(McpError::Timeout("tools/list timed out".to_owned())),
                Ok(Err(e)) => return Err(errors::from_service(&e)),
                Ok(Ok(ServerResult::ListToolsResult(page))) => (page.tools, page.next_cursor),
                // A page rmcp could not read as a tool list (a tool without
                // `inputSchema`, say): read tool by tool.
                Ok(Ok(ServerResult::CustomResult(raw))) => crate::tool_list::lenient_page(&raw.0)?,
                Ok(Ok(_)) => {
                    return Err(McpError::Transport(
                        "tools/list answered with something else than a tool list".to_owned(),
                    ));
                }
            };
            tools.extend(page);
            match next {
                Some(c) if !c.is_empty() => cursor = Some(c),
                _ => return Ok(tools),
            }
        }
        Err(McpError::Transport(format!(
            "tools/list did not end after {MAX_PAGES} pages"
        )))
    }

    /// Closes the connection: ends the session, closes the child's stdin, gives
    /// it two seconds to exit and then kills it.
    pub(crate) async fn close(&self) {
        let service = self.service.lock().await.take();
        if let Some(mut s) = service {
            let _ = s.close_with_timeout(EXIT_GRACE).await;
        }
        if let Some(c) = &self.child {
            c.stop.cancel();
            let _ = tokio::time::timeout(EXIT_GRACE * 2, c.exited.cancelled()).await;
        }
        self.events.lose("the bridge closed the connection");
    }
}

fn spawn_error(command: &str, cwd: Option<&std::path::Path>, e: &std::io::Error) -> McpError {
    // The OS says "No such file or directory" for a missing working
    // directory as for a missing command: tell which.
    let msg = match cwd.filter(|dir| !dir.is_dir()) {
        Some(dir) => format!(
            "cannot start MCP server command {command:?}: its `cwd` {} is not a directory",
            dir.display()
        ),
        None => format!("cannot start MCP server command {command:?}: {e}"),
    };
    match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => McpError::Spawn(msg),
        _ => McpError::lost(msg),
    }
}

/// Waits for the child to exit (or to be told to stop) and marks the connection lost.
fn watch_child(bridge: String, mut child: Child, events: Arc<ConnEvents>) -> ChildControl {
    let pid = child.id();
    let stop = CancellationToken::new();
    let exited = CancellationToken::new();
    let (stop2, exited2) = (stop.clone(), exited.clone());
    tokio::spawn(async move {
        let (status, asked) = tokio::select! {
            s = child.wait() => (s, false),
            _ = stop2.cancelled() => {
                let s = match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                    Ok(s) => s,
                    Err(_) => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                (s, true)
            }
        };
        // What the server started (a launcher's real server, helpers) is in
        // its process group: it goes with the server, or it would be left
        // running, one more at every restart, after the service is gone.
        end_process_group(pid).await;
        let how = match &status {
            Ok(s) => s.to_string(),
            Err(e) => format!("wait failed: {e}"),
        };
        if asked {
            tracing::debug!(bridge = %bridge, pid, status = %how, "MCP server process stopped");
        } else {
            tracing::warn!(bridge = %bridge, pid, status = %how, "MCP server process exited");
        }
        events.lose(format!("the MCP server process exited ({how})"));
        exited2.cancel();
    });
    ChildControl { pid, stop, exited }
}

/// Ends what is left of the process group `pid` led (the child was started
/// as a group leader): `SIGTERM`, and `SIGKILL` to what has not ended half a
/// second later.
async fn end_process_group(pid: Option<u32>) {
    #[cfg(unix)]
    {
        use rustix::process::{Pid, Signal, kill_process_group};
        let Some(group) = pid.and_then(|p| Pid::from_raw(p as i32)) else {
            return;
        };
        // An error here means nobody is left in the group.
        if kill_process_group(group, Signal::TERM).is_ok() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// reqwest is built without a default TLS crypto provider; use ring's (once per process).
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn a_missing_working_directory_is_named_not_blamed_on_the_command() {
        let not_found = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = spawn_error("python3", Some(Path::new("/nonexistent/dir")), &not_found);
        assert!(
            e.to_string()
                .contains("`cwd` /nonexistent/dir is not a directory"),
            "{e}"
        );
        let e = spawn_error("no-such-command", Some(Path::new("/")), &not_found);
        assert!(e.to_string().contains("\"no-such-command\""), "{e}");
        assert!(!e.to_string().contains("cwd"), "{e}");
    }
}
