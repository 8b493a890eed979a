//! The instance index: which instances exist, by workflow name, status, tag and start time.
//!
//! The engine writes an instance's [`IndexEntry`] in the same atomic save as its record
//! ([`WorkflowWrite::index`](crate::WorkflowWrite::index)) whenever what the entry says changes,
//! and deleting the record at the end of its retention removes the entry: the index never
//! lists an instance that is gone, nor misses one that exists.
//!
//! Each backend keeps one ordered set per combination of the filters ([`set_keys`]), ordered by
//! start time then id, so every query reads one set in order and pages by the last member seen.

use baton_shared_schemas::{Timestamp, WorkflowId};
use serde::{Deserialize, Serialize};

use crate::{Result, StorageError};

/// Where an instance stands, as listings show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum InstanceStatus {
    /// Running normally.
    Running,
    /// Running, but its last workflow task failed and it waits for an operator's retry.
    Stuck,
    /// Returned a value.
    Completed,
    /// Returned an error (failed tasks can still be retried).
    Failed,
    /// Cancelled.
    Cancelled,
}

impl InstanceStatus {
    /// Every status, in the order listings show them.
    pub const ALL: [InstanceStatus; 5] = [
        InstanceStatus::Running,
        InstanceStatus::Stuck,
        InstanceStatus::Completed,
        InstanceStatus::Failed,
        InstanceStatus::Cancelled,
    ];

    /// The lowercase name used in queries and keys.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Running => "running",
            InstanceStatus::Stuck => "stuck",
            InstanceStatus::Completed => "completed",
            InstanceStatus::Failed => "failed",
            InstanceStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for InstanceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for InstanceStatus {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| {
                format!("unknown status `{s}`: expected one of running, stuck, completed, failed, cancelled")
            })
    }
}

/// What the index holds for one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Workflow name.
    pub workflow: String,
    /// Where it stands.
    pub status: InstanceStatus,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended, once it did.
    pub ended_at: Option<Timestamp>,
    /// Its tags.
    pub tags: Vec<String>,
}

impl IndexEntry {
    /// Encoded form, as backends store it.
    pub fn encode(&self) -> Result<Vec<u8>> {
        baton_shared_schemas::codec::encode(self).map_err(|e| StorageError::Backend(format!("index entry: {e}")))
    }

    /// Decodes a stored entry.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        baton_shared_schemas::codec::decode(bytes)
            .map_err(|e| StorageError::Backend(format!("corrupt index entry: {e}")))
    }
}

/// One instance in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedInstance {
    /// The instance.
    pub id: WorkflowId,
    /// What the index holds for it.
    pub entry: IndexEntry,
}

/// A search of the index. Every filter is optional; results are newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceQuery {
    /// Only instances of this workflow.
    pub workflow: Option<String>,
    /// Only instances in this status.
    pub status: Option<InstanceStatus>,
    /// Only instances carrying this tag.
    pub tag: Option<String>,
    /// Only instances started at or after this instant.
    pub started_from: Option<Timestamp>,
    /// Only instances started before this instant.
    pub started_before: Option<Timestamp>,
    /// Continue after this cursor (from [`InstancePage::next_cursor`]).
    pub cursor: Option<String>,
    /// Page size (at least 1).
    pub limit: usize,
}

/// One page of a search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstancePage {
    /// Instances, newest first.
    pub instances: Vec<IndexedInstance>,
    /// Pass as [`InstanceQuery::cursor`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// How many instances of a workflow are in each status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkflowCounts {
    /// Workflow name.
    pub workflow: String,
    /// Count per status, in [`InstanceStatus::ALL`] order.
    pub counts: Vec<(InstanceStatus, u64)>,
}

/// Reads the instance index.
#[async_trait::async_trait]
pub trait InstanceIndex: Send + Sync + 'static {
    /// One page of instances matching the query, newest first.
    async fn search(&self, query: &InstanceQuery) -> Result<InstancePage>;

    /// Counts per status of every workflow that has had an instance, by name.
    async fn counts(&self) -> Result<Vec<WorkflowCounts>>;

    /// The entry of one instance, if indexed.
    async fn entry(&self, id: WorkflowId) -> Result<Option<IndexEntry>>;
}

/// Escapes a key part so that names and tags holding `|` or `%` cannot collide.
fn part(value: &str) -> String {
    value.replace('%', "%25").replace('|', "%7C").replace('\n', "%0A")
}

/// The name of the set of the instances matching these filters (all of them when none).
pub fn set_key(workflow: Option<&str>, tag: Option<&str>, status: Option<InstanceStatus>) -> String {
    let mut key = String::from("idx|");
    if let Some(w) = workflow {
        key.push_str("w:");
        key.push_str(&part(w));
        key.push('|');
    }
    if let Some(t) = tag {
        key.push_str("t:");
        key.push_str(&part(t));
        key.push('|');
    }
    if let Some(s) = status {
        key.push_str("s:");
        key.push_str(s.as_str());
        key.push('|');
    }
    key
}

/// Every set an entry belongs to: each combination of its workflow, one of its tags and its
/// status, each present or not.
pub fn set_keys(entry: &IndexEntry) -> Vec<String> {
    let mut tags: Vec<Option<&str>> = vec![None];
    let mut distinct: Vec<&str> = entry.tags.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    tags.extend(distinct.into_iter().map(Some));
    let mut keys = Vec::with_capacity(tags.len() * 4);
    for tag in tags {
        for workflow in [None, Some(entry.workflow.as_str())] {
            for status in [None, Some(entry.status)] {
                keys.push(set_key(workflow, tag, status));
            }
        }
    }
    keys
}

/// The member that orders an instance in its sets: zero-padded start time, then id.
pub fn member(id: WorkflowId, started_at: Timestamp) -> String {
    format!("{:020}|{id}", started_at.0)
}

/// The instance a member names.
pub fn member_id(member: &str) -> Result<WorkflowId> {
    member
        .split_once('|')
        .and_then(|(_, id)| id.parse().ok())
        .ok_or_else(|| StorageError::Backend(format!("corrupt index member `{member}`")))
}

/// Checks a cursor given by a caller: it must be a member as [`member`] makes them.
pub fn check_cursor(cursor: &str) -> std::result::Result<(), String> {
    let valid = cursor.split_once('|').is_some_and(|(time, id)| {
        time.len() == 20 && time.bytes().all(|b| b.is_ascii_digit()) && id.parse::<WorkflowId>().is_ok()
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid cursor `{cursor}`: pass the next_cursor of a previous page"
        ))
    }
}

/// The bounds of a query on its set, newest first: members strictly below `upper` (or all when
/// `None`) and at or above `lower` (or all when `None`).
pub fn bounds(query: &InstanceQuery) -> (Option<String>, Option<String>) {
    let before = query.started_before.map(|t| format!("{:020}|", t.0));
    let upper = match (&query.cursor, before) {
        (Some(c), Some(b)) => Some(if c.as_str() < b.as_str() { c.clone() } else { b }),
        (Some(c), None) => Some(c.clone()),
        (None, b) => b,
    };
    let lower = query.started_from.map(|t| format!("{:020}|", t.0));
    (upper, lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tags: &[&str]) -> IndexEntry {
        IndexEntry {
            workflow: "Booking".into(),
            status: InstanceStatus::Running,
            started_at: Timestamp(5),
            ended_at: None,
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn an_entry_is_in_every_combination_of_its_filters() {
        let keys = set_keys(&entry(&["vip", "vip", "eu"]));
        assert_eq!(keys.len(), 12, "{keys:?}");
        assert!(keys.contains(&"idx|".to_string()));
        assert!(keys.contains(&"idx|w:Booking|t:vip|s:running|".to_string()));
        assert!(keys.contains(&"idx|t:eu|".to_string()));
        assert_eq!(keys.iter().collect::<std::collections::BTreeSet<_>>().len(), keys.len());
    }

    #[test]
    fn separators_in_names_cannot_make_two_filters_share_a_set() {
        assert_ne!(set_key(Some("a|t:b"), None, None), set_key(Some("a"), Some("b"), None));
        assert_ne!(set_key(Some("a%7C"), None, None), set_key(Some("a|"), None, None));
    }

    #[test]
    fn members_sort_by_start_time_then_id_and_cursors_are_checked() {
        let early = member(WorkflowId::new(), Timestamp(9));
        let late = member(WorkflowId::new(), Timestamp(10));
        assert!(early < late);
        assert!(check_cursor(&early).is_ok());
        assert!(check_cursor("12|nope").is_err());
        assert!(check_cursor("").is_err());
        assert!(member_id(&late).is_ok());
    }

    #[test]
    fn statuses_parse_from_their_names_only() {
        for status in InstanceStatus::ALL {
            assert_eq!(status.as_str().parse::<InstanceStatus>(), Ok(status));
        }
        assert!("Running".parse::<InstanceStatus>().is_err());
    }
}
