//! Messages every worker hosting a service receives (`task-control:{Service}`), each worker on
//! its own subscription.

use serde::{Deserialize, Serialize};

use crate::TaskId;

/// Control of running tasks. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskControlMessage {
    /// Ask the worker running this task (or holding it for a retry) to stop it.
    Cancel {
        /// The task.
        task_id: TaskId,
    },
}
