//! Errors that workflow code sees from the commands it awaits.

use baton_shared_schemas::{Failure, FailureKind};

/// Why an awaited service call did not return a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallError<E> {
    /// The service returned its own error (non-retryable, or after its retries ran out).
    Service(E),
    /// The task failed in another way: panic, execution timeout, undecodable arguments or
    /// result, unknown method, dead letter. The failure says which.
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
