//! Clock skew through the real components: a timer service whose clock runs an hour ahead of
//! the engine's and the worker's. Every timer (a durable sleep, a retry's backoff, a
//! retention) still takes effect no earlier than its due time by the clock of the component
//! that handles it, and every ended instance keeps a pending expiry, through a retry that ends
//! it again and a restart of the timer service.
#![allow(missing_docs)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton::components::runtime::{CancellationToken, OffsetClock};
use baton::components::schemas::messages::TaskFilter;
use baton::components::storage::{InMemoryStore, TimerStore, WorkflowStore};
use baton::components::transport::{InMemoryTransport, Transport};
use baton::components::workflow::erase;
use baton::components::workflow_engine::EngineConfig;
use baton::components::{timer_service, workflow_engine};
use baton::{
    CheckMode, Client, RetryPolicy, ServiceOptions, SystemClock, Worker, WorkerConfig, Workflow, WorkflowContext,
    WorkflowId,
};
use serde::{Deserialize, Serialize};

const HOUR_MS: i64 = 3_600_000;
const RETENTION: Duration = Duration::from_secs(3);
const RETRY_DELAY: Duration = Duration::from_millis(1_500);
/// Longest a timer may be a message in flight rather than stored.
const IN_FLIGHT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UnsteadyError {
    /// Worth retrying.
    Transient(u32),
    /// Not until a fix is deployed.
    Broken,
}

impl std::fmt::Display for UnsteadyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl baton::ServiceError for UnsteadyError {
    fn is_retryable(&self) -> bool {
        matches!(self, UnsteadyError::Transient(_))
    }
}

#[baton::service]
pub trait Unsteady {
    async fn second_time_lucky(&self) -> Result<u32, UnsteadyError>;
    async fn until_fixed(&self) -> Result<(), UnsteadyError>;
}

/// Fails `until_fixed` until its flag is set (the fix "deployed").
struct UnsteadyImpl {
    fixed: Arc<AtomicBool>,
}

impl Unsteady for UnsteadyImpl {
    async fn second_time_lucky(&self) -> Result<u32, UnsteadyError> {
        let attempt = baton::TaskContext::current().attempt;
        if attempt < 2 {
            Err(UnsteadyError::Transient(attempt))
        } else {
            Ok(attempt)
        }
    }

    async fn until_fixed(&self) -> Result<(), UnsteadyError> {
        if self.fixed.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(UnsteadyError::Broken)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Plan {
    Sleep(u64),
    Retry,
    UntilFixed,
}

struct Skewed;
impl Workflow for Skewed {
    const NAME: &'static str = "Skewed";
    type Input = Plan;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, plan: Plan) -> Result<String, String> {
        let unsteady = ctx.service::<UnsteadyStub>();
        match plan {
            Plan::Sleep(ms) => {
                ctx.sleep(Duration::from_millis(ms)).await;
                Ok("slept".into())
            }
            Plan::Retry => unsteady
                .second_time_lucky()
                .await
                .map(|attempt| format!("attempt {attempt}"))
                .map_err(|e| e.to_string()),
            Plan::UntilFixed => unsteady
                .until_fixed()
                .await
                .map(|()| "fixed".into())
                .map_err(|e| e.to_string()),
        }
    }
}

/// The ended instances among `ids` whose record is stored but that have no expiry pending.
async fn ended_without_expiry(store: &InMemoryStore, ids: &[WorkflowId]) -> Vec<WorkflowId> {
    let expiring: BTreeSet<WorkflowId> = store
        .pending(usize::MAX)
        .await
        .expect("pending timers")
        .iter()
        .filter_map(timer_service::expiry_of)
        .collect();
    let mut missing = Vec::new();
    for id in ids {
        let Some(stored) = store.load(*id).await.expect("load") else {
            continue;
        };
        let state = baton::components::workflow_engine::WorkflowState::decode(*id, &stored).expect("readable");
        if matches!(
            state.head.record,
            baton::components::workflow_engine::Record::Completed(_)
        ) && !expiring.contains(id)
        {
            missing.push(*id);
        }
    }
    missing
}

/// Waits until every ended instance among `ids` has its expiry pending: a timer moves between
/// the timer service and the engine as a message for a moment when it fires, is held again or
/// is first set, so the check allows a moment for messages in flight.
async fn every_ended_instance_has_its_expiry(store: &InMemoryStore, ids: &[WorkflowId]) {
    let deadline = Instant::now() + IN_FLIGHT;
    loop {
        let missing = ended_without_expiry(store, ids).await;
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ended instances without a pending expiry for {IN_FLIGHT:?}: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn timer_service(
    transport: &Arc<dyn Transport>,
    store: &InMemoryStore,
    offset_ms: i64,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<Result<(), timer_service::TimerError>> {
    tokio::spawn(timer_service::run(
        Default::default(),
        transport.clone(),
        Arc::new(store.clone()),
        Arc::new(OffsetClock::new(offset_ms)),
        shutdown.clone(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_service_an_hour_ahead_fires_nothing_early_and_every_ended_instance_keeps_its_expiry() {
    timers_take_effect_on_time_and_every_ended_instance_keeps_its_expiry(HOUR_MS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_retried_and_ended_again_before_its_first_expiry_keeps_an_expiry_pending() {
    timers_take_effect_on_time_and_every_ended_instance_keeps_its_expiry(0).await;
}

/// Runs a sleep, a retried task and an instance that fails, is retried and ends again before
/// its first expiry, with a timer service whose clock is `timer_offset_ms` off, and checks
/// each timer against the clock of the component handling it.
async fn timers_take_effect_on_time_and_every_ended_instance_keeps_its_expiry(timer_offset_ms: i64) {
    let transport: Arc<dyn Transport> = Arc::new(InMemoryTransport::default());
    let store = InMemoryStore::new();
    let clock = Arc::new(SystemClock);
    let platform = CancellationToken::new();
    let engine = EngineConfig {
        workflows: vec!["Skewed".into()],
        retention: RETENTION,
        ..EngineConfig::default()
    };
    let engine = tokio::spawn(workflow_engine::run(
        engine,
        transport.clone(),
        Arc::new(store.clone()),
        clock.clone(),
        platform.clone(),
    ));
    let mut timers_down = CancellationToken::new();
    let mut timers = timer_service(&transport, &store, timer_offset_ms, &timers_down);
    let fixed = Arc::new(AtomicBool::new(false));
    let options = ServiceOptions::with_retry(RetryPolicy {
        max_attempts: 3,
        initial_delay: RETRY_DELAY,
        max_delay: RETRY_DELAY,
        jitter: 0.0,
        ..RetryPolicy::default()
    });
    let worker = Worker::new(WorkerConfig::default())
        .workflow(erase::<Skewed>(), CheckMode::Simple)
        .expect("workflow")
        .service_with(UnsteadyService::new(UnsteadyImpl { fixed: fixed.clone() }), options)
        .expect("service");
    let worker = tokio::spawn(worker.run(transport.clone(), clock.clone(), platform.clone()));
    let client = Client::connect(transport.clone()).await.expect("client");

    // A durable sleep returns no earlier than its due time by the engine's clock.
    let began = Instant::now();
    let sleeper = client.start::<Skewed>(&Plan::Sleep(1_500)).await.expect("start");
    assert_eq!(sleeper.result().await.expect("sleeper"), "slept");
    let sleeper_ended_at = Instant::now();
    let slept = began.elapsed();
    assert!(
        slept >= Duration::from_millis(1_500),
        "the sleep returned after {slept:?}"
    );
    assert!(slept < Duration::from_secs(10), "and not an hour late: {slept:?}");

    // A retry's backoff runs no earlier than its due time by the worker's clock.
    let began = Instant::now();
    let retried = client.start::<Skewed>(&Plan::Retry).await.expect("start");
    assert_eq!(retried.result().await.expect("retried"), "attempt 2");
    let retried_ended_at = Instant::now();
    let waited = began.elapsed();
    assert!(waited >= RETRY_DELAY, "the retry ran after {waited:?}");

    // Retention: the record stays until its retention ends by the engine's clock.
    assert!(
        store.load(sleeper.id()).await.expect("load").is_some(),
        "kept after it ended"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        store.load(retried.id()).await.expect("load").is_some(),
        "not removed before its retention ended"
    );

    // An instance that fails, is retried after a fix and ends again: its first expiry comes
    // before the new retention ends, and a new one is pending all along.
    let repaired = client.start::<Skewed>(&Plan::UntilFixed).await.expect("start");
    let failed = repaired.result().await.expect_err("fails until fixed");
    assert!(failed.to_string().contains("Broken"), "{failed}");
    let ids = [sleeper.id(), retried.id(), repaired.id()];
    every_ended_instance_has_its_expiry(&store, &ids).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    fixed.store(true, Ordering::SeqCst);
    client
        .retry_tasks("Skewed", repaired.id(), TaskFilter::default())
        .await
        .expect("retry");
    assert_eq!(repaired.result().await.expect("fixed"), "fixed");
    let repaired_ended_at = Instant::now();

    // The timer service restarts meanwhile.
    timers_down.cancel();
    timers.await.expect("join").expect("timer service stopped cleanly");
    timers_down = CancellationToken::new();
    timers = timer_service(&transport, &store, timer_offset_ms, &timers_down);

    // Until each record is removed, it has an expiry pending; none is removed before its
    // retention ended (counted from when the client saw it end, a moment after it did).
    let ended = [
        (sleeper.id(), sleeper_ended_at),
        (retried.id(), retried_ended_at),
        (repaired.id(), repaired_ended_at),
    ];
    let deadline = Instant::now() + RETENTION + Duration::from_secs(10);
    let mut left: Vec<(WorkflowId, Instant)> = ended.to_vec();
    while !left.is_empty() {
        every_ended_instance_has_its_expiry(&store, &ids).await;
        let mut still = Vec::new();
        for (id, ended_at) in left {
            if store.load(id).await.expect("load").is_some() {
                still.push((id, ended_at));
            } else {
                let after = ended_at.elapsed();
                assert!(
                    after + Duration::from_millis(200) >= RETENTION,
                    "{id} was removed {after:?} after it ended, before its retention of {RETENTION:?}"
                );
            }
        }
        left = still;
        assert!(Instant::now() < deadline, "records never removed: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    client.close();
    platform.cancel();
    timers_down.cancel();
    worker.await.expect("join").expect("worker");
    engine.await.expect("join").expect("engine");
    timers.await.expect("join").expect("timers");
}
