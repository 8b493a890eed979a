//! In-memory storage: the embedded default, with the same compare-and-set and lease contracts
//! as the Redis backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_shared_schemas::{TimerId, Timestamp, WorkflowId};

use crate::{
    Expected, HistoryWrite, KeySetStore, Result, SetPage, StorageError, StoredTimer, StoredWorkflow, TimerStore,
    WorkflowStore,
};

#[derive(Default)]
struct Timers {
    /// (claimable at, id) → nothing: the claim queue.
    queue: BTreeSet<(Timestamp, TimerId)>,
    /// id → (timer, claimable at).
    timers: HashMap<TimerId, (StoredTimer, Timestamp)>,
}

#[derive(Default)]
struct Data {
    workflows: HashMap<WorkflowId, StoredWorkflow>,
    sets: HashMap<String, BTreeSet<String>>,
    timers: Timers,
}

/// Every store in memory. Cheap to clone; clones share data.
#[derive(Clone, Default)]
pub struct InMemoryStore {
    data: Arc<Mutex<Data>>,
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        baton_runtime::locked(&self.data)
    }

    /// Number of workflow records held.
    pub fn workflow_count(&self) -> usize {
        self.lock().workflows.len()
    }

    /// Number of timers held.
    pub fn timer_count(&self) -> usize {
        self.lock().timers.timers.len()
    }
}

#[async_trait::async_trait]
impl WorkflowStore for InMemoryStore {
    async fn load(&self, id: WorkflowId) -> Result<Option<StoredWorkflow>> {
        Ok(self.lock().workflows.get(&id).cloned())
    }

    async fn save(&self, id: WorkflowId, expected: Expected, head: Vec<u8>, history: HistoryWrite) -> Result<u64> {
        let mut data = self.lock();
        let current = data.workflows.get_mut(&id);
        match (expected, current) {
            (Expected::Absent, None) => {
                let history = match history {
                    HistoryWrite::Append(h) | HistoryWrite::Replace(h) => h,
                };
                data.workflows.insert(
                    id,
                    StoredWorkflow {
                        version: 1,
                        head,
                        history,
                    },
                );
                Ok(1)
            }
            (Expected::Version(v), Some(record)) if record.version == v => {
                record.version += 1;
                record.head = head;
                match history {
                    HistoryWrite::Append(mut h) => record.history.append(&mut h),
                    HistoryWrite::Replace(h) => record.history = h,
                }
                Ok(record.version)
            }
            _ => Err(StorageError::Conflict { id, expected }),
        }
    }

    async fn version(&self, id: WorkflowId) -> Result<Option<u64>> {
        Ok(self.lock().workflows.get(&id).map(|r| r.version))
    }

    async fn delete(&self, id: WorkflowId, version: u64) -> Result<()> {
        let mut data = self.lock();
        match data.workflows.get(&id) {
            Some(record) if record.version != version => Err(StorageError::Conflict {
                id,
                expected: Expected::Version(version),
            }),
            _ => {
                data.workflows.remove(&id);
                Ok(())
            }
        }
    }
}

#[async_trait::async_trait]
impl KeySetStore for InMemoryStore {
    async fn add(&self, key: &str, member: &str) -> Result<()> {
        self.lock()
            .sets
            .entry(key.to_string())
            .or_default()
            .insert(member.to_string());
        Ok(())
    }

    async fn remove(&self, key: &str, member: &str) -> Result<()> {
        let mut data = self.lock();
        if let Some(set) = data.sets.get_mut(key) {
            set.remove(member);
            if set.is_empty() {
                data.sets.remove(key);
            }
        }
        Ok(())
    }

    async fn page(&self, key: &str, cursor: Option<&str>, limit: usize) -> Result<SetPage> {
        let data = self.lock();
        let Some(set) = data.sets.get(key) else {
            return Ok(SetPage::default());
        };
        let limit = limit.max(1);
        let members: Vec<String> = match cursor {
            Some(c) => set
                .range::<str, _>((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                .take(limit + 1)
                .cloned()
                .collect(),
            None => set.iter().take(limit + 1).cloned().collect(),
        };
        Ok(SetPage::from_one_extra(members, limit))
    }
}

#[async_trait::async_trait]
impl TimerStore for InMemoryStore {
    async fn add(&self, timer: StoredTimer) -> Result<bool> {
        let mut data = self.lock();
        if data.timers.timers.contains_key(&timer.id) {
            return Ok(false);
        }
        data.timers.queue.insert((timer.due, timer.id));
        data.timers.timers.insert(timer.id, (timer.clone(), timer.due));
        Ok(true)
    }

    async fn claim_due(&self, now: Timestamp, lease: Duration, limit: usize) -> Result<Vec<StoredTimer>> {
        let mut data = self.lock();
        let timers = &mut data.timers;
        let due: Vec<(Timestamp, TimerId)> = timers
            .queue
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .copied()
            .collect();
        let until = now.saturating_add(lease.max(Duration::from_millis(1)));
        let mut claimed = Vec::with_capacity(due.len());
        for entry in due {
            timers.queue.remove(&entry);
            if let Some((timer, claimable_at)) = timers.timers.get_mut(&entry.1) {
                *claimable_at = until;
                timers.queue.insert((until, entry.1));
                claimed.push(timer.clone());
            }
        }
        Ok(claimed)
    }

    async fn complete(&self, id: TimerId) -> Result<()> {
        self.cancel(id).await.map(|_| ())
    }

    async fn cancel(&self, id: TimerId) -> Result<bool> {
        let mut data = self.lock();
        match data.timers.timers.remove(&id) {
            Some((_, claimable_at)) => {
                data.timers.queue.remove(&(claimable_at, id));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn next_due(&self) -> Result<Option<Timestamp>> {
        Ok(self.lock().timers.queue.first().map(|(at, _)| *at))
    }
}

/// Convenience: the maps of a store for tests and tools.
pub type Members = BTreeMap<String, BTreeSet<String>>;

#[async_trait::async_trait]
impl crate::StoreHealth for InMemoryStore {
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}
