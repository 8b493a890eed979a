//! `baton-bench tags`: how long one save takes for an instance with the most tags it may have
//! ([`MAX_TAGS_PER_INSTANCE`], each [`TAG_BYTES`] long). Each tag is an index set the save
//! script writes, so this is the heaviest save a request can cause.

use std::time::Instant;

use baton::components::schemas::Timestamp;
use baton::components::schemas::WorkflowId;
use baton::components::schemas::tags::{MAX_TAGS_PER_INSTANCE, MAX_TAGS_TOTAL_BYTES};
use baton::components::storage::{
    Expected, HistoryWrite, IndexEntry, InstanceStatus, StorageError, WorkflowStore, WorkflowWrite,
};

/// Each tag's length: the instance's tags together take the most bytes they may.
pub const TAG_BYTES: usize = MAX_TAGS_TOTAL_BYTES / MAX_TAGS_PER_INSTANCE;

/// Save times, in milliseconds.
#[derive(Clone, Debug)]
pub struct Figures {
    /// Instances measured (each created, then saved again with a new status).
    pub instances: usize,
    /// Median save.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

fn tags_of(instance: usize) -> Vec<String> {
    (0..MAX_TAGS_PER_INSTANCE)
        .map(|t| {
            let tag = format!("bench:{instance}:{t}:");
            format!("{tag}{}", "x".repeat(TAG_BYTES.saturating_sub(tag.len())))
        })
        .collect()
}

/// Creates `instances` instances with the most tags and saves each once more (a status change,
/// which moves the instance between index sets), timing every save.
pub async fn measure(store: &dyn WorkflowStore, instances: usize) -> Result<Figures, StorageError> {
    let mut times = Vec::with_capacity(instances * 2);
    for instance in 0..instances {
        let id = WorkflowId::new();
        let mut entry = IndexEntry {
            workflow: "BenchTags".into(),
            status: InstanceStatus::Running,
            started_at: Timestamp(1),
            ended_at: None,
            tags: tags_of(instance),
        };
        let started = Instant::now();
        let version = store
            .save(
                WorkflowWrite::new(id, Expected::Absent, b"head".to_vec(), HistoryWrite::Append(vec![]))
                    .indexed(entry.clone()),
            )
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        entry.status = InstanceStatus::Completed;
        entry.ended_at = Some(Timestamp(2));
        let started = Instant::now();
        let version = store
            .save(
                WorkflowWrite::new(
                    id,
                    Expected::Version(version),
                    b"head".to_vec(),
                    HistoryWrite::Append(vec![]),
                )
                .indexed(entry),
            )
            .await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        store.delete(id, version).await?;
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok(Figures {
        instances,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: times.last().copied().unwrap_or_default(),
    })
}
