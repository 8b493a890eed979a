//! Versioning through the real components: several versions hosted at once with running
//! instances pinned to theirs, `patched` branches, and recovery from a bad deploy by retrying
//! the failed workflow task.
#![allow(missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use baton::components::runtime::CancellationToken;
use baton::components::storage::InMemoryStore;
use baton::components::transport::{InMemoryTransport, Transport};
use baton::components::workflow::erase;
use baton::components::workflow_engine::EngineConfig;
use baton::components::{timer_service, workflow_engine};
use baton::{
    Channel, CheckMode, Client, Embedded, FailureKind, SystemClock, Worker, WorkerConfig, Workflow, WorkflowContext,
    WorkflowStatus,
};

pub const GO: Channel<()> = Channel::new("go");

struct PricingV1;
impl Workflow for PricingV1 {
    const NAME: &'static str = "Pricing";
    const VERSION: u32 = 1;
    type Input = ();
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, _: ()) -> Result<String, String> {
        ctx.receive(&GO).await.map_err(|e| e.to_string())?;
        Ok("priced by v1".into())
    }
}

struct PricingV2;
impl Workflow for PricingV2 {
    const NAME: &'static str = "Pricing";
    const VERSION: u32 = 2;
    type Input = ();
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, _: ()) -> Result<String, String> {
        let discount = ctx.inline(|| 10u32);
        ctx.receive(&GO).await.map_err(|e| e.to_string())?;
        Ok(format!("priced by v2 with {discount}% off"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_adds_a_version_and_running_instances_stay_on_theirs() {
    let transport: Arc<dyn Transport> = Arc::new(InMemoryTransport::default());
    let store = InMemoryStore::new();
    let clock = Arc::new(SystemClock);
    let platform = CancellationToken::new();
    let engine = EngineConfig {
        workflows: vec!["Pricing".into()],
        ..EngineConfig::default()
    };
    let engine = tokio::spawn(workflow_engine::run(
        engine,
        transport.clone(),
        Arc::new(store.clone()),
        clock.clone(),
        platform.clone(),
    ));
    let timers = tokio::spawn(timer_service::run(
        Default::default(),
        transport.clone(),
        Arc::new(store.clone()),
        clock.clone(),
        platform.clone(),
    ));
    let client = Client::connect(transport.clone()).await.expect("client");

    // Release 1: only v1 exists.
    let old_worker = CancellationToken::new();
    let worker = Worker::new(WorkerConfig::default())
        .workflow(erase::<PricingV1>(), CheckMode::Simple)
        .expect("v1");
    let first = tokio::spawn(worker.run(transport.clone(), clock.clone(), old_worker.clone()));
    let old = client.start::<PricingV1>(&()).await.expect("start");
    common::wait_pending(&client, "Pricing", old.id(), 1).await;
    old_worker.cancel();
    first.await.expect("join").expect("old worker stopped cleanly");

    // Release 2 hosts both versions.
    let new_worker = CancellationToken::new();
    let worker = Worker::new(WorkerConfig::default())
        .workflow(erase::<PricingV1>(), CheckMode::Simple)
        .expect("v1")
        .workflow(erase::<PricingV2>(), CheckMode::Simple)
        .expect("v2");
    let second = tokio::spawn(worker.run(transport.clone(), clock.clone(), new_worker.clone()));
    let new = client.start::<PricingV2>(&()).await.expect("start");
    common::wait_pending(&client, "Pricing", new.id(), 1).await;
    old.signal(&GO, &()).await.expect("go");
    new.signal(&GO, &()).await.expect("go");
    assert_eq!(old.result().await.expect("old"), "priced by v1");
    assert_eq!(new.result().await.expect("new"), "priced by v2 with 10% off");
    assert_eq!(old.status().await.expect("status").workflow_version, Some(1));
    assert_eq!(new.status().await.expect("status").workflow_version, Some(2));

    client.close();
    new_worker.cancel();
    platform.cancel();
    second.await.expect("join").expect("worker");
    engine.await.expect("join").expect("engine");
    timers.await.expect("join").expect("timers");
}

static NEW_CODE: AtomicBool = AtomicBool::new(false);

/// Old code runs `inline("old")` then waits; new code branches with `patched`.
struct Patched;
impl Workflow for Patched {
    const NAME: &'static str = "Patched";
    type Input = ();
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, _: ()) -> Result<String, String> {
        let label = if NEW_CODE.load(Ordering::SeqCst) && ctx.patched("new-label") {
            ctx.inline(|| "new".to_string())
        } else {
            ctx.inline(|| "old".to_string())
        };
        ctx.receive(&GO).await.map_err(|e| e.to_string())?;
        Ok(label)
    }
}

static BROKEN: AtomicBool = AtomicBool::new(false);

/// A bad deploy swaps two steps; the fix restores them.
struct Fragile;
impl Workflow for Fragile {
    const NAME: &'static str = "Fragile";
    type Input = ();
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, _: ()) -> Result<String, String> {
        if BROKEN.load(Ordering::SeqCst) {
            ctx.receive(&GO).await.map_err(|e| e.to_string())?;
            let n = ctx.inline(|| 1u32);
            return Ok(format!("{n}"));
        }
        let n = ctx.inline(|| 1u32);
        ctx.receive(&GO).await.map_err(|e| e.to_string())?;
        Ok(format!("step {n} then go"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patched_keeps_old_instances_on_the_old_branch_and_new_ones_on_the_new() {
    let baton = Embedded::builder().workflow::<Patched>().start().await.expect("start");
    NEW_CODE.store(false, Ordering::SeqCst);
    let old = baton.client().start::<Patched>(&()).await.expect("start");
    common::wait_pending(baton.client(), "Patched", old.id(), 1).await;
    NEW_CODE.store(true, Ordering::SeqCst);
    let new = baton.client().start::<Patched>(&()).await.expect("start");
    common::wait_pending(baton.client(), "Patched", new.id(), 1).await;
    old.signal(&GO, &()).await.expect("go");
    new.signal(&GO, &()).await.expect("go");
    assert_eq!(old.result().await.expect("old"), "old");
    assert_eq!(new.result().await.expect("new"), "new");
    NEW_CODE.store(false, Ordering::SeqCst);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_bad_deploy_the_instance_waits_visibly_and_resumes_once_fixed_and_retried() {
    // The "deploys" below switch code in place; a worker restarted with new code keeps no run
    // from before, so this one keeps none and replays each task from the whole history.
    let baton = Embedded::builder()
        .worker_config(baton::WorkerConfig {
            sticky_runs: 0,
            ..baton::WorkerConfig::default()
        })
        .workflow_with::<Fragile>(CheckMode::Strict)
        .start()
        .await
        .expect("start");
    BROKEN.store(false, Ordering::SeqCst);
    let handle = baton.client().start::<Fragile>(&()).await.expect("start");
    common::wait_pending(baton.client(), "Fragile", handle.id(), 1).await;
    BROKEN.store(true, Ordering::SeqCst); // the bad deploy
    handle.signal(&GO, &()).await.expect("go");
    let stuck = common::wait_for_status(baton.client(), "Fragile", handle.id(), "non-determinism visible", |s| {
        s.workflow_task_failure.is_some()
    })
    .await;
    assert_eq!(stuck.status, WorkflowStatus::Running);
    assert_eq!(
        stuck.workflow_task_failure.as_ref().map(|f| f.kind),
        Some(FailureKind::NonDeterminism)
    );
    // Retrying without a fix fails the same way and changes nothing else.
    handle.retry_workflow_task().await.expect("retry");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(handle.status().await.expect("status").workflow_task_failure.is_some());
    BROKEN.store(false, Ordering::SeqCst); // the fix
    handle.retry_workflow_task().await.expect("retry");
    assert_eq!(handle.result().await.expect("resumed"), "step 1 then go");
    baton.shutdown().await;
}
