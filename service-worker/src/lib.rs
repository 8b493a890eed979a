//! The worker runtime: hosts user services and workflow definitions and executes their tasks.
//!
//! Service tasks arrive on `service-task:{Service}` (competing consumers). Each attempt runs
//! under the method's execution timeout with a [`TaskContext`]; success publishes
//! `TaskCompleted` to the calling workflow's engine topic; a failure is either retried later
//! through the timer service (exponential backoff with jitter, see [`RetryPolicy`]) or, once
//! retries are exhausted or the error is not retryable, reported as `TaskFailed` with the chain
//! of earlier attempts. Workflow tasks arrive on `workflow-task:{Workflow}` and are replayed by
//! `baton-workflow`. Concurrency is bounded; shutdown stops consuming and drains in-flight work.

mod context;
pub mod decision;
#[cfg(feature = "http-bridge")]
pub mod http_bridge;
mod retry;
mod service;
mod sticky;
mod worker;

pub use context::TaskContext;
#[cfg(feature = "http-bridge")]
pub use http_bridge::{HttpMethod, HttpService, HttpServiceConfig};
pub use retry::{RetryDecision, RetryPolicy};
pub use service::{
    MethodOptions, ServiceError, ServiceHandler, ServiceOptions, TaskFuture, decode_arguments, encode_outcome,
    invalid_arguments, unknown_method,
};
pub use worker::{Worker, WorkerConfig, WorkerError};
