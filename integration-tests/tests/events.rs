//! Workflow and task transitions as CloudEvents on `events:{Workflow}` and `events:{Service}`,
//! read by a consumer as any user would read them: JSON off the topic.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use baton::components::transport::SubscriptionKind;
use baton::components::workflow_engine::EngineConfig;
use baton::{Embedded, RetryPolicy, ServiceOptions, WorkerConfig, Workflow, WorkflowContext};
use serde_json::Value;

#[baton::service]
pub trait Flaky {
    async fn work(&self, n: u32) -> Result<u32, String>;
}

#[derive(Default)]
struct FlakyImpl {
    attempts: AtomicU32,
}

impl Flaky for std::sync::Arc<FlakyImpl> {
    async fn work(&self, n: u32) -> Result<u32, String> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err("busy, try again".into());
        }
        Ok(n * 2)
    }
}

pub struct Doubler;

impl Workflow for Doubler {
    const NAME: &'static str = "Doubler";
    type Input = u32;
    type Output = u32;
    type Error = String;

    async fn run(ctx: WorkflowContext, n: u32) -> Result<u32, String> {
        ctx.service::<FlakyStub>().work(n).await.map_err(|e| e.to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_are_published_as_cloudevents() {
    let retry = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(5),
        ..RetryPolicy::default()
    };
    let baton = Embedded::builder()
        .service_with(
            FlakyService::new(std::sync::Arc::default()),
            ServiceOptions::with_retry(retry),
        )
        .workflow::<Doubler>()
        .engine_config(EngineConfig {
            events: true,
            ..EngineConfig::default()
        })
        .worker_config(WorkerConfig {
            events: true,
            ..WorkerConfig::default()
        })
        .start()
        .await
        .expect("start");
    let transport = baton.transport().clone();
    let mut workflow_events = transport
        .subscribe("events:Doubler", "audit", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    let mut task_events = transport
        .subscribe("events:Flaky", "audit", SubscriptionKind::Shared)
        .await
        .expect("subscribe");
    let handle = baton.client().start::<Doubler>(&21).await.expect("start");
    assert_eq!(handle.result().await.expect("result"), 42);

    async fn next(subscription: &mut Box<dyn baton::components::transport::Subscription>) -> Value {
        let delivery = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .expect("an event within 10 s")
            .expect("delivery");
        let event: Value = serde_json::from_slice(&delivery.payload).expect("an event is JSON");
        delivery.ack().await;
        event
    }
    let started = next(&mut workflow_events).await;
    let completed = next(&mut workflow_events).await;
    for event in [&started, &completed] {
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/baton/workflows/Doubler");
        assert_eq!(event["subject"], handle.id().to_string());
        assert_eq!(event["datacontenttype"], "application/json");
        assert!(event["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{event}");
    }
    assert_eq!(started["type"], "io.baton.workflow.started");
    assert_eq!(completed["type"], "io.baton.workflow.completed");
    assert_eq!(completed["data"]["output"], 42);

    let kinds: Vec<String> = [
        next(&mut task_events).await,
        next(&mut task_events).await,
        next(&mut task_events).await,
    ]
    .iter()
    .map(|e| {
        assert_eq!(e["source"], "/baton/services/Flaky");
        assert_eq!(e["data"]["workflowId"], handle.id().to_string());
        e["type"].as_str().unwrap_or_default().to_string()
    })
    .collect();
    assert_eq!(
        kinds,
        [
            "io.baton.task.dispatched",
            "io.baton.task.retrying",
            "io.baton.task.completed"
        ],
        "a dispatch, the retry after the first attempt failed, and the completion"
    );
    baton.shutdown().await;
}
