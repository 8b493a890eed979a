//! The tag engine: keeps, per workflow name, tag → set of workflow ids, so instances can be
//! looked up and addressed by tag.
//!
//! [`TagIndex`] is the storage-facing core; [`run`] consumes `workflow-tag:{Workflow}` (keyed by
//! tag: tag maintenance from the engine, id lookups, commands addressed by tag, fanned out a
//! page at a time) and `service-tag:{Service}` (keyed by task id: delegated tasks, completed or
//! failed later through the client). [`decision`] decides each message without I/O; the
//! runner reads, publishes and writes what it decides. Depends on the transport and key-set
//! storage traits.

pub mod decision;
mod runner;

pub use runner::{TagEngineConfig, run};

use std::sync::Arc;

use baton_shared_schemas::WorkflowId;
use baton_storage::KeySetStore;

/// A tag-index failure.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] baton_storage::StorageError),
    /// A stored member is not a workflow id (the set was written by something else).
    #[error("tag set {key} holds `{member}`, which is not a workflow id")]
    CorruptMember {
        /// The set's key.
        key: String,
        /// The bad member.
        member: String,
    },
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] baton_transport::TransportError),
    /// Tags must be non-empty and free of control characters.
    #[error("invalid tag {0:?}: tags are non-empty text without control characters")]
    InvalidTag(String),
    /// A record could not be encoded.
    #[error("cannot encode: {0}")]
    Encode(#[source] baton_shared_schemas::CodecError),
    /// One of the tag engine's tasks failed, which stops it.
    #[error(transparent)]
    Task(#[from] baton_runtime::TaskFailed),
}

impl baton_runtime::Transient for TagError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Storage(e) => e.is_transient(),
            Self::Transport(e) => e.is_transient(),
            Self::CorruptMember { .. } | Self::InvalidTag(_) | Self::Encode(_) | Self::Task(_) => false,
        }
    }
}

impl baton_runtime::Classify for TagError {
    fn class(&self) -> baton_runtime::ErrorClass {
        use baton_runtime::ErrorClass;
        match self {
            // The message or what is stored for it can never be handled as it is.
            Self::CorruptMember { .. } | Self::InvalidTag(_) | Self::Encode(_) => ErrorClass::Poison,
            Self::Storage(e) if e.is_transient() => ErrorClass::Transient,
            Self::Transport(e) if e.is_transient() => ErrorClass::Transient,
            Self::Storage(_) | Self::Transport(_) | Self::Task(_) => ErrorClass::Retryable,
        }
    }
}

/// One page of ids carrying a tag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdPage {
    /// Ids on this page.
    pub ids: Vec<WorkflowId>,
    /// Cursor of the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// The one member of a removal's key.
const REMOVED: &str = "removed";

/// Tag → workflow-id sets, per workflow name, over a key-set store.
#[derive(Clone)]
pub struct TagIndex {
    store: Arc<dyn KeySetStore>,
}

impl TagIndex {
    /// An index over a store.
    pub fn new(store: Arc<dyn KeySetStore>) -> Self {
        Self { store }
    }

    /// The storage key of a tag's set. Workflow names and tags may contain `|`, so lengths
    /// delimit the parts and two different pairs never share a key.
    pub fn key(workflow: &str, tag: &str) -> String {
        format!("workflow-tag:{}:{workflow}|{tag}", workflow.len())
    }

    /// The storage key that remembers `id`'s final removal from `tag`, until its record
    /// expires. Lengths delimit the parts, as in [`key`](Self::key).
    pub fn removal_key(workflow: &str, tag: &str, id: WorkflowId) -> String {
        format!(
            "workflow-tag-removed:{}:{}:{workflow}|{tag}|{id}",
            workflow.len(),
            tag.len()
        )
    }

    fn check(tag: &str) -> Result<(), TagError> {
        baton_shared_schemas::validate_tag(tag).map_err(|e| TagError::InvalidTag(e.tag))
    }

    /// Remembers that `id` was removed from `tag` for good (idempotent).
    pub async fn remember_removal(&self, workflow: &str, tag: &str, id: WorkflowId) -> Result<(), TagError> {
        Self::check(tag)?;
        Ok(self.store.add(&Self::removal_key(workflow, tag, id), REMOVED).await?)
    }

    /// Forgets a remembered removal (idempotent).
    pub async fn forget_removal(&self, workflow: &str, tag: &str, id: WorkflowId) -> Result<(), TagError> {
        Self::check(tag)?;
        Ok(self
            .store
            .remove(&Self::removal_key(workflow, tag, id), REMOVED)
            .await?)
    }

    /// Whether `id`'s final removal from `tag` is remembered.
    pub async fn was_removed(&self, workflow: &str, tag: &str, id: WorkflowId) -> Result<bool, TagError> {
        Self::check(tag)?;
        let page = self.store.page(&Self::removal_key(workflow, tag, id), None, 1).await?;
        Ok(!page.members.is_empty())
    }

    /// Records that `id` carries `tag` (idempotent).
    pub async fn add(&self, workflow: &str, tag: &str, id: WorkflowId) -> Result<(), TagError> {
        Self::check(tag)?;
        Ok(self.store.add(&Self::key(workflow, tag), &id.to_string()).await?)
    }

    /// Records that `id` no longer carries `tag` (idempotent).
    pub async fn remove(&self, workflow: &str, tag: &str, id: WorkflowId) -> Result<(), TagError> {
        Self::check(tag)?;
        Ok(self.store.remove(&Self::key(workflow, tag), &id.to_string()).await?)
    }

    /// Ids carrying `tag`, a page at a time.
    pub async fn ids(&self, workflow: &str, tag: &str, cursor: Option<&str>, limit: usize) -> Result<IdPage, TagError> {
        Self::check(tag)?;
        let key = Self::key(workflow, tag);
        let page = self.store.page(&key, cursor, limit).await?;
        let ids = page
            .members
            .into_iter()
            .map(|m| {
                m.parse::<WorkflowId>().map_err(|_| TagError::CorruptMember {
                    key: key.clone(),
                    member: m,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(IdPage {
            ids,
            next_cursor: page.next_cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use baton_storage::InMemoryStore;

    use super::*;

    #[tokio::test]
    async fn ids_are_kept_per_workflow_and_tag_and_paged() {
        let index = TagIndex::new(Arc::new(InMemoryStore::new()));
        let ids: Vec<WorkflowId> = (0..7).map(|_| WorkflowId::new()).collect();
        for id in &ids {
            index.add("Booking", "customer:42", *id).await.expect("add");
        }
        index
            .add("Billing", "customer:42", WorkflowId::new())
            .await
            .expect("other workflow");
        index.remove("Booking", "customer:42", ids[0]).await.expect("remove");
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = index
                .ids("Booking", "customer:42", cursor.as_deref(), 3)
                .await
                .expect("page");
            assert!(page.ids.len() <= 3);
            seen.extend(page.ids);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        seen.sort();
        let mut expected = ids[1..].to_vec();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn keys_of_different_pairs_never_collide() {
        assert_ne!(TagIndex::key("a|b", "c"), TagIndex::key("a", "b|c"));
    }

    #[tokio::test]
    async fn invalid_tags_and_corrupt_members_are_errors() {
        let store = Arc::new(InMemoryStore::new());
        let index = TagIndex::new(store.clone());
        assert!(matches!(
            index.add("W", "", WorkflowId::new()).await,
            Err(TagError::InvalidTag(_))
        ));
        assert!(matches!(
            index.add("W", "bad\ntag", WorkflowId::new()).await,
            Err(TagError::InvalidTag(_))
        ));
        store.add(&TagIndex::key("W", "t"), "not-an-id").await.expect("add");
        assert!(matches!(
            index.ids("W", "t", None, 10).await,
            Err(TagError::CorruptMember { .. })
        ));
    }
}
