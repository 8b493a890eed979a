//! What the API answers and accepts, as JSON. These types are the API's contract (the OpenAPI
//! document is generated from them); they are mapped from the wire and storage types, never
//! those types themselves, so the wire can change without breaking API users.

use std::collections::BTreeMap;

use base64::Engine as _;
use baton_shared_schemas::messages::WorkflowOutcome;
use baton_shared_schemas::{Failure, Payload, PayloadCodec, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

/// Where an instance stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Running normally.
    Running,
    /// Running, but its last workflow task failed: it waits for a fix and a retry.
    Stuck,
    /// Returned a value.
    Completed,
    /// Returned an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl From<baton_storage::InstanceStatus> for Status {
    fn from(s: baton_storage::InstanceStatus) -> Self {
        use baton_storage::InstanceStatus as S;
        match s {
            S::Running => Status::Running,
            S::Stuck => Status::Stuck,
            S::Completed => Status::Completed,
            S::Failed => Status::Failed,
            S::Cancelled => Status::Cancelled,
        }
    }
}

impl From<Status> for baton_storage::InstanceStatus {
    fn from(s: Status) -> Self {
        use baton_storage::InstanceStatus as S;
        match s {
            Status::Running => S::Running,
            Status::Stuck => S::Stuck,
            Status::Completed => S::Completed,
            Status::Failed => S::Failed,
            Status::Cancelled => S::Cancelled,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn millis(t: Timestamp) -> u64 {
    t.0
}

/// One instance in a listing.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceSummary {
    /// Instance id.
    pub id: String,
    /// Workflow name.
    pub workflow: String,
    /// Where it stands.
    pub status: Status,
    /// Start time (ms since the epoch).
    pub started_at: u64,
    /// End time (ms since the epoch), once ended.
    pub ended_at: Option<u64>,
    /// Tags.
    pub tags: Vec<String>,
}

/// A page of instances, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstancePage {
    /// The instances.
    pub instances: Vec<InstanceSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Search parameters for instances.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InstanceSearch {
    /// Only instances of this workflow.
    #[param(min_length = 1, max_length = 256, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub workflow: Option<String>,
    /// Only instances in this status.
    pub status: Option<Status>,
    /// Only instances carrying this tag.
    #[param(min_length = 1, max_length = 1024, pattern = r"^[^\x00-\x1f\x7f-\x9f]+$")]
    pub tag: Option<String>,
    /// Only instances started at or after this time (ms since the epoch).
    #[param(minimum = 0)]
    pub started_from: Option<i64>,
    /// Only instances started before this time (ms since the epoch).
    #[param(minimum = 0)]
    pub started_before: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(pattern = r"^[0-9]{20}\|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// How many instances of a workflow are in each status.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowCounts {
    /// Workflow name.
    pub workflow: String,
    /// Running normally.
    pub running: u64,
    /// Waiting for an operator's retry.
    pub stuck: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
}

/// A failure, with its chain of failed attempts.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailureView {
    /// Category (`ServiceError`, `Panic`, `NonDeterminism`, …).
    pub kind: String,
    /// What happened.
    pub message: String,
    /// The user's error value, for service and workflow errors.
    pub error: Option<Value>,
    /// Whether retrying could succeed.
    pub retryable: bool,
    /// Earlier failed attempts, oldest first.
    pub previous_attempts: Vec<AttemptView>,
}

/// One failed attempt.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When it failed (ms since the epoch).
    pub at: u64,
    /// Category.
    pub kind: String,
    /// What happened.
    pub message: String,
}

impl From<&Failure> for FailureView {
    fn from(f: &Failure) -> Self {
        Self {
            kind: format!("{:?}", f.kind),
            message: f.message.clone(),
            error: f.error.as_ref().map(payload_json),
            retryable: f.retryable,
            previous_attempts: f
                .previous_attempts
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    at: a.at.0,
                    kind: format!("{:?}", a.kind),
                    message: a.message.clone(),
                })
                .collect(),
        }
    }
}

/// How an instance ended, or that it is stuck and waits for an operator.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeView {
    /// `completed`, `failed`, `cancelled`, or `stuck` (a workflow task failed: fix the code,
    /// then retry the workflow task).
    pub status: Status,
    /// The returned value, when completed.
    pub output: Option<Value>,
    /// Why it failed, or why its workflow task failed.
    pub failure: Option<FailureView>,
    /// Why it was cancelled.
    pub reason: Option<String>,
}

impl From<&WorkflowOutcome> for OutcomeView {
    fn from(o: &WorkflowOutcome) -> Self {
        match o {
            WorkflowOutcome::Completed(p) => OutcomeView {
                status: Status::Completed,
                output: Some(payload_json(p)),
                failure: None,
                reason: None,
            },
            WorkflowOutcome::Failed(f) => OutcomeView {
                status: Status::Failed,
                output: None,
                failure: Some(f.into()),
                reason: None,
            },
            WorkflowOutcome::Cancelled { reason } => OutcomeView {
                status: Status::Cancelled,
                output: None,
                failure: None,
                reason: Some(reason.clone()),
            },
        }
    }
}

/// A command issued and not completed yet.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingView {
    /// Its position in the run (the largest number for a receive, which has none of its own).
    pub position: u32,
    /// What it is.
    pub description: String,
    /// `task`, `timer`, `child` or `receive`.
    pub kind: String,
}

/// One instance, in full (but its history, which is paged separately).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceDetail {
    /// Instance id.
    pub id: String,
    /// Workflow name.
    pub workflow: String,
    /// The code version it runs, once its first workflow task ran.
    pub workflow_version: Option<u32>,
    /// Where it stands.
    pub status: Status,
    /// Start time (ms since the epoch).
    pub started_at: u64,
    /// End time (ms since the epoch), once ended.
    pub ended_at: Option<u64>,
    /// When its record is removed (ms since the epoch), once ended.
    pub expires_at: Option<u64>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// The input of its run, while it runs (or when it failed and can be resumed).
    pub input: Option<Value>,
    /// Workflow tasks run so far.
    pub workflow_tasks: u32,
    /// Why its last workflow task failed, while stuck.
    pub workflow_task_failure: Option<FailureView>,
    /// Commands issued and not completed yet.
    pub pending: Vec<PendingView>,
    /// How it ended.
    pub outcome: Option<OutcomeView>,
    /// Entries in its history.
    pub history_length: u64,
    /// Its parent instance, for a child workflow.
    pub parent: Option<String>,
}

/// One entry of a run's history.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// 0-based position in the history.
    pub index: u64,
    /// `WorkflowTaskStarted`, `CommandRecorded`, `ResultDelivered` or `MethodCalled`.
    pub kind: String,
    /// The entry's fields, payloads shown as the JSON they hold.
    pub detail: Value,
}

/// A page of a history, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// The entries.
    pub entries: Vec<HistoryEntry>,
    /// Entries in the whole history.
    pub total: u64,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<u64>,
}

/// Paging of a history.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// First entry (default 0).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// Page size, 1 to 1000 (default 200).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The schema of a tag: 1 to 1024 bytes, without control characters.
pub struct Tag;

impl utoipa::PartialSchema for Tag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(1024))
            .pattern(Some(r"^[^\x00-\x1f\x7f-\x9f]+$"))
            .description(Some("A tag: 1 to 1024 bytes, without control characters"))
            .into()
    }
}

impl ToSchema for Tag {}

/// How a task failed, for filtering retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum FailureKindName {
    /// The service returned its own error.
    ServiceError,
    /// The code panicked.
    Panic,
    /// An attempt ran longer than its execution timeout.
    ExecutionTimeout,
    /// The arguments did not decode.
    InvalidArguments,
    /// No worker hosts the method.
    UnknownMethod,
    /// The task went to a dead-letter topic.
    DeadLettered,
    /// A result could not be encoded or decoded.
    Serialization,
    /// The call's global timeout elapsed.
    TimedOut,
    /// The task was cancelled.
    Cancelled,
}

/// Starts an instance.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRequest {
    /// The workflow's input.
    pub input: Value,
    /// A business key naming the instance: a second start with it attaches to the first.
    #[schema(min_length = 1)]
    pub custom_id: Option<String>,
    /// Tags of the instance: at most 100, of at most 16384 bytes together, each 1 to 1024 bytes
    /// without control characters.
    #[serde(default)]
    #[schema(value_type = Vec<Tag>, max_items = 100)]
    pub tags: Vec<String>,
    /// Metadata of the instance.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// An instance was started (or, with a custom id, already existed).
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// Instance id.
    pub id: String,
    /// Workflow name.
    pub workflow: String,
}

/// How long to wait.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitParams {
    /// Seconds to wait, 1 to `api.max_wait_secs` (300 by default; default 30).
    #[param(minimum = 1, maximum = 300)]
    pub timeout: Option<u64>,
}

/// The result of a finished instance.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// Instance id.
    pub id: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: OutcomeView,
}

/// Cancels an instance.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CancelRequest {
    /// Why (shown as the outcome's reason).
    pub reason: Option<String>,
}

/// Which failed tasks to retry; every one when empty.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryTasksRequest {
    /// Only this task.
    #[schema(pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")]
    pub task_id: Option<String>,
    /// Only tasks of this service.
    pub service: Option<String>,
    /// Only tasks that failed this way.
    pub failure: Option<FailureKindName>,
}

/// Completes a delegated task.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteTaskRequest {
    /// The task's result.
    pub result: Value,
}

/// Fails a delegated task.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailTaskRequest {
    /// Why it failed.
    #[schema(pattern = r"\S")]
    pub message: String,
}

/// A request was handed to the engine; its effect shows in the instance's status shortly.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// What was asked.
    pub accepted: String,
}

/// The value a method returned.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MethodResult {
    /// The returned value.
    pub result: Value,
}

/// A dead-letter topic.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterTopic {
    /// The topic its letters came from.
    pub topic: String,
    /// Letters held.
    pub count: u64,
}

/// A message that could not be processed.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    /// Its id (the message id when the body decodes).
    pub id: String,
    /// The topic it came from (where a redrive sends it).
    pub topic: String,
    /// Its routing key.
    pub key: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// When it was collected (ms since the epoch).
    pub dead_at: u64,
    /// Deliveries before it was given up.
    pub redeliveries: Option<u32>,
    /// The decoded message, when it decodes.
    pub body: Option<Value>,
    /// Why the body does not decode.
    pub body_error: Option<String>,
    /// The raw bytes, base64.
    pub payload_base64: String,
}

/// A page of dead letters, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    /// The letters.
    pub letters: Vec<DeadLetterView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Paging of dead letters.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// The `nextCursor` of the previous page.
    #[param(pattern = r"^[0-9]{20}\|.+$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Letters sent back to their topic.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    /// How many.
    pub redriven: u64,
}

/// The JSON a payload holds; bytes that are not JSON are shown as a base64 string.
pub fn payload_json(p: &Payload) -> Value {
    match p.codec {
        PayloadCodec::Json => serde_json::from_slice(&p.bytes)
            .unwrap_or_else(|_| Value::String(base64::engine::general_purpose::STANDARD.encode(&p.bytes))),
    }
}

/// A wire value as JSON, with every payload in it (`{"codec": "Json", "bytes": [...]}`)
/// replaced by the JSON it holds, so people read values, not byte arrays.
pub fn readable<T: Serialize>(value: &T) -> Value {
    let mut json = serde_json::to_value(value).unwrap_or(Value::Null);
    unwrap_payloads(&mut json);
    json
}

fn unwrap_payloads(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.len() == 2 && map.get("codec").and_then(Value::as_str) == Some("Json") {
                if let Some(Value::Array(bytes)) = map.get("bytes") {
                    let raw: Option<Vec<u8>> = bytes
                        .iter()
                        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                        .collect();
                    if let Some(parsed) = raw.and_then(|raw| serde_json::from_slice::<Value>(&raw).ok()) {
                        *value = parsed;
                        return;
                    }
                }
            }
            for v in map.values_mut() {
                unwrap_payloads(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_payloads),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_inside_wire_values_read_as_their_json() {
        #[derive(Serialize)]
        struct Call {
            service: String,
            args: Payload,
        }
        let call = Call {
            service: "payment".into(),
            args: Payload::json(&serde_json::json!([{"amount": 5}])).expect("payload"),
        };
        assert_eq!(
            readable(&call),
            serde_json::json!({"service": "payment", "args": [{"amount": 5}]})
        );
    }

    #[test]
    fn bytes_that_are_not_json_show_as_base64() {
        let p = Payload {
            codec: PayloadCodec::Json,
            bytes: vec![0xff, 0x00],
        };
        assert_eq!(payload_json(&p), Value::String("/wA=".into()));
    }
}
