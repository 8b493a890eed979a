//! Messages consumed by workers hosting a service (`service-task:{Service}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{AttemptFailure, Payload, TaskId, WorkflowId};

/// Execute one attempt of a service method.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteTask {
    /// The task; stable across attempts (an idempotency key for the service).
    pub task_id: TaskId,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Arguments.
    pub args: Payload,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The calling instance.
    pub workflow_id: WorkflowId,
    /// The calling workflow's name (its engine topic).
    pub workflow_name: String,
    /// Earlier failed attempts, oldest first.
    pub previous_failures: Vec<AttemptFailure>,
    /// Tags of the task.
    pub tags: Vec<String>,
    /// Metadata of the task.
    pub meta: BTreeMap<String, String>,
}

/// Messages for service workers. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceTaskMessage {
    /// Run an attempt.
    Execute(ExecuteTask),
}
