//! API errors: every failure becomes a status and a JSON body `{"error": {"code", "message"}}`,
//! engine failures in one mapping (`From<EngineError>`), axum's rejections likewise.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::engine::{EngineError, ErrorKind};

/// An API failure, with its HTTP status and stable code.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after: None }
    }
    pub(super) fn retry(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }
    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The one place where engine failures become HTTP statuses.
impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        use StatusCode as S;
        let (kind, code) = e.kind();
        let status = match kind {
            ErrorKind::Invalid => S::BAD_REQUEST,
            ErrorKind::NotFound => S::NOT_FOUND,
            ErrorKind::Conflict => S::CONFLICT,
            ErrorKind::TooLarge => S::PAYLOAD_TOO_LARGE,
            ErrorKind::Unsupported => S::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unprocessable => S::UNPROCESSABLE_ENTITY,
            ErrorKind::Unavailable => S::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => S::INTERNAL_SERVER_ERROR,
        };
        if matches!(kind, ErrorKind::Internal | ErrorKind::Unavailable) {
            // Details go to the operator's log, not to the client.
            tracing::error!("{code}: {e}");
            return ApiError::new(status, code, "the server could not complete this; see its log");
        }
        ApiError::new(status, code, e.to_string())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        let code = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "not_json",
            _ => "invalid_json",
        };
        ApiError::new(e.status(), code, e.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(e: axum::extract::rejection::PathRejection) -> Self {
        ApiError::bad_request("invalid_path", e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::bad_request("invalid_query", e.body_text())
    }
}

impl From<axum::extract::multipart::MultipartRejection> for ApiError {
    fn from(e: axum::extract::multipart::MultipartRejection) -> Self {
        ApiError::new(e.status(), "invalid_multipart", e.body_text())
    }
}

/// An axum extractor whose rejection is answered with the JSON error body (axum's own
/// rejections are plain text), so that every error has the same shape.
pub(super) struct Checked<E>(pub(super) E);

impl<S: Send + Sync, E: axum::extract::FromRequest<S>> axum::extract::FromRequest<S> for Checked<E>
where
    ApiError: From<E::Rejection>,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Ok(Checked(E::from_request(req, state).await?))
    }
}

impl<S: Send + Sync, E: axum::extract::FromRequestParts<S>> axum::extract::FromRequestParts<S> for Checked<E>
where
    ApiError: From<E::Rejection>,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        Ok(Checked(E::from_request_parts(parts, state).await?))
    }
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorBody {
    error: ErrorDetail,
}

/// A stable machine-readable code and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorDetail {
    /// Stable code, e.g. `missing_key`, `forbidden`, `bad_image`, `busy`, `rate_limited`.
    code: String,
    message: String,
}
