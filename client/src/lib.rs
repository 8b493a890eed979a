//! The Baton client: start workflows, await their typed results (also after they ended),
//! query their status and cancel them.
//!
//! A client publishes commands on `workflow-cmd:{Workflow}` and receives replies on its own
//! exclusive `client:{id}` topic. It needs only a transport: no storage, no user code.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use baton_runtime::{CancellationToken, Clock, SystemClock};
use baton_shared_schemas::messages::{
    ClientMessage, StartWorkflow, TagEngineMessage, TaggedCommand, TaskFilter, WorkflowEngineMessage, WorkflowOutcome,
    WorkflowStatusView,
};
use baton_shared_schemas::{
    ClientId, Failure, FailureKind, Payload, PayloadError, RequestId, SignalId, TaskId, Topic, WorkflowId,
};
use baton_transport::{ConsumeLoop, Handler, Incoming, Publisher, SubscriptionKind, Transport};
use baton_workflow::{Channel, Method, Workflow};
use serde::Serialize;
use tokio::sync::oneshot;

/// How often a client waiting for a result asks the engine again.
pub const REASK_EVERY: Duration = Duration::from_secs(30);

/// A client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] baton_transport::TransportError),
    /// The instance does not exist (never started, or its retention ended).
    #[error("workflow {0} is unknown (never started, or its record expired)")]
    UnknownWorkflow(WorkflowId),
    /// Input could not be encoded, or a result decoded.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// No reply arrived in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// A called method failed (its handler returned an error, or the instance ended first).
    #[error("method failed: {0}")]
    MethodFailed(Failure),
    /// The client was closed.
    #[error("client closed")]
    Closed,
    /// The request cannot work as given (an empty tag, a tag with a newline); nothing was sent.
    #[error("{0}")]
    InvalidInput(String),
}

fn check_tag(tag: &str) -> Result<(), ClientError> {
    baton_shared_schemas::validate_tag(tag).map_err(|e| ClientError::InvalidInput(e.to_string()))
}

/// Why a workflow did not produce its output.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError<E> {
    /// The workflow returned its own error.
    #[error("workflow failed: {0}")]
    Failed(E),
    /// The workflow failed otherwise (its error could not be decoded, or it did not run).
    #[error("workflow failed: {0}")]
    Failure(Failure),
    /// The workflow was cancelled.
    #[error("workflow cancelled: {reason}")]
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The client could not get the outcome.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Options of a start.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Use this id instead of a fresh one (starting twice with one id starts once).
    pub id: Option<WorkflowId>,
    /// A business key naming the instance (an order number, an email). The instance's id is
    /// derived from it, so a second start with the same custom id attaches to the instance
    /// instead of starting another; `id` is ignored when this is set.
    pub custom_id: Option<String>,
    /// Tags of the instance.
    pub tags: Vec<String>,
    /// Metadata of the instance.
    pub meta: BTreeMap<String, String>,
}

enum ResultSlot {
    /// Waiters for the outcome; `ask_again` once a wait timed out, so the next wait sends a
    /// fresh `Await` (the reply may have been lost with a broker restart).
    Waiting {
        waiters: Vec<oneshot::Sender<Result<WorkflowOutcome, ClientError>>>,
        ask_again: bool,
    },
    Done(WorkflowOutcome),
}

impl ResultSlot {
    fn waiting() -> Self {
        Self::Waiting {
            waiters: Vec::new(),
            ask_again: false,
        }
    }
}

type IdPage = (Vec<WorkflowId>, Option<String>);

#[derive(Default)]
struct Pending {
    results: HashMap<WorkflowId, ResultSlot>,
    statuses: HashMap<RequestId, oneshot::Sender<Result<WorkflowStatusView, ClientError>>>,
    id_pages: HashMap<RequestId, oneshot::Sender<IdPage>>,
    method_calls: HashMap<RequestId, oneshot::Sender<Result<Payload, ClientError>>>,
}

struct Inner {
    id: ClientId,
    publisher: Publisher,
    clock: Arc<dyn Clock>,
    pending: Mutex<Pending>,
    reply_timeout: Duration,
    stop: CancellationToken,
}

/// Hands replies to the requests waiting for them, while the client lives.
struct Replies(std::sync::Weak<Inner>);

#[async_trait::async_trait]
impl Handler<ClientMessage> for Replies {
    type Error = std::convert::Infallible;

    async fn handle_one(&mut self, message: &Incoming<ClientMessage>) -> Result<(), Self::Error> {
        // A reply for a client that is gone has nobody to reach: it is acknowledged and dropped.
        if let Some(inner) = self.0.upgrade() {
            inner.on_reply(message.envelope.body.clone());
        }
        Ok(())
    }
}

impl Inner {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        baton_runtime::locked(&self.pending)
    }

    fn on_reply(&self, message: ClientMessage) {
        let mut pending = self.pending();
        match message {
            ClientMessage::WorkflowResult { workflow_id, outcome } => {
                match pending.results.remove(&workflow_id) {
                    Some(ResultSlot::Waiting { waiters, .. }) if !waiters.is_empty() => {
                        for w in waiters {
                            let _ = w.send(Ok(outcome.clone()));
                        }
                    }
                    // Started here and not awaited yet: keep it for `result()`.
                    Some(ResultSlot::Waiting { .. }) => {
                        pending.results.insert(workflow_id, ResultSlot::Done(outcome));
                    }
                    // Nobody here waits for it (a repeated reply): drop it.
                    Some(done @ ResultSlot::Done(_)) => {
                        pending.results.insert(workflow_id, done);
                    }
                    None => {}
                }
            }
            ClientMessage::WorkflowUnknown {
                workflow_id,
                request_id,
            } => {
                if let Some(tx) = request_id.and_then(|r| pending.statuses.remove(&r)) {
                    let _ = tx.send(Err(ClientError::UnknownWorkflow(workflow_id)));
                }
                if let Some(tx) = request_id.and_then(|r| pending.method_calls.remove(&r)) {
                    let _ = tx.send(Err(ClientError::UnknownWorkflow(workflow_id)));
                }
                // A reply to a wait carries no request id; a status query or method call that
                // found nothing says nothing about a wait, which the engine answers itself.
                if request_id.is_none() {
                    if let Some(ResultSlot::Waiting { waiters, .. }) = pending.results.remove(&workflow_id) {
                        for w in waiters {
                            let _ = w.send(Err(ClientError::UnknownWorkflow(workflow_id)));
                        }
                    }
                }
            }
            ClientMessage::Status { request_id, status, .. } => {
                if let Some(tx) = pending.statuses.remove(&request_id) {
                    let _ = tx.send(Ok(status));
                }
            }
            ClientMessage::MethodResult {
                invocation_id, result, ..
            } => {
                if let Some(tx) = pending.method_calls.remove(&invocation_id) {
                    let _ = tx.send(result.map_err(ClientError::MethodFailed));
                }
            }
            ClientMessage::WorkflowIds {
                request_id,
                ids,
                next_cursor,
            } => {
                if let Some(tx) = pending.id_pages.remove(&request_id) {
                    let _ = tx.send((ids, next_cursor));
                }
            }
        }
    }
}

/// A connection to Baton. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl Client {
    /// Connects over a transport, with the system clock.
    pub async fn connect(transport: Arc<dyn Transport>) -> Result<Self, ClientError> {
        Self::connect_with(transport, Arc::new(SystemClock), Duration::from_secs(30)).await
    }

    /// Connects with a clock and a timeout for replies to queries.
    pub async fn connect_with(
        transport: Arc<dyn Transport>,
        clock: Arc<dyn Clock>,
        reply_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let id = ClientId::new();
        let replies = transport
            .subscribe(Topic::client(id).name(), "client", SubscriptionKind::Exclusive)
            .await?;
        let inner = Arc::new(Inner {
            id,
            publisher: Publisher::new(transport),
            clock,
            pending: Mutex::new(Pending::default()),
            reply_timeout,
            stop: CancellationToken::new(),
        });
        let mut reader = Replies(Arc::downgrade(&inner));
        let consume = ConsumeLoop::new("client message", inner.stop.clone());
        tokio::spawn(async move {
            if let Err(e) = consume.run(replies, &mut reader).await {
                tracing::warn!(error = %e, "the client's replies stopped");
            }
        });
        Ok(Self { inner })
    }

    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.inner.id
    }

    /// Starts a workflow; returns a handle to its result.
    pub async fn start<W: Workflow>(&self, input: &W::Input) -> Result<WorkflowHandle<W>, ClientError> {
        self.start_with::<W>(input, StartOptions::default()).await
    }

    /// Starts a workflow with options (custom id, tags, metadata).
    pub async fn start_with<W: Workflow>(
        &self,
        input: &W::Input,
        options: StartOptions,
    ) -> Result<WorkflowHandle<W>, ClientError> {
        let input = Payload::json(input)?;
        let id = self.start_raw(W::NAME, input, options).await?;
        Ok(self.handle(id))
    }

    /// Starts a workflow by name with an already-encoded input.
    pub async fn start_raw(
        &self,
        workflow: &str,
        input: Payload,
        options: StartOptions,
    ) -> Result<WorkflowId, ClientError> {
        baton_shared_schemas::validate_tags(&options.tags).map_err(|e| ClientError::InvalidInput(e.to_string()))?;
        if options.custom_id.as_deref().is_some_and(str::is_empty) {
            return Err(ClientError::InvalidInput("a custom id must not be empty".into()));
        }
        let workflow_id = match &options.custom_id {
            Some(custom) => WorkflowId::from_custom_id(workflow, custom),
            None => options.id.unwrap_or_default(),
        };
        // Register interest first so a fast result is not missed.
        self.inner
            .pending()
            .results
            .entry(workflow_id)
            .or_insert_with(ResultSlot::waiting);
        let start = StartWorkflow {
            workflow_id,
            workflow_name: workflow.to_string(),
            input,
            tags: options.tags,
            meta: options.meta,
            reply_to: Some(self.inner.id),
        };
        self.send(workflow, WorkflowEngineMessage::Start(start)).await?;
        Ok(workflow_id)
    }

    /// A handle to an instance started elsewhere (or earlier).
    pub fn handle<W: Workflow>(&self, id: WorkflowId) -> WorkflowHandle<W> {
        WorkflowHandle {
            client: self.clone(),
            id,
            _workflow: PhantomData,
        }
    }

    async fn send(&self, workflow: &str, message: WorkflowEngineMessage) -> Result<(), ClientError> {
        self.inner
            .publisher
            .publish(&Topic::workflow_cmd(workflow), message, self.inner.clock.now())
            .await?;
        Ok(())
    }

    /// Waits at most `timeout` for how an instance ends; [`ClientError::Timeout`] if it is
    /// still running then (it keeps running; ask again later: the next wait asks the engine
    /// afresh, so a reply lost while the broker restarted is not waited for forever).
    pub async fn outcome_within(
        &self,
        workflow: &str,
        id: WorkflowId,
        timeout: Duration,
    ) -> Result<WorkflowOutcome, ClientError> {
        match tokio::time::timeout(timeout, self.wait_outcome(workflow, id)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                // Forget the waiter that timed out; a later result is still kept if this
                // client started the instance.
                let mut pending = self.inner.pending();
                if let Some(ResultSlot::Waiting { waiters, ask_again }) = pending.results.get_mut(&id) {
                    waiters.retain(|w| !w.is_closed());
                    *ask_again = true;
                }
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    /// Waits for how an instance ends (immediately if it already has), however long that
    /// takes: a workflow may run for days. Use [`outcome_within`](Self::outcome_within) for a
    /// deadline. While it waits it asks the engine again every [`REASK_EVERY`], so a reply
    /// lost with a broker restart (a client's reply subscription does not outlive one) delays
    /// the result instead of hiding it.
    pub async fn outcome(&self, workflow: &str, id: WorkflowId) -> Result<WorkflowOutcome, ClientError> {
        loop {
            match self.outcome_within(workflow, id, REASK_EVERY).await {
                Err(ClientError::Timeout(_)) => continue,
                other => return other,
            }
        }
    }

    async fn wait_outcome(&self, workflow: &str, id: WorkflowId) -> Result<WorkflowOutcome, ClientError> {
        let (tx, rx) = oneshot::channel();
        let ask = {
            let mut pending = self.inner.pending();
            match pending.results.remove(&id) {
                Some(ResultSlot::Done(outcome)) => return Ok(outcome),
                Some(ResultSlot::Waiting { mut waiters, ask_again }) => {
                    // Started by this client: the engine already knows to reply here, unless
                    // an earlier wait timed out (its reply may be lost): then ask again.
                    let first = waiters.is_empty();
                    waiters.push(tx);
                    pending.results.insert(
                        id,
                        ResultSlot::Waiting {
                            waiters,
                            ask_again: false,
                        },
                    );
                    !first || ask_again
                }
                None => {
                    pending.results.insert(
                        id,
                        ResultSlot::Waiting {
                            waiters: vec![tx],
                            ask_again: false,
                        },
                    );
                    true
                }
            }
        };
        if ask {
            self.send(
                workflow,
                WorkflowEngineMessage::Await {
                    workflow_id: id,
                    client: self.inner.id,
                },
            )
            .await?;
        }
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// The status of an instance.
    pub async fn status(&self, workflow: &str, id: WorkflowId) -> Result<WorkflowStatusView, ClientError> {
        let request_id = RequestId::new();
        let (tx, rx) = oneshot::channel();
        self.inner.pending().statuses.insert(request_id, tx);
        self.send(
            workflow,
            WorkflowEngineMessage::GetStatus {
                workflow_id: id,
                client: self.inner.id,
                request_id,
            },
        )
        .await?;
        match tokio::time::timeout(self.inner.reply_timeout, rx).await {
            Ok(reply) => reply.map_err(|_| ClientError::Closed)?,
            Err(_) => {
                self.inner.pending().statuses.remove(&request_id);
                Err(ClientError::Timeout(self.inner.reply_timeout))
            }
        }
    }

    /// Cancels an instance. Clients waiting on it get a cancelled outcome.
    pub async fn cancel(&self, workflow: &str, id: WorkflowId, reason: &str) -> Result<(), ClientError> {
        self.send(
            workflow,
            WorkflowEngineMessage::Cancel {
                workflow_id: id,
                reason: reason.to_string(),
                client: Some(self.inner.id),
            },
        )
        .await
    }

    /// Sends a signal to an instance's channel (by name, with an encoded value).
    pub async fn signal_raw(
        &self,
        workflow: &str,
        id: WorkflowId,
        channel: &str,
        value: Payload,
    ) -> Result<(), ClientError> {
        let message = WorkflowEngineMessage::SendSignal {
            workflow_id: id,
            signal_id: SignalId::new(),
            channel: channel.to_string(),
            value,
        };
        self.send(workflow, message).await
    }

    /// Calls a method of a running instance (by name, with encoded arguments) and waits for
    /// its handler's result.
    pub async fn call_raw(
        &self,
        workflow: &str,
        id: WorkflowId,
        method: &str,
        args: Payload,
    ) -> Result<Payload, ClientError> {
        let invocation_id = RequestId::new();
        let (tx, rx) = oneshot::channel();
        self.inner.pending().method_calls.insert(invocation_id, tx);
        let message = WorkflowEngineMessage::CallMethod {
            workflow_id: id,
            invocation_id,
            method: method.to_string(),
            args,
            reply_to: Some(self.inner.id),
        };
        if let Err(e) = self.send(workflow, message).await {
            self.inner.pending().method_calls.remove(&invocation_id);
            return Err(e);
        }
        match tokio::time::timeout(self.inner.reply_timeout, rx).await {
            Ok(reply) => reply.map_err(|_| ClientError::Closed)?,
            Err(_) => {
                self.inner.pending().method_calls.remove(&invocation_id);
                Err(ClientError::Timeout(self.inner.reply_timeout))
            }
        }
    }

    /// Calls a method on every instance of `workflow` carrying `tag` (results are not returned).
    pub async fn call_by_tag<A: Serialize, R>(
        &self,
        workflow: &str,
        tag: &str,
        method: &Method<A, R>,
        args: &A,
    ) -> Result<(), ClientError> {
        let command = TaggedCommand::CallMethod {
            method: method.name().to_string(),
            args: Payload::json(args)?,
        };
        self.by_tag(workflow, tag, command).await
    }

    /// Retries the failed workflow task of an instance (after a fix was deployed).
    pub async fn retry_workflow_task(&self, workflow: &str, id: WorkflowId) -> Result<(), ClientError> {
        self.send(workflow, WorkflowEngineMessage::RetryWorkflowTask { workflow_id: id })
            .await
    }

    /// Retries the failed tasks of an instance whose run failed because of them; the run resumes.
    pub async fn retry_tasks(&self, workflow: &str, id: WorkflowId, selector: TaskFilter) -> Result<(), ClientError> {
        self.send(
            workflow,
            WorkflowEngineMessage::RetryTasksMatching {
                workflow_id: id,
                filter: selector,
            },
        )
        .await
    }

    /// Fires every pending timer of an instance now.
    pub async fn complete_timers(&self, workflow: &str, id: WorkflowId) -> Result<(), ClientError> {
        self.send(workflow, WorkflowEngineMessage::CompleteTimers { workflow_id: id })
            .await
    }

    /// Sends a command to every instance of `workflow` carrying `tag`.
    pub async fn by_tag(&self, workflow: &str, tag: &str, command: TaggedCommand) -> Result<(), ClientError> {
        check_tag(tag)?;
        let message = TagEngineMessage::ByTag {
            workflow_name: workflow.to_string(),
            tag: tag.to_string(),
            command,
            cursor: None,
        };
        self.inner
            .publisher
            .publish(&Topic::workflow_tag(workflow), message, self.inner.clock.now())
            .await?;
        Ok(())
    }

    /// Signals every instance of `W` carrying `tag`.
    pub async fn signal_by_tag<W: Workflow, T: Serialize>(
        &self,
        tag: &str,
        channel: &Channel<T>,
        value: &T,
    ) -> Result<(), ClientError> {
        let command = TaggedCommand::Signal {
            channel: channel.name().to_string(),
            value: Payload::json(value)?,
            signal_id: SignalId::new(),
        };
        self.by_tag(W::NAME, tag, command).await
    }

    /// Cancels every instance of `workflow` carrying `tag`.
    pub async fn cancel_by_tag(&self, workflow: &str, tag: &str, reason: &str) -> Result<(), ClientError> {
        self.by_tag(
            workflow,
            tag,
            TaggedCommand::Cancel {
                reason: reason.to_string(),
            },
        )
        .await
    }

    /// One page of the ids of `workflow` instances carrying `tag`.
    pub async fn ids_by_tag_page(
        &self,
        workflow: &str,
        tag: &str,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<IdPage, ClientError> {
        check_tag(tag)?;
        let request_id = RequestId::new();
        let (tx, rx) = oneshot::channel();
        self.inner.pending().id_pages.insert(request_id, tx);
        let message = TagEngineMessage::GetIds {
            workflow_name: workflow.to_string(),
            tag: tag.to_string(),
            cursor,
            limit,
            client: self.inner.id,
            request_id,
        };
        self.inner
            .publisher
            .publish(&Topic::workflow_tag(workflow), message, self.inner.clock.now())
            .await?;
        match tokio::time::timeout(self.inner.reply_timeout, rx).await {
            Ok(reply) => reply.map_err(|_| ClientError::Closed),
            Err(_) => {
                self.inner.pending().id_pages.remove(&request_id);
                Err(ClientError::Timeout(self.inner.reply_timeout))
            }
        }
    }

    /// Every id of `workflow` instances carrying `tag` (running ones, and ended ones until
    /// their tags are removed).
    pub async fn ids_by_tag(&self, workflow: &str, tag: &str) -> Result<Vec<WorkflowId>, ClientError> {
        let mut all = Vec::new();
        let mut cursor = None;
        loop {
            let (ids, next) = self.ids_by_tag_page(workflow, tag, cursor, 1_000).await?;
            all.extend(ids);
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// Completes a task its service handed back (`TaskContext::delegate`).
    pub async fn complete_delegated_task<T: Serialize>(
        &self,
        service: &str,
        task_id: TaskId,
        value: &T,
    ) -> Result<(), ClientError> {
        self.delegated(service, task_id, Ok(Payload::json(value)?)).await
    }

    /// Fails a task its service handed back; the workflow gets a service error with `message`.
    pub async fn fail_delegated_task(&self, service: &str, task_id: TaskId, message: &str) -> Result<(), ClientError> {
        self.delegated(service, task_id, Err(message.to_string())).await
    }

    async fn delegated(
        &self,
        service: &str,
        task_id: TaskId,
        result: Result<Payload, String>,
    ) -> Result<(), ClientError> {
        let message = TagEngineMessage::CompleteDelegatedTask { task_id, result };
        self.inner
            .publisher
            .publish(&Topic::service_tag(service), message, self.inner.clock.now())
            .await?;
        Ok(())
    }

    /// Stops receiving replies; waiting calls end with [`ClientError::Closed`].
    pub fn close(&self) {
        self.inner.stop.cancel();
        let mut pending = self.inner.pending();
        pending.results.clear();
        pending.statuses.clear();
    }
}

/// A typed handle to one instance of workflow `W`.
pub struct WorkflowHandle<W> {
    client: Client,
    id: WorkflowId,
    _workflow: PhantomData<fn() -> W>,
}

impl<W> Clone for WorkflowHandle<W> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            id: self.id,
            _workflow: PhantomData,
        }
    }
}

impl<W: Workflow> WorkflowHandle<W> {
    /// The instance's id.
    pub fn id(&self) -> WorkflowId {
        self.id
    }

    /// Waits for the typed result, however long the workflow runs.
    pub async fn result(&self) -> Result<W::Output, WorkflowError<W::Error>> {
        let outcome = self.client.outcome(W::NAME, self.id).await?;
        Self::typed(outcome)
    }

    /// Waits at most `timeout` for the typed result.
    pub async fn result_within(&self, timeout: Duration) -> Result<W::Output, WorkflowError<W::Error>> {
        let outcome = self.client.outcome_within(W::NAME, self.id, timeout).await?;
        Self::typed(outcome)
    }

    fn typed(outcome: WorkflowOutcome) -> Result<W::Output, WorkflowError<W::Error>> {
        match outcome {
            WorkflowOutcome::Completed(p) => Ok(p.decode().map_err(ClientError::from)?),
            WorkflowOutcome::Failed(failure) => {
                let typed = (failure.kind == FailureKind::WorkflowError)
                    .then(|| failure.error.as_ref().map(Payload::decode::<W::Error>));
                match typed {
                    Some(Some(Ok(e))) => Err(WorkflowError::Failed(e)),
                    _ => Err(WorkflowError::Failure(failure)),
                }
            }
            WorkflowOutcome::Cancelled { reason } => Err(WorkflowError::Cancelled { reason }),
        }
    }

    /// The instance's status.
    pub async fn status(&self) -> Result<WorkflowStatusView, ClientError> {
        self.client.status(W::NAME, self.id).await
    }

    /// Cancels the instance.
    pub async fn cancel(&self, reason: &str) -> Result<(), ClientError> {
        self.client.cancel(W::NAME, self.id, reason).await
    }

    /// Calls a method of the running instance and waits for its handler's result.
    pub async fn call<A: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: &Method<A, R>,
        args: &A,
    ) -> Result<R, ClientError> {
        let result = self
            .client
            .call_raw(W::NAME, self.id, method.name(), Payload::json(args)?)
            .await?;
        Ok(result.decode()?)
    }

    /// Sends a value on one of the instance's channels.
    pub async fn signal<T: Serialize>(&self, channel: &Channel<T>, value: &T) -> Result<(), ClientError> {
        self.client
            .signal_raw(W::NAME, self.id, channel.name(), Payload::json(value)?)
            .await
    }

    /// Retries the instance's failed workflow task.
    pub async fn retry_workflow_task(&self) -> Result<(), ClientError> {
        self.client.retry_workflow_task(W::NAME, self.id).await
    }

    /// Retries the instance's failed tasks.
    pub async fn retry_tasks(&self, selector: TaskFilter) -> Result<(), ClientError> {
        self.client.retry_tasks(W::NAME, self.id, selector).await
    }

    /// Fires the instance's pending timers now.
    pub async fn complete_timers(&self) -> Result<(), ClientError> {
        self.client.complete_timers(W::NAME, self.id).await
    }
}
