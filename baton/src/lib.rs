//! Baton: workflow-as-code orchestration over a message broker.
//!
//! This is the crate applications depend on. It re-exports what workflow and service code
//! needs ([`WorkflowContext`], [`Workflow`], [`service`], [`CallError`], …), the [`Client`],
//! the [`Worker`] runtime, and runs every component in one process in [`Embedded`] mode on the
//! in-memory transport and store.
//!
//! ```text
//! #[baton::service]
//! pub trait Greeter {
//!     async fn greet(&self, name: String) -> Result<String, String>;
//! }
//!
//! pub struct Hello;
//! impl baton::Workflow for Hello {
//!     const NAME: &'static str = "Hello";
//!     type Input = String;
//!     type Output = String;
//!     type Error = String;
//!     async fn run(ctx: baton::WorkflowContext, name: String) -> Result<String, String> {
//!         ctx.service::<GreeterStub>().greet(name).await.map_err(|e| e.to_string())
//!     }
//! }
//! ```

pub mod embedded;
#[cfg(feature = "process")]
pub mod process;

/// The HTTP API's settings and its library (feature `api`).
#[cfg(feature = "api")]
pub use baton_api::{self as api, ApiConfig, ApiRole, ApiToken};
pub use baton_client::{Client, ClientError, StartOptions, WorkflowError, WorkflowHandle};
pub use baton_macros::service;
pub use baton_runtime::{Clock, ManualClock, SystemClock};
pub use baton_service_worker::{
    MethodOptions, RetryPolicy, ServiceError, ServiceHandler, ServiceOptions, TaskContext, Worker, WorkerConfig,
    WorkerError,
};
pub use baton_shared_schemas::messages::{
    TaggedCommand, TaskFilter, TaskSelector, WorkflowOutcome, WorkflowStatus, WorkflowStatusView,
};
pub use baton_shared_schemas::{ClientId, Failure, FailureKind, Payload, TaskId, Timestamp, WorkflowId};
pub use baton_storage::Stores;
/// Metric names, trace propagation, and (feature `otlp`) exporting spans over OTLP.
pub use baton_telemetry as telemetry;
pub use baton_workflow::{
    CallError, Channel, CheckMode, ChildCall, ContinueAsNew, Deferred, Either, Filter, Method, NoError, Receiver, Saga,
    ServiceCall, ServiceStub, Timer, Workflow, WorkflowContext, all_of, any_of, race,
};
pub use embedded::{Embedded, EmbeddedBuilder, EmbeddedError, TransportLayer};

/// Component crates, for programs that wire components themselves.
pub mod components {
    pub use baton_runtime as runtime;
    pub use baton_service_worker as worker;
    pub use baton_shared_schemas as schemas;
    pub use baton_storage as storage;
    pub use baton_tag_engine as tag_engine;
    pub use baton_timer_service as timer_service;
    pub use baton_transport as transport;
    pub use baton_workflow as workflow;
    pub use baton_workflow_engine as workflow_engine;
}

/// Items generated code refers to. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use baton_service_worker::{TaskFuture, decode_arguments, encode_outcome, unknown_method};
}
