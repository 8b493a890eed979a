//! The worker loop: consumes service tasks and workflow tasks with bounded concurrency.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_runtime::{Backoff, CancellationToken, Clock, retry_transient};
use baton_shared_schemas::messages::{
    ExecuteTask, ServiceTaskMessage, TagEngineMessage, TaskControlMessage, TimerMessage, WorkflowEngineMessage,
    WorkflowTaskMessage,
};
use baton_shared_schemas::{
    AttemptFailure, Envelope, Failure, FailureKind, TaskId, TimerId, Timestamp, Topic, TopicMessage,
};
use baton_transport::{
    Delivery, EncodedMessage, Publisher, Subscription, SubscriptionKind, Transport, TransportError, decode_delivery,
};
use baton_workflow::{CheckMode, ErasedWorkflow, Registry, RegistryError};
use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use baton_config::WorkerConfig;

use crate::context::TaskContext;
use crate::retry::RetryDecision;
use crate::service::{ServiceHandler, ServiceOptions};

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
        let shared = Arc::new(Shared {
            publisher: Publisher::new(transport.clone()),
            clock,
            registry: self.registry,
            attempts: CancellationToken::new(),
            running: Mutex::new(HashMap::new()),
            cancelled: Mutex::new(Cancelled::default()),
            cancel_grace: self.config.cancel_grace,
        });
        // Each worker has its own subscription to the control topics, so every worker hears
        // every cancellation and stops the task if it runs it.
        let control_subscription = format!("{SUBSCRIPTION}-{}", baton_shared_schemas::ClientId::new());
        let service_slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let workflow_slots = Arc::new(Semaphore::new(self.config.workflow_concurrency.max(1)));
        let mut readers = JoinSet::new();
        // Every subscription at once: joining a broker's consumer group can take seconds each.
        let control_topics: Vec<_> = self.services.keys().map(|name| Topic::task_control(name)).collect();
        let service_names: Vec<String> = self.services.keys().cloned().collect();
        let service_topics: Vec<_> = service_names.iter().map(|name| Topic::service_task(name)).collect();
        let workflow_topics: Vec<_> = shared.registry.names().map(Topic::workflow_task).collect();
        let (controls, service_subscriptions, workflow_subscriptions) =
            futures::future::try_join3(
                futures::future::try_join_all(control_topics.iter().map(|topic| {
                    transport.subscribe(topic.name(), &control_subscription, SubscriptionKind::Exclusive)
                })),
                futures::future::try_join_all(
                    service_topics
                        .iter()
                        .map(|topic| transport.subscribe(topic.name(), SUBSCRIPTION, SubscriptionKind::Shared)),
                ),
                futures::future::try_join_all(
                    workflow_topics
                        .iter()
                        .map(|topic| transport.subscribe(topic.name(), SUBSCRIPTION, SubscriptionKind::Shared)),
                ),
            )
            .await?;
        for mut control in controls {
            let (shared, shutdown) = (shared.clone(), shutdown.clone());
            readers.spawn(async move {
                loop {
                    let delivery = tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        next = control.next() => next?,
                    };
                    shared.on_control(delivery).await;
                }
            });
        }
        let mut services = self.services;
        for (name, subscription) in service_names.into_iter().zip(service_subscriptions) {
            let Some((handler, options)) = services.remove(&name) else {
                continue;
            };
            let (shared, options) = (shared.clone(), Arc::new(options));
            readers.spawn(consume(
                subscription,
                service_slots.clone(),
                shutdown.clone(),
                move |delivery| {
                    let (shared, handler, options) = (shared.clone(), handler.clone(), options.clone());
                    async move { shared.execute_service_task(delivery, handler.as_ref(), &options).await }
                },
            ));
        }
        for subscription in workflow_subscriptions {
            let shared = shared.clone();
            readers.spawn(consume(
                subscription,
                workflow_slots.clone(),
                shutdown.clone(),
                move |delivery| {
                    let shared = shared.clone();
                    async move { shared.execute_workflow_task(delivery).await }
                },
            ));
        }

        let drained = async {
            let mut result = Ok(());
            while let Some(joined) = readers.join_next().await {
                if let Ok(Err(e)) = joined {
                    tracing::error!(error = %e, "worker consumer failed");
                    shutdown.cancel();
                    result = Err(e);
                }
            }
            result
        };
        tokio::pin!(drained);
        tokio::select! {
            result = &mut drained => result,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(self.config.drain_timeout).await } => {
                tracing::warn!("drain deadline reached; cancelling in-flight attempts");
                shared.attempts.cancel();
                drained.await
            }
        }
    }
}

/// Takes deliveries while a concurrency slot is free and runs `handle` on each; on shutdown,
/// stops taking and waits for the handlers already running.
async fn consume<F, Fut>(
    mut subscription: Box<dyn Subscription>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
    handle: F,
) -> Result<(), WorkerError>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut running = JoinSet::new();
    let result = loop {
        let Some(permit) = acquire(&slots, &shutdown).await else {
            break Ok(());
        };
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            next = subscription.next() => match next {
                Ok(d) => d,
                Err(e) => break Err(WorkerError::from(e)),
            },
        };
        let work = handle(delivery);
        running.spawn(async move {
            work.await;
            drop(permit);
        });
        while running.try_join_next().is_some() {}
    };
    while running.join_next().await.is_some() {}
    result
}

async fn acquire(slots: &Arc<Semaphore>, shutdown: &CancellationToken) -> Option<tokio::sync::OwnedSemaphorePermit> {
    tokio::select! {
        _ = shutdown.cancelled() => None,
        permit = slots.clone().acquire_owned() => permit.ok(),
    }
}

struct Shared {
    publisher: Publisher,
    clock: Arc<dyn Clock>,
    registry: Registry,
    /// Cancelled at the drain deadline: running attempts are asked to stop.
    attempts: CancellationToken,
    /// Tokens of the attempts running here, by task.
    running: Mutex<HashMap<TaskId, CancellationToken>>,
    cancelled: Mutex<Cancelled>,
    cancel_grace: Duration,
}

use baton_runtime::locked;

/// A number in `[0, 1)` derived from the task and attempt, for retry jitter.
fn unit_random(task: &ExecuteTask) -> f64 {
    let mut x = task.task_id.0.as_u128() as u64 ^ u64::from(task.attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

impl Shared {
    /// Publishes an outcome, waiting out a broker outage in place (until the drain deadline)
    /// rather than nacking: a nack would run the attempt again for nothing.
    async fn publish_outcome<M: TopicMessage + Clone>(
        &self,
        topic: &Topic<M>,
        body: M,
        now: Timestamp,
    ) -> Result<(), TransportError> {
        retry_transient("publish task outcome", Backoff::DEPENDENCY, &self.attempts, || {
            self.publisher.publish(topic, body.clone(), now)
        })
        .await
    }

    /// Settles a delivery after its outcome was (or could not be) published.
    async fn settle(delivery: Delivery, published: Result<(), TransportError>, what: &str) {
        match published {
            Ok(()) => delivery.ack().await,
            // Given up at the drain deadline during an outage: left unsettled, redelivered.
            Err(e) if e.is_transient() => {
                tracing::info!(error = %e, "stopping during a broker outage; {what} left for redelivery")
            }
            Err(e) => delivery.nack(&format!("cannot publish {what}: {e}")).await,
        }
    }

    async fn on_control(&self, delivery: Delivery) {
        match decode_delivery::<TaskControlMessage>(&delivery) {
            Ok(envelope) => {
                let TaskControlMessage::Cancel { task_id } = envelope.body;
                locked(&self.cancelled).insert(task_id);
                if let Some(token) = locked(&self.running).get(&task_id) {
                    tracing::debug!(task = %task_id, "cancelling a running task");
                    token.cancel();
                }
                delivery.ack().await;
            }
            Err(e) => {
                delivery
                    .dead_letter(&format!("undecodable task control message: {e}"))
                    .await
            }
        }
    }

    fn was_cancelled(&self, task: TaskId) -> bool {
        locked(&self.cancelled).set.contains(&task)
    }

    async fn execute_service_task(&self, delivery: Delivery, handler: &dyn ServiceHandler, options: &ServiceOptions) {
        let envelope: Envelope<ServiceTaskMessage> = match decode_delivery(&delivery) {
            Ok(e) => e,
            Err(e) => {
                delivery.dead_letter(&format!("undecodable service task: {e}")).await;
                return;
            }
        };
        let ServiceTaskMessage::Execute(task) = envelope.body;
        tracing::debug!(workflow = %task.workflow_id, task = %task.task_id, attempt = task.attempt, redeliveries = delivery.redeliveries, "service task received");
        if self.was_cancelled(task.task_id) {
            // Its workflow was cancelled or ended, e.g. while this attempt waited for its retry.
            delivery.ack().await;
            return;
        }
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
                delivery.ack().await;
                return;
            }
            None => {
                // Worker shutdown deadline: leave the task unacknowledged so it is redelivered.
                locked(&self.running).remove(&task.task_id);
                delivery.nack("worker shut down before the attempt finished").await;
                return;
            }
        };
        locked(&self.running).remove(&task.task_id);
        let outcome = match finished {
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
        };
        if delegated.load(std::sync::atomic::Ordering::SeqCst) {
            let handed_back = TagEngineMessage::TaskDelegated {
                task_id: task.task_id,
                workflow_name: task.workflow_name.clone(),
                workflow_id: task.workflow_id,
            };
            let published = self
                .publish_outcome(&Topic::service_tag(&task.service), handed_back, self.clock.now())
                .await;
            Self::settle(delivery, published, "delegated task registration").await;
            return;
        }
        let now = self.clock.now();
        let engine = Topic::workflow_engine(&task.workflow_name);
        let published = match outcome {
            Ok(output) => {
                let done = WorkflowEngineMessage::TaskCompleted {
                    workflow_id: task.workflow_id,
                    task_id: task.task_id,
                    output,
                };
                self.publish_outcome(&engine, done, now).await
            }
            Err(failure) => match method.retry.decide(task.attempt, &failure, unit_random(&task)) {
                RetryDecision::RetryAfter(delay) => {
                    tracing::debug!(task = %task.task_id, attempt = task.attempt, ?delay, failure = %failure, "retrying later");
                    let mut previous = task.previous_failures.clone();
                    previous.push(AttemptFailure {
                        attempt: task.attempt,
                        at: now,
                        kind: failure.kind,
                        message: failure.message.clone(),
                    });
                    let next = ExecuteTask {
                        attempt: task.attempt + 1,
                        previous_failures: previous,
                        ..task.clone()
                    };
                    let timer_id = TimerId::for_retry(task.task_id, next.attempt);
                    match EncodedMessage::encode(
                        &Topic::service_task(&task.service),
                        ServiceTaskMessage::Execute(next),
                        now,
                    ) {
                        Ok(m) => {
                            let message = baton_shared_schemas::messages::ScheduledMessage {
                                topic: m.topic,
                                key: m.key,
                                bytes: m.bytes,
                            };
                            let schedule = TimerMessage::Schedule {
                                timer_id,
                                due: now.saturating_add(delay),
                                message,
                            };
                            self.publish_outcome(&Topic::timers(), schedule, now).await
                        }
                        Err(e) => Err(e),
                    }
                }
                RetryDecision::GiveUp => {
                    let failure = Failure {
                        previous_attempts: task.previous_failures.clone(),
                        ..failure
                    };
                    let failed = WorkflowEngineMessage::TaskFailed {
                        workflow_id: task.workflow_id,
                        task_id: task.task_id,
                        failure,
                    };
                    self.publish_outcome(&engine, failed, now).await
                }
            },
        };
        tracing::debug!(workflow = %task.workflow_id, task = %task.task_id, ok = published.is_ok(), "service task outcome published");
        Self::settle(delivery, published, "task outcome").await;
    }

    async fn execute_workflow_task(&self, delivery: Delivery) {
        let envelope: Envelope<WorkflowTaskMessage> = match decode_delivery(&delivery) {
            Ok(e) => e,
            Err(e) => {
                delivery.dead_letter(&format!("undecodable workflow task: {e}")).await;
                return;
            }
        };
        let WorkflowTaskMessage::Execute(task) = envelope.body;
        tracing::debug!(workflow = %task.workflow_id, index = task.task_index, redeliveries = delivery.redeliveries, "workflow task received");
        let result = baton_workflow::replay::execute(&self.registry, &task);
        let message = match result {
            Ok(done) => WorkflowEngineMessage::WorkflowTaskCompleted(done),
            Err(failure) => {
                tracing::warn!(workflow = %task.workflow_id, name = %task.workflow_name, failure = %failure, "workflow task failed; the instance waits for a fix");
                WorkflowEngineMessage::WorkflowTaskFailed {
                    workflow_id: task.workflow_id,
                    task_id: task.task_id,
                    failure,
                }
            }
        };
        let published = self
            .publish_outcome(&Topic::workflow_engine(&task.workflow_name), message, self.clock.now())
            .await;
        Self::settle(delivery, published, "workflow task outcome").await;
    }
}
