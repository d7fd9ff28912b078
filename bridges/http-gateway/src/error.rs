//! Error answers: a wire [`ErrorCode`] mapped to an HTTP status, as JSON
//! `{"code", "message", "retryable"}` (plus `cause` when there is one).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openagentio_core::{BusError, ErrorCode};
use serde_json::{Map, Value};

/// The HTTP status of a wire error code, as the reference adapter maps it:
/// `AUTH_FAILURE` 401, `INVALID_REQUEST` 400, `NO_HANDLER` 404,
/// `AGENT_TIMEOUT` 504, `AGENT_UNAVAILABLE` and `TRANSPORT_FAILURE` 502,
/// `BACKPRESSURE_DROP` 429, `CODEC_FAILURE` 500.
///
/// ```
/// use axum::http::StatusCode;
/// use openagentio_core::ErrorCode;
/// use openagentio_http_gateway::status_for_code;
/// assert_eq!(status_for_code(ErrorCode::AgentTimeout), StatusCode::GATEWAY_TIMEOUT);
/// ```
pub fn status_for_code(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::AuthFailure => StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NoHandler => StatusCode::NOT_FOUND,
        ErrorCode::AgentTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::AgentUnavailable | ErrorCode::TransportFailure => StatusCode::BAD_GATEWAY,
        ErrorCode::BackpressureDrop => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::CodecFailure => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer of the gateway: a status and the JSON body
/// `{"code", "message", "retryable", "cause"?}`.
///
/// Most come from a [`BusError`] (status by [`status_for_code`]); the gateway's
/// own refusals use a more precise status with the nearest wire code (413 and
/// 415 with `INVALID_REQUEST`, 403 with `AUTH_FAILURE`, 404 and 405 for
/// unknown routes with `INVALID_REQUEST`).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    status: StatusCode,
    error: BusError,
}

impl ApiError {
    /// An answer with `status` for `error`.
    pub fn new(status: StatusCode, error: BusError) -> Self {
        ApiError { status, error }
    }

    /// `INVALID_REQUEST` with status 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        BusError::invalid(message).into()
    }

    /// `INVALID_REQUEST` with status 413: the body is larger than the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            BusError::invalid(format!("body exceeds the limit of {limit} bytes")),
        )
    }

    /// `AUTH_FAILURE` with status 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        BusError::auth(message).into()
    }

    /// `AUTH_FAILURE` with status 403: the credentials are good but may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, BusError::auth(message))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error carried.
    pub fn error(&self) -> &BusError {
        &self.error
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        let mut m = Map::new();
        let code = (self.error.unknown_code()).unwrap_or(self.error.code().as_str());
        m.insert("code".into(), code.into());
        m.insert("message".into(), self.error.message().into());
        m.insert("retryable".into(), self.error.retryable().into());
        if let Some(cause) = self.error.cause() {
            m.insert("cause".into(), cause.clone());
        }
        Value::Object(m)
    }
}

impl From<BusError> for ApiError {
    fn from(error: BusError) -> Self {
        // A code this version does not know: 500, as the reference adapter answers it.
        let status = match error.unknown_code() {
            Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
            None => status_for_code(error.code()),
        };
        ApiError { status, error }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// Fallback of unknown paths: 404 with the JSON error shape.
pub(crate) async fn route_not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        BusError::invalid(format!("no route for {method} {}", uri.path())),
    )
}

/// Fallback of known paths called with another method: 405 with the JSON error shape.
pub(crate) async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        BusError::invalid(format!("{} does not take {method}", uri.path())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_status() {
        let expect = [
            (ErrorCode::AuthFailure, 401),
            (ErrorCode::InvalidRequest, 400),
            (ErrorCode::NoHandler, 404),
            (ErrorCode::AgentTimeout, 504),
            (ErrorCode::AgentUnavailable, 502),
            (ErrorCode::TransportFailure, 502),
            (ErrorCode::BackpressureDrop, 429),
            (ErrorCode::CodecFailure, 500),
        ];
        for (code, status) in expect {
            assert_eq!(status_for_code(code).as_u16(), status, "{code}");
        }
    }

    #[test]
    fn a_code_this_version_does_not_know_is_500_and_kept() {
        let e = ApiError::from(BusError::from_payload(&openagentio_core::ErrorPayload {
            code: "WEIRD_CODE".into(),
            message: "m".into(),
            retryable: false,
            cause: None,
        }));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.body()["code"], "WEIRD_CODE");
    }

    #[test]
    fn body_has_code_message_retryable() {
        let e = ApiError::from(BusError::timeout("slow"));
        assert_eq!(
            e.body(),
            serde_json::json!({"code": "AGENT_TIMEOUT", "message": "slow", "retryable": true})
        );
    }
}
