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
//! rmcp re-initialises it in place and retries the request.
//!
//! The client itself: no connection reuse (rmcp's choice, to avoid delayed-ACK
//! stalls), `TCP_NODELAY`, no redirects, no proxy from the environment.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
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

    fn watch_post(
        &self,
        r: Result<StreamableHttpPostResponse, Error>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        match r {
            Ok(StreamableHttpPostResponse::Sse(stream, session)) => {
                Ok(StreamableHttpPostResponse::Sse(self.watch(stream), session))
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
        let r = self
            .inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await;
        self.watch_post(r)
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
        self.watch_post(r)
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
