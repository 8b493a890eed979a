//! Messages consumed by the workflow engine (`workflow-cmd:{Workflow}` and
//! `workflow-engine:{Workflow}`), keyed by workflow id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::messages::WorkflowOutcome;
use crate::{
    ClientId, CommandId, Failure, Payload, RecordedCommand, RequestId, SignalId, TaskId, TimerId, WorkflowId,
    WorkflowTaskId,
};

/// Start a workflow instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartWorkflow {
    /// Id of the new instance (chosen by the client).
    pub workflow_id: WorkflowId,
    /// Workflow name.
    pub workflow_name: String,
    /// Input of the main run.
    pub input: Payload,
    /// Tags of the instance.
    pub tags: Vec<String>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// A client to notify when the instance ends.
    pub reply_to: Option<ClientId>,
}

/// How a run ended, as reported by a workflow task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunCompletion {
    /// The workflow function returned `Ok`.
    Completed(Payload),
    /// The workflow function returned `Err`.
    Failed(Failure),
    /// The workflow restarts with this input, same id, fresh history.
    ContinueAsNew(Payload),
}

/// The parent of a child workflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent's workflow name (its engine topic).
    pub workflow_name: String,
    /// The parent instance.
    pub workflow_id: WorkflowId,
    /// The parent's command that started the child.
    pub command_id: CommandId,
}

/// Which failed tasks an operator retries, by id, service and how they failed. Empty fields
/// match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskFilter {
    /// Only this task.
    pub task_id: Option<TaskId>,
    /// Only tasks of this service.
    pub service: Option<String>,
    /// Only tasks that failed this way (e.g. `ExecutionTimeout`, `Panic`, `ServiceError`).
    pub failure: Option<crate::FailureKind>,
}

impl From<TaskSelector> for TaskFilter {
    fn from(s: TaskSelector) -> Self {
        Self {
            task_id: s.task_id,
            service: s.service,
            failure: None,
        }
    }
}

/// Which failed tasks an operator retries (superseded by [`TaskFilter`], which also filters by
/// how they failed). Empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSelector {
    /// Only this task.
    pub task_id: Option<TaskId>,
    /// Only tasks of this service.
    pub service: Option<String>,
}

/// The result of one workflow task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowTaskCompleted {
    /// The instance.
    pub workflow_id: WorkflowId,
    /// The workflow task that produced this result.
    pub task_id: WorkflowTaskId,
    /// The code version that ran; the instance is pinned to it.
    pub workflow_version: u32,
    /// Commands made for the first time by this task, in position order.
    pub new_commands: Vec<RecordedCommand>,
    /// Commands the code is now waiting on: a result for any of them warrants a new task.
    pub waiting_on: Vec<CommandId>,
    /// Set when the workflow function returned.
    pub completion: Option<RunCompletion>,
}

/// Messages for the workflow engine. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowEngineMessage {
    /// Start an instance (idempotent per workflow id).
    Start(StartWorkflow),
    /// Notify `client` when the instance ends (at once if it already has).
    Await {
        /// The instance.
        workflow_id: WorkflowId,
        /// Who waits.
        client: ClientId,
    },
    /// Reply to `client` with the instance's status.
    GetStatus {
        /// The instance.
        workflow_id: WorkflowId,
        /// Who asks.
        client: ClientId,
        /// Correlates the reply.
        request_id: RequestId,
    },
    /// Cancel the instance.
    Cancel {
        /// The instance.
        workflow_id: WorkflowId,
        /// Why, for status and waiting clients.
        reason: String,
        /// Who asks, to be told if the instance is unknown.
        client: Option<ClientId>,
    },
    /// A workflow task finished normally.
    WorkflowTaskCompleted(WorkflowTaskCompleted),
    /// A workflow task could not run the code (non-determinism, panic, unknown workflow).
    WorkflowTaskFailed {
        /// The instance.
        workflow_id: WorkflowId,
        /// The failed workflow task.
        task_id: WorkflowTaskId,
        /// Why.
        failure: Failure,
    },
    /// A service task succeeded.
    TaskCompleted {
        /// The instance that called it.
        workflow_id: WorkflowId,
        /// The task (equal to the command id).
        task_id: TaskId,
        /// The returned value.
        output: Payload,
    },
    /// A service task failed for good (retries exhausted, non-retryable error, dead letter).
    TaskFailed {
        /// The instance that called it.
        workflow_id: WorkflowId,
        /// The task.
        task_id: TaskId,
        /// Why, with the chain of earlier attempts.
        failure: Failure,
    },
    /// A workflow timer fired.
    TimerFired {
        /// The instance.
        workflow_id: WorkflowId,
        /// The timer (equal to the command id).
        timer_id: TimerId,
    },
    /// The retention of a completed instance has ended: remove its record.
    Expire {
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// A signal for one of the instance's channels.
    SendSignal {
        /// The instance.
        workflow_id: WorkflowId,
        /// Dedupe id of the signal.
        signal_id: SignalId,
        /// Channel name.
        channel: String,
        /// The value.
        value: Payload,
    },
    /// Run the failed workflow task again (after a fix was deployed).
    RetryWorkflowTask {
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// Run failed tasks again; a run that failed because of them resumes.
    RetryTasks {
        /// The instance.
        workflow_id: WorkflowId,
        /// Which tasks.
        selector: TaskSelector,
    },
    /// Fire every pending timer of the instance now.
    CompleteTimers {
        /// The instance.
        workflow_id: WorkflowId,
    },
    /// Start an instance as the child of another.
    StartChild {
        /// The child's start.
        start: StartWorkflow,
        /// Who to notify when it ends.
        parent: ParentRef,
    },
    /// A child started by one of the instance's commands ended.
    ChildEnded {
        /// The parent instance.
        workflow_id: WorkflowId,
        /// The parent's command that started the child.
        command_id: CommandId,
        /// How the child ended.
        outcome: WorkflowOutcome,
    },
    /// Call a method of the running instance (a query or an update).
    CallMethod {
        /// The instance.
        workflow_id: WorkflowId,
        /// Identifies this call; the reply carries it.
        invocation_id: RequestId,
        /// Method name.
        method: String,
        /// Arguments.
        args: Payload,
        /// Who gets the result.
        reply_to: Option<ClientId>,
    },
    /// Run failed tasks matching a filter again; a run that failed because of them resumes.
    RetryTasksMatching {
        /// The instance.
        workflow_id: WorkflowId,
        /// Which tasks.
        filter: TaskFilter,
    },
    /// A worker got a workflow task carrying only the events since an earlier task, and does
    /// not keep the run where they start (it restarted, or the instance moved to it): send the
    /// task again with the whole history.
    WorkflowTaskNeedsHistory {
        /// The instance.
        workflow_id: WorkflowId,
        /// The workflow task.
        task_id: WorkflowTaskId,
    },
    /// A command that reached the engine before the instance it addresses, sent back through
    /// the timer service to be handled again. Brokers may hand a command to the engine ahead of
    /// the start it follows while partitions move between engine replicas, so a command for an
    /// unknown instance is tried again a few times before it is answered as unknown.
    Deferred {
        /// The command, as it arrived.
        command: DeferredCommand,
        /// How often it was deferred so far (1 the first time).
        attempt: u32,
    },
}

/// The command a [`WorkflowEngineMessage::Deferred`] carries. It never holds another deferred
/// command: decoding refuses one, so untrusted bytes cannot nest commands without bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DeferredCommand(pub Box<WorkflowEngineMessage>);

impl DeferredCommand {
    /// Wraps a command; `None` for a deferred one (the engine defers the command inside).
    pub fn new(command: WorkflowEngineMessage) -> Option<Self> {
        (!matches!(command, WorkflowEngineMessage::Deferred { .. })).then(|| Self(Box::new(command)))
    }
}

impl<'de> Deserialize<'de> for DeferredCommand {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let command = WorkflowEngineMessage::deserialize(deserializer)?;
        Self::new(command).ok_or_else(|| serde::de::Error::custom("a deferred command holds another deferred command"))
    }
}

impl WorkflowEngineMessage {
    /// The instance the message is about (its routing key).
    pub fn workflow_id(&self) -> WorkflowId {
        match self {
            Self::Start(m) => m.workflow_id,
            Self::WorkflowTaskCompleted(m) => m.workflow_id,
            Self::Await { workflow_id, .. }
            | Self::GetStatus { workflow_id, .. }
            | Self::Cancel { workflow_id, .. }
            | Self::WorkflowTaskFailed { workflow_id, .. }
            | Self::TaskCompleted { workflow_id, .. }
            | Self::TaskFailed { workflow_id, .. }
            | Self::TimerFired { workflow_id, .. }
            | Self::Expire { workflow_id }
            | Self::SendSignal { workflow_id, .. }
            | Self::RetryWorkflowTask { workflow_id }
            | Self::RetryTasks { workflow_id, .. }
            | Self::CompleteTimers { workflow_id }
            | Self::ChildEnded { workflow_id, .. }
            | Self::CallMethod { workflow_id, .. }
            | Self::RetryTasksMatching { workflow_id, .. }
            | Self::WorkflowTaskNeedsHistory { workflow_id, .. } => *workflow_id,
            Self::StartChild { start, .. } => start.workflow_id,
            Self::Deferred { command, .. } => command.0.workflow_id(),
        }
    }

    /// Short name of the variant, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Start(_) => "Start",
            Self::Await { .. } => "Await",
            Self::GetStatus { .. } => "GetStatus",
            Self::Cancel { .. } => "Cancel",
            Self::WorkflowTaskCompleted(_) => "WorkflowTaskCompleted",
            Self::WorkflowTaskFailed { .. } => "WorkflowTaskFailed",
            Self::TaskCompleted { .. } => "TaskCompleted",
            Self::TaskFailed { .. } => "TaskFailed",
            Self::TimerFired { .. } => "TimerFired",
            Self::Expire { .. } => "Expire",
            Self::SendSignal { .. } => "SendSignal",
            Self::RetryWorkflowTask { .. } => "RetryWorkflowTask",
            Self::RetryTasks { .. } => "RetryTasks",
            Self::CompleteTimers { .. } => "CompleteTimers",
            Self::StartChild { .. } => "StartChild",
            Self::ChildEnded { .. } => "ChildEnded",
            Self::CallMethod { .. } => "CallMethod",
            Self::RetryTasksMatching { .. } => "RetryTasksMatching",
            Self::WorkflowTaskNeedsHistory { .. } => "WorkflowTaskNeedsHistory",
            Self::Deferred { .. } => "Deferred",
        }
    }
}
