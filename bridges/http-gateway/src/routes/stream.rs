//! `POST /v1/agents/{target}/stream`: the frames of one call as server-sent events.
//!
//! The route waits up to `stream_start_wait` for the first frame. A failure in
//! that time (`NO_HANDLER`, a bad tenant, a transport failure) answers its JSON
//! error with the status of its code. Otherwise the answer is 200
//! `text/event-stream` (`Cache-Control: no-cache`, `X-Accel-Buffering: no`),
//! one event per frame (see [`crate::sse`]), ending after the terminal frame.
//! A failure after that point, including ones on this side such as a timeout,
//! arrives as a terminal `agent.response.error` frame. A client that leaves
//! early drops the bus stream, which tells the handler to stop.

use std::convert::Infallible;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::response::sse::Event;
use openagentio_core::event_type::RESPONSE_ERROR;
use openagentio_core::{BusError, Envelope, Stream};

use crate::body::JsonPayload;
use crate::error::ApiError;
use crate::headers::RequestContext;
use crate::routes::{no_query, path_param};
use crate::sse::{error_frame, frame_event, sse_response};
use crate::state::AppState;

pub(crate) async fn stream(
    State(state): State<AppState>,
    target: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    ctx: RequestContext,
    payload: JsonPayload,
) -> Result<Response, ApiError> {
    no_query(query.as_deref())?;
    let target = path_param(target)?;
    let cfg = state.config();
    let mut opts = ctx.call_options();
    opts.timeout = ctx.timeout.or(cfg.default_timeout);
    opts.idle_timeout = cfg.idle_timeout;
    let mut stream = state
        .bus()
        .stream_invoke_with(&target, payload.into_value(), opts)
        .await?;
    // `Stream::next` is cancel-safe: a frame that arrives later is not lost.
    let first = match tokio::time::timeout(cfg.stream_start_wait, stream.next()).await {
        Ok(Some(Ok(frame))) => Some(frame),
        Ok(Some(Err(e))) => return Err(e.into()),
        Ok(None) => {
            return Err(BusError::transport(format!(
                "{target}: the stream ended before its first frame"
            ))
            .into());
        }
        Err(_) => None,
    };
    let frames = Frames {
        stream,
        first,
        context: None,
        ctx,
        next_seq: 0,
        finished: false,
        state: state.clone(),
    };
    let events = futures::stream::unfold(frames, |mut f| async move {
        f.next_event()
            .await
            .map(|e| (Ok::<Event, Infallible>(e), f))
    });
    Ok(sse_response(events, cfg.sse_keep_alive))
}

/// The request's fields that its replies carry, as far as the gateway knows
/// them (the bus adds the trace).
fn request_context(ctx: &RequestContext) -> Envelope {
    let opts = ctx.call_options();
    let mut env = Envelope::new(RESPONSE_ERROR);
    let text = |v: &Option<String>| v.as_deref().unwrap_or_default().into();
    env.session_id = text(&opts.session);
    env.conversation_id = text(&opts.conversation);
    env.user_id = text(&opts.user);
    env.channel = text(&opts.channel);
    env.tenant_id = text(&opts.tenant);
    env.metadata = opts.metadata.clone();
    env
}

/// The frames of one call on their way out as SSE events.
struct Frames {
    stream: Stream,
    first: Option<Envelope>,
    /// What an error frame made here copies (session, trace, metadata): the
    /// first frame, payload left out; until one comes, the request's fields
    /// known here (from `ctx`).
    context: Option<Envelope>,
    ctx: RequestContext,
    next_seq: u64,
    finished: bool,
    state: AppState,
}

impl Frames {
    async fn next_event(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        let frame = match self.first.take() {
            Some(f) => Ok(f),
            None => match self.stream.next().await {
                Some(r) => r,
                None => {
                    self.finished = true;
                    return None;
                }
            },
        };
        let env = match frame {
            Ok(mut env) => {
                if self.context.is_none() {
                    let payload = env.payload.take();
                    self.context = Some(env.clone());
                    env.payload = payload;
                }
                env
            }
            Err(e) => error_frame(
                &e,
                Some(
                    self.context
                        .get_or_insert_with(|| request_context(&self.ctx)),
                ),
                self.stream.request_id(),
                self.next_seq,
                self.state.bus().agent_id(),
            ),
        };
        self.next_seq = env.seq + 1;
        if env.is_terminal() {
            self.finished = true;
        }
        self.state.metrics().sse_frame();
        Some(frame_event(&env, self.state.config().sse_retry))
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        if !self.finished {
            // The client left; dropping `self.stream` tells the handler to stop.
            self.state.metrics().stream_disconnected();
        }
    }
}
