//! In-memory storage: the embedded default, with the same compare-and-set and lease contracts
//! as the Redis backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_shared_schemas::{TimerId, Timestamp, WorkflowId};

use crate::dead_letters::{DeadLetter, DeadLetterPage, DeadLetterStore};
use crate::index::{self, IndexEntry, IndexedInstance, InstanceIndex, InstancePage, InstanceQuery, WorkflowCounts};
use crate::{
    Expected, HistoryWrite, InstanceStatus, KeySetStore, Result, SetPage, StorageError, StoredTimer, StoredWorkflow,
    TimerStore, WorkflowStore, WorkflowWrite,
};

#[derive(Default)]
struct Timers {
    /// (claimable at, id) → nothing: the claim queue.
    queue: BTreeSet<(Timestamp, TimerId)>,
    /// id → (timer, claimable at).
    timers: HashMap<TimerId, (StoredTimer, Timestamp)>,
}

/// The instance index: ordered sets of members, and each instance's member, sets and entry.
#[derive(Default)]
struct Index {
    sets: HashMap<String, BTreeSet<String>>,
    entries: HashMap<WorkflowId, (String, Vec<String>, IndexEntry)>,
    workflows: BTreeSet<String>,
}

impl Index {
    fn remove(&mut self, id: WorkflowId) {
        if let Some((member, keys, _)) = self.entries.remove(&id) {
            for key in keys {
                if let Some(set) = self.sets.get_mut(&key) {
                    set.remove(&member);
                    if set.is_empty() {
                        self.sets.remove(&key);
                    }
                }
            }
        }
    }

    fn put(&mut self, id: WorkflowId, entry: IndexEntry) {
        self.remove(id);
        let member = index::member(id, entry.started_at);
        let keys = index::set_keys(&entry);
        for key in &keys {
            self.sets.entry(key.clone()).or_default().insert(member.clone());
        }
        self.workflows.insert(entry.workflow.clone());
        self.entries.insert(id, (member, keys, entry));
    }
}

#[derive(Default)]
struct Data {
    workflows: HashMap<WorkflowId, StoredWorkflow>,
    sets: HashMap<String, BTreeSet<String>>,
    timers: Timers,
    index: Index,
    /// topic → member → letter.
    dead_letters: BTreeMap<String, BTreeMap<String, DeadLetter>>,
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

    async fn save(&self, write: WorkflowWrite) -> Result<u64> {
        let WorkflowWrite {
            id,
            expected,
            head,
            history,
            index,
        } = write;
        let mut data = self.lock();
        let current = data.workflows.get_mut(&id);
        let saved = match (expected, current) {
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
        };
        if let (Ok(_), Some(entry)) = (&saved, index) {
            data.index.put(id, entry);
        }
        saved
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
                data.index.remove(id);
                Ok(())
            }
        }
    }
}

#[async_trait::async_trait]
impl InstanceIndex for InMemoryStore {
    async fn search(&self, query: &InstanceQuery) -> Result<InstancePage> {
        let data = self.lock();
        let key = index::set_key(query.workflow.as_deref(), query.tag.as_deref(), query.status);
        let Some(set) = data.index.sets.get(&key) else {
            return Ok(InstancePage::default());
        };
        let (upper, lower) = index::bounds(query);
        let limit = query.limit.max(1);
        let mut members: Vec<&String> = set
            .iter()
            .rev()
            .skip_while(|m| upper.as_ref().is_some_and(|u| m.as_str() >= u.as_str()))
            .take_while(|m| lower.as_ref().is_none_or(|l| m.as_str() >= l.as_str()))
            .take(limit + 1)
            .collect();
        let next_cursor = if members.len() > limit {
            members.truncate(limit);
            members.last().map(|m| m.to_string())
        } else {
            None
        };
        let mut instances = Vec::with_capacity(members.len());
        for m in members {
            let id = index::member_id(m)?;
            if let Some((_, _, entry)) = data.index.entries.get(&id) {
                instances.push(IndexedInstance {
                    id,
                    entry: entry.clone(),
                });
            }
        }
        Ok(InstancePage { instances, next_cursor })
    }

    async fn counts(&self) -> Result<Vec<WorkflowCounts>> {
        let data = self.lock();
        Ok(data
            .index
            .workflows
            .iter()
            .map(|workflow| WorkflowCounts {
                workflow: workflow.clone(),
                counts: InstanceStatus::ALL
                    .into_iter()
                    .map(|status| {
                        let key = index::set_key(Some(workflow), None, Some(status));
                        let count = data.index.sets.get(&key).map_or(0, |s| s.len() as u64);
                        (status, count)
                    })
                    .collect(),
            })
            .collect())
    }

    async fn entry(&self, id: WorkflowId) -> Result<Option<IndexEntry>> {
        Ok(self.lock().index.entries.get(&id).map(|(_, _, e)| e.clone()))
    }
}

#[async_trait::async_trait]
impl DeadLetterStore for InMemoryStore {
    async fn add(&self, letter: DeadLetter) -> Result<bool> {
        let mut data = self.lock();
        let topic = data.dead_letters.entry(letter.topic.clone()).or_default();
        if topic.values().any(|held| held.id == letter.id) {
            return Ok(false);
        }
        topic.insert(letter.member(), letter);
        Ok(true)
    }

    async fn topics(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .lock()
            .dead_letters
            .iter()
            .map(|(topic, letters)| (topic.clone(), letters.len() as u64))
            .collect())
    }

    async fn page(&self, topic: &str, cursor: Option<&str>, limit: usize) -> Result<DeadLetterPage> {
        let data = self.lock();
        let Some(letters) = data.dead_letters.get(topic) else {
            return Ok(DeadLetterPage::default());
        };
        let limit = limit.max(1);
        let mut page: Vec<(&String, &DeadLetter)> = letters
            .iter()
            .filter(|(member, _)| cursor.is_none_or(|c| member.as_str() > c))
            .take(limit + 1)
            .collect();
        let next_cursor = if page.len() > limit {
            page.truncate(limit);
            page.last().map(|(member, _)| member.to_string())
        } else {
            None
        };
        Ok(DeadLetterPage {
            letters: page.into_iter().map(|(_, l)| l.clone()).collect(),
            next_cursor,
        })
    }

    async fn get(&self, topic: &str, id: &str) -> Result<Option<DeadLetter>> {
        Ok(self
            .lock()
            .dead_letters
            .get(topic)
            .and_then(|letters| letters.values().find(|l| l.id == id).cloned()))
    }

    async fn remove(&self, topic: &str, id: &str) -> Result<bool> {
        let mut data = self.lock();
        let Some(letters) = data.dead_letters.get_mut(topic) else {
            return Ok(false);
        };
        let member = letters.iter().find(|(_, l)| l.id == id).map(|(m, _)| m.clone());
        let removed = member.is_some_and(|m| letters.remove(&m).is_some());
        if letters.is_empty() {
            data.dead_letters.remove(topic);
        }
        Ok(removed)
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

    async fn count(&self) -> Result<u64> {
        Ok(self.lock().timers.timers.len() as u64)
    }

    async fn pending(&self, limit: usize) -> Result<Vec<StoredTimer>> {
        let data = self.lock();
        Ok(data
            .timers
            .queue
            .iter()
            .take(limit)
            .filter_map(|(_, id)| data.timers.timers.get(id).map(|(timer, _)| timer.clone()))
            .collect())
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
