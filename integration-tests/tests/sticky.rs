//! Sticky execution through the real engine and workers on the in-memory transport: a worker
//! keeps each run between its workflow tasks and gets only the events since; when the worker
//! dies mid-run, or an instance moves to a worker that has never seen it, the new worker asks
//! for the whole history and the runs end exactly as they would have.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use baton::components::runtime::{CancellationToken, SystemClock};
use baton::components::schemas::messages::{WorkflowEngineMessage, WorkflowTaskMessage};
use baton::components::schemas::{Envelope, Topic, codec};
use baton::components::storage::InMemoryStore;
use baton::components::transport::{InMemoryTransport, MemoryConfig, SubscriptionKind, Transport};
use baton::components::workflow_engine::EngineConfig;
use baton::{Client, Workflow, WorkflowContext};
use serde::{Deserialize, Serialize};

/// A step's error (never raised here).
#[derive(Debug, Serialize, Deserialize)]
pub struct CountError(String);

impl std::error::Error for CountError {}

impl std::fmt::Display for CountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl baton::ServiceError for CountError {
    fn is_retryable(&self) -> bool {
        true
    }
}

/// The one service: counts up.
#[baton::service(name = "counter")]
pub trait Counter {
    /// `n + 1`.
    async fn next(&self, n: u64) -> Result<u64, CountError>;
}

/// Counts how many steps ran.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl Counter for Counting {
    async fn next(&self, n: u64) -> Result<u64, CountError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        // Slow enough that a worker is mid-run when it dies.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(n + 1)
    }
}

/// `steps` steps, one after another.
struct Steps;

impl Workflow for Steps {
    const NAME: &'static str = "steps";
    type Input = u64;
    type Output = u64;
    type Error = String;

    async fn run(ctx: WorkflowContext, steps: u64) -> Result<u64, String> {
        let counter = ctx.service::<CounterStub>();
        let mut n = 0;
        for _ in 0..steps {
            n = counter.next(n).await.map_err(|e| e.to_string())?;
        }
        Ok(n)
    }
}

fn worker(counting: &Counting) -> baton::Worker {
    baton::Worker::new(baton::WorkerConfig::default())
        .service(CounterService::new(counting.clone()))
        .expect("service")
        .with_workflow::<Steps>()
        .expect("workflow")
}

/// Counts what the workers report to the engine, on a subscription of its own.
#[derive(Default)]
struct Reports {
    completed_tasks: AtomicU64,
    history_requests: AtomicU64,
    /// Workflow tasks sent with part of the history only.
    partial_tasks: AtomicU64,
}

async fn observe(transport: Arc<dyn Transport>, reports: Arc<Reports>, stop: CancellationToken) {
    let mut engine = transport
        .subscribe(
            Topic::workflow_engine(Steps::NAME).name(),
            "observer",
            SubscriptionKind::Shared,
        )
        .await
        .expect("subscribe");
    let mut tasks = transport
        .subscribe(
            Topic::workflow_task(Steps::NAME).name(),
            "observer",
            SubscriptionKind::Shared,
        )
        .await
        .expect("subscribe");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Ok(d) = engine.next() => {
                if let Ok(envelope) = codec::decode::<Envelope<WorkflowEngineMessage>>(&d.payload) {
                    match envelope.body {
                        WorkflowEngineMessage::WorkflowTaskCompleted(_) => {
                            reports.completed_tasks.fetch_add(1, Ordering::SeqCst);
                        }
                        WorkflowEngineMessage::WorkflowTaskNeedsHistory { .. } => {
                            reports.history_requests.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {}
                    }
                }
                d.ack().await;
            }
            Ok(d) = tasks.next() => {
                if let Ok(envelope) = codec::decode::<Envelope<WorkflowTaskMessage>>(&d.payload) {
                    let WorkflowTaskMessage::Execute(task) = envelope.body;
                    if task.history_offset > 0 {
                        reports.partial_tasks.fetch_add(1, Ordering::SeqCst);
                    }
                }
                d.ack().await;
            }
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    for _ in 0..2_000 {
        if done() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("{what} did not happen within 10 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_a_sticky_worker_dying_and_moving_to_cold_workers() {
    const RUNS: u64 = 6;
    const STEPS: u64 = 40;
    let transport: Arc<dyn Transport> = Arc::new(InMemoryTransport::new(MemoryConfig::default()));
    let stop = CancellationToken::new();
    let reports = Arc::new(Reports::default());
    let observer = tokio::spawn(observe(transport.clone(), reports.clone(), stop.clone()));
    let engine = tokio::spawn(baton::components::workflow_engine::run(
        EngineConfig {
            workflows: vec![Steps::NAME.to_string()],
            ..EngineConfig::default()
        },
        transport.clone(),
        Arc::new(InMemoryStore::new()),
        Arc::new(SystemClock),
        stop.clone(),
    ));
    let counting = Counting::default();
    // Worker A takes every instance, and keeps their runs.
    let a = tokio::spawn(worker(&counting).run(transport.clone(), Arc::new(SystemClock), stop.clone()));
    // Every consumer subscribed before anything is published: a subscription starts at the
    // messages published after it opens (the engine's 2, worker A's 3 and the observer's 2).
    wait_until("every consumer subscribed", || {
        transport.subscription_status().opened >= 7
    })
    .await
    .unwrap_or_else(|what| panic!("{what}: {:?}", transport.subscription_status()));
    let client = Client::connect(transport.clone()).await.expect("client");
    let mut handles = Vec::new();
    for _ in 0..RUNS {
        handles.push(client.start::<Steps>(&STEPS).await.expect("start"));
    }
    wait_until("worker A running the runs", || {
        reports.completed_tasks.load(Ordering::SeqCst) >= RUNS * 5
    })
    .await
    .unwrap_or_else(|what| {
        panic!(
            "{what}: {} tasks completed, {} partial, {} steps",
            reports.completed_tasks.load(Ordering::SeqCst),
            reports.partial_tasks.load(Ordering::SeqCst),
            counting.0.load(Ordering::SeqCst)
        )
    });
    assert!(
        reports.partial_tasks.load(Ordering::SeqCst) > 0,
        "tasks after the first carry only the events since"
    );
    assert_eq!(
        reports.history_requests.load(Ordering::SeqCst),
        0,
        "worker A keeps every run"
    );

    // Worker B joins: some instances move to it, and it has never seen them.
    let b_stop = CancellationToken::new();
    let b = tokio::spawn(worker(&counting).run(transport.clone(), Arc::new(SystemClock), b_stop.clone()));
    wait_until("an instance moving to worker B", || {
        reports.history_requests.load(Ordering::SeqCst) > 0
    })
    .await
    .unwrap_or_else(|what| panic!("{what}"));
    // Worker A dies mid-run: no drain, its unacknowledged tasks go to worker B.
    assert!(
        reports.completed_tasks.load(Ordering::SeqCst) < RUNS * (STEPS + 1) / 2,
        "the runs are still going when worker A dies"
    );
    a.abort();
    let _ = a.await;
    let requests_before = reports.history_requests.load(Ordering::SeqCst);
    // And a worker C joins to take some of B's share, cold as well.
    let c = tokio::spawn(worker(&counting).run(transport.clone(), Arc::new(SystemClock), stop.clone()));
    for handle in handles {
        let result = tokio::time::timeout(Duration::from_secs(30), handle.result())
            .await
            .expect("every run ends")
            .expect("every run succeeds");
        assert_eq!(result, STEPS, "each step counted once in the run's result");
    }
    assert!(
        reports.history_requests.load(Ordering::SeqCst) >= requests_before,
        "cold workers asked for whole histories"
    );
    // Steps may run again only when a worker died with the step unacknowledged.
    assert!(counting.0.load(Ordering::SeqCst) >= RUNS * STEPS);
    b_stop.cancel();
    stop.cancel();
    for joined in [b.await, c.await] {
        joined.expect("join").expect("worker");
    }
    engine.await.expect("join").expect("engine");
    observer.await.expect("join");
}
