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
    /// Another writer kept winning the compare-and-set.
    #[error("workflow {0} kept changing concurrently; giving up for now")]
    Contended(WorkflowId),
}

impl baton_runtime::Transient for EngineError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_transient(),
            Self::Transport(e) => e.is_transient(),
            Self::CorruptState { .. } | Self::Encode(_) | Self::Contended(_) => false,
        }
    }
}
