//! The workflow engine: owns one state record per workflow instance and applies every message
//! about that instance as one transition.
//!
//! [`transition::apply`] is the pure decision function (state, message and context give the
//! next state and typed [`Effect`]s; no I/O, no clock, no random ids); [`runner`] carries decisions out: it
//! loads the state, applies, encodes the effects under ids derived from the message that caused
//! them (`Cause::encode_all`), saves them with the state as its outbox with a compare-and-set,
//! publishes them and only then acknowledges. The engine never runs user
//! code: it hands a workflow's history to a `workflow-task:{Workflow}` worker and applies what
//! comes back. Depends on the transport and storage traits, never on a backend.

pub mod error;
pub mod events;
mod handlers;
pub mod runner;
pub mod state;
pub mod transition;

pub use error::EngineError;
pub use handlers::early::{DEFER_ATTEMPTS, DEFER_DELAY};
pub use runner::{EngineConfig, run};
pub use state::{CompletedRecord, PendingKind, Record, RunningWorkflow, WorkflowState};
pub use transition::{Decision, Effect, Next, TransitionContext, apply, early_by, refusal};
