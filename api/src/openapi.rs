//! The OpenAPI 3.1 document, generated from the handlers' annotations and the view types.

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
    components(schemas(problem::Problem, views::Status)),
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

/// The API's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
