//! Engine errors.

use baton_shared_schemas::{CodecError, WorkflowId};

/// An engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Storage failed (retryable: the message is redelivered).
    #[error(transparent)]
    Storage(#[from] baton_storage::StorageError),
    /// The transport failed (retryable).
    #[error(transparent)]
    Transport(#[from] baton_transport::TransportError),
    /// A stored state could not be decoded.
    #[error("stored state of workflow {id} is unreadable: {source}")]
    CorruptState {
        /// The instance.
        id: WorkflowId,
        /// Why.
        #[source]
        source: CodecError,
    },
    /// A message or state could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(#[source] CodecError),
    /// The message breaks a bound it can never meet ([`crate::transition::refusal`]).
    #[error("{0}")]
    Refused(String),
    /// Another writer kept winning the compare-and-set.
    #[error("workflow {0} kept changing concurrently; giving up for now")]
    Contended(WorkflowId),
    /// One of the engine's tasks failed, which stops the engine.
    #[error(transparent)]
    Task(#[from] baton_runtime::TaskFailed),
}

impl baton_runtime::Transient for EngineError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_transient(),
            Self::Transport(e) => e.is_transient(),
            Self::CorruptState { .. } | Self::Encode(_) | Self::Refused(_) | Self::Contended(_) | Self::Task(_) => {
                false
            }
        }
    }
}

impl baton_runtime::Classify for EngineError {
    fn class(&self) -> baton_runtime::ErrorClass {
        use baton_runtime::ErrorClass;
        match self {
            // What is stored cannot be read, or what was decided cannot be written: handling
            // the message again gives the same result.
            Self::CorruptState { .. } | Self::Encode(_) | Self::Refused(_) => ErrorClass::Poison,
            Self::Contended(_) | Self::Task(_) => ErrorClass::Retryable,
            Self::Storage(e) if e.is_transient() => ErrorClass::Transient,
            Self::Transport(e) if e.is_transient() => ErrorClass::Transient,
            Self::Storage(_) | Self::Transport(_) => ErrorClass::Retryable,
        }
    }
}
