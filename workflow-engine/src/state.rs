//! The state the engine keeps per instance, and its stored form: a small head plus the
//! append-only history of the main run, so a transition writes only what changed.

use std::collections::{BTreeMap, BTreeSet};

use baton_shared_schemas::messages::{ParentRef, WorkflowOutcome, WorkflowStatus, WorkflowStatusView};
use baton_shared_schemas::{
    ClientId, CodecError, CommandId, Failure, HistoryEvent, Payload, RequestId, SignalFilter, SignalId, Timestamp,
    WorkflowId, WorkflowTaskId, codec,
};
use baton_storage::{HistoryWrite, IndexEntry, InstanceStatus, StoredWorkflow};
use serde::{Deserialize, Serialize};

/// A message the engine must publish, kept in the state's outbox until published.
pub type OutboxMessage = baton_shared_schemas::EncodedMessage;

/// What a pending command is, for cancellation and repair.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingKind {
    /// A service task.
    Task {
        /// Its service.
        service: String,
    },
    /// A durable timer.
    Timer,
    /// A child workflow (not detached).
    Child {
        /// The child's workflow name.
        workflow: String,
    },
}

/// A command issued by the workflow and not yet completed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommand {
    /// Position in the run.
    pub position: u32,
    /// What it is (for status output).
    pub description: String,
    /// What it is (for cancellation and repair).
    pub kind: PendingKind,
}

/// An active `receive` on a channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveReceive {
    /// The receive command.
    pub command_id: CommandId,
    /// Channel name.
    pub channel: String,
    /// Only matching values are received.
    pub filter: Option<SignalFilter>,
    /// How many values it takes.
    pub limit: u32,
    /// How many it has taken.
    pub received: u32,
}

/// A signal no receive has taken yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxSignal {
    /// Its id.
    pub signal_id: SignalId,
    /// Channel name.
    pub channel: String,
    /// The value.
    pub value: Payload,
}

/// A running instance (everything but its history).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningWorkflow {
    /// Workflow name.
    pub workflow_name: String,
    /// Pinned code version (set by the first workflow task).
    pub workflow_version: Option<u32>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    pub meta: BTreeMap<String, String>,
    /// When it started.
    pub started_at: Timestamp,
    /// Input of the main run.
    pub input: Payload,
    /// Index of the last workflow task dispatched.
    pub task_index: u32,
    /// The workflow task in flight, if any.
    pub running_task: Option<WorkflowTaskId>,
    /// Commands issued and not yet completed.
    pub pending: BTreeMap<CommandId, PendingCommand>,
    /// Commands the code waits on (from the last workflow task).
    pub waiting_on: BTreeSet<CommandId>,
    /// Results that arrived while a workflow task was in flight (or failed), in arrival order.
    pub buffered: Vec<HistoryEvent>,
    /// Set while the last workflow task failed (non-determinism, panic, …) until retried.
    pub workflow_task_failure: Option<Failure>,
    /// Clients to notify when the instance ends.
    pub waiting_clients: Vec<ClientId>,
    /// Operator retries of the current workflow task (part of its id).
    pub task_retry: u32,
    /// Restarts by continue-as-new (part of the run id).
    pub generation: u32,
    /// The parent to notify, for a child workflow.
    pub parent: Option<ParentRef>,
    /// Active receives, in command order.
    pub receives: Vec<ActiveReceive>,
    /// Signals waiting for a receive.
    pub mailbox: Vec<MailboxSignal>,
    /// Channels declared to discard signals no receive waits for.
    pub discarding_channels: BTreeSet<String>,
    /// Ids of signals already taken or kept (dedupe).
    pub seen_signals: BTreeSet<SignalId>,
    /// Signals dropped by discarding channels.
    pub discarded_signals: u32,
    /// Method calls not answered yet, with who to answer.
    pub method_calls: BTreeMap<RequestId, Option<ClientId>>,
}

/// What remains of an instance once it ended, kept for the retention period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedRecord {
    /// Workflow name.
    pub workflow_name: String,
    /// Code version it ran.
    pub workflow_version: Option<u32>,
    /// Tags.
    pub tags: Vec<String>,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended.
    pub ended_at: Timestamp,
    /// When the record is removed.
    pub expires_at: Timestamp,
    /// Workflow tasks it ran.
    pub workflow_tasks: u32,
    /// How it ended.
    pub outcome: WorkflowOutcome,
    /// For a run that failed: its last running state, so failed tasks can be retried and the
    /// run resumed (its history is kept beside it).
    pub resumable: Option<Box<RunningWorkflow>>,
}

/// The record of an instance.
// One record per instance, moved rarely: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// Still running.
    Running(RunningWorkflow),
    /// Ended; kept for its retention.
    Completed(CompletedRecord),
}

/// The stored head of an instance: its record and the outbox of the last transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Layout version of the head.
    pub layout: u16,
    /// The record.
    pub record: Record,
    /// Messages emitted by the last transition (republished after a crash).
    pub outbox: Vec<OutboxMessage>,
}

const HEAD_LAYOUT: u16 = 1;

/// An instance's whole state as the engine works on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowState {
    /// The instance.
    pub id: WorkflowId,
    /// Record and outbox.
    pub head: Head,
    /// History of the main run.
    pub history: Vec<HistoryEvent>,
    /// How many history entries are already stored.
    pub stored_history: usize,
    /// Set when the stored history must be replaced rather than appended to.
    pub replace_history: bool,
}

impl WorkflowState {
    /// A fresh running instance.
    pub fn new(id: WorkflowId, running: RunningWorkflow) -> Self {
        Self {
            id,
            head: Head {
                layout: HEAD_LAYOUT,
                record: Record::Running(running),
                outbox: Vec::new(),
            },
            history: Vec::new(),
            stored_history: 0,
            replace_history: false,
        }
    }

    /// Decodes a stored record.
    pub fn decode(id: WorkflowId, stored: &StoredWorkflow) -> Result<Self, CodecError> {
        let head: Head = codec::decode(&stored.head)?;
        let history = stored
            .history
            .iter()
            .map(|e| codec::decode(e))
            .collect::<Result<Vec<HistoryEvent>, _>>()?;
        Ok(Self {
            id,
            head,
            stored_history: history.len(),
            history,
            replace_history: false,
        })
    }

    /// Encodes what a save must write: the head and the history change.
    pub fn encode_for_save(&self) -> Result<(Vec<u8>, HistoryWrite), CodecError> {
        let head = codec::encode(&self.head)?;
        let history = if self.replace_history {
            HistoryWrite::Replace(self.history.iter().map(codec::encode).collect::<Result<_, _>>()?)
        } else {
            HistoryWrite::Append(
                self.history[self.stored_history.min(self.history.len())..]
                    .iter()
                    .map(codec::encode)
                    .collect::<Result<_, _>>()?,
            )
        };
        Ok((head, history))
    }

    /// Drops the in-memory copy of an ended run's stored history: no transition of a completed
    /// record reads it (a failed run keeps it, since retrying its tasks rewinds it), and it stays
    /// in storage for readers until the retention ends.
    pub fn release_ended_history(&mut self) {
        let ended = matches!(&self.head.record, Record::Completed(c) if c.resumable.is_none());
        if ended && !self.replace_history && self.stored_history == self.history.len() {
            self.history = Vec::new();
            self.stored_history = 0;
        }
    }

    /// Marks the current history as stored (after a successful save).
    pub fn mark_saved(&mut self) {
        self.stored_history = self.history.len();
        self.replace_history = false;
    }

    /// What the instance index holds for this state; the runner writes it with a save whenever
    /// it differs from the state's before the transition.
    pub fn index_entry(&self) -> IndexEntry {
        match &self.head.record {
            Record::Running(r) => IndexEntry {
                workflow: r.workflow_name.clone(),
                status: if r.workflow_task_failure.is_some() {
                    InstanceStatus::Stuck
                } else {
                    InstanceStatus::Running
                },
                started_at: r.started_at,
                ended_at: None,
                tags: r.tags.clone(),
            },
            Record::Completed(c) => IndexEntry {
                workflow: c.workflow_name.clone(),
                status: match c.outcome {
                    WorkflowOutcome::Completed(_) => InstanceStatus::Completed,
                    WorkflowOutcome::Failed(_) => InstanceStatus::Failed,
                    WorkflowOutcome::Cancelled { .. } => InstanceStatus::Cancelled,
                },
                started_at: c.started_at,
                ended_at: Some(c.ended_at),
                tags: c.tags.clone(),
            },
        }
    }

    /// A status snapshot for clients.
    pub fn status_view(&self) -> WorkflowStatusView {
        match &self.head.record {
            Record::Running(r) => WorkflowStatusView {
                workflow_name: r.workflow_name.clone(),
                workflow_version: r.workflow_version,
                status: WorkflowStatus::Running,
                started_at: r.started_at,
                ended_at: None,
                tags: r.tags.clone(),
                pending_commands: u32::try_from(r.pending.len() + r.receives.len()).unwrap_or(u32::MAX),
                workflow_tasks: r.task_index,
                workflow_task_failure: r.workflow_task_failure.clone(),
                outcome: None,
            },
            Record::Completed(c) => WorkflowStatusView {
                workflow_name: c.workflow_name.clone(),
                workflow_version: c.workflow_version,
                status: match c.outcome {
                    WorkflowOutcome::Completed(_) => WorkflowStatus::Completed,
                    WorkflowOutcome::Failed(_) => WorkflowStatus::Failed,
                    WorkflowOutcome::Cancelled { .. } => WorkflowStatus::Cancelled,
                },
                started_at: c.started_at,
                ended_at: Some(c.ended_at),
                tags: c.tags.clone(),
                pending_commands: 0,
                workflow_tasks: c.workflow_tasks,
                workflow_task_failure: None,
                outcome: Some(c.outcome.clone()),
            },
        }
    }
}
