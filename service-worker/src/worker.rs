//! The worker's runner: consumes service tasks and workflow tasks with bounded concurrency
//! through the shared [`ConsumeLoop`], runs them, and reports what [`decision`] decides.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_runtime::{Backoff, CancellationToken, Clock, Supervisor, retry_transient};
use baton_shared_schemas::messages::{ExecuteTask, ServiceTaskMessage, TaskControlMessage, WorkflowTaskMessage};
use baton_shared_schemas::{Cause, Emitted, Envelope, Failure, FailureKind, TaskId, Topic};
use baton_telemetry::names;
use baton_transport::{ConsumeLoop, Handler, Incoming, Publisher, SubscriptionKind, Transport, subscribe_all};
use baton_workflow::{CheckMode, ErasedWorkflow, Registry, RegistryError};
use futures::FutureExt;
use tokio::sync::Semaphore;

pub use baton_config::WorkerConfig;

use crate::context::TaskContext;
use crate::decision::{self, AttemptEnd, Report};
use crate::service::{ServiceHandler, ServiceOptions};
use crate::sticky::{Executed, Executors};

/// Subscription name workers consume with.
pub const SUBSCRIPTION: &str = "service-worker";

/// A worker failure.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] baton_transport::TransportError),
    /// Two services with one name were registered.
    #[error("service {0} is registered twice")]
    DuplicateService(String),
    /// A workflow registration failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A task's report could not be encoded.
    #[error("cannot encode a task report: {0}")]
    Encode(#[source] baton_shared_schemas::CodecError),
    /// The drain deadline stopped an attempt before it finished; the task is redelivered.
    #[error("worker shut down before the attempt finished")]
    Interrupted,
    /// One of the worker's tasks failed, which stops the worker.
    #[error(transparent)]
    Task(#[from] baton_runtime::TaskFailed),
}

impl baton_runtime::Transient for WorkerError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Transport(e) if e.is_transient())
    }
}

impl baton_runtime::Classify for WorkerError {
    fn class(&self) -> baton_runtime::ErrorClass {
        use baton_runtime::ErrorClass;
        match self {
            Self::Encode(_) => ErrorClass::Poison,
            Self::Transport(e) if e.is_transient() => ErrorClass::Transient,
            _ => ErrorClass::Retryable,
        }
    }
}

/// Tasks cancelled recently, so a retry that arrives after the cancellation is skipped.
#[derive(Default)]
struct Cancelled {
    order: std::collections::VecDeque<TaskId>,
    set: std::collections::HashSet<TaskId>,
}

const CANCELLED_KEPT: usize = 100_000;

impl Cancelled {
    fn insert(&mut self, task: TaskId) {
        if self.set.insert(task) {
            self.order.push_back(task);
            if self.order.len() > CANCELLED_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// Hosts services and workflows. Build it, then [`run`](Worker::run) it.
#[derive(Default)]
pub struct Worker {
    config: WorkerConfig,
    services: HashMap<String, (Arc<dyn ServiceHandler>, ServiceOptions)>,
    registry: Registry,
}

impl Worker {
    /// A worker with the given settings.
    pub fn new(config: WorkerConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Replaces the worker settings.
    pub fn with_config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Hosts a service with default options.
    pub fn service(self, handler: impl ServiceHandler) -> Result<Self, WorkerError> {
        self.service_with(handler, ServiceOptions::default())
    }

    /// Hosts a service with options (timeouts, retry policy).
    pub fn service_with(mut self, handler: impl ServiceHandler, options: ServiceOptions) -> Result<Self, WorkerError> {
        let name = handler.name().to_string();
        if self.services.contains_key(&name) {
            return Err(WorkerError::DuplicateService(name));
        }
        self.services.insert(name, (Arc::new(handler), options));
        Ok(self)
    }

    /// Hosts workflow `W`, with the default check of its history (`CheckMode::Simple`).
    pub fn with_workflow<W: baton_workflow::Workflow>(self) -> Result<Self, WorkerError> {
        self.workflow(baton_workflow::erase::<W>(), CheckMode::Simple)
    }

    /// Hosts a workflow version.
    pub fn workflow(mut self, workflow: Arc<dyn ErasedWorkflow>, check_mode: CheckMode) -> Result<Self, WorkerError> {
        self.registry.register(workflow, check_mode)?;
        Ok(self)
    }

    /// Names of the hosted workflows.
    pub fn workflow_names(&self) -> Vec<String> {
        self.registry.names().map(str::to_string).collect()
    }

    /// Names of the hosted services.
    pub fn service_names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// Consumes tasks until `shutdown` is cancelled, then stops consuming, waits for in-flight
    /// work (up to the drain timeout, after which attempts are cancelled and redelivered later)
    /// and returns.
    pub async fn run(
        self,
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<(), WorkerError> {
        // One executor thread per workflow task slot, up to the cores there are.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let executors = Executors::start(
            Arc::new(self.registry.clone()),
            self.config.workflow_concurrency.clamp(1, cores),
            self.config.sticky_runs,
        );
        let shared = Arc::new(Shared {
            executors,
            publisher: Publisher::new(transport.clone()),
            clock,
            registry: self.registry,
            attempts: CancellationToken::new(),
            running: Mutex::new(HashMap::new()),
            cancelled: Mutex::new(Cancelled::default()),
            cancel_grace: self.config.cancel_grace,
            events: self.config.events,
        });
        // Each worker has its own subscription to the control topics, so every worker hears
        // every cancellation and stops the task if it runs it.
        let control_subscription = format!("{SUBSCRIPTION}-{}", baton_shared_schemas::ClientId::new());
        let service_slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let workflow_slots = Arc::new(Semaphore::new(self.config.workflow_concurrency.max(1)));
        // Every subscription at once: joining a broker's consumer group can take seconds each.
        let service_names: Vec<String> = self.services.keys().cloned().collect();
        let control_topics: Vec<_> = service_names.iter().map(|name| Topic::task_control(name)).collect();
        let service_topics: Vec<_> = service_names.iter().map(|name| Topic::service_task(name)).collect();
        let workflow_topics: Vec<_> = shared.registry.names().map(Topic::workflow_task).collect();
        let transport = transport.as_ref();
        let (controls, service_subscriptions, workflow_subscriptions) = futures::future::try_join3(
            subscribe_all(
                transport,
                &control_topics,
                &control_subscription,
                SubscriptionKind::Exclusive,
            ),
            subscribe_all(transport, &service_topics, SUBSCRIPTION, SubscriptionKind::Shared),
            // Keyed, so an instance's tasks keep reaching the worker that keeps its run.
            subscribe_all(transport, &workflow_topics, SUBSCRIPTION, SubscriptionKind::Keyed),
        )
        .await?;
        let mut supervisor = Supervisor::new(shutdown.clone());
        for (topic, control) in control_topics.iter().zip(controls) {
            let consume = ConsumeLoop::new("task control message", shutdown.clone()).clock(shared.clock.clone());
            let mut handler = Controls(shared.clone());
            supervisor.spawn(format!("worker consumer of {}", topic.name()), async move {
                consume.run(control, &mut handler).await
            });
        }
        let mut services = self.services;
        for ((name, topic), subscription) in service_names.iter().zip(&service_topics).zip(service_subscriptions) {
            let Some((handler, options)) = services.remove(name) else {
                continue;
            };
            let consume = ConsumeLoop::new("service task message", shutdown.clone()).clock(shared.clock.clone());
            let handler = ServiceTasks {
                shared: shared.clone(),
                handler,
                options: Arc::new(options),
            };
            let slots = service_slots.clone();
            supervisor.spawn(format!("worker consumer of {}", topic.name()), async move {
                consume.run_each(subscription, slots, handler).await
            });
        }
        for (topic, subscription) in workflow_topics.iter().zip(workflow_subscriptions) {
            let consume = ConsumeLoop::new("workflow task message", shutdown.clone()).clock(shared.clock.clone());
            let (handler, slots) = (WorkflowTasks(shared.clone()), workflow_slots.clone());
            supervisor.spawn(format!("worker consumer of {}", topic.name()), async move {
                consume.run_each(subscription, slots, handler).await
            });
        }

        let drained = supervisor.join();
        tokio::pin!(drained);
        let joined = tokio::select! {
            joined = &mut drained => joined,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(self.config.drain_timeout).await } => {
                tracing::warn!("drain deadline reached; cancelling in-flight attempts");
                shared.attempts.cancel();
                drained.await
            }
        };
        Ok(joined?)
    }
}

struct Shared {
    /// Where workflow tasks run, their runs kept between tasks.
    executors: Executors,
    publisher: Publisher,
    clock: Arc<dyn Clock>,
    registry: Registry,
    /// Cancelled at the drain deadline: running attempts are asked to stop.
    attempts: CancellationToken,
    /// Tokens of the attempts running here, by task.
    running: Mutex<HashMap<TaskId, CancellationToken>>,
    cancelled: Mutex<Cancelled>,
    cancel_grace: Duration,
    /// Whether retries and delegations are published as CloudEvents.
    events: bool,
}

use baton_runtime::locked;

impl Shared {
    /// Publishes the CloudEvent of a retry or a delegation, best effort: the report that
    /// follows is what the workflow depends on.
    async fn publish_event(&self, task: &ExecuteTask, report: &Report, cause: &Envelope<impl Sized>) {
        use baton_shared_schemas::events::{CloudEvent, kinds, service_events_topic};
        let (kind, mut data) = match report {
            Report::RetryLater { due, task: next, .. } => (
                kinds::TASK_RETRYING,
                serde_json::json!({"attempt": task.attempt, "nextAttempt": next.attempt, "retryAt": due.0,
                    "failure": next.previous_failures.last().map(|f| serde_json::json!({"kind": format!("{:?}", f.kind), "message": f.message}))}),
            ),
            Report::Delegated { .. } => (kinds::TASK_DELEGATED, serde_json::json!({"attempt": task.attempt})),
            Report::Engine { .. } => return,
        };
        data["service"] = serde_json::json!(task.service);
        data["method"] = serde_json::json!(task.method);
        data["taskId"] = serde_json::json!(task.task_id.to_string());
        data["workflow"] = serde_json::json!(task.workflow_name);
        data["workflowId"] = serde_json::json!(task.workflow_id.to_string());
        // An id derived from the attempt's message: a redelivered attempt repeats it.
        let id = cause.message_id.nth(1 << 24);
        let event = CloudEvent::new(
            id.to_string(),
            format!("/baton/services/{}", task.service),
            kind,
            task.task_id.to_string(),
            self.clock.now(),
            data,
        );
        let topic = service_events_topic(&task.service);
        let message = baton_transport::OutgoingMessage::new(task.task_id.to_string(), event.to_json());
        if let Err(e) = self.publisher.transport().publish(&topic, message).await {
            tracing::warn!(%topic, error = %e, "task event not published");
        }
    }

    /// Reports a task's end, waiting out a broker outage in place (until the drain deadline)
    /// rather than failing: a redelivery would run the attempt again for nothing.
    async fn report(&self, report: &Report, cause: &Envelope<impl Sized>) -> Result<(), WorkerError> {
        let message = report
            .encode(&Cause::of(cause, self.clock.now()), 0)
            .map_err(WorkerError::Encode)?;
        retry_transient("publish task outcome", Backoff::DEPENDENCY, &self.attempts, || {
            self.publisher.publish_encoded(vec![message.clone()])
        })
        .await?;
        Ok(())
    }

    fn was_cancelled(&self, task: TaskId) -> bool {
        locked(&self.cancelled).set.contains(&task)
    }

    /// Runs one attempt of a service task. `None` when it was stopped: by a cancellation of its
    /// task (`Some(true)` in the flag) or by the drain deadline.
    async fn attempt(
        &self,
        task: &ExecuteTask,
        handler: &dyn ServiceHandler,
        options: &ServiceOptions,
    ) -> Result<AttemptEnd, Stopped> {
        let method = options.for_method(&task.method);
        let cancellation = self.attempts.child_token();
        locked(&self.running).insert(task.task_id, cancellation.clone());
        let delegated = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let context = TaskContext {
            task_id: task.task_id,
            attempt: task.attempt,
            workflow_id: task.workflow_id,
            workflow_name: task.workflow_name.clone(),
            service: task.service.clone(),
            method: task.method.clone(),
            tags: task.tags.clone(),
            meta: task.meta.clone(),
            cancellation: cancellation.clone(),
            delegated: delegated.clone(),
        };
        let call = AssertUnwindSafe(handler.call(&task.method, task.args.clone())).catch_unwind();
        let attempt = context.scope(tokio::time::timeout(method.timeout, call));
        tokio::pin!(attempt);
        let finished = tokio::select! {
            r = &mut attempt => Some(r),
            _ = cancellation.cancelled() => None,
        };
        let finished = match finished {
            Some(r) => r,
            None if self.was_cancelled(task.task_id) => {
                // Asked to stop: give the attempt a grace period to wind down, then drop it.
                let _ = tokio::time::timeout(self.cancel_grace, &mut attempt).await;
                locked(&self.running).remove(&task.task_id);
                return Err(Stopped::Cancelled);
            }
            None => {
                locked(&self.running).remove(&task.task_id);
                return Err(Stopped::Draining);
            }
        };
        locked(&self.running).remove(&task.task_id);
        if delegated.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(AttemptEnd::Delegated);
        }
        Ok(AttemptEnd::Returned(match finished {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => Err(Failure {
                retryable: true,
                ..Failure::new(
                    FailureKind::Panic,
                    format!(
                        "{}.{} panicked: {}",
                        task.service,
                        task.method,
                        baton_workflow::replay::panic_message(panic.as_ref())
                    ),
                )
            }),
            Err(_) => {
                cancellation.cancel();
                Err(Failure {
                    retryable: true,
                    ..Failure::new(
                        FailureKind::ExecutionTimeout,
                        format!("{}.{} ran longer than {:?}", task.service, task.method, method.timeout),
                    )
                })
            }
        }))
    }
}

/// Why an attempt ended without a result.
enum Stopped {
    /// Its task was cancelled: nothing to report.
    Cancelled,
    /// The worker's drain deadline passed: the task is redelivered.
    Draining,
}

/// Runs service tasks of one service.
#[derive(Clone)]
struct ServiceTasks {
    shared: Arc<Shared>,
    handler: Arc<dyn ServiceHandler>,
    options: Arc<ServiceOptions>,
}

#[async_trait::async_trait]
impl Handler<ServiceTaskMessage> for ServiceTasks {
    type Error = WorkerError;

    async fn handle_one(&mut self, message: &Incoming<ServiceTaskMessage>) -> Result<(), WorkerError> {
        let ServiceTaskMessage::Execute(task) = &message.envelope.body;
        tracing::debug!(workflow = %task.workflow_id, task = %task.task_id, attempt = task.attempt, redeliveries = message.redeliveries, "service task received");
        if self.shared.was_cancelled(task.task_id) {
            // Its workflow was cancelled or ended, e.g. while this attempt waited for its retry.
            return Ok(());
        }
        let (emitted_at, now) = (message.envelope.emitted_at, self.shared.clock.now());
        if let Some(early) = decision::retry_early_by(task, emitted_at, now) {
            metrics::counter!(names::TIMERS_EARLY, "consumer" => "worker").increment(1);
            tracing::warn!(workflow = %task.workflow_id, task = %task.task_id, attempt = task.attempt, early_ms = early.as_millis() as u64, "a retry fired before its due time by this worker's clock (the timer service's clock runs ahead); held until then");
            let held = decision::hold_retry(task, message.envelope.message_id, emitted_at, now, message.fired_at);
            return self.shared.report(&held, &message.envelope).await;
        }
        let service = task.service.clone();
        metrics::counter!(names::TASK_ATTEMPTS, "service" => service.clone()).increment(1);
        let in_flight = metrics::gauge!(names::IN_FLIGHT, "kind" => "service");
        in_flight.increment(1.0);
        let began = std::time::Instant::now();
        let attempt = self.shared.attempt(task, self.handler.as_ref(), &self.options).await;
        in_flight.decrement(1.0);
        metrics::histogram!(names::TASK_SECONDS, "service" => service.clone()).record(began.elapsed().as_secs_f64());
        match attempt {
            Ok(end) => {
                let policy = &self.options.for_method(&task.method).retry;
                let failure_kind = match &end {
                    AttemptEnd::Returned(Err(f)) => Some(format!("{:?}", f.kind)),
                    _ => None,
                };
                let report = decision::attempt_ended(task, end, policy, self.shared.clock.now());
                match (&report, failure_kind) {
                    (Report::Delegated { .. }, _) => {}
                    (Report::RetryLater { .. }, _) => {
                        metrics::counter!(names::TASK_RETRIES, "service" => service).increment(1);
                    }
                    (_, Some(kind)) => {
                        metrics::counter!(names::TASK_FAILURES, "service" => service, "kind" => kind).increment(1);
                    }
                    (_, None) => {
                        metrics::counter!(names::TASK_COMPLETIONS, "service" => service).increment(1);
                    }
                }
                if self.shared.events {
                    self.shared.publish_event(task, &report, &message.envelope).await;
                }
                self.shared.report(&report, &message.envelope).await
            }
            Err(Stopped::Cancelled) => Ok(()),
            Err(Stopped::Draining) => Err(WorkerError::Interrupted),
        }
    }
}

/// Replays workflow tasks.
#[derive(Clone)]
struct WorkflowTasks(Arc<Shared>);

#[async_trait::async_trait]
impl Handler<WorkflowTaskMessage> for WorkflowTasks {
    type Error = WorkerError;

    async fn handle_one(&mut self, message: &Incoming<WorkflowTaskMessage>) -> Result<(), WorkerError> {
        let WorkflowTaskMessage::Execute(task) = &message.envelope.body;
        tracing::debug!(workflow = %task.workflow_id, index = task.task_index, redeliveries = message.redeliveries, "workflow task received");
        let report = match self.0.executors.execute(task.clone()).await {
            Executed::Ran(result) => {
                if let Err(failure) = &result {
                    tracing::warn!(workflow = %task.workflow_id, name = %task.workflow_name, failure = %failure, "workflow task failed; the instance waits for a fix");
                }
                decision::replayed(task, result)
            }
            Executed::NeedsHistory => {
                tracing::debug!(workflow = %task.workflow_id, index = task.task_index, "run not kept here; asking for the whole history");
                decision::needs_history(task)
            }
        };
        self.0.report(&report, &message.envelope).await
    }
}

/// Hears cancellations of tasks.
struct Controls(Arc<Shared>);

#[async_trait::async_trait]
impl Handler<TaskControlMessage> for Controls {
    type Error = WorkerError;

    async fn handle_one(&mut self, message: &Incoming<TaskControlMessage>) -> Result<(), WorkerError> {
        let TaskControlMessage::Cancel { task_id } = message.envelope.body;
        locked(&self.0.cancelled).insert(task_id);
        if let Some(token) = locked(&self.0.running).get(&task_id) {
            tracing::debug!(task = %task_id, "cancelling a running task");
            token.cancel();
        }
        Ok(())
    }
}
