//! Messages consumed by the tag engine: `workflow-tag:{Workflow}` (keyed by tag) and
//! `service-tag:{Service}` (keyed by task id).

use serde::{Deserialize, Serialize};

use crate::messages::engine::{TaskFilter, TaskSelector};
use crate::{ClientId, Payload, RequestId, SignalId, TaskId, WorkflowId};

/// A command addressed to every instance carrying a tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaggedCommand {
    /// Send a signal.
    Signal {
        /// Channel name.
        channel: String,
        /// The value.
        value: Payload,
        /// Dedupe id; each instance receives it once.
        signal_id: SignalId,
    },
    /// Cancel.
    Cancel {
        /// Why.
        reason: String,
    },
    /// Retry the failed workflow task.
    RetryWorkflowTask,
    /// Retry failed tasks.
    RetryTasks {
        /// Which.
        selector: TaskSelector,
    },
    /// Fire pending timers now.
    CompleteTimers,
    /// Call a method on each instance (results are not returned).
    CallMethod {
        /// Method name.
        method: String,
        /// Arguments.
        args: Payload,
    },
    /// Retry failed tasks matching a filter.
    RetryTasksMatching {
        /// Which.
        filter: TaskFilter,
    },
}

/// Messages for the tag engine. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagEngineMessage {
    /// `workflow_id` carries `tag`.
    AddTag {
        /// Workflow name.
        workflow_name: String,
        /// The tag.
        tag: String,
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// `workflow_id` has ended and no longer carries `tag`. The removal is final: an `AddTag`
    /// for the same instance and tag that arrives later (a stale copy from an engine that was
    /// frozen, or one reordered on the way) is ignored until a [`ForgetTag`](Self::ForgetTag).
    RemoveTag {
        /// Workflow name.
        workflow_name: String,
        /// The tag.
        tag: String,
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// Reply to `client` with a page of the ids carrying `tag`.
    GetIds {
        /// Workflow name.
        workflow_name: String,
        /// The tag.
        tag: String,
        /// Continue after this cursor.
        cursor: Option<String>,
        /// Page size.
        limit: u32,
        /// Who asks.
        client: ClientId,
        /// Correlates the reply.
        request_id: RequestId,
    },
    /// Send `command` to every instance carrying `tag`, a page at a time from `cursor`.
    ByTag {
        /// Workflow name.
        workflow_name: String,
        /// The tag.
        tag: String,
        /// The command.
        command: TaggedCommand,
        /// Where this page starts (`None` for the first).
        cursor: Option<String>,
    },
    /// A service handed task `task_id` back; it will be completed through the client.
    TaskDelegated {
        /// The task.
        task_id: TaskId,
        /// Its workflow's name.
        workflow_name: String,
        /// Its workflow.
        workflow_id: WorkflowId,
    },
    /// Complete (or fail) a delegated task.
    CompleteDelegatedTask {
        /// The task.
        task_id: TaskId,
        /// `Ok(value)` completes it, `Err(message)` fails it.
        result: Result<Payload, String>,
    },
    /// `workflow_id`'s record has expired: it no longer carries `tag`, and the tag engine
    /// forgets what the final [`RemoveTag`](Self::RemoveTag) remembered, so nothing is kept
    /// for an instance that no longer exists.
    ForgetTag {
        /// Workflow name.
        workflow_name: String,
        /// The tag.
        tag: String,
        /// The instance.
        workflow_id: WorkflowId,
    },
}
