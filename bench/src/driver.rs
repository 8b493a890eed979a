//! The closed-loop driver of the spec: C virtual clients, each submitting one workflow and
//! waiting for its result before the next, until N were submitted; a warm-up of W first, not
//! measured; a per-workflow timeout and a hard bound on the whole run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

/// How a run is driven.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Workflows measured.
    pub n: usize,
    /// Concurrent clients.
    pub c: usize,
    /// Workflows run first, not measured.
    pub warmup: usize,
    /// Prefix of the runs' keys (`<run_tag>-run-<i>`).
    pub run_tag: String,
    /// Longest wait for one workflow.
    pub per_workflow: Duration,
    /// Longest the whole run may take.
    pub hard_bound: Duration,
}

/// What the measured phase gave.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    /// Latencies of the workflows that ended as expected.
    pub latencies: Vec<Duration>,
    /// How many ended as expected.
    pub ok: usize,
    /// How many did not (wrong result, failure, timeout, not submitted in time).
    pub errors: usize,
    /// First submit to last result.
    pub wall: Duration,
    /// The first few errors, for the report.
    pub sample_errors: Vec<String>,
}

/// Runs the warm-up, then the measured phase. `run_one(key, i)` submits workflow `i` under
/// `key` and returns once its result is checked.
pub async fn drive<F, Fut>(plan: &Plan, progress: &ProgressBar, run_one: F) -> Measured
where
    F: Fn(String, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let deadline = Instant::now() + plan.hard_bound;
    warm_up(plan, deadline, progress, run_one.clone()).await;
    measure(plan, deadline, progress, run_one).await
}

/// Runs the warm-up's `plan.warmup` workflows (keys `0..W`), unmeasured.
pub async fn warm_up<F, Fut>(plan: &Plan, deadline: Instant, progress: &ProgressBar, run_one: F)
where
    F: Fn(String, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    shown("warm-up", plan.warmup, progress);
    phase(plan, plan.warmup, 0, deadline, progress, run_one).await;
}

/// Runs and measures the `plan.n` workflows (keys `W..W+N`).
pub async fn measure<F, Fut>(plan: &Plan, deadline: Instant, progress: &ProgressBar, run_one: F) -> Measured
where
    F: Fn(String, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    shown("measured", plan.n, progress);
    phase(plan, plan.n, plan.warmup, deadline, progress, run_one).await
}

/// Restarts the progress bar for a phase of `count` workflows.
fn shown(phase: &'static str, count: usize, progress: &ProgressBar) {
    progress.set_position(0);
    progress.set_length(count as u64);
    progress.set_message(phase);
}

async fn phase<F, Fut>(
    plan: &Plan,
    count: usize,
    offset: usize,
    deadline: Instant,
    progress: &ProgressBar,
    run_one: F,
) -> Measured
where
    F: Fn(String, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..plan.c.max(1) {
        let (next, run_one, progress) = (next.clone(), run_one.clone(), progress.clone());
        let (run_tag, per_workflow) = (plan.run_tag.clone(), plan.per_workflow);
        clients.spawn(async move {
            let mut results = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= count || Instant::now() >= deadline {
                    break;
                }
                let n = (offset + i) as u64;
                let key = format!("{run_tag}-run-{n}");
                let submitted = Instant::now();
                let result = match tokio::time::timeout(per_workflow, run_one(key.clone(), n)).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("{key}: no result within {per_workflow:?}")),
                };
                results.push((result, submitted.elapsed(), Instant::now()));
                progress.inc(1);
            }
            results
        });
    }
    let mut measured = Measured::default();
    let mut last_result = started;
    let mut seen = 0;
    while let Some(joined) = clients.join_next().await {
        let results = match joined {
            Ok(results) => results,
            Err(e) => {
                measured.sample_errors.push(format!("a client task failed: {e}"));
                continue;
            }
        };
        for (result, latency, at) in results {
            seen += 1;
            last_result = last_result.max(at);
            match result {
                Ok(()) => {
                    measured.ok += 1;
                    measured.latencies.push(latency);
                }
                Err(e) => {
                    measured.errors += 1;
                    if measured.sample_errors.len() < 5 {
                        measured.sample_errors.push(e);
                    }
                }
            }
        }
    }
    // Workflows never submitted before the hard bound count as errors.
    measured.errors += count.saturating_sub(seen);
    measured.wall = last_result.duration_since(started);
    measured.latencies.sort();
    measured
}

/// The `p`-th percentile by nearest rank (`p` in 0..=100) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_by_nearest_rank() {
        let sorted: Vec<Duration> = (1..=10).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(5));
        assert_eq!(percentile(&sorted, 90.0), Duration::from_millis(9));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(10));
        assert_eq!(percentile(&sorted, 100.0), Duration::from_millis(10));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[tokio::test]
    async fn every_workflow_is_run_once_and_failures_and_timeouts_count_as_errors() {
        let plan = Plan {
            n: 40,
            c: 4,
            warmup: 4,
            run_tag: "t".into(),
            per_workflow: Duration::from_millis(200),
            hard_bound: Duration::from_secs(30),
        };
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let measured = drive(&plan, &ProgressBar::hidden(), move |key, i| {
            let record = record.clone();
            async move {
                record.lock().expect("seen").push(key.clone());
                match i % 10 {
                    7 => Err(format!("{key}: wrong result")),
                    9 => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
        })
        .await;
        let mut keys = seen.lock().expect("seen").clone();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 44, "warm-up and measured runs, each once");
        assert_eq!(measured.ok + measured.errors, 40);
        assert_eq!(measured.errors, 8, "4 wrong results and 4 timeouts among runs 4..44");
        assert_eq!(measured.latencies.len(), measured.ok);
        assert!(
            measured.wall >= Duration::from_millis(200),
            "a timed-out run ends the phase late"
        );
    }
}
