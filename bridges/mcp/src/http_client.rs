//! The HTTP client under the Streamable HTTP transport: rmcp's reqwest client,
//! watched for signs that the server is gone.
//!
//! rmcp reconnects broken SSE streams by itself, waiting the server's `retry`
//! interval (seconds) between attempts, so calls in flight on a server that
//! died would wait for their timeout. This wrapper marks the connection lost
//! (failing every call in flight at once, and making the bridge connect anew)
//! as soon as:
//! - an SSE stream (a call's response stream or the standalone GET stream)
//!   ends with an error, as a stream cut by a dying server does;
//! - reopening a stream fails to connect.
//!
//! A session the server forgot (HTTP 404 on a POST) is not a lost connection:
//! rmcp re-initialises it in place and retries the request. Nor is an answer
//! too large to read (an SSE event over rmcp's limit, 16 MiB) on a request's
//! own stream: that request gets a JSON-RPC error saying so, and the calls
//! beside it go on.
//!
//! The client itself: no connection reuse (rmcp's choice, to avoid delayed-ACK
//! stalls), `TCP_NODELAY`, no redirects, no proxy from the environment.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, RequestId};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::Sse;

use crate::upstream::ConnEvents;

type Error = StreamableHttpError<reqwest::Error>;

/// A reqwest client whose failures tell the connection it is lost.
#[derive(Clone)]
pub(crate) struct WatchedClient {
    inner: reqwest::Client,
    events: Arc<ConnEvents>,
}

impl WatchedClient {
    pub(crate) fn new(events: Arc<ConnEvents>) -> Result<Self, reqwest::Error> {
        let inner = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(WatchedClient { inner, events })
    }

    fn watch(
        &self,
        stream: BoxStream<'static, Result<Sse, SseError>>,
    ) -> BoxStream<'static, Result<Sse, SseError>> {
        let events = self.events.clone();
        stream
            .inspect(move |item| {
                if let Err(e) = item {
                    events.lose(format!("the server's event stream broke: {e}"));
                }
            })
            .boxed()
    }

    /// A request's own answer stream: an event too large to read answers
    /// that request (`id`) with an error instead of losing the connection.
    fn watch_answer(
        &self,
        stream: BoxStream<'static, Result<Sse, SseError>>,
        id: RequestId,
    ) -> BoxStream<'static, Result<Sse, SseError>> {
        let events = self.events.clone();
        stream
            .map(move |item| match item {
                Err(e) if is_too_large(&e) => Ok(Sse {
                    event: None,
                    data: Some(too_large_answer(&id, &e)),
                    id: None,
                    retry: None,
                }),
                Err(e) => {
                    events.lose(format!("the server's event stream broke: {e}"));
                    Err(e)
                }
                ok => ok,
            })
            .boxed()
    }

    fn watch_post(
        &self,
        id: Option<RequestId>,
        r: Result<StreamableHttpPostResponse, Error>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        match r {
            Ok(StreamableHttpPostResponse::Sse(stream, session)) => {
                let stream = match id {
                    Some(id) => self.watch_answer(stream, id),
                    None => self.watch(stream),
                };
                Ok(StreamableHttpPostResponse::Sse(stream, session))
            }
            Err(e) => {
                // Nobody there is not an answer that is not MCP.
                if let StreamableHttpError::Client(r) = &e
                    && r.is_connect()
                {
                    self.events
                        .lose(format!("the MCP server cannot be reached ({})", causes(r)));
                } else {
                    *self.events.post_failure.lock() = Some(e.to_string());
                }
                Err(e)
            }
            other => other,
        }
    }

    fn watch_get(
        &self,
        r: Result<BoxStream<'static, Result<Sse, SseError>>, Error>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        match r {
            Ok(stream) => Ok(self.watch(stream)),
            Err(e) => {
                if unreachable(&e) {
                    self.events.lose("the MCP server cannot be reached");
                }
                Err(e)
            }
        }
    }
}

/// An error with its causes (reqwest keeps "connection refused" in them).
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// Whether an SSE stream failed on an event over rmcp's size limit (its
/// error type is private: its message is what there is to go by).
fn is_too_large(e: &SseError) -> bool {
    e.to_string().contains("exceeded the maximum size")
}

/// A JSON-RPC error answering request `id` whose answer was too large.
fn too_large_answer(id: &RequestId, e: &SseError) -> String {
    let id = match id {
        RequestId::Number(n) => serde_json::Value::from(*n),
        RequestId::String(s) => serde_json::Value::from(s.as_ref()),
    };
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32603,
            "message": format!("the server's answer is too large to read ({e})"),
        },
    })
    .to_string()
}

/// The id of `message` when it is a request (which awaits an answer).
fn request_id(message: &ClientJsonRpcMessage) -> Option<RequestId> {
    match message {
        ClientJsonRpcMessage::Request(r) => Some(r.id.clone()),
        _ => None,
    }
}

/// Whether a failed request means the server cannot be reached.
fn unreachable(e: &Error) -> bool {
    matches!(e, StreamableHttpError::Client(r) if r.is_connect())
}

impl StreamableHttpClient for WatchedClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let id = request_id(&message);
        let r = self
            .inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await;
        self.watch_post(id, r)
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Error> {
        let id = request_id(&message);
        let r = self
            .inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.watch_post(id, r)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let r = self
            .inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await;
        self.watch_get(r)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let r = self
            .inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await;
        self.watch_get(r)
    }
}
