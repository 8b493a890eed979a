//! Child workflows through the real engine: start and await, dispatch and await later,
//! fire-and-forget, typed child errors, cascading cancellation and child timeouts.
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use baton::{
    CallError, Channel, Embedded, FailureKind, Workflow, WorkflowContext, WorkflowError, WorkflowStatus, all_of,
};
use serde::{Deserialize, Serialize};

pub const RELEASE: Channel<()> = Channel::new("release");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ChildJob {
    Double(u32),
    Fail(String),
    /// Wait for the release signal, then return the number.
    Hold(u32),
}

struct Child;
impl Workflow for Child {
    const NAME: &'static str = "Child";
    type Input = ChildJob;
    type Output = u32;
    type Error = String;

    async fn run(ctx: WorkflowContext, job: ChildJob) -> Result<u32, String> {
        match job {
            ChildJob::Double(n) => Ok(n * 2),
            ChildJob::Fail(why) => Err(why),
            ChildJob::Hold(n) => {
                ctx.receive(&RELEASE).await.map_err(|e| e.to_string())?;
                Ok(n)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ParentJob {
    AwaitOne,
    FanOut,
    Detach,
    CatchFailure,
    HoldChild,
    ChildTimeout,
}

struct Parent;
impl Workflow for Parent {
    const NAME: &'static str = "Parent";
    type Input = ParentJob;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, job: ParentJob) -> Result<String, String> {
        match job {
            ParentJob::AwaitOne => Ok(format!(
                "{}",
                ctx.child::<Child>(&ChildJob::Double(21))
                    .await
                    .map_err(|e| e.to_string())?
            )),
            ParentJob::FanOut => {
                let children: Vec<_> = (1..=3)
                    .map(|n| ctx.child::<Child>(&ChildJob::Double(n)).dispatch())
                    .collect();
                let results: Result<Vec<u32>, _> = all_of(children).await.into_iter().collect();
                Ok(format!("{:?}", results.map_err(|e| e.to_string())?))
            }
            ParentJob::Detach => {
                let id = ctx.child::<Child>(&ChildJob::Hold(5)).detach();
                Ok(id.to_string())
            }
            ParentJob::CatchFailure => match ctx.child::<Child>(&ChildJob::Fail("no stock".into())).await {
                Err(CallError::Service(why)) => Ok(format!("child failed: {why}")),
                other => Err(format!("unexpected {other:?}")),
            },
            ParentJob::HoldChild => Ok(format!(
                "{}",
                ctx.child::<Child>(&ChildJob::Hold(9))
                    .await
                    .map_err(|e| e.to_string())?
            )),
            ParentJob::ChildTimeout => match ctx
                .child::<Child>(&ChildJob::Hold(1))
                .timeout(Duration::from_millis(150))
                .await
            {
                Err(CallError::Failed(f)) if f.kind == FailureKind::TimedOut => Ok("child timed out".into()),
                other => Err(format!("unexpected {other:?}")),
            },
        }
    }
}

async fn start() -> Embedded {
    Embedded::builder()
        .workflow::<Parent>()
        .workflow::<Child>()
        .start()
        .await
        .expect("start")
}

async fn run(baton: &Embedded, job: ParentJob) -> Result<String, WorkflowError<String>> {
    baton
        .client()
        .start::<Parent>(&job)
        .await
        .expect("start")
        .result()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_starts_and_awaits_a_child() {
    let baton = start().await;
    assert_eq!(run(&baton, ParentJob::AwaitOne).await.expect("result"), "42");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_dispatches_children_and_awaits_them_later() {
    let baton = start().await;
    assert_eq!(run(&baton, ParentJob::FanOut).await.expect("result"), "[2, 4, 6]");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_child_outlives_its_parent() {
    let baton = start().await;
    let child_id: baton::WorkflowId = run(&baton, ParentJob::Detach)
        .await
        .expect("result")
        .parse()
        .expect("id");
    let child = baton.client().handle::<Child>(child_id);
    common::wait_pending(baton.client(), "Child", child_id, 1).await;
    child.signal(&RELEASE, &()).await.expect("release");
    assert_eq!(child.result().await.expect("child result"), 5);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_failure_is_a_typed_error_in_the_parent() {
    let baton = start().await;
    assert_eq!(
        run(&baton, ParentJob::CatchFailure).await.expect("result"),
        "child failed: no stock"
    );
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_cancels_its_child_and_a_late_child_result_changes_nothing() {
    let baton = start().await;
    let parent = baton
        .client()
        .start::<Parent>(&ParentJob::HoldChild)
        .await
        .expect("start");
    common::wait_pending(baton.client(), "Parent", parent.id(), 1).await;
    parent.cancel("order withdrawn").await.expect("cancel");
    match parent.result().await {
        Err(WorkflowError::Cancelled { reason }) => assert_eq!(reason, "order withdrawn"),
        other => panic!("{other:?}"),
    }
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_that_ends_after_its_parent_was_cancelled_is_ignored() {
    use baton::components::schemas::{CommandId, MethodRunId};
    let baton = start().await;
    let parent = baton
        .client()
        .start::<Parent>(&ParentJob::HoldChild)
        .await
        .expect("start");
    common::wait_pending(baton.client(), "Parent", parent.id(), 1).await;
    // The child is the command at position 0 of the parent's first workflow task.
    let child_id = CommandId::derive(parent.id(), MethodRunId::main(parent.id()), 1, 0).child_workflow();
    let child = baton.client().handle::<Child>(child_id);
    common::wait_pending(baton.client(), "Child", child_id, 1).await;
    parent.cancel("operator").await.expect("cancel");
    match child.result().await {
        Err(WorkflowError::Cancelled { reason }) => assert!(reason.contains("parent"), "{reason}"),
        other => panic!("the cascade cancels the child: {other:?}"),
    }
    // Releasing the cancelled child afterwards does nothing to either.
    child.signal(&RELEASE, &()).await.expect("signal");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(parent.status().await.expect("status").status, WorkflowStatus::Cancelled);
    assert_eq!(child.status().await.expect("status").status, WorkflowStatus::Cancelled);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_over_its_timeout_is_a_timed_out_error() {
    let baton = start().await;
    assert_eq!(
        run(&baton, ParentJob::ChildTimeout).await.expect("result"),
        "child timed out"
    );
    baton.shutdown().await;
}
