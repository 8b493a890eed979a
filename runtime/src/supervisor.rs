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
    /// Names by task id, so a task that panicked is still named.
    names: std::collections::HashMap<tokio::task::Id, String>,
}

impl Supervisor {
    /// A supervisor whose tasks stop when `token` is cancelled.
    pub fn new(token: CancellationToken) -> Self {
        Self {
            token,
            tasks: JoinSet::new(),
            names: std::collections::HashMap::new(),
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
        let label = name.clone();
        let handle = self.tasks.spawn(async move {
            let result = task.await.map_err(|e| e.to_string());
            if let Err(reason) = &result {
                tracing::error!(task = %name, %reason, "supervised task failed");
            }
            (name, result)
        });
        self.names.insert(handle.id(), label);
    }

    fn panicked(&self, error: &tokio::task::JoinError) -> TaskFailed {
        TaskFailed {
            name: self.names.get(&error.id()).cloned().unwrap_or_else(|| "unnamed".into()),
            reason: if error.is_panic() {
                "panicked".into()
            } else {
                "cancelled".into()
            },
        }
    }

    /// Waits for every task to end. The first one that fails cancels the token, so one failed
    /// part stops the whole component; its failure is returned.
    pub async fn join(mut self) -> Result<(), TaskFailed> {
        let mut first = None;
        while let Some(joined) = self.tasks.join_next().await {
            let failed = match joined {
                Ok((_, Ok(()))) => continue,
                Ok((name, Err(reason))) => TaskFailed { name, reason },
                Err(e) => self.panicked(&e),
            };
            tracing::error!(task = %failed.name, reason = %failed.reason, "stopping the component");
            self.token.cancel();
            first.get_or_insert(failed);
        }
        first.map_or(Ok(()), Err)
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
                    Err(e) => failures.push(self.panicked(&e)),
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
