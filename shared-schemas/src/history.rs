//! The recorded history of a workflow run: what workflow code commanded and which results it
//! saw at each workflow task. Replaying code against it reproduces the same decisions.

use serde::{Deserialize, Serialize};

use crate::{CommandId, Failure, Payload, RequestId, Timestamp};

/// What workflow code asked for at one position. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandSpec {
    /// Call a method of a service.
    ServiceTask {
        /// Service name.
        service: String,
        /// Method name.
        method: String,
        /// Arguments (a JSON array by default).
        args: Payload,
    },
    /// Wait until an instant (durations are resolved against the workflow task's logical time).
    Timer {
        /// When the timer fires.
        due: Timestamp,
    },
    /// A side effect executed once inside workflow code; its result is recorded.
    Inline {
        /// The recorded result.
        result: Payload,
    },
    /// Receive up to `limit` signals on a channel; the `n`-th value completes
    /// `command_id.nth(n)`.
    Receive {
        /// Channel name.
        channel: String,
        /// Only signals whose value matches are received.
        filter: Option<SignalFilter>,
        /// How many signals to receive.
        limit: u32,
    },
    /// Declares how a channel treats signals no receive is waiting for.
    DeclareChannel {
        /// Channel name.
        channel: String,
        /// Drop such signals instead of keeping them in the mailbox.
        discard_unreceived: bool,
    },
    /// Start a child workflow whose id is `command_id.child_workflow()`.
    ChildWorkflow {
        /// The child's workflow name.
        workflow: String,
        /// Its input.
        input: Payload,
        /// Its tags.
        tags: Vec<String>,
        /// Its metadata.
        meta: std::collections::BTreeMap<String, String>,
        /// Fire and forget: the parent neither waits for it nor cancels it.
        detached: bool,
    },
    /// Marks that the code took the new branch of a change (`ctx.patched(id)`).
    Patch {
        /// The change's id.
        change_id: String,
    },
    /// A method handler finished; its caller gets `result`.
    MethodReturned {
        /// The invocation it answers.
        invocation_id: RequestId,
        /// The handler's value, or why it failed.
        result: Result<Payload, Failure>,
    },
    /// Call a method of a service, with tags and metadata for the task.
    ServiceTaskWithOptions {
        /// Service name.
        service: String,
        /// Method name.
        method: String,
        /// Arguments.
        args: Payload,
        /// Tags of the task.
        tags: Vec<String>,
        /// Metadata of the task (visible to the service in its task context).
        meta: std::collections::BTreeMap<String, String>,
    },
}

/// The parts of a service-task command, whichever variant records it.
pub struct TaskCall<'a> {
    /// Service name.
    pub service: &'a str,
    /// Method name.
    pub method: &'a str,
    /// Arguments.
    pub args: &'a Payload,
    /// Tags of the task.
    pub tags: &'a [String],
    /// Metadata of the task.
    pub meta: Option<&'a std::collections::BTreeMap<String, String>>,
}

/// A condition on a signal's JSON value: the value at `pointer` (RFC 6901) equals `equals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalFilter {
    /// JSON pointer into the value, e.g. `/status`; empty for the whole value.
    pub pointer: String,
    /// The expected value, as JSON text.
    pub equals: String,
}

impl CommandSpec {
    /// The service call this command makes, if it is one.
    pub fn task_call(&self) -> Option<TaskCall<'_>> {
        match self {
            CommandSpec::ServiceTask { service, method, args } => Some(TaskCall {
                service,
                method,
                args,
                tags: &[],
                meta: None,
            }),
            CommandSpec::ServiceTaskWithOptions {
                service,
                method,
                args,
                tags,
                meta,
            } => Some(TaskCall {
                service,
                method,
                args,
                tags,
                meta: Some(meta),
            }),
            _ => None,
        }
    }

    /// A short description for errors and status output, e.g. `Payment.charge`.
    pub fn describe(&self) -> String {
        match self {
            CommandSpec::ServiceTask { service, method, .. }
            | CommandSpec::ServiceTaskWithOptions { service, method, .. } => format!("task {service}.{method}"),
            CommandSpec::Timer { .. } => "timer".to_string(),
            CommandSpec::Inline { .. } => "inline".to_string(),
            CommandSpec::Receive { channel, .. } => format!("receive on {channel}"),
            CommandSpec::DeclareChannel { channel, .. } => format!("channel {channel}"),
            CommandSpec::ChildWorkflow { workflow, .. } => format!("child workflow {workflow}"),
            CommandSpec::Patch { change_id } => format!("patch {change_id}"),
            CommandSpec::MethodReturned { .. } => "method return".to_string(),
        }
    }
}

/// A command together with its identity in the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCommand {
    /// Position in the run (0-based, in the order the code made its calls).
    pub position: u32,
    /// Deterministic id of the command.
    pub command_id: CommandId,
    /// What was asked.
    pub spec: CommandSpec,
}

/// How a command ended. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Success with a value.
    Completed(Payload),
    /// Failure (after retries for tasks).
    Failed(Failure),
}

/// One entry of a run's history. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryEvent {
    /// Workflow task `index` started at logical time `at`; results recorded before this event
    /// were visible to it.
    WorkflowTaskStarted {
        /// 1-based index of the workflow task (the run's logical clock).
        index: u32,
        /// The workflow's notion of "now" during that task.
        at: Timestamp,
    },
    /// Workflow task `task_index` made this command.
    CommandRecorded {
        /// The workflow task that made it.
        task_index: u32,
        /// The command.
        command: RecordedCommand,
    },
    /// A command's result reached the workflow.
    ResultDelivered {
        /// The command it completes.
        command_id: CommandId,
        /// The result.
        outcome: Outcome,
    },
    /// A method of the instance was called; its handler runs beside the main function.
    MethodCalled {
        /// The invocation (answered by a `MethodReturned` command).
        invocation_id: RequestId,
        /// Method name.
        method: String,
        /// Arguments.
        args: Payload,
    },
}
