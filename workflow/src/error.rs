//! Errors that workflow code sees from the commands it awaits.

use baton_shared_schemas::{Failure, FailureKind};
use serde::{Deserialize, Serialize};

/// The error type of results that have no error of their own (signals, timers): it has no
/// values, so `CallError<NoError>` is always `CallError::Failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoError {}

impl std::fmt::Display for NoError {
    fn fmt(&self, _: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {}
    }
}

/// Why an awaited call (service task or child workflow) did not return a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError<E> {
    /// The callee returned its own error: a service's error (non-retryable, or after its
    /// retries ran out) or a child workflow's error.
    Service(E),
    /// The call failed in another way; the failure's kind says which: `Panic`,
    /// `ExecutionTimeout` (an attempt ran too long), `TimedOut` (the call's global timeout),
    /// `Cancelled`, `InvalidArguments`, `UnknownMethod`, `Serialization`.
    Failed(Failure),
}

impl<E> CallError<E> {
    /// The service's own error, if that is what this is.
    pub fn service_error(&self) -> Option<&E> {
        match self {
            CallError::Service(e) => Some(e),
            CallError::Failed(_) => None,
        }
    }

    /// Whether the call's global timeout or an attempt's execution timeout ended it.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind(), FailureKind::TimedOut | FailureKind::ExecutionTimeout)
    }

    /// The failure kind (`ServiceError` for typed errors).
    pub fn kind(&self) -> FailureKind {
        match self {
            CallError::Service(_) => FailureKind::ServiceError,
            CallError::Failed(f) => f.kind,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Service(e) => write!(f, "service error: {e}"),
            CallError::Failed(failure) => write!(f, "task failed: {failure}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for CallError<E> {}
