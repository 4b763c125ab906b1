//! The HTTP edge's errors and the one place they become status codes (engine errors know
//! nothing of HTTP).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, LogError};

/// Why a request failed; the body is `{"error": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpError {
    /// Malformed input: bad query, bad JSON, an offset past the end (400).
    #[error("{0}")]
    BadRequest(String),
    /// No token, or one the server does not know (401).
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The token may not use this channel (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, e.g. long polling a channel that is not durable (404).
    #[error("{0}")]
    NotFound(String),
    /// The engine cannot take writes now: closed, poisoned, disk full (503).
    #[error("{0}")]
    Unavailable(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl HttpError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn forbidden(action: &str, channel: &str) -> Self {
        Self::Forbidden(format!("this token may not {action} '{channel}'"))
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        match &e {
            Error::Log(LogError::InvalidTopicName { .. } | LogError::RecordTooLarge { .. }) => {
                Self::BadRequest(e.to_string())
            }
            Error::Log(LogError::OffsetOutOfRange { .. }) => Self::BadRequest(e.to_string()),
            Error::Log(
                LogError::Closed | LogError::Poisoned { .. } | LogError::StorageFull { .. },
            ) => Self::Unavailable(e.to_string()),
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl From<LogError> for HttpError {
    fn from(e: LogError) -> Self {
        Error::Log(e).into()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        if self == Self::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
