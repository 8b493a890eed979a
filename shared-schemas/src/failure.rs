//! Why something failed, as carried across topics to workflows and clients.

use serde::{Deserialize, Serialize};

use crate::{Payload, Timestamp};

/// The category of a failure. Append-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// The service method returned its own error type; `Failure::error` holds it.
    ServiceError,
    /// The code panicked.
    Panic,
    /// An attempt ran longer than its execution timeout.
    ExecutionTimeout,
    /// The arguments could not be decoded into the method's parameter types.
    InvalidArguments,
    /// No worker hosts this service method or workflow.
    UnknownMethod,
    /// Workflow code made a different command than its history records at a position.
    NonDeterminism,
    /// Workflow code returned its own error type; `Failure::error` holds it.
    WorkflowError,
    /// The message could not be processed and went to a dead-letter topic.
    DeadLettered,
    /// A result could not be encoded or decoded.
    Serialization,
    /// Workflow code waits on something Baton cannot resume it from.
    Blocked,
    /// The task or child workflow was cancelled.
    Cancelled,
    /// The call's global timeout elapsed before it ended.
    TimedOut,
    /// The instance has ended, so it can no longer answer (a method called after its run
    /// completed, failed or was cancelled).
    InstanceEnded,
}

/// One failed attempt in a task's error chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptFailure {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When the attempt failed.
    pub at: Timestamp,
    /// Category of the failure.
    pub kind: FailureKind,
    /// Human-readable description.
    pub message: String,
}

/// A failure, with the typed user error when there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Category.
    pub kind: FailureKind,
    /// Human-readable description (the error's `Display`).
    pub message: String,
    /// The user's error value (JSON) for `ServiceError` and `WorkflowError`.
    pub error: Option<Payload>,
    /// Whether retrying could succeed.
    pub retryable: bool,
    /// Earlier failed attempts, oldest first (the error chain).
    pub previous_attempts: Vec<AttemptFailure>,
}

impl Failure {
    /// A failure without a typed error value.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            error: None,
            retryable: false,
            previous_attempts: Vec::new(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)?;
        if !self.previous_attempts.is_empty() {
            write!(f, " (after {} failed attempts)", self.previous_attempts.len())?;
        }
        Ok(())
    }
}
