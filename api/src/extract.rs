//! Extractors whose rejections are problem details, so malformed paths, queries and bodies get
//! the same `application/problem+json` 400 as every other error.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Query parameters.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| Problem::bad_request(e.body_text()))
    }
}

fn unsupported() -> Problem {
    Problem::new(
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "the body must be JSON, sent with `Content-Type: application/json`",
    )
}

/// The answer to a body over `api.max_body_bytes` (the limit layer in the router refuses it
/// while it is read).
fn too_large() -> Problem {
    Problem::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "the body is larger than this API accepts (api.max_body_bytes)",
    )
}

/// Any JSON value as a body (a signal's value, a method's arguments). A missing or wrong
/// content type is 415; a body that is not JSON is 400.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(j) => Ok(Json(j.0)),
            Err(axum::extract::rejection::JsonRejection::MissingJsonContentType(_)) => Err(unsupported()),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(Problem::bad_request(e.body_text())),
        }
    }
}

/// A JSON object body read into `T`: an array, where serde would also accept one for a
/// struct, is refused, so a body means one thing only.
pub struct Object<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Object<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<serde_json::Value>::from_request(req, state).await?;
        object(value).map(Object)
    }
}

fn object<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Problem> {
    if !value.is_object() {
        return Err(Problem::bad_request("the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| Problem::bad_request(format!("the body is not the expected JSON: {e}")))
}

/// A JSON object body that may be left out: an empty body is `T::default()`.
pub struct JsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for JsonOrEmpty<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                Problem::bad_request(e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonOrEmpty(T::default()));
        }
        if !json_type {
            return Err(Problem::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON, sent with `Content-Type: application/json`",
            ));
        }
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Problem::bad_request(format!("the body is not JSON: {e}")))?;
        object(value).map(JsonOrEmpty)
    }
}
