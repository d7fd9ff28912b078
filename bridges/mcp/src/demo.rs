//! `openagentio-mcp-demo`: a small MCP server (built with `rmcp`) for the
//! quickstart and the tests.
//!
//! ```text
//! openagentio-mcp-demo                     serve over stdio
//! openagentio-mcp-demo --http PORT         serve Streamable HTTP on 127.0.0.1:PORT/mcp
//!                      [--host ADDR]       ... on ADDR instead (0.0.0.0 in a container)
//!                      [--token TOKEN]     ... and require `Authorization: Bearer TOKEN`
//! ```
//!
//! Tools: `echo` (its text back), `add` (a + b, with structured content),
//! `slow` (sleeps in steps, reports progress, stops when cancelled), `fail`
//! (an `isError` result, or a chosen JSON-RPC error), `image` (a tiny PNG),
//! `meta` (the request's `_meta`), `stats` (sessions, calls and cancellations seen),
//! `register_tool` / `unregister_tool` (add or remove a tool and send
//! `notifications/tools/list_changed`), `dotted.name tool` (a name that is
//! not a subject token) and `forget_session` (over HTTP, the server drops the
//! caller's session: it expires). `tools/list` answers in pages of four.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, ServiceExt};
use serde_json::{Value, json};

/// Tools per `tools/list` page.
const PAGE: usize = 4;

/// A 1x1 transparent PNG.
const PNG_1X1: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

/// State shared by every session of one server process.
#[derive(Default)]
struct State {
    calls: AtomicU64,
    sessions: AtomicU64,
    cancelled: AtomicU64,
    extra: RwLock<BTreeSet<String>>,
}

#[derive(Clone)]
struct Demo {
    state: Arc<State>,
    /// The HTTP session manager, to forget sessions on request (HTTP only).
    sessions: Option<Arc<LocalSessionManager>>,
}

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

fn static_tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "echo",
            "Returns its text.",
            schema(
                json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
            ),
        ),
        Tool::new(
            "add",
            "Adds two numbers; the sum is also structured content.",
            schema(
                json!({"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"], "additionalProperties": false}),
            ),
        ),
        Tool::new(
            "slow",
            "Sleeps `seconds` in `steps`, reporting progress; stops when cancelled.",
            schema(
                json!({"type": "object", "properties": {"seconds": {"type": "number", "minimum": 0}, "steps": {"type": "integer", "minimum": 1}}}),
            ),
        ),
        Tool::new(
            "fail",
            "Fails: `mode` tool (isError, the default), invalid_params, method_not_found or internal.",
            schema(
                json!({"type": "object", "properties": {"message": {"type": "string"}, "mode": {"enum": ["tool", "invalid_params", "method_not_found", "internal"]}}}),
            ),
        ),
        Tool::new(
            "image",
            "Returns a tiny PNG.",
            schema(json!({"type": "object"})),
        ),
        Tool::new(
            "meta",
            "Returns the request's _meta as structured content.",
            schema(json!({"type": "object"})),
        ),
        Tool::new(
            "stats",
            "Sessions, calls and cancellations this process has seen.",
            schema(json!({"type": "object"})),
        ),
        Tool::new(
            "register_tool",
            "Adds a tool named `name` (it echoes its arguments) and announces the change.",
            schema(
                json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
            ),
        ),
        Tool::new(
            "unregister_tool",
            "Removes a tool added by register_tool and announces the change.",
            schema(
                json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
            ),
        ),
        Tool::new(
            "dotted.name tool",
            "A tool whose name is not a subject token.",
            schema(json!({"type": "object"})),
        ),
        Tool::new(
            "forget_session",
            "Over HTTP: the server forgets the caller's session shortly after answering (it expires).",
            schema(json!({"type": "object"})),
        ),
    ]
}

impl Demo {
    fn tools(&self) -> Vec<Tool> {
        let mut tools = static_tools();
        for name in self.state.extra.read().iter() {
            tools.push(Tool::new(
                name.clone(),
                "Added at run time; echoes its arguments.",
                schema(json!({"type": "object"})),
            ));
        }
        tools
    }

    async fn slow(&self, args: &JsonObject, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        let seconds = args.get("seconds").and_then(Value::as_f64).unwrap_or(5.0);
        let steps = args
            .get("steps")
            .and_then(Value::as_u64)
            .unwrap_or(5)
            .max(1);
        let step = Duration::from_secs_f64(seconds / steps as f64);
        let token = ctx.meta.get_progress_token();
        for i in 1..=steps {
            tokio::select! {
                _ = tokio::time::sleep(step) => {}
                _ = ctx.ct.cancelled() => {
                    self.state.cancelled.fetch_add(1, Ordering::SeqCst);
                    eprintln!("slow: cancelled after {} of {steps} steps", i - 1);
                    return CallToolResult::error(vec![ContentBlock::text("cancelled")]);
                }
            }
            if let Some(t) = &token {
                let p = ProgressNotificationParam::new(t.clone(), i as f64)
                    .with_total(steps as f64)
                    .with_message(format!("step {i} of {steps}"));
                let _ = ctx.peer.notify_progress(p).await;
            }
        }
        CallToolResult::success(vec![ContentBlock::text(format!(
            "slept {seconds} s in {steps} steps"
        ))])
    }

    fn forget_session(&self, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        let id = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map(Arc::<str>::from);
        let (Some(id), Some(sessions)) = (id, self.sessions.clone()) else {
            return CallToolResult::error(vec![ContentBlock::text("no HTTP session to forget")]);
        };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = sessions.close_session(&id).await;
            eprintln!("forgot session {id}");
        });
        CallToolResult::success(vec![ContentBlock::text("forgetting the session")])
    }

    async fn change_tools(
        &self,
        args: &JsonObject,
        ctx: &RequestContext<RoleServer>,
        add: bool,
    ) -> CallToolResult {
        let name = args
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let changed = if add {
            self.state.extra.write().insert(name.clone())
        } else {
            self.state.extra.write().remove(&name)
        };
        if changed {
            let _ = ctx.peer.notify_tool_list_changed().await;
        }
        CallToolResult::success(vec![ContentBlock::text(format!(
            "{} {name}",
            if add { "registered" } else { "unregistered" }
        ))])
    }
}

impl ServerHandler for Demo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(
            "openagentio-mcp-demo",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions("A demo server of OpenAgentIO for Rust.")
    }

    async fn on_initialized(&self, _ctx: rmcp::service::NotificationContext<RoleServer>) {
        self.state.sessions.fetch_add(1, Ordering::SeqCst);
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = self.tools();
        let start: usize = request
            .and_then(|r| r.cursor)
            .map(|c| {
                c.parse()
                    .map_err(|_| ErrorData::invalid_params("bad cursor", None))
            })
            .transpose()?
            .unwrap_or(0);
        let end = (start + PAGE).min(tools.len());
        Ok(ListToolsResult {
            tools: tools
                .get(start..end)
                .map(<[Tool]>::to_vec)
                .unwrap_or_default(),
            next_cursor: (end < tools.len()).then(|| end.to_string()),
            ..Default::default()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.state.calls.fetch_add(1, Ordering::SeqCst);
        let args = request.arguments.clone().unwrap_or_default();
        let result = match request.name.as_ref() {
            "echo" => {
                let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
                CallToolResult::success(vec![ContentBlock::text(text)])
            }
            "add" => {
                let (Some(a), Some(b)) = (
                    args.get("a").and_then(Value::as_f64),
                    args.get("b").and_then(Value::as_f64),
                ) else {
                    return Err(ErrorData::invalid_params("a and b must be numbers", None));
                };
                let mut r = CallToolResult::structured(json!({"sum": a + b}));
                r.content = vec![ContentBlock::text(format!("{}", a + b))];
                r
            }
            "slow" => self.slow(&args, &ctx).await,
            "fail" => {
                let message = args
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the tool failed")
                    .to_owned();
                match args.get("mode").and_then(Value::as_str).unwrap_or("tool") {
                    "invalid_params" => return Err(ErrorData::invalid_params(message, None)),
                    "method_not_found" => {
                        return Err(ErrorData::new(
                            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                            message,
                            None,
                        ));
                    }
                    "internal" => return Err(ErrorData::internal_error(message, None)),
                    _ => CallToolResult::error(vec![ContentBlock::text(message)]),
                }
            }
            "image" => CallToolResult::success(vec![
                ContentBlock::text("a tiny image:"),
                ContentBlock::image(PNG_1X1, "image/png"),
            ]),
            "meta" => CallToolResult::structured(Value::Object(ctx.meta.0.0.clone())),
            "stats" => CallToolResult::structured(json!({
                "calls": self.state.calls.load(Ordering::SeqCst),
                "sessions": self.state.sessions.load(Ordering::SeqCst),
                "cancelled": self.state.cancelled.load(Ordering::SeqCst),
            })),
            "register_tool" => self.change_tools(&args, &ctx, true).await,
            "unregister_tool" => self.change_tools(&args, &ctx, false).await,
            "dotted.name tool" => CallToolResult::success(vec![ContentBlock::text("dotted")]),
            "forget_session" => self.forget_session(&ctx),
            other if self.state.extra.read().contains(other) => {
                CallToolResult::structured(Value::Object(args))
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other}"),
                    None,
                ));
            }
        };
        Ok(CallToolResponse::Complete(result))
    }
}

/// Runs the demo server with command-line `args` (without the program name):
/// none for stdio, or `--http PORT [--host ADDR] [--token TOKEN]` for Streamable
/// HTTP at `http://ADDR:PORT/mcp` (ADDR defaults to 127.0.0.1).
pub async fn run(args: Vec<String>) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    const USAGE: &str = "usage: openagentio-mcp-demo [--http PORT [--host ADDR] [--token TOKEN]]";
    let mut args = args.into_iter();
    let (mut port, mut host, mut token): (Option<u16>, String, Option<String>) =
        (None, "127.0.0.1".to_owned(), None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--http" => port = Some(args.next().and_then(|p| p.parse().ok()).ok_or(USAGE)?),
            "--host" => host = args.next().ok_or(USAGE)?,
            "--token" => token = Some(args.next().ok_or(USAGE)?),
            _ => return Err(USAGE.into()),
        }
    }
    let state = Arc::new(State::default());
    match port {
        None => {
            let demo = Demo {
                state,
                sessions: None,
            };
            let server = demo.serve(rmcp::transport::stdio()).await?;
            server.waiting().await?;
        }
        Some(port) => serve_http(state, &host, port, token).await?,
    }
    Ok(())
}

async fn serve_http(
    state: Arc<State>,
    host: &str,
    port: u16,
    token: Option<String>,
) -> std::io::Result<()> {
    // rmcp accepts only loopback `Host` headers by default (DNS rebinding
    // protection); bound to a non-loopback address (a container), the server is
    // reached by other names (`mcp:8000`), so the check is lifted there.
    let loopback = host
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(host == "localhost");
    let server_config = if loopback {
        StreamableHttpServerConfig::default()
    } else {
        StreamableHttpServerConfig::default().disable_allowed_hosts()
    };
    let sessions = Arc::new(LocalSessionManager::default());
    let manager = sessions.clone();
    let service = StreamableHttpService::new(
        move || {
            Ok(Demo {
                state: state.clone(),
                sessions: Some(manager.clone()),
            })
        },
        sessions,
        server_config,
    );
    let expected = token.map(|t| format!("Bearer {t}"));
    let app = axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let expected = expected.clone();
                async move {
                    if let Some(want) = expected {
                        let got = req
                            .headers()
                            .get(http::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok());
                        if got != Some(want.as_str()) {
                            return axum::response::IntoResponse::into_response((
                                http::StatusCode::UNAUTHORIZED,
                                "missing or wrong bearer token",
                            ));
                        }
                    }
                    next.run(req).await
                }
            },
        ));
    let listener = tokio::net::TcpListener::bind((host, port)).await?;
    eprintln!(
        "openagentio-mcp-demo listening on http://{}/mcp",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
