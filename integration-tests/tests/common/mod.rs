//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

pub mod greeter;

use std::time::Duration;

use baton::{Client, WorkflowId, WorkflowStatusView};

/// Polls an instance's status until `done` holds (at most ~10 s).
pub async fn wait_for_status(
    client: &Client,
    workflow: &str,
    id: WorkflowId,
    what: &str,
    done: impl Fn(&WorkflowStatusView) -> bool,
) -> WorkflowStatusView {
    let mut last = None;
    for _ in 0..1_000 {
        match client.status(workflow, id).await {
            Ok(status) if done(&status) => return status,
            Ok(status) => last = Some(status),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: never happened; last status {last:?}")
}

/// Waits until an instance has recorded at least `n` pending commands (it reached its await).
pub async fn wait_pending(client: &Client, workflow: &str, id: WorkflowId, n: u32) -> WorkflowStatusView {
    wait_for_status(client, workflow, id, "pending commands", |s| s.pending_commands >= n).await
}

/// Polls the tag engine until `n` instances of `workflow` carry `tag` (at most ~5 s; callers
/// assert on what follows).
pub async fn wait_tagged(client: &Client, workflow: &str, tag: &str, n: usize) {
    for _ in 0..500 {
        if client.ids_by_tag(workflow, tag).await.expect("ids").len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
