//! The workload over HTTP, as the spec asks: `POST /booking/{key}/run` with the workflow's
//! input as its JSON body starts the `booking` workflow under custom id `key` and answers with
//! its result once it ends, so an HTTP load driver written for another engine drives Baton
//! unchanged. Starting the same key twice attaches to the same instance.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use baton::{Client, StartOptions, WorkflowError};
use serde_json::json;

use crate::workload::{BookingInput, BookingWorkflow, KEY};

/// How long a request waits for its workflow.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 200;

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

async fn run_booking(
    State(client): State<Client>,
    Path(key): Path<String>,
    input: Result<axum::Json<BookingInput>, JsonRejection>,
) -> Response {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(char::is_control) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("a key is 1 to {MAX_KEY_LEN} characters without control characters"),
        );
    }
    let input = match input {
        Ok(axum::Json(input)) => input,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body must be the booking input as JSON: {}", rejection.body_text()),
            );
        }
    };
    let options = StartOptions {
        custom_id: Some(key.clone()),
        meta: BTreeMap::from([(KEY.to_string(), key.clone())]),
        ..StartOptions::default()
    };
    let handle = match client.start_with::<BookingWorkflow>(&input, options).await {
        Ok(handle) => handle,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, format!("cannot start {key}: {e}")),
    };
    match handle.result_within(REQUEST_TIMEOUT).await {
        Ok(result) => axum::Json(result).into_response(),
        Err(WorkflowError::Client(baton::ClientError::Timeout(_))) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!("{key} did not end within {REQUEST_TIMEOUT:?}; it keeps running"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{key} did not complete: {e}"),
        ),
    }
}

/// The HTTP routes over a client.
pub fn router(client: Client) -> Router {
    Router::new()
        .route("/booking/{key}/run", post(run_booking))
        .with_state(client)
}
