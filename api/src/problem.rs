//! Errors as RFC 9457 problem details (`application/problem+json`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A problem detail: what went wrong, in a form both people and programs read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What exactly went wrong with this request.
    pub detail: String,
}

impl Problem {
    /// A problem with this status and detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }

    /// 400: the request is malformed (a query parameter, a path segment, a body).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: nothing under that name.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409: the request conflicts with the instance's state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 401: no valid credentials.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403: valid credentials that do not allow this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 503: a dependency (broker, store) does not answer.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// 504: the awaited answer did not come in time.
    pub fn timeout(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, detail)
    }

    /// 500: something failed that the caller cannot fix.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is left unread, so the server closes the connection after
            // this answer; saying so keeps a client from sending its next request on it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<baton_storage::StorageError> for Problem {
    fn from(e: baton_storage::StorageError) -> Self {
        if e.is_transient() {
            Problem::unavailable(format!("the store does not answer: {e}"))
        } else {
            Problem::internal(format!("the store failed: {e}"))
        }
    }
}

impl From<baton_client::ClientError> for Problem {
    fn from(e: baton_client::ClientError) -> Self {
        use baton_client::ClientError;
        match e {
            ClientError::UnknownWorkflow(id) => Problem::not_found(format!("instance {id} is unknown")),
            ClientError::InvalidInput(reason) => Problem::bad_request(reason),
            ClientError::Payload(e) => Problem::bad_request(e.to_string()),
            ClientError::Timeout(after) => Problem::timeout(format!("no answer within {after:?}")),
            ClientError::MethodFailed(failure) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("method failed: {}", failure.message),
            ),
            ClientError::Transport(e) => Problem::unavailable(format!("the broker does not answer: {e}")),
            ClientError::Closed => Problem::unavailable("the API is shutting down"),
        }
    }
}
