//! The context of the task attempt being executed, available to service code.

use std::collections::BTreeMap;

use baton_runtime::CancellationToken;
use baton_shared_schemas::{TaskId, WorkflowId};

tokio::task_local! {
    static CURRENT: TaskContext;
}

/// What a service method knows about the task it is executing.
#[derive(Clone, Debug)]
pub struct TaskContext {
    /// The task; the same for every attempt. Use it as the idempotency key of side effects.
    pub task_id: TaskId,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The calling workflow instance.
    pub workflow_id: WorkflowId,
    /// The calling workflow's name.
    pub workflow_name: String,
    /// Service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Tags of the task.
    pub tags: Vec<String>,
    /// Metadata of the task.
    pub meta: BTreeMap<String, String>,
    pub(crate) cancellation: CancellationToken,
    pub(crate) delegated: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TaskContext {
    /// The context of the task being executed. Panics when called outside a Baton task; use
    /// [`try_current`](Self::try_current) in code that also runs elsewhere.
    pub fn current() -> TaskContext {
        Self::try_current().unwrap_or_else(|| panic!("TaskContext::current() called outside a Baton service task"))
    }

    /// The context of the task being executed, if any.
    pub fn try_current() -> Option<TaskContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The idempotency key of this task (its id).
    pub fn idempotency_key(&self) -> String {
        self.task_id.to_string()
    }

    /// Whether the attempt has been asked to stop: its workflow was cancelled or ended, its
    /// execution timeout passed, or the worker is shutting down. Long-running code should check
    /// it and return early.
    pub fn is_cancelled(&self) -> bool {
        self.cancellation.is_cancelled()
    }

    /// Completes when the attempt is asked to stop.
    pub async fn cancelled(&self) {
        self.cancellation.cancelled().await;
    }

    /// Hands the task back: whatever the method returns is ignored, and the task stays open
    /// until it is completed or failed through the client (`complete_delegated_task` /
    /// `fail_delegated_task`) with [`task_id`](Self::task_id). Use it when the work finishes in
    /// another system (a human approval, a callback).
    pub fn delegate(&self) {
        self.delegated.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether [`delegate`](Self::delegate) was called.
    pub fn is_delegated(&self) -> bool {
        self.delegated.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(crate) async fn scope<F: Future>(self, f: F) -> F::Output {
        CURRENT.scope(self, f).await
    }
}
