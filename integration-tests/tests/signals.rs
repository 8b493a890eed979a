//! Signals through the real engine: mailbox in both orders, filters, limits, discarding
//! channels, and signals addressed by tag.
#![allow(missing_docs)]

mod common;

use std::time::Duration;

use baton::{Channel, Either, Embedded, Filter, StartOptions, Workflow, WorkflowContext, race};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub status: String,
    pub by: String,
}

pub const DECISION: Channel<Decision> = Channel::new("decision");
pub const GO: Channel<()> = Channel::new("go");
pub const PING: Channel<u32> = Channel::new("ping");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Mode {
    /// Wait for one decision.
    One,
    /// Wait for an approved decision only.
    Approved,
    /// Collect three pings.
    Three,
    /// Discard pings nobody waits for; after "go", wait 300 ms for a ping.
    Discarding,
}

struct Listener;
impl Workflow for Listener {
    const NAME: &'static str = "Listener";
    type Input = Mode;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, mode: Mode) -> Result<String, String> {
        let e = |e: baton::CallError<baton::NoError>| e.to_string();
        match mode {
            Mode::One => {
                let d = ctx.receive(&DECISION).await.map_err(e)?;
                Ok(format!("{} by {}", d.status, d.by))
            }
            Mode::Approved => {
                let filter = Filter::eq("/status", &"approved").map_err(|e| e.to_string())?;
                let d = ctx.receive_matching(&DECISION, filter).await.map_err(e)?;
                Ok(format!("{} by {}", d.status, d.by))
            }
            Mode::Three => {
                let mut values = Vec::new();
                for next in ctx.receive_many(&PING, 3, None) {
                    values.push(next.await.map_err(e)?);
                }
                Ok(format!("{values:?}"))
            }
            Mode::Discarding => {
                ctx.discard_unreceived(&PING);
                ctx.receive(&GO).await.map_err(e)?;
                match race(ctx.receive(&PING), ctx.sleep(Duration::from_millis(300))).await {
                    Either::Left(v) => Ok(format!("ping {}", v.map_err(e)?)),
                    Either::Right(()) => Ok("nothing".into()),
                }
            }
        }
    }
}

async fn start() -> Embedded {
    Embedded::builder().workflow::<Listener>().start().await.expect("start")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_before_the_receive_is_kept_in_the_mailbox() {
    let baton = start().await;
    let handle = baton.client().start::<Listener>(&Mode::One).await.expect("start");
    // Sent at once: most likely before the first workflow task even made the receive.
    handle
        .signal(
            &DECISION,
            &Decision {
                status: "approved".into(),
                by: "ann".into(),
            },
        )
        .await
        .expect("signal");
    assert_eq!(handle.result().await.expect("result"), "approved by ann");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_sent_after_the_receive_wakes_the_workflow() {
    let baton = start().await;
    let handle = baton.client().start::<Listener>(&Mode::One).await.expect("start");
    common::wait_pending(baton.client(), "Listener", handle.id(), 1).await;
    handle
        .signal(
            &DECISION,
            &Decision {
                status: "rejected".into(),
                by: "bob".into(),
            },
        )
        .await
        .expect("signal");
    assert_eq!(handle.result().await.expect("result"), "rejected by bob");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_receive_takes_only_matching_values() {
    let baton = start().await;
    let handle = baton.client().start::<Listener>(&Mode::Approved).await.expect("start");
    handle
        .signal(
            &DECISION,
            &Decision {
                status: "rejected".into(),
                by: "bob".into(),
            },
        )
        .await
        .expect("signal");
    handle
        .signal(
            &DECISION,
            &Decision {
                status: "approved".into(),
                by: "cy".into(),
            },
        )
        .await
        .expect("signal");
    assert_eq!(handle.result().await.expect("result"), "approved by cy");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_with_a_limit_collects_that_many_in_order() {
    let baton = start().await;
    let handle = baton.client().start::<Listener>(&Mode::Three).await.expect("start");
    for v in [10, 20] {
        handle.signal(&PING, &v).await.expect("signal");
    }
    common::wait_pending(baton.client(), "Listener", handle.id(), 1).await;
    for v in [30, 40] {
        handle.signal(&PING, &v).await.expect("signal");
    }
    assert_eq!(handle.result().await.expect("result"), "[10, 20, 30]");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discarding_channel_drops_early_signals_and_takes_awaited_ones() {
    let baton = start().await;
    // Early ping: dropped.
    let early = baton
        .client()
        .start::<Listener>(&Mode::Discarding)
        .await
        .expect("start");
    early.signal(&PING, &1).await.expect("signal");
    common::wait_pending(baton.client(), "Listener", early.id(), 1).await;
    early.signal(&GO, &()).await.expect("go");
    assert_eq!(early.result().await.expect("result"), "nothing");
    // Ping sent while the receive waits: taken.
    let late = baton
        .client()
        .start::<Listener>(&Mode::Discarding)
        .await
        .expect("start");
    common::wait_pending(baton.client(), "Listener", late.id(), 1).await;
    late.signal(&GO, &()).await.expect("go");
    common::wait_for_status(baton.client(), "Listener", late.id(), "waiting on the ping", |s| {
        s.workflow_tasks >= 2 && s.pending_commands >= 2
    })
    .await;
    late.signal(&PING, &7).await.expect("signal");
    assert_eq!(late.result().await.expect("result"), "ping 7");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_by_tag_reach_every_tagged_instance_and_no_other() {
    let baton = start().await;
    let client = baton.client();
    let tagged = StartOptions {
        tags: vec!["batch-7".into()],
        ..StartOptions::default()
    };
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(
            client
                .start_with::<Listener>(&Mode::One, tagged.clone())
                .await
                .expect("start"),
        );
    }
    let outsider = client
        .start_with::<Listener>(
            &Mode::One,
            StartOptions {
                tags: vec!["batch-8".into()],
                ..StartOptions::default()
            },
        )
        .await
        .expect("start");
    // The tag index is maintained asynchronously: wait until it lists all three.
    common::wait_tagged(client, "Listener", "batch-7", 3).await;
    let mut ids = client.ids_by_tag("Listener", "batch-7").await.expect("ids");
    ids.sort();
    let mut expected: Vec<_> = members.iter().map(|h| h.id()).collect();
    expected.sort();
    assert_eq!(ids, expected);
    client
        .signal_by_tag::<Listener, _>(
            "batch-7",
            &DECISION,
            &Decision {
                status: "approved".into(),
                by: "ops".into(),
            },
        )
        .await
        .expect("signal by tag");
    for m in &members {
        assert_eq!(m.result().await.expect("result"), "approved by ops");
    }
    let status = outsider.status().await.expect("status");
    assert_eq!(
        status.status,
        baton::WorkflowStatus::Running,
        "the other tag was not signalled"
    );
    // Ended instances leave the tag index.
    common::wait_tagged(client, "Listener", "batch-7", 0).await;
    assert!(client.ids_by_tag("Listener", "batch-7").await.expect("ids").is_empty());
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_and_a_signal_that_overtake_the_start_still_reach_the_instance() {
    // A broker may hand the engine a command ahead of the start it follows (Pulsar does while a
    // partition moves between engine replicas). Here they are simply sent first: the engine
    // defers them through the timer service until the instance exists.
    let baton = start().await;
    let id = baton::WorkflowId::new();
    let watcher = baton::Client::connect(baton.transport().clone())
        .await
        .expect("a second client");
    let early = watcher.handle::<Listener>(id);
    early
        .signal(
            &DECISION,
            &Decision {
                status: "approved".into(),
                by: "ann".into(),
            },
        )
        .await
        .expect("signal");
    let waiting = tokio::spawn(async move { early.result().await });
    // Long enough for the wait to be deferred at least once before the start is sent.
    tokio::time::sleep(baton::components::workflow_engine::DEFER_DELAY + Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the wait is not answered as unknown");
    baton
        .client()
        .start_with::<Listener>(
            &Mode::One,
            StartOptions {
                id: Some(id),
                ..StartOptions::default()
            },
        )
        .await
        .expect("start");
    let result = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the deferred wait is answered")
        .expect("join");
    assert_eq!(result.expect("result"), "approved by ann");
    baton.shutdown().await;
}
