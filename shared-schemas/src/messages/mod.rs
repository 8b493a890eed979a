//! One message enum per consuming component. All enums are append-only.

pub mod client;
pub mod engine;
pub mod service_task;
pub mod tag;
pub mod task_control;
pub mod timer;
pub mod workflow_task;

pub use client::{ClientMessage, WorkflowOutcome, WorkflowStatus, WorkflowStatusView};
pub use engine::{
    DeferredCommand, ParentRef, RunCompletion, StartWorkflow, TaskFilter, TaskSelector, WorkflowEngineMessage,
    WorkflowTaskCompleted,
};
pub use service_task::{ExecuteTask, ServiceTaskMessage};
pub use tag::{TagEngineMessage, TaggedCommand};
pub use task_control::TaskControlMessage;
pub use timer::{ScheduledMessage, TimerMessage};
pub use workflow_task::{ExecuteWorkflowTask, WorkflowTaskMessage};
