//! The OpenAPI 3.1 document, generated from the handlers' annotations and the view types.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{dead_letters, instances, problem, views};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Baton API",
        description = "List, search, inspect and repair Baton workflow instances; read and redrive dead letters. \
            Errors are application/problem+json. With api.tokens set, send `Authorization: Bearer <token>`: \
            a reader's token for GET, an operator's for every change.",
    ),
    paths(
        instances::workflows,
        instances::search,
        instances::instance,
        instances::history,
        instances::start,
        instances::run,
        instances::result,
        instances::signal,
        instances::call,
        instances::cancel,
        instances::retry_workflow_task,
        instances::retry_tasks,
        instances::complete_timers,
        instances::complete_task,
        instances::fail_task,
        dead_letters::topics,
        dead_letters::letters,
        dead_letters::letter,
        dead_letters::redrive_one,
        dead_letters::redrive_all,
        dead_letters::discard,
    ),
    components(schemas(problem::Problem, views::Status, views::Tag)),
    modifiers(&BearerAuth),
    tags(
        (name = "instances", description = "Workflow instances: list, read, start"),
        (name = "actions", description = "Changes to running instances and delegated tasks (operator)"),
        (name = "dead letters", description = "Messages that could not be processed"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The API's OpenAPI document, as served at `/openapi.json`.
///
/// Generated from the handlers' annotations, then completed with what every route shares,
/// so the annotations stay short: errors are `application/problem+json`; every route may
/// answer 401 (no or an unknown token), 500 and 503 (the broker or the store does not
/// answer); every change may answer 403 (a reader's token); a route with a body may answer
/// 415 (not sent as JSON) and 413 (larger than `api.max_body_bytes`); a route with parameters or a body may answer 400.
pub fn openapi() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else { continue };
            for (method, operation) in item.iter_mut() {
                complete(method, operation);
            }
        }
    }
    doc
}

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn complete(method: &str, operation: &mut Value) {
    let has_body = operation.get("requestBody").is_some();
    let has_params = operation
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    for response in responses.values_mut() {
        let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
            continue;
        };
        let is_problem = content
            .get("application/json")
            .and_then(|c| c.pointer("/schema/$ref"))
            .and_then(Value::as_str)
            .is_some_and(|r| r.ends_with("/Problem"));
        if is_problem {
            if let Some(json) = content.remove("application/json") {
                content.insert("application/problem+json".into(), json);
            }
        }
    }
    let mut defaults = vec![
        ("401", "No token, or one that is not in api.tokens"),
        (
            "429",
            "More requests from this caller than api.rate_limit_per_sec allows; see Retry-After",
        ),
        ("500", "Something failed that the caller cannot fix"),
        ("503", "The broker or the store does not answer"),
    ];
    if method != "get" {
        defaults.push(("403", "A reader's token: this change needs an operator's"));
    }
    if has_body {
        defaults.push(("415", "The body is not sent as JSON"));
        defaults.push(("413", "The body is larger than api.max_body_bytes"));
    }
    if has_body || has_params {
        defaults.push(("400", "A malformed parameter or body"));
    }
    for (status, description) in defaults {
        responses.entry(status).or_insert_with(|| problem(description));
    }
}
