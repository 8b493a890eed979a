//! Cancellation, timeouts, delegated tasks, repair verbs, continue-as-new, custom ids and meta,
//! through the real engine, timer service, tag engine and worker.
#![allow(missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton::{
    CallError, Embedded, FailureKind, MethodOptions, RetryPolicy, ServiceOptions, StartOptions, TaskContext,
    TaskFilter, TaskId, Workflow, WorkflowContext, WorkflowError, WorkflowStatus,
};
use serde::{Deserialize, Serialize};

#[baton::service]
pub trait Ops {
    /// Runs until cancelled (or `millis` pass); records whether it saw the cancellation.
    async fn long(&self, millis: u64) -> Result<(), String>;
    /// Fails transiently every time (with a long backoff configured).
    async fn flaky(&self) -> Result<(), String>;
    /// Hands the task back to be completed through the client.
    async fn approval(&self, subject: String) -> Result<String, String>;
    /// Fails while the bug flag is set.
    async fn buggy(&self) -> Result<String, String>;
    /// Reports the task's tags and metadata.
    async fn context(&self) -> Result<String, String>;
}

#[derive(Default)]
struct OpsImpl {
    saw_cancel: AtomicBool,
    flaky_attempts: AtomicU32,
    delegated: Mutex<Vec<TaskId>>,
    bug: AtomicBool,
}

impl Ops for Arc<OpsImpl> {
    async fn long(&self, millis: u64) -> Result<(), String> {
        let ctx = TaskContext::current();
        tokio::select! {
            _ = ctx.cancelled() => {
                self.saw_cancel.store(true, Ordering::SeqCst);
                Err("stopped".into())
            }
            _ = tokio::time::sleep(Duration::from_millis(millis)) => Ok(()),
        }
    }

    async fn flaky(&self) -> Result<(), String> {
        self.flaky_attempts.fetch_add(1, Ordering::SeqCst);
        Err("unavailable".into())
    }

    async fn approval(&self, _subject: String) -> Result<String, String> {
        let ctx = TaskContext::current();
        ctx.delegate();
        self.delegated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ctx.task_id);
        Ok(String::new())
    }

    async fn buggy(&self) -> Result<String, String> {
        if self.bug.load(Ordering::SeqCst) {
            Err("bug: division by zero".into())
        } else {
            Ok("fixed".into())
        }
    }

    async fn context(&self) -> Result<String, String> {
        let ctx = TaskContext::current();
        Ok(format!("{:?} {:?}", ctx.tags, ctx.meta.get("region")))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Job {
    Long,
    Flaky,
    TaskTimeout,
    Approval,
    Buggy,
    Sleep,
    Count { n: u32, to: u32 },
    Meta,
    TaskOptions,
}

struct Jobs;
impl Workflow for Jobs {
    const NAME: &'static str = "Jobs";
    type Input = Job;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, job: Job) -> Result<String, String> {
        let ops = ctx.service::<OpsStub>();
        match job {
            Job::Long => ops.long(60_000).await.map(|_| "done".into()).map_err(|e| e.to_string()),
            Job::Flaky => ops.flaky().await.map(|_| "done".into()).map_err(|e| e.to_string()),
            Job::TaskTimeout => match ops.long(5_000).timeout(Duration::from_millis(150)).await {
                Err(CallError::Failed(f)) if f.kind == FailureKind::TimedOut => Ok("timed out".into()),
                other => Err(format!("unexpected {other:?}")),
            },
            Job::Approval => match ops.approval("loan 7".into()).await {
                Ok(v) => Ok(format!("approved: {v}")),
                Err(CallError::Service(why)) => Ok(format!("refused: {why}")),
                Err(e) => Err(e.to_string()),
            },
            Job::Buggy => ops.buggy().await.map_err(|e| e.to_string()),
            Job::Sleep => {
                ctx.sleep(Duration::from_secs(3_600)).await;
                Ok("woke".into())
            }
            Job::Count { n, to } => {
                if n >= to {
                    return Ok(format!("counted to {n}"));
                }
                ctx.sleep(Duration::from_millis(1)).await;
                ctx.continue_as_new(&Job::Count { n: n + 1, to }).await
            }
            Job::Meta => Ok(format!("{:?} {:?}", ctx.meta().get("tenant"), ctx.tags())),
            Job::TaskOptions => ops
                .context()
                .tags(["priority"])
                .meta(BTreeMap::from([("region".to_string(), "eu".to_string())]))
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

async fn start(ops: Arc<OpsImpl>) -> Embedded {
    let fast = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let options = ServiceOptions::with_retry(fast)
        .method(
            "flaky",
            MethodOptions {
                timeout: Duration::from_secs(5),
                retry: RetryPolicy {
                    max_attempts: 5,
                    initial_delay: Duration::from_millis(400),
                    jitter: 0.0,
                    ..RetryPolicy::default()
                },
            },
        )
        .method(
            "buggy",
            MethodOptions {
                timeout: Duration::from_secs(5),
                retry: RetryPolicy::never(),
            },
        );
    Embedded::builder()
        .service_with(OpsService::new(ops), options)
        .workflow::<Jobs>()
        .worker_config(baton::WorkerConfig {
            cancel_grace: Duration::from_secs(2),
            ..baton::WorkerConfig::default()
        })
        .start()
        .await
        .expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_workflow_asks_its_running_task_to_stop() {
    let ops = Arc::new(OpsImpl::default());
    let baton = start(ops.clone()).await;
    let handle = baton.client().start::<Jobs>(&Job::Long).await.expect("start");
    common::wait_pending(baton.client(), "Jobs", handle.id(), 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    handle.cancel("not needed").await.expect("cancel");
    assert!(matches!(handle.result().await, Err(WorkflowError::Cancelled { .. })));
    for _ in 0..200 {
        if ops.saw_cancel.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        ops.saw_cancel.load(Ordering::SeqCst),
        "the task saw TaskContext::cancelled()"
    );
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_waiting_for_its_retry_is_not_run_again_after_cancellation() {
    let ops = Arc::new(OpsImpl::default());
    let baton = start(ops.clone()).await;
    let handle = baton.client().start::<Jobs>(&Job::Flaky).await.expect("start");
    for _ in 0..200 {
        if ops.flaky_attempts.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The first attempt failed; the second waits 400 ms in the timer service.
    handle.cancel("during backoff").await.expect("cancel");
    assert!(matches!(handle.result().await, Err(WorkflowError::Cancelled { .. })));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(ops.flaky_attempts.load(Ordering::SeqCst), 1, "the retry was skipped");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_task_timeout_is_a_timed_out_error() {
    let baton = start(Arc::default()).await;
    let t0 = Instant::now();
    let handle = baton.client().start::<Jobs>(&Job::TaskTimeout).await.expect("start");
    assert_eq!(handle.result().await.expect("result"), "timed out");
    assert!(t0.elapsed() < Duration::from_secs(4));
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delegated_tasks_are_completed_or_failed_through_the_client() {
    let ops = Arc::new(OpsImpl::default());
    let baton = start(ops.clone()).await;
    let client = baton.client();
    let ok = client.start::<Jobs>(&Job::Approval).await.expect("start");
    let refused = client.start::<Jobs>(&Job::Approval).await.expect("start");
    let mut tasks = Vec::new();
    for _ in 0..500 {
        tasks = ops.delegated.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if tasks.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(tasks.len(), 2, "both tasks were handed back");
    // Which task belongs to which workflow does not matter: complete one, fail the other.
    client
        .complete_delegated_task("Ops", tasks[0], &"by the board")
        .await
        .expect("complete");
    client
        .fail_delegated_task("Ops", tasks[1], "too risky")
        .await
        .expect("fail");
    let mut results = vec![
        ok.result().await.expect("result"),
        refused.result().await.expect("result"),
    ];
    results.sort();
    assert_eq!(
        results,
        vec!["approved: by the board".to_string(), "refused: too risky".to_string()]
    );
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_retries_a_failed_task_after_a_fix_and_the_run_resumes() {
    let ops = Arc::new(OpsImpl::default());
    ops.bug.store(true, Ordering::SeqCst);
    let baton = start(ops.clone()).await;
    let handle = baton.client().start::<Jobs>(&Job::Buggy).await.expect("start");
    match handle.result().await {
        Err(WorkflowError::Failed(e)) => assert!(e.contains("division by zero"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(handle.status().await.expect("status").status, WorkflowStatus::Failed);
    ops.bug.store(false, Ordering::SeqCst); // the fix is deployed
    handle
        .retry_tasks(TaskFilter {
            service: Some("Ops".into()),
            ..TaskFilter::default()
        })
        .await
        .expect("retry");
    common::wait_for_status(baton.client(), "Jobs", handle.id(), "completed after the retry", |s| {
        s.status == WorkflowStatus::Completed
    })
    .await;
    assert_eq!(handle.result().await.expect("result after the fix"), "fixed");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completing_timers_wakes_a_sleeping_workflow() {
    let baton = start(Arc::default()).await;
    let handle = baton.client().start::<Jobs>(&Job::Sleep).await.expect("start");
    common::wait_pending(baton.client(), "Jobs", handle.id(), 1).await;
    handle.complete_timers().await.expect("complete timers");
    assert_eq!(handle.result().await.expect("result"), "woke");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_as_new_keeps_the_id_and_bounds_the_history() {
    let baton = start(Arc::default()).await;
    let handle = baton
        .client()
        .start::<Jobs>(&Job::Count { n: 0, to: 30 })
        .await
        .expect("start");
    assert_eq!(handle.result().await.expect("result"), "counted to 30");
    let status = handle.status().await.expect("status");
    assert!(
        status.workflow_tasks <= 2,
        "each run is short: {} workflow tasks in the last run",
        status.workflow_tasks
    );
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_id_starts_once_and_meta_and_tags_reach_the_workflow() {
    let baton = start(Arc::default()).await;
    let options = StartOptions {
        custom_id: Some("order-1001".into()),
        tags: vec!["vip".into()],
        meta: BTreeMap::from([("tenant".to_string(), "acme".to_string())]),
        ..StartOptions::default()
    };
    let first = baton
        .client()
        .start_with::<Jobs>(&Job::Meta, options.clone())
        .await
        .expect("start");
    let second = baton
        .client()
        .start_with::<Jobs>(&Job::Meta, options)
        .await
        .expect("start again");
    assert_eq!(first.id(), second.id(), "one instance per custom id");
    assert_eq!(first.result().await.expect("result"), r#"Some("acme") ["vip"]"#);
    assert_eq!(second.result().await.expect("result"), r#"Some("acme") ["vip"]"#);
    assert_eq!(first.status().await.expect("status").workflow_tasks, 1, "it ran once");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_tag_ends_every_tagged_instance() {
    let baton = start(Arc::default()).await;
    let client = baton.client();
    let tagged = StartOptions {
        tags: vec!["night-batch".into()],
        ..StartOptions::default()
    };
    let a = client
        .start_with::<Jobs>(&Job::Sleep, tagged.clone())
        .await
        .expect("start");
    let b = client.start_with::<Jobs>(&Job::Sleep, tagged).await.expect("start");
    let other = client.start::<Jobs>(&Job::Sleep).await.expect("start");
    common::wait_tagged(client, "Jobs", "night-batch", 2).await;
    client
        .cancel_by_tag("Jobs", "night-batch", "batch withdrawn")
        .await
        .expect("cancel by tag");
    assert!(matches!(a.result().await, Err(WorkflowError::Cancelled { .. })));
    assert!(matches!(b.result().await, Err(WorkflowError::Cancelled { .. })));
    assert_eq!(other.status().await.expect("status").status, WorkflowStatus::Running);
    baton.shutdown().await;
}

/// An engine frozen between saving an instance's start and publishing its outbox sends the
/// `AddTag` late, after the instance ended and its tag was removed. The tag engine must not
/// list the ended instance again, and must keep nothing for it once its record expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_tag_addition_after_the_end_is_ignored_until_the_record_expires() {
    use baton::components::schemas::messages::TagEngineMessage;
    use baton::components::schemas::{Timestamp, Topic};
    use baton::components::tag_engine::TagIndex;
    use baton::components::transport::Publisher;

    let baton = Embedded::builder()
        .service(OpsService::new(Arc::default()))
        .workflow::<Jobs>()
        .retention(Duration::from_secs(1))
        .start()
        .await
        .expect("start");
    let client = baton.client();
    let tagged = StartOptions {
        tags: vec!["receipts".into()],
        ..StartOptions::default()
    };
    let handle = client.start_with::<Jobs>(&Job::Meta, tagged).await.expect("start");
    let id = handle.id();
    handle.result().await.expect("result");
    let index = TagIndex::new(baton.stores().key_sets.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !index.was_removed("Jobs", "receipts", id).await.expect("read") {
        assert!(Instant::now() < deadline, "the end never removed the tag");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stale = || TagEngineMessage::AddTag {
        workflow_name: "Jobs".into(),
        tag: "receipts".into(),
        workflow_id: id,
    };
    let publisher = Publisher::new(baton.transport().clone());
    let topic = Topic::workflow_tag("Jobs");
    publisher.publish(&topic, stale(), Timestamp(0)).await.expect("publish");
    // The lookup shares the tag's key, so it is handled after the stale addition.
    assert_eq!(
        client.ids_by_tag("Jobs", "receipts").await.expect("ids"),
        vec![],
        "an ended instance is not listed again"
    );
    // Once the record expires the removal is forgotten: nothing is kept for the instance.
    let deadline = Instant::now() + Duration::from_secs(20);
    while index.was_removed("Jobs", "receipts", id).await.expect("read") {
        assert!(Instant::now() < deadline, "the expiry never reached the tag engine");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(matches!(
        client.status("Jobs", id).await,
        Err(baton::ClientError::UnknownWorkflow(_))
    ));
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_tags_and_meta_reach_the_service() {
    let baton = start(Arc::default()).await;
    let handle = baton.client().start::<Jobs>(&Job::TaskOptions).await.expect("start");
    assert_eq!(handle.result().await.expect("result"), r#"["priority"] Some("eu")"#);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_by_tag_fans_out_page_by_page() {
    use baton::components::tag_engine::TagEngineConfig;
    let baton = Embedded::builder()
        .service(OpsService::new(Arc::new(OpsImpl::default())))
        .workflow::<Jobs>()
        .tag_config(TagEngineConfig {
            page_size: 2,
            ..TagEngineConfig::default()
        })
        .start()
        .await
        .expect("start");
    let client = baton.client();
    let tagged = StartOptions {
        tags: vec!["many".into()],
        ..StartOptions::default()
    };
    let mut handles = Vec::new();
    for _ in 0..7 {
        handles.push(
            client
                .start_with::<Jobs>(&Job::Sleep, tagged.clone())
                .await
                .expect("start"),
        );
    }
    common::wait_tagged(client, "Jobs", "many", 7).await;
    let (first_page, next) = client.ids_by_tag_page("Jobs", "many", None, 3).await.expect("page");
    assert_eq!(first_page.len(), 3);
    assert!(next.is_some());
    // Seven instances, two per page: four pages, three of them continuation messages.
    client
        .cancel_by_tag("Jobs", "many", "all of them")
        .await
        .expect("cancel by tag");
    for handle in &handles {
        assert!(matches!(handle.result().await, Err(WorkflowError::Cancelled { .. })));
    }
    baton.shutdown().await;
}
