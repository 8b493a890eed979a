//! The workflow engine: owns one state record per workflow instance and applies every message
//! about that instance as one transition.
//!
//! [`transition::apply`] is the sans-IO decision function (state + message → next state +
//! messages to publish); [`runner`] is the thin loop that loads state, applies, saves with a
//! compare-and-set, publishes the outbox and only then acknowledges. The engine never runs user
//! code: it hands a workflow's history to a `workflow-task:{Workflow}` worker and applies what
//! comes back. Depends on the transport and storage traits, never on a backend.

pub mod error;
mod handlers;
pub mod runner;
pub mod state;
pub mod transition;

pub use error::EngineError;
pub use runner::{EngineConfig, run};
pub use state::{CompletedRecord, Record, RunningWorkflow, WorkflowState};
pub use transition::{Decision, Next, TransitionContext, apply};
