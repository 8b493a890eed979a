//! Workflow as code: the [`WorkflowContext`] that workflow functions are written against, the
//! [`Deferred`] handles and combinators they await, and the deterministic replay executor that
//! runs a workflow task ([`replay::execute`]).
//!
//! A workflow is an `async fn` over a context. Every call through the context is numbered by
//! position; a workflow task replays the function against the recorded history, resolving calls
//! whose results are recorded and collecting new ones as commands. The executor polls on the
//! calling thread with a no-op waker, so no tokio, real clock or randomness reaches workflow
//! code except through the context. Pure: no I/O, no async runtime.

mod channel;
mod child;
mod context;
mod deferred;
mod definition;
mod error;
mod methods;
pub mod replay;
mod saga;

pub use channel::{Channel, Filter, Receiver};
pub use child::ChildCall;
pub use context::{CheckMode, ContinueAsNew, WorkflowContext};
pub use deferred::{Deferred, Either, ServiceCall, Timer, all_of, any_of, race};
pub use definition::{ErasedWorkflow, Registry, RegistryError, ServiceStub, Workflow, erase};
pub use error::{CallError, NoError};
pub use methods::Method;
pub use saga::Saga;
