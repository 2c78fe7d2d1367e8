//! The one place errors become HTTP responses: RFC 9457 problem details
//! (`application/problem+json`) with a stable `code` clients can match on.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem details body.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `https://skynet.dev/problems/<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// A valid token whose principal lacks the role (or the right) for this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("rate limit exceeded; retry in {0} s")]
    RateLimited(u64),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A service's refusal of a command (its reply's `code`) as the HTTP error
    /// it means.
    pub fn refused(code: Option<&str>, message: String) -> ApiError {
        match code {
            Some("not_found") => ApiError::NotFound(message),
            Some("conflict") => ApiError::Conflict(message),
            Some("unavailable") => ApiError::Unavailable(message),
            Some("unauthorized") => ApiError::Unauthorized,
            Some("forbidden") => ApiError::Forbidden(message),
            _ => ApiError::Invalid(message),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", "Malformed request"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", "Invalid request"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Not found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict with the job's state"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", "Request body too large"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "Too many requests"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "A service did not answer"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }

    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        if status.is_server_error() {
            tracing::warn!(service = "api", code, error = %self, "request failed");
        }
        let body = Problem {
            kind: format!("https://skynet.dev/problems/{code}"),
            title: title.into(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: code.into(),
        };
        let mut resp = (status, serde_json::to_vec(&body).unwrap_or_default()).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let ApiError::RateLimited(secs) = self
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Unavailable(format!("read-model database: {e}"))
    }
}
