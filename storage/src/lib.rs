//! Storage boundaries: workflow state with compare-and-set on a version, key sets (tags), and
//! timers claimed with a lease.
//!
//! A workflow's stored form is a small *head* plus an append-only *history* of encoded entries,
//! so a transition writes what changed rather than the whole record. Backends live in one module
//! each behind a cargo feature (`in-memory`, `redis`); the [`conformance`] suite (feature
//! `conformance`) is the contract each one runs. This crate stores bytes and knows no message
//! types beyond ids.

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod dead_letters;
pub mod index;
#[cfg(feature = "in-memory")]
pub mod memory;
#[cfg(feature = "redis")]
pub mod redis;

use std::time::Duration;

use baton_shared_schemas::{TimerId, Timestamp, WorkflowId};

pub use dead_letters::{DeadLetter, DeadLetterPage, DeadLetterStore};
pub use index::{
    IndexEntry, IndexedInstance, InstanceIndex, InstancePage, InstanceQuery, InstanceStatus, WorkflowCounts,
};
#[cfg(feature = "in-memory")]
pub use memory::InMemoryStore;
#[cfg(feature = "redis")]
pub use redis::{RedisAccess, RedisOptions, RedisStore};

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The compare-and-set lost: the record is not at the expected version.
    #[error("workflow {id} was changed concurrently (expected {expected:?})")]
    Conflict {
        /// The record.
        id: WorkflowId,
        /// What the writer expected.
        expected: Expected,
    },
    /// The backend failed; the operation may be retried.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A setting cannot work (a bad URL, a zero timeout); retrying cannot help.
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// Whether the same operation may succeed later (the backend was unreachable or slow), as
    /// opposed to a lost compare-and-set, which needs a fresh read first.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Backend(_))
    }
}

impl baton_runtime::Transient for StorageError {
    fn is_transient(&self) -> bool {
        StorageError::is_transient(self)
    }
}

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What a compare-and-set expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    /// No record.
    Absent,
    /// A record at this version.
    Version(u64),
}

/// A workflow record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWorkflow {
    /// Incremented by every successful save.
    pub version: u64,
    /// The encoded head (everything but the history).
    pub head: Vec<u8>,
    /// Encoded history entries, oldest first.
    pub history: Vec<Vec<u8>>,
}

/// How a save changes the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryWrite {
    /// Append entries (possibly none).
    Append(Vec<Vec<u8>>),
    /// Replace the whole history (completion, continue-as-new).
    Replace(Vec<Vec<u8>>),
}

/// One save: `head` and the history change of `id`, if the record is as `expected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowWrite {
    /// The record.
    pub id: WorkflowId,
    /// What its compare-and-set expects.
    pub expected: Expected,
    /// The encoded head.
    pub head: Vec<u8>,
    /// The history change.
    pub history: HistoryWrite,
    /// The instance's new index entry, written atomically with the record; `None` keeps the
    /// entry it has (or none).
    pub index: Option<IndexEntry>,
}

impl WorkflowWrite {
    /// A write that leaves the index as it is.
    pub fn new(id: WorkflowId, expected: Expected, head: Vec<u8>, history: HistoryWrite) -> Self {
        Self {
            id,
            expected,
            head,
            history,
            index: None,
        }
    }

    /// Sets the instance's index entry in the same write.
    pub fn indexed(mut self, entry: IndexEntry) -> Self {
        self.index = Some(entry);
        self
    }
}

/// Workflow state storage.
///
/// The batch operations ([`load_all`](Self::load_all), [`save_all`](Self::save_all)) exist so a
/// backend on the network can serve a whole batch in one round trip; each record in a batch
/// keeps its own compare-and-set, and one record's conflict does not affect the others.
#[async_trait::async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Loads a record.
    async fn load(&self, id: WorkflowId) -> Result<Option<StoredWorkflow>>;

    /// Writes the head, the history change and the index entry if the record is as expected;
    /// returns the new version, or [`StorageError::Conflict`].
    async fn save(&self, write: WorkflowWrite) -> Result<u64>;

    /// Deletes a record and its index entry if it is at `version`; deleting a missing record
    /// succeeds.
    async fn delete(&self, id: WorkflowId, version: u64) -> Result<()>;

    /// The record's current version (`None` if absent), without reading the record.
    async fn version(&self, id: WorkflowId) -> Result<Option<u64>> {
        Ok(self.load(id).await?.map(|r| r.version))
    }

    /// Loads several records, in order. The default loads them one by one.
    async fn load_all(&self, ids: &[WorkflowId]) -> Result<Vec<Option<StoredWorkflow>>> {
        let mut loaded = Vec::with_capacity(ids.len());
        for id in ids {
            loaded.push(self.load(*id).await?);
        }
        Ok(loaded)
    }

    /// Saves several records, each with its own compare-and-set; one result per write, in
    /// order. The default saves them one by one.
    async fn save_all(&self, writes: Vec<WorkflowWrite>) -> Vec<Result<u64>> {
        let mut saved = Vec::with_capacity(writes.len());
        for w in writes {
            saved.push(self.save(w).await);
        }
        saved
    }
}

/// One page of a key set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetPage {
    /// Members, in a stable order.
    pub members: Vec<String>,
    /// Pass to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

impl SetPage {
    /// A page from up to `limit + 1` members read in order: the extra member, if present, only
    /// tells that there is a next page, which starts after the last member kept.
    pub fn from_one_extra(mut members: Vec<String>, limit: usize) -> Self {
        let next_cursor = if members.len() > limit {
            members.truncate(limit);
            members.last().cloned()
        } else {
            None
        };
        Self { members, next_cursor }
    }
}

/// Sets of strings under keys (tag → ids).
#[async_trait::async_trait]
pub trait KeySetStore: Send + Sync + 'static {
    /// Adds a member (idempotent).
    async fn add(&self, key: &str, member: &str) -> Result<()>;
    /// Removes a member (idempotent).
    async fn remove(&self, key: &str, member: &str) -> Result<()>;
    /// Members after `cursor`, at most `limit`.
    async fn page(&self, key: &str, cursor: Option<&str>, limit: usize) -> Result<SetPage>;
}

/// A stored timer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTimer {
    /// The timer.
    pub id: TimerId,
    /// When it is due.
    pub due: Timestamp,
    /// What to do when due (an encoded scheduled message).
    pub payload: Vec<u8>,
}

/// Durable timers, claimed with a lease so a claimer that dies does not lose them.
#[async_trait::async_trait]
pub trait TimerStore: Send + Sync + 'static {
    /// Stores a timer; a timer with the same id is kept as it is. Returns whether it was new.
    async fn add(&self, timer: StoredTimer) -> Result<bool>;

    /// Stores several timers, each as [`add`](Self::add) does, in one round trip where the
    /// backend allows. On an error some may be stored: adding them again changes nothing.
    async fn add_all(&self, timers: Vec<StoredTimer>) -> Result<()> {
        for timer in timers {
            self.add(timer).await?;
        }
        Ok(())
    }

    /// Claims up to `limit` timers due at `now` that are not under another claim's lease. A
    /// claimed timer becomes claimable again at `now + lease` unless completed first.
    async fn claim_due(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<StoredTimer>>;

    /// Removes a fired timer.
    async fn complete(&self, id: TimerId) -> Result<()>;

    /// Removes several fired timers, in one round trip where the backend allows.
    async fn complete_all(&self, ids: &[TimerId]) -> Result<()> {
        for id in ids {
            self.complete(*id).await?;
        }
        Ok(())
    }

    /// Removes a timer that has not fired; returns whether it existed.
    async fn cancel(&self, id: TimerId) -> Result<bool>;

    /// The earliest instant at which some timer becomes claimable.
    async fn next_due(&self) -> Result<Option<Timestamp>>;

    /// How many timers are stored (due or not, claimed or not).
    async fn count(&self) -> Result<u64>;

    /// Up to `limit` stored timers, the next claimable first (for operators and checks: what
    /// is pending, e.g. that every ended instance has its expiry).
    async fn pending(&self, limit: usize) -> Result<Vec<StoredTimer>>;
}

/// Whether the store can be used, for readiness reports.
#[async_trait::async_trait]
pub trait StoreHealth: Send + Sync + 'static {
    /// One cheap round trip that writes; an error says why the store cannot be used now
    /// (unreachable, or refusing writes).
    async fn check(&self) -> Result<()>;
}

/// The stores the components use.
#[derive(Clone)]
pub struct Stores {
    /// Workflow state (engine).
    pub workflows: std::sync::Arc<dyn WorkflowStore>,
    /// Timers (timer service).
    pub timers: std::sync::Arc<dyn TimerStore>,
    /// Key sets (tag engine).
    pub key_sets: std::sync::Arc<dyn KeySetStore>,
    /// The instance index (written by the engine's saves, read by the API).
    pub index: std::sync::Arc<dyn InstanceIndex>,
    /// Dead letters collected from the broker (the API).
    pub dead_letters: std::sync::Arc<dyn DeadLetterStore>,
    /// Reachability of the backend behind them.
    pub health: std::sync::Arc<dyn StoreHealth>,
}

impl Stores {
    /// One store serving all three roles (e.g. a `RedisStore` or an `InMemoryStore`).
    pub fn all<S>(store: S) -> Self
    where
        S: WorkflowStore + TimerStore + KeySetStore + InstanceIndex + DeadLetterStore + StoreHealth + Clone,
    {
        Self {
            workflows: std::sync::Arc::new(store.clone()),
            timers: std::sync::Arc::new(store.clone()),
            key_sets: std::sync::Arc::new(store.clone()),
            index: std::sync::Arc::new(store.clone()),
            dead_letters: std::sync::Arc::new(store.clone()),
            health: std::sync::Arc::new(store),
        }
    }
}
