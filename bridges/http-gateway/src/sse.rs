//! SSE framing of response envelopes, byte for byte as the reference adapter:
//!
//! ```text
//! event: <event_type>
//! id: <event_id>
//! retry: <milliseconds>
//! data: <the whole envelope as one line of JSON>
//!
//! ```
//!
//! `retry:` is written when configured (the reference writes 3000); `id:` is
//! left out when the envelope has no usable id.

use std::time::Duration;

use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use openagentio_core::{BusError, Envelope, codec, event_type::RESPONSE_ERROR};

/// The SSE event of one frame.
pub(crate) fn frame_event(env: &Envelope, retry: Option<Duration>) -> Event {
    let event_type = if env.event_type.is_empty() || has_line_break(&env.event_type) {
        "message"
    } else {
        env.event_type.as_str()
    };
    let mut ev = Event::default().event(event_type);
    if !env.event_id.is_empty() && !has_line_break(&env.event_id) && !env.event_id.contains('\0') {
        ev = ev.id(&env.event_id);
    }
    if let Some(r) = retry {
        ev = ev.retry(r);
    }
    // Compact JSON has no raw line breaks: one `data:` line.
    match codec::encode(env) {
        Ok(json) => ev.data(String::from_utf8_lossy(&json)),
        Err(_) => ev.data("{}"),
    }
}

/// The `text/event-stream` answer of `events` (`Cache-Control: no-cache` from
/// axum, `X-Accel-Buffering: no` so proxies pass each event on at once), with
/// keep-alive comments every `keep_alive`.
pub(crate) fn sse_response<S>(events: S, keep_alive: Option<Duration>) -> Response
where
    S: futures::Stream<Item = Result<Event, std::convert::Infallible>> + Send + 'static,
{
    let sse = Sse::new(events);
    let mut resp = match keep_alive {
        Some(every) => sse
            .keep_alive(KeepAlive::new().interval(every))
            .into_response(),
        None => sse.into_response(),
    };
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn has_line_break(s: &str) -> bool {
    s.contains(['\r', '\n'])
}

/// The `agent.response.error` frame that ends a stream which failed on this
/// side (timeout, backpressure, transport) after it started. `like` is a frame
/// of the same call, if one came: the error frame carries its session, trace,
/// addressing and metadata, as the handler's own frames do.
pub(crate) fn error_frame(
    err: &BusError,
    like: Option<&Envelope>,
    request_id: &str,
    seq: u64,
    from: &str,
) -> Envelope {
    let mut env = Envelope::new(RESPONSE_ERROR);
    if let Some(f) = like {
        env.trace_id.clone_from(&f.trace_id);
        env.span_id.clone_from(&f.span_id);
        env.traceparent.clone_from(&f.traceparent);
        env.session_id.clone_from(&f.session_id);
        env.conversation_id.clone_from(&f.conversation_id);
        env.to.clone_from(&f.to);
        env.channel.clone_from(&f.channel);
        env.tenant_id.clone_from(&f.tenant_id);
        env.user_id.clone_from(&f.user_id);
        env.metadata = f
            .metadata
            .iter()
            .filter(|(k, _)| !k.starts_with("acp."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    env.correlation_id = request_id.into();
    env.from = from.into();
    env.seq = seq;
    env.is_final = true;
    env.payload = serde_json::to_value(err.to_payload()).ok();
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use axum::response::sse::Sse;

    async fn render(ev: Event) -> String {
        let resp = Sse::new(futures::stream::iter([Ok::<_, std::convert::Infallible>(
            ev,
        )]))
        .into_response();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn framing_matches_the_reference() {
        let mut env = Envelope::new("agent.response.delta");
        env.event_id = "e1".into();
        let json = serde_json::to_string(&env).unwrap();
        let text = render(frame_event(&env, Some(Duration::from_secs(3)))).await;
        assert_eq!(
            text,
            format!("event: agent.response.delta\nid: e1\nretry: 3000\ndata: {json}\n\n")
        );
        let text = render(frame_event(&env, None)).await;
        assert_eq!(
            text,
            format!("event: agent.response.delta\nid: e1\ndata: {json}\n\n")
        );
    }

    #[tokio::test]
    async fn unsafe_ids_are_left_out() {
        let mut env = Envelope::new("agent.response.delta");
        env.event_id = "a\nb".into();
        let text = render(frame_event(&env, None)).await;
        assert!(
            text.starts_with("event: agent.response.delta\ndata: {"),
            "{text}"
        );
    }
}
