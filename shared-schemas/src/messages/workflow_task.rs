//! Messages consumed by workers hosting a workflow (`workflow-task:{Workflow}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{HistoryEvent, MethodRunId, Payload, WorkflowId, WorkflowTaskId};

/// Replay the workflow code of one run against its history and report what it does next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteWorkflowTask {
    /// The instance.
    pub workflow_id: WorkflowId,
    /// Workflow name.
    pub workflow_name: String,
    /// Pinned code version; `None` until the first task pins one (the highest hosted).
    pub workflow_version: Option<u32>,
    /// The run being replayed.
    pub run_id: MethodRunId,
    /// This workflow task.
    pub task_id: WorkflowTaskId,
    /// Its index (the last `WorkflowTaskStarted` in `history`).
    pub task_index: u32,
    /// Input of the run.
    pub input: Payload,
    /// Index in the run's history of `history[0]` (0 when the whole history is sent).
    pub history_offset: u32,
    /// The run's history from `history_offset`, ending with this task's `WorkflowTaskStarted`.
    pub history: Vec<HistoryEvent>,
    /// Tags of the instance.
    pub tags: Vec<String>,
    /// Metadata of the instance.
    pub meta: BTreeMap<String, String>,
}

/// Messages for workflow task executors. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkflowTaskMessage {
    /// Run a workflow task.
    Execute(ExecuteWorkflowTask),
}
