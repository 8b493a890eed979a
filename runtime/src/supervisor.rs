//! One owner for a component's long-lived tasks: each is named, shares one cancellation token,
//! and shutdown waits for all of them.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A supervised task ended with an error or panicked.
#[derive(Debug, thiserror::Error)]
#[error("task {name} failed: {reason}")]
pub struct TaskFailed {
    /// The task's name.
    pub name: String,
    /// What happened.
    pub reason: String,
}

/// Spawns named tasks under one cancellation token.
#[derive(Debug)]
pub struct Supervisor {
    token: CancellationToken,
    tasks: JoinSet<(String, Result<(), String>)>,
}

impl Supervisor {
    /// A supervisor whose tasks stop when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            tasks: JoinSet::new(),
        }
    }

    /// The token tasks watch for shutdown.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns a named task. Its error is reported by [`Supervisor::shutdown`].
    pub fn spawn<F, E>(&mut self, name: impl Into<String>, task: F)
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let name = name.into();
        self.tasks.spawn(async move {
            let result = task.await.map_err(|e| e.to_string());
            if let Err(reason) = &result {
                tracing::error!(task = %name, %reason, "supervised task failed");
            }
            (name, result)
        });
    }

    /// Cancels every task and waits up to `deadline` for them to finish; tasks still running
    /// then are aborted. Returns the failures seen.
    pub async fn shutdown(mut self, deadline: Duration) -> Vec<TaskFailed> {
        self.token.cancel();
        let mut failures = Vec::new();
        let drained = tokio::time::timeout(deadline, async {
            while let Some(joined) = self.tasks.join_next().await {
                match joined {
                    Ok((_, Ok(()))) => {}
                    Ok((name, Err(reason))) => failures.push(TaskFailed { name, reason }),
                    Err(e) => failures.push(TaskFailed {
                        name: "unknown".into(),
                        reason: e.to_string(),
                    }),
                }
            }
        })
        .await;
        if drained.is_err() {
            let left = self.tasks.len();
            self.tasks.abort_all();
            failures.push(TaskFailed {
                name: "shutdown".into(),
                reason: format!("{left} tasks aborted at the deadline"),
            });
        }
        failures
    }
}
