//! The request body: JSON of at most `body_limit` bytes that becomes the payload.
//!
//! - An empty body (or JSON `null`) is a `null` payload.
//! - A body that is not JSON answers 400 `INVALID_REQUEST` naming the parse error.
//! - A body over the limit answers 413 with code `INVALID_REQUEST`. The rest of
//!   an oversized body is read and dropped (up to a bound) before the answer,
//!   so that a client still sending sees the 413 rather than a reset connection.
//! - Content types: none, `application/json`, any `+json` type and `text/plain`
//!   are taken as JSON, and so is `application/x-www-form-urlencoded`, which
//!   `curl -d` sends by default (the reference adapter ignores the content type
//!   altogether). Anything else (`multipart/form-data`, `application/xml`, ...)
//!   answers 415 with code `INVALID_REQUEST`, as does a `Content-Encoding`
//!   other than `identity` (a gzip body would otherwise read as broken JSON).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use futures::StreamExt;
use openagentio_core::BusError;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// Deepest body (arrays and objects) taken: what an envelope's decoder
/// reads (127 levels, the envelope one of them), less the envelope and the
/// `{"result": ...}` a stream's final frame puts around an answer. A deeper
/// one would pass here and fail on the bus, or in its answer.
const MAX_BODY_DEPTH: usize = 125;

/// How deeply `v` nests arrays and objects (a scalar is 0).
fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|c| (c, d + 1))),
            _ => continue,
        }
        deepest = deepest.max(d);
    }
    deepest
}

/// How many `read_timeout`s a whole body may take to arrive.
const BODY_TIME_FACTOR: u32 = 10;

/// Bytes of an oversized body read and dropped before answering 413.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
/// Time spent reading and dropping an oversized body before answering 413.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The request body as a payload (`None` for an empty body or `null`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct JsonPayload(pub Option<Value>);

impl JsonPayload {
    /// The payload, `null` when absent.
    pub(crate) fn into_value(self) -> Value {
        self.0.unwrap_or(Value::Null)
    }
}

impl FromRequest<AppState> for JsonPayload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let cfg = state.config();
        read_json(&parts.headers, body, cfg.body_limit, cfg.read_timeout)
            .await
            .map(JsonPayload)
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    // A compressed body would be read as broken JSON ("not UTF-8"): say why.
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let encoding = String::from_utf8_lossy(encoding.as_bytes());
        if !encoding.trim().eq_ignore_ascii_case("identity") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                BusError::invalid(format!(
                    "unsupported content encoding {:?}: send the body uncompressed",
                    encoding.trim()
                )),
            ));
        }
    }
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = v.to_str().unwrap_or("").trim();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok = essence.is_empty()
        || essence == "application/json"
        || essence.ends_with("+json")
        || essence == "text/plain"
        || essence == "application/x-www-form-urlencoded";
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            BusError::invalid(format!(
                "unsupported content type {ct:?}: send the payload as application/json"
            )),
        ))
    }
}

/// Reads and parses the body.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    read_timeout: Duration,
) -> Result<Option<Value>, ApiError> {
    check_content_type(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(DRAIN_BYTES)) {
        // Too large to be worth draining: answer at once (the connection closes).
        return Err(ApiError::payload_too_large(limit));
    }
    let mut data = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut frames = body.into_data_stream();
    // A client that stalls while sending its body must not hold the
    // connection (and the handler's place) for ever: `read_timeout` without
    // a byte is a stall. A slow upload that keeps coming may take ten
    // times that in all.
    let started = tokio::time::Instant::now();
    let whole = read_timeout.saturating_mul(BODY_TIME_FACTOR);
    loop {
        let until = (tokio::time::Instant::now() + read_timeout).min(started + whole);
        let chunk = match tokio::time::timeout_at(until, frames.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                let why = if tokio::time::Instant::now() >= started + whole {
                    format!("the request body did not arrive within {whole:?}")
                } else {
                    format!("the request body stalled: nothing came for {read_timeout:?}")
                };
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    BusError::invalid(why),
                ));
            }
        };
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
        if data.len() + chunk.len() > limit {
            drain(&mut frames, data.len() + chunk.len()).await;
            return Err(ApiError::payload_too_large(limit));
        }
        data.extend_from_slice(&chunk);
    }
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let text = std::str::from_utf8(&data)
        .map_err(|e| ApiError::bad_request(format!("body is not UTF-8: {e}")))?;
    match openagentio_core::codec::from_json_str::<Value>(text) {
        Ok(Value::Null) => Ok(None),
        Ok(v) => match depth(&v) {
            d if d > MAX_BODY_DEPTH => Err(ApiError::bad_request(format!(
                "body is nested {d} levels deep; at most {MAX_BODY_DEPTH} cross the bus (an \
                 envelope holds the payload, and a stream's final frame wraps it once more)"
            ))),
            _ => Ok(Some(v)),
        },
        Err(e) => Err(ApiError::bad_request(format!(
            "body is not valid JSON: {e}"
        ))),
    }
}

async fn drain(frames: &mut axum::body::BodyDataStream, mut read: usize) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = frames.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    async fn read(
        ct: Option<&str>,
        body: &'static str,
        limit: usize,
    ) -> Result<Option<Value>, ApiError> {
        let mut h = HeaderMap::new();
        if let Some(ct) = ct {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        read_json(&h, Body::from(body), limit, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn empty_and_null_are_no_payload() {
        assert_eq!(read(None, "", 10).await.unwrap(), None);
        assert_eq!(
            read(Some("application/json"), " null ", 10).await.unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn refusals_have_clear_statuses() {
        assert_eq!(read(None, "{bad", 100).await.unwrap_err().status(), 400);
        assert_eq!(read(None, "[1,2,3]", 3).await.unwrap_err().status(), 413);
        assert_eq!(
            read(Some("application/xml"), "<a/>", 100)
                .await
                .unwrap_err()
                .status(),
            415
        );
        assert_eq!(
            read(
                Some("application/cloudevents+json; charset=utf-8"),
                "{}",
                100
            )
            .await
            .unwrap(),
            Some(serde_json::json!({}))
        );
    }

    #[tokio::test]
    async fn bodies_nested_deeper_than_the_bus_carries_are_refused() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let body = |n| Body::from(nested(n));
        let h = HeaderMap::new();
        let ok = read_json(&h, body(MAX_BODY_DEPTH), 1 << 20, Duration::from_secs(5)).await;
        assert!(ok.unwrap().is_some());
        let e = read_json(
            &h,
            body(MAX_BODY_DEPTH + 1),
            1 << 20,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.error().message().contains("126 levels deep"), "{e:?}");
        assert_eq!(depth(&serde_json::json!({"a": [1, {"b": 2}]})), 3);
        assert_eq!(depth(&serde_json::json!(1)), 0);
    }

    #[tokio::test]
    async fn a_compressed_body_is_refused_by_its_encoding() {
        let read_encoded = |encoding: &'static str| async move {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
            read_json(&h, Body::from("{}"), 100, Duration::from_secs(5)).await
        };
        let e = read_encoded("gzip").await.unwrap_err();
        assert_eq!(e.status(), 415);
        assert!(e.error().message().contains("\"gzip\""), "{e:?}");
        assert_eq!(
            read_encoded("identity").await.unwrap(),
            Some(serde_json::json!({}))
        );
    }
}
