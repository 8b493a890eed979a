//! Messages consumed by one client (`client:{id}`).

use serde::{Deserialize, Serialize};

use crate::{Failure, Payload, RequestId, Timestamp, WorkflowId};

/// How an instance ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowOutcome {
    /// It returned a value.
    Completed(Payload),
    /// It returned an error (or failed).
    Failed(Failure),
    /// It was cancelled.
    Cancelled {
        /// Why.
        reason: String,
    },
}

/// Lifecycle status of an instance. Append-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WorkflowStatus {
    /// Still running (possibly waiting on an operator when `workflow_task_failure` is set).
    Running,
    /// Returned a value.
    Completed,
    /// Returned an error.
    Failed,
    /// Cancelled.
    Cancelled,
}

/// A snapshot of an instance for status queries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowStatusView {
    /// Workflow name.
    pub workflow_name: String,
    /// Pinned code version, once the first task ran.
    pub workflow_version: Option<u32>,
    /// Status.
    pub status: WorkflowStatus,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Tags.
    pub tags: Vec<String>,
    /// Commands issued and not yet completed.
    pub pending_commands: u32,
    /// Workflow tasks run so far.
    pub workflow_tasks: u32,
    /// Set while the instance is stuck on a failed workflow task (e.g. non-determinism).
    pub workflow_task_failure: Option<Failure>,
    /// The outcome, once ended.
    pub outcome: Option<WorkflowOutcome>,
}

/// Messages for a client. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// An instance the client waits on has ended.
    WorkflowResult {
        /// The instance.
        workflow_id: WorkflowId,
        /// How it ended.
        outcome: WorkflowOutcome,
    },
    /// The instance does not exist (never started, or its retention ended).
    WorkflowUnknown {
        /// The instance.
        workflow_id: WorkflowId,
        /// The request this answers, if it was a request.
        request_id: Option<RequestId>,
    },
    /// Answer to a status query.
    Status {
        /// The query.
        request_id: RequestId,
        /// The instance.
        workflow_id: WorkflowId,
        /// Its status.
        status: WorkflowStatusView,
    },
    /// A page of the ids carrying a tag.
    WorkflowIds {
        /// The query.
        request_id: RequestId,
        /// Ids on this page.
        ids: Vec<WorkflowId>,
        /// Cursor of the next page, if any.
        next_cursor: Option<String>,
    },
    /// The result of a method called on a running instance.
    MethodResult {
        /// The call.
        invocation_id: RequestId,
        /// The instance.
        workflow_id: WorkflowId,
        /// The handler's value, or why the call failed.
        result: Result<Payload, Failure>,
    },
}
