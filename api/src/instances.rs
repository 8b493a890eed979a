//! Routes on workflow instances: list and search them, read one and its history, start them,
//! and act on them (signal, call, cancel, retry, complete timers and delegated tasks).
//!
//! Reads come from the store the engine writes (the index, the records); changes go to the
//! engine as messages through the client, as the CLI sends them.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use baton_client::StartOptions;
use baton_shared_schemas::messages::TaskFilter;
use baton_shared_schemas::{FailureKind, HistoryEvent, Payload, TaskId, Timestamp, WorkflowId, codec};
use baton_storage::InstanceQuery;
use baton_workflow_engine::{PendingKind, Record, WorkflowState};
use serde_json::Value;

use crate::extract::{Json, JsonOrEmpty, Object, Path, Query};
use crate::problem::Problem;
use crate::views::{
    Accepted, CancelRequest, CompleteTaskRequest, FailTaskRequest, FailureView, HistoryEntry, HistoryPage,
    HistoryParams, InstanceDetail, InstancePage, InstanceSearch, InstanceSummary, MethodResult, OutcomeView,
    PendingView, RetryTasksRequest, RunResult, StartRequest, Started, WaitParams, WorkflowCounts, payload_json,
    readable,
};
use crate::{Api, ApiResult};

fn parse_id(id: &str) -> Result<WorkflowId, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request(format!("`{id}` is not an instance id (a UUID)")))
}

fn parse_task_id(id: &str) -> Result<TaskId, Problem> {
    id.parse()
        .map_err(|_| Problem::bad_request(format!("`{id}` is not a task id (a UUID)")))
}

fn check_name(what: &str, name: &str) -> Result<(), Problem> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(Problem::bad_request(format!(
            "{what} `{}` must be 1 to 256 characters without control characters",
            name.escape_debug()
        )));
    }
    Ok(())
}

impl Api {
    /// The instance's state as stored, or 404.
    pub(crate) async fn load(&self, id: WorkflowId) -> Result<(WorkflowState, u64), Problem> {
        let stored = self.inner.stores.workflows.load(id).await?.ok_or_else(|| {
            Problem::not_found(format!(
                "instance {id} is unknown (never started, or its retention ended)"
            ))
        })?;
        let state = WorkflowState::decode(id, &stored)
            .map_err(|e| Problem::internal(format!("the record of instance {id} does not decode: {e}")))?;
        Ok((state, stored.history.len() as u64))
    }

    fn wait_for(&self, timeout: Option<u64>) -> Result<Duration, Problem> {
        let max = self.inner.config.max_wait_secs;
        match timeout {
            None => Ok(Duration::from_secs(30.min(max))),
            Some(0) => Err(Problem::bad_request("timeout must be at least 1 second")),
            Some(t) if t > max => Err(Problem::bad_request(format!(
                "timeout {t} is above the longest wait, {max} seconds (api.max_wait_secs)"
            ))),
            Some(t) => Ok(Duration::from_secs(t)),
        }
    }

    /// Waits up to `timeout` for the instance to end, or to get stuck on a failed workflow
    /// task (then it waits for an operator, not for time, and the wait says so at once).
    async fn wait_outcome(&self, workflow: &str, id: WorkflowId, timeout: Duration) -> Result<OutcomeView, Problem> {
        let ended = self.inner.client.outcome_within(workflow, id, timeout);
        let stuck = async {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Ok((state, _)) = self.load(id).await {
                    if let Record::Running(r) = &state.head.record {
                        if let Some(failure) = &r.workflow_task_failure {
                            return failure.clone();
                        }
                    }
                }
            }
        };
        tokio::select! {
            outcome = ended => outcome
                .map(|o| OutcomeView::from(&o))
                .map_err(|e| match e {
                    baton_client::ClientError::Timeout(after) => Problem::timeout(format!(
                        "instance {id} has not ended within {after:?}; it keeps running: GET /api/v1/instances/{id}/result"
                    )),
                    other => other.into(),
                }),
            failure = stuck => Ok(OutcomeView {
                status: crate::views::Status::Stuck,
                output: None,
                failure: Some(FailureView::from(&failure)),
                reason: None,
            }),
        }
    }

    /// Refuses a service no tag engine completes delegated tasks of: a message for it would
    /// be published to a topic nobody consumes (and create that topic).
    fn check_service_known(&self, service: &str) -> Result<(), Problem> {
        check_name("service name", service)?;
        let known = &self.inner.known_services;
        if known.contains(service) {
            return Ok(());
        }
        let listed = if known.is_empty() {
            "none is configured".to_string()
        } else {
            format!("known: {}", known.iter().cloned().collect::<Vec<_>>().join(", "))
        };
        Err(Problem::not_found(format!(
            "no service `{service}` has its delegated tasks completed here ({listed}; \
             tag_engine.services and api.services list them)"
        )))
    }

    fn check_workflow_known(&self, workflow: &str) -> Result<(), Problem> {
        check_name("workflow name", workflow)?;
        let known = &self.inner.known_workflows;
        if !known.is_empty() && !known.contains(workflow) {
            return Err(Problem::not_found(format!(
                "no workflow `{workflow}` is deployed (known: {})",
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }
}

fn detail(state: &WorkflowState, history_length: u64) -> InstanceDetail {
    let view = state.status_view();
    let (meta, input, pending, parent, expires_at) = match &state.head.record {
        Record::Running(r) => (
            r.meta.clone(),
            Some(payload_json(&r.input)),
            pending_of(r),
            r.parent.as_ref().map(|p| p.workflow_id.to_string()),
            None,
        ),
        Record::Completed(c) => (
            c.resumable.as_ref().map(|r| r.meta.clone()).unwrap_or_default(),
            c.resumable.as_ref().map(|r| payload_json(&r.input)),
            Vec::new(),
            c.resumable
                .as_ref()
                .and_then(|r| r.parent.as_ref())
                .map(|p| p.workflow_id.to_string()),
            Some(c.expires_at.0),
        ),
    };
    InstanceDetail {
        id: state.id.to_string(),
        workflow: view.workflow_name.clone(),
        workflow_version: view.workflow_version,
        status: state.index_entry().status.into(),
        started_at: view.started_at.0,
        ended_at: view.ended_at.map(|t| t.0),
        expires_at,
        tags: view.tags.clone(),
        meta,
        input,
        workflow_tasks: view.workflow_tasks,
        workflow_task_failure: view.workflow_task_failure.as_ref().map(FailureView::from),
        pending,
        outcome: view.outcome.as_ref().map(OutcomeView::from),
        history_length,
        parent,
    }
}

fn pending_of(r: &baton_workflow_engine::RunningWorkflow) -> Vec<PendingView> {
    let mut pending: Vec<PendingView> = r
        .pending
        .values()
        .map(|p| PendingView {
            position: p.position,
            description: p.description.clone(),
            kind: match p.kind {
                PendingKind::Task { .. } => "task",
                PendingKind::Timer => "timer",
                PendingKind::Child { .. } => "child",
            }
            .to_string(),
        })
        .collect();
    pending.sort_by_key(|p| p.position);
    pending.extend(r.receives.iter().map(|receive| PendingView {
        position: u32::MAX,
        description: format!(
            "receive on `{}` ({} of {} taken)",
            receive.channel, receive.received, receive.limit
        ),
        kind: "receive".to_string(),
    }));
    pending
}

/// One history entry as JSON: its kind, its fields with payloads readable, and for a child
/// workflow the child's id, so a page can link to it.
fn entry(index: u64, event: &HistoryEvent) -> HistoryEntry {
    let kind = match event {
        HistoryEvent::WorkflowTaskStarted { .. } => "WorkflowTaskStarted",
        HistoryEvent::CommandRecorded { .. } => "CommandRecorded",
        HistoryEvent::ResultDelivered { .. } => "ResultDelivered",
        HistoryEvent::MethodCalled { .. } => "MethodCalled",
    };
    let mut detail = readable(event);
    // Externally tagged: `{"CommandRecorded": {...}}`; the kind is given beside it.
    if let Value::Object(map) = &mut detail {
        if let Some(inner) = map.remove(kind) {
            detail = inner;
        }
    }
    if let HistoryEvent::CommandRecorded { command, .. } = event {
        if let baton_shared_schemas::CommandSpec::ChildWorkflow { .. } = command.spec {
            if let Value::Object(map) = &mut detail {
                map.insert(
                    "childId".into(),
                    Value::String(command.command_id.child_workflow().to_string()),
                );
            }
        }
    }
    HistoryEntry {
        index,
        kind: kind.to_string(),
        detail,
    }
}

/// Workflows that have had instances, with counts per status.
#[utoipa::path(get, path = "/api/v1/workflows", tag = "instances",
    responses((status = 200, body = Vec<WorkflowCounts>), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn workflows(State(api): State<Api>) -> ApiResult<axum::Json<Vec<WorkflowCounts>>> {
    let counts = api.inner.stores.index.counts().await?;
    let mut listed: Vec<WorkflowCounts> = counts
        .into_iter()
        .map(|c| {
            let of = |s: baton_storage::InstanceStatus| {
                c.counts.iter().find(|(status, _)| *status == s).map_or(0, |(_, n)| *n)
            };
            use baton_storage::InstanceStatus as S;
            WorkflowCounts {
                running: of(S::Running),
                stuck: of(S::Stuck),
                completed: of(S::Completed),
                failed: of(S::Failed),
                cancelled: of(S::Cancelled),
                workflow: c.workflow,
            }
        })
        .collect();
    for known in &api.inner.known_workflows {
        if !listed.iter().any(|c| &c.workflow == known) {
            listed.push(WorkflowCounts {
                workflow: known.clone(),
                running: 0,
                stuck: 0,
                completed: 0,
                failed: 0,
                cancelled: 0,
            });
        }
    }
    listed.sort_by(|a, b| a.workflow.cmp(&b.workflow));
    Ok(axum::Json(listed))
}

/// Instances matching the filters, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/instances", tag = "instances", params(InstanceSearch),
    responses((status = 200, body = InstancePage), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn search(
    State(api): State<Api>,
    Query(search): Query<InstanceSearch>,
) -> ApiResult<axum::Json<InstancePage>> {
    let limit = search.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(Problem::bad_request(format!("limit {limit} must be between 1 and 500")));
    }
    if let Some(cursor) = &search.cursor {
        baton_storage::index::check_cursor(cursor).map_err(Problem::bad_request)?;
    }
    let time = |name: &str, value: Option<i64>| {
        value
            .map(|v| u64::try_from(v).map(Timestamp))
            .transpose()
            .map_err(|_| Problem::bad_request(format!("{name} must not be negative")))
    };
    let started_from = time("startedFrom", search.started_from)?;
    let started_before = time("startedBefore", search.started_before)?;
    if let Some(w) = &search.workflow {
        check_name("workflow name", w)?;
    }
    if let Some(t) = &search.tag {
        baton_shared_schemas::validate_tag(t).map_err(|e| Problem::bad_request(e.to_string()))?;
    }
    let query = InstanceQuery {
        workflow: search.workflow,
        status: search.status.map(Into::into),
        tag: search.tag,
        started_from,
        started_before,
        cursor: search.cursor,
        limit: limit as usize,
    };
    let page = api.inner.stores.index.search(&query).await?;
    Ok(axum::Json(InstancePage {
        instances: page
            .instances
            .into_iter()
            .map(|i| InstanceSummary {
                id: i.id.to_string(),
                workflow: i.entry.workflow,
                status: i.entry.status.into(),
                started_at: i.entry.started_at.0,
                ended_at: i.entry.ended_at.map(|t| t.0),
                tags: i.entry.tags,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One instance: status, input, pending commands, failure, outcome.
#[utoipa::path(get, path = "/api/v1/instances/{id}", tag = "instances",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id")),
    responses((status = 200, body = InstanceDetail), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn instance(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<axum::Json<InstanceDetail>> {
    let id = parse_id(&id)?;
    let (state, history_length) = api.load(id).await?;
    Ok(axum::Json(detail(&state, history_length)))
}

/// A page of the instance's history, oldest first, payloads as JSON.
#[utoipa::path(get, path = "/api/v1/instances/{id}/history", tag = "instances",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id"), HistoryParams),
    responses((status = 200, body = HistoryPage), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn history(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(params): Query<HistoryParams>,
) -> ApiResult<axum::Json<HistoryPage>> {
    let id = parse_id(&id)?;
    let limit = u64::from(params.limit.unwrap_or(200));
    if !(1..=1000).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit {limit} must be between 1 and 1000"
        )));
    }
    let offset =
        u64::try_from(params.offset.unwrap_or(0)).map_err(|_| Problem::bad_request("offset must not be negative"))?;
    let stored = api.inner.stores.workflows.load(id).await?.ok_or_else(|| {
        Problem::not_found(format!(
            "instance {id} is unknown (never started, or its retention ended)"
        ))
    })?;
    let total = stored.history.len() as u64;
    let start = offset.min(total) as usize;
    let end = offset.saturating_add(limit).min(total) as usize;
    let entries = stored.history[start..end]
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            codec::decode::<HistoryEvent>(bytes)
                .map(|event| entry((start + i) as u64, &event))
                .map_err(|e| Problem::internal(format!("history entry {} of {id} does not decode: {e}", start + i)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(HistoryPage {
        entries,
        total,
        next_offset: ((end as u64) < total).then_some(end as u64),
    }))
}

fn start_options(request: &StartRequest) -> Result<StartOptions, Problem> {
    baton_shared_schemas::validate_tags(&request.tags).map_err(|e| Problem::bad_request(format!("tags: {e}")))?;
    if request.custom_id.as_deref().is_some_and(str::is_empty) {
        return Err(Problem::bad_request("customId must not be empty"));
    }
    Ok(StartOptions {
        id: None,
        custom_id: request.custom_id.clone(),
        tags: request.tags.clone(),
        meta: request.meta.clone(),
    })
}

/// Starts an instance (with a custom id: attaches to the instance it names if it exists).
#[utoipa::path(post, path = "/api/v1/workflows/{workflow}/instances", tag = "instances",
    params(("workflow" = String, Path, min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "Workflow name")),
    request_body = StartRequest,
    responses((status = 202, body = Started), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 415, body = Problem)))]
pub async fn start(
    State(api): State<Api>,
    Path(workflow): Path<String>,
    Object(request): Object<StartRequest>,
) -> ApiResult<impl IntoResponse> {
    api.check_workflow_known(&workflow)?;
    let options = start_options(&request)?;
    let input = Payload::json(&request.input).map_err(|e| Problem::bad_request(e.to_string()))?;
    let id = api.inner.client.start_raw(&workflow, input, options).await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(Started {
            id: id.to_string(),
            workflow,
        }),
    ))
}

/// Starts an instance and answers with its result once it ends (504 if it has not ended
/// within the timeout; it keeps running).
#[utoipa::path(post, path = "/api/v1/workflows/{workflow}/run", tag = "instances",
    params(("workflow" = String, Path, min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "Workflow name"), WaitParams),
    request_body = StartRequest,
    responses((status = 200, body = RunResult), (status = 400, body = Problem), (status = 404, body = Problem), (status = 504, body = Problem)))]
pub async fn run(
    State(api): State<Api>,
    Path(workflow): Path<String>,
    Query(wait): Query<WaitParams>,
    Object(request): Object<StartRequest>,
) -> ApiResult<axum::Json<RunResult>> {
    api.check_workflow_known(&workflow)?;
    let timeout = api.wait_for(wait.timeout)?;
    let options = start_options(&request)?;
    let input = Payload::json(&request.input).map_err(|e| Problem::bad_request(e.to_string()))?;
    let id = api.inner.client.start_raw(&workflow, input, options).await?;
    let outcome = api.wait_outcome(&workflow, id, timeout).await?;
    Ok(axum::Json(RunResult {
        id: id.to_string(),
        outcome,
    }))
}

/// The instance's result, waiting up to the timeout for it to end.
#[utoipa::path(get, path = "/api/v1/instances/{id}/result", tag = "instances",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id"), WaitParams),
    responses((status = 200, body = RunResult), (status = 400, body = Problem), (status = 404, body = Problem), (status = 504, body = Problem)))]
pub async fn result(
    State(api): State<Api>,
    Path(id): Path<String>,
    Query(wait): Query<WaitParams>,
) -> ApiResult<axum::Json<RunResult>> {
    let id = parse_id(&id)?;
    let timeout = api.wait_for(wait.timeout)?;
    let (state, _) = api.load(id).await?;
    let outcome = match &state.head.record {
        Record::Completed(c) => OutcomeView::from(&c.outcome),
        Record::Running(r) => api.wait_outcome(&r.workflow_name, id, timeout).await?,
    };
    Ok(axum::Json(RunResult {
        id: id.to_string(),
        outcome,
    }))
}

fn running_name(state: &WorkflowState, action: &str) -> Result<String, Problem> {
    match &state.head.record {
        Record::Running(r) => Ok(r.workflow_name.clone()),
        Record::Completed(_) => Err(Problem::conflict(format!(
            "instance {} has ended ({}); it cannot {action}",
            state.id,
            state.index_entry().status
        ))),
    }
}

fn accepted(what: impl Into<String>) -> (StatusCode, axum::Json<Accepted>) {
    (StatusCode::ACCEPTED, axum::Json(Accepted { accepted: what.into() }))
}

/// Sends a signal (the body is its value).
#[utoipa::path(post, path = "/api/v1/instances/{id}/signals/{channel}", tag = "actions",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id"), ("channel" = String, Path, min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "Channel name")),
    request_body(content = Value, description = "The signal's value"),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn signal(
    State(api): State<Api>,
    Path((id, channel)): Path<(String, String)>,
    Json(value): Json<Value>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    check_name("channel", &channel)?;
    let (state, _) = api.load(id).await?;
    let workflow = running_name(&state, "receive signals")?;
    let value = Payload::json(&value).map_err(|e| Problem::bad_request(e.to_string()))?;
    api.inner.client.signal_raw(&workflow, id, &channel, value).await?;
    Ok(accepted(format!("signal on `{channel}`")))
}

/// Calls a method of the instance (the body is its arguments) and answers with its result.
#[utoipa::path(post, path = "/api/v1/instances/{id}/methods/{method}", tag = "actions",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id"), ("method" = String, Path, min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "Method name")),
    request_body(content = Value, description = "The method's arguments"),
    responses((status = 200, body = MethodResult), (status = 400, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 504, body = Problem)))]
pub async fn call(
    State(api): State<Api>,
    Path((id, method)): Path<(String, String)>,
    Json(args): Json<Value>,
) -> ApiResult<axum::Json<MethodResult>> {
    let id = parse_id(&id)?;
    check_name("method", &method)?;
    let (state, _) = api.load(id).await?;
    let workflow = running_name(&state, "answer method calls")?;
    if state.index_entry().status == baton_storage::InstanceStatus::Stuck {
        return Err(Problem::conflict(format!(
            "instance {id} is stuck on a failed workflow task: its methods run once it is fixed and retried (POST /api/v1/instances/{id}/retry-workflow-task)"
        )));
    }
    let args = Payload::json(&args).map_err(|e| Problem::bad_request(e.to_string()))?;
    let timeout = api.wait_for(None)?;
    let result = tokio::time::timeout(timeout, api.inner.client.call_raw(&workflow, id, &method, args))
        .await
        .map_err(|_| Problem::timeout(format!("method `{method}` did not answer within {timeout:?}")))??;
    Ok(axum::Json(MethodResult {
        result: payload_json(&result),
    }))
}

/// Cancels a running instance.
#[utoipa::path(post, path = "/api/v1/instances/{id}/cancel", tag = "actions",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id")),
    request_body = CancelRequest,
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<CancelRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let reason = body.reason.unwrap_or_else(|| "cancelled by an operator".into());
    let (state, _) = api.load(id).await?;
    let workflow = running_name(&state, "be cancelled")?;
    api.inner.client.cancel(&workflow, id, &reason).await?;
    Ok(accepted("cancel"))
}

/// Runs the failed workflow task of a stuck instance again, with the code deployed now.
#[utoipa::path(post, path = "/api/v1/instances/{id}/retry-workflow-task", tag = "actions",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id")),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retry_workflow_task(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let (state, _) = api.load(id).await?;
    let workflow = running_name(&state, "retry a workflow task")?;
    if state.index_entry().status != baton_storage::InstanceStatus::Stuck {
        return Err(Problem::conflict(format!(
            "instance {id} is not stuck: its last workflow task did not fail"
        )));
    }
    api.inner.client.retry_workflow_task(&workflow, id).await?;
    Ok(accepted("retry workflow task"))
}

/// Runs the failed tasks of a failed instance again (all, or those matching the filter); the
/// run resumes.
#[utoipa::path(post, path = "/api/v1/instances/{id}/retry-tasks", tag = "actions",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id")),
    request_body = RetryTasksRequest,
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retry_tasks(
    State(api): State<Api>,
    Path(id): Path<String>,
    JsonOrEmpty(request): JsonOrEmpty<RetryTasksRequest>,
) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let filter = TaskFilter {
        task_id: request.task_id.as_deref().map(parse_task_id).transpose()?,
        service: request.service.clone(),
        failure: request
            .failure
            .map(|f| {
                serde_json::to_value(f)
                    .and_then(serde_json::from_value::<FailureKind>)
                    .map_err(|e| Problem::internal(format!("failure kind {f:?}: {e}")))
            })
            .transpose()?,
    };
    let (state, _) = api.load(id).await?;
    let workflow = match &state.head.record {
        Record::Completed(c) if c.resumable.is_some() => c.workflow_name.clone(),
        _ => {
            return Err(Problem::conflict(format!(
                "instance {id} did not fail because of tasks, so it has none to retry"
            )));
        }
    };
    api.inner.client.retry_tasks(&workflow, id, filter).await?;
    Ok(accepted("retry tasks"))
}

/// Fires every pending timer of the instance now.
#[utoipa::path(post, path = "/api/v1/instances/{id}/complete-timers", tag = "actions",
    params(("id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Instance id")),
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn complete_timers(State(api): State<Api>, Path(id): Path<String>) -> ApiResult<impl IntoResponse> {
    let id = parse_id(&id)?;
    let (state, _) = api.load(id).await?;
    let workflow = running_name(&state, "complete timers")?;
    api.inner.client.complete_timers(&workflow, id).await?;
    Ok(accepted("complete timers"))
}

/// Completes a delegated task with its result.
#[utoipa::path(post, path = "/api/v1/services/{service}/tasks/{task_id}/complete", tag = "actions",
    params(("service" = String, Path, min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "Service name"), ("task_id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Task id")),
    request_body = CompleteTaskRequest,
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn complete_task(
    State(api): State<Api>,
    Path((service, task_id)): Path<(String, String)>,
    Object(request): Object<CompleteTaskRequest>,
) -> ApiResult<impl IntoResponse> {
    let task_id = parse_task_id(&task_id)?;
    api.check_service_known(&service)?;
    api.inner
        .client
        .complete_delegated_task(&service, task_id, &request.result)
        .await?;
    Ok(accepted("complete delegated task"))
}

/// Fails a delegated task.
#[utoipa::path(post, path = "/api/v1/services/{service}/tasks/{task_id}/fail", tag = "actions",
    params(("service" = String, Path, min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$", description = "Service name"), ("task_id" = String, Path, pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", description = "Task id")),
    request_body = FailTaskRequest,
    responses((status = 202, body = Accepted), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn fail_task(
    State(api): State<Api>,
    Path((service, task_id)): Path<(String, String)>,
    Object(request): Object<FailTaskRequest>,
) -> ApiResult<impl IntoResponse> {
    let task_id = parse_task_id(&task_id)?;
    if request.message.trim().is_empty() {
        return Err(Problem::bad_request("message must say why the task failed"));
    }
    api.check_service_known(&service)?;
    api.inner
        .client
        .fail_delegated_task(&service, task_id, &request.message)
        .await?;
    Ok(accepted("fail delegated task"))
}
