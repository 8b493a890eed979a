//! Deferred results of commands, and deterministic combinators over them.

use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use baton_shared_schemas::{CommandId, CommandSpec, Failure, FailureKind, Outcome, Payload, PayloadError};
use serde::de::DeserializeOwned;

use crate::context::WorkflowContext;
use crate::error::CallError;

enum DeferredState {
    /// Waiting on a command.
    Command(CommandId),
    /// Resolved before any command was made (e.g. arguments could not be encoded).
    Failed(Option<Failure>),
    /// The history forbids this command; the workflow task is failing.
    Broken,
}

/// The future result of a command, made by `dispatch` (or by awaiting a call directly).
/// Awaiting it yields the value, or a [`CallError`] the code can match on.
#[must_use = "a deferred does nothing unless awaited"]
pub struct Deferred<T, E = crate::error::NoError> {
    ctx: WorkflowContext,
    state: DeferredState,
    /// A timer that ends the wait with a `TimedOut` failure if it fires first.
    timeout: Option<(CommandId, std::time::Duration)>,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> Unpin for Deferred<T, E> {}

impl<T: DeserializeOwned, E: DeserializeOwned> Deferred<T, E> {
    pub(crate) fn for_command(ctx: WorkflowContext, id: Option<CommandId>) -> Self {
        let state = match id {
            Some(id) => DeferredState::Command(id),
            None => DeferredState::Broken,
        };
        Self {
            ctx,
            state,
            timeout: None,
            _types: PhantomData,
        }
    }

    pub(crate) fn failed(ctx: WorkflowContext, failure: Failure) -> Self {
        Self {
            ctx,
            state: DeferredState::Failed(Some(failure)),
            timeout: None,
            _types: PhantomData,
        }
    }

    /// Adds a global timeout: a durable timer started now; if it fires before the result
    /// arrives, the deferred ends with a `TimedOut` failure (the call itself is not stopped).
    pub(crate) fn with_timeout(mut self, after: std::time::Duration) -> Self {
        if matches!(self.state, DeferredState::Command(_)) {
            let due = self.ctx.now().saturating_add(after);
            self.timeout = self.ctx.command(CommandSpec::Timer { due }).map(|timer| (timer, after));
        }
        self
    }

    /// The command's id (also the task id a service sees), once made.
    pub fn command_id(&self) -> Option<CommandId> {
        match self.state {
            DeferredState::Command(id) => Some(id),
            _ => None,
        }
    }

    /// Whether the result is visible to the current workflow task, without waiting for it.
    pub fn is_ready(&self) -> bool {
        match self.state {
            DeferredState::Command(id) => self.ctx.state.borrow().results.contains_key(&id),
            DeferredState::Failed(_) => true,
            DeferredState::Broken => false,
        }
    }
}

fn convert<T: DeserializeOwned, E: DeserializeOwned>(outcome: Outcome) -> Result<T, CallError<E>> {
    match outcome {
        Outcome::Completed(payload) => payload.decode::<T>().map_err(|e| {
            CallError::Failed(Failure::new(
                FailureKind::Serialization,
                format!("cannot decode task result: {e}"),
            ))
        }),
        Outcome::Failed(failure) => {
            if matches!(failure.kind, FailureKind::ServiceError | FailureKind::WorkflowError) {
                if let Some(Ok(e)) = failure.error.as_ref().map(Payload::decode::<E>) {
                    return Err(CallError::Service(e));
                }
            }
            Err(CallError::Failed(failure))
        }
    }
}

impl<T: DeserializeOwned, E: DeserializeOwned> Future for Deferred<T, E> {
    type Output = Result<T, CallError<E>>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            DeferredState::Command(id) => match this.ctx.poll_result(*id) {
                Some(outcome) => Poll::Ready(convert(outcome)),
                None => match this.timeout {
                    Some((timer, after)) if this.ctx.poll_result(timer).is_some() => {
                        Poll::Ready(Err(CallError::Failed(Failure::new(
                            FailureKind::TimedOut,
                            format!("no result within {after:?}"),
                        ))))
                    }
                    _ => Poll::Pending,
                },
            },
            DeferredState::Failed(failure) => match failure.take() {
                Some(f) => Poll::Ready(Err(CallError::Failed(f))),
                None => Poll::Pending,
            },
            DeferredState::Broken => Poll::Pending,
        }
    }
}

/// A service call built by a stub: await it to call and wait, or [`dispatch`](Self::dispatch)
/// it to start it now and await the [`Deferred`] later.
#[must_use = "a service call does nothing unless awaited or dispatched"]
pub struct ServiceCall<T, E> {
    ctx: WorkflowContext,
    service: String,
    method: String,
    args: Result<Payload, PayloadError>,
    tags: Vec<String>,
    meta: std::collections::BTreeMap<String, String>,
    _types: PhantomData<fn() -> (T, E)>,
}

impl<T: DeserializeOwned, E: DeserializeOwned> ServiceCall<T, E> {
    pub(crate) fn new(
        ctx: WorkflowContext,
        service: String,
        method: String,
        args: Result<Payload, PayloadError>,
    ) -> Self {
        Self {
            ctx,
            service,
            method,
            args,
            tags: Vec::new(),
            meta: std::collections::BTreeMap::new(),
            _types: PhantomData,
        }
    }

    /// Issues the call with a global timeout covering queueing and every retry: if no result
    /// arrives within `after`, the deferred ends with a `TimedOut` failure. The task is not
    /// stopped; its late result is ignored.
    pub fn timeout(self, after: std::time::Duration) -> Deferred<T, E> {
        self.dispatch().with_timeout(after)
    }

    /// Tags of the task (visible to the service in its task context).
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Metadata of the task (visible to the service in its task context).
    pub fn meta(mut self, meta: std::collections::BTreeMap<String, String>) -> Self {
        self.meta = meta;
        self
    }

    /// Issues the call now; the returned deferred resolves when the task ends.
    pub fn dispatch(self) -> Deferred<T, E> {
        match self.args {
            Ok(args) => {
                let spec = if self.tags.is_empty() && self.meta.is_empty() {
                    CommandSpec::ServiceTask {
                        service: self.service,
                        method: self.method,
                        args,
                    }
                } else {
                    CommandSpec::ServiceTaskWithOptions {
                        service: self.service,
                        method: self.method,
                        args,
                        tags: self.tags,
                        meta: self.meta,
                    }
                };
                let id = self.ctx.command(spec);
                Deferred::for_command(self.ctx, id)
            }
            Err(e) => Deferred::failed(
                self.ctx,
                Failure::new(
                    FailureKind::Serialization,
                    format!("cannot encode arguments of {}.{}: {e}", self.service, self.method),
                ),
            ),
        }
    }
}

impl<T: DeserializeOwned, E: DeserializeOwned> IntoFuture for ServiceCall<T, E> {
    type Output = Result<T, CallError<E>>;
    type IntoFuture = Deferred<T, E>;

    fn into_future(self) -> Self::IntoFuture {
        self.dispatch()
    }
}

/// A durable timer; completes when it fires.
#[must_use = "a timer does nothing unless awaited"]
pub struct Timer {
    pub(crate) inner: Option<CommandId>,
    pub(crate) ctx: WorkflowContext,
}

impl Future for Timer {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        match self.inner {
            Some(id) if self.ctx.poll_result(id).is_some() => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }
}

/// One of two values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first future won.
    Left(A),
    /// The second future won.
    Right(B),
}

/// Waits for every future; results in input order.
pub fn all_of<F: Future + Unpin>(futures: Vec<F>) -> AllOf<F> {
    let results = futures.iter().map(|_| None).collect();
    AllOf { futures, results }
}

/// Future of [`all_of`].
pub struct AllOf<F: Future> {
    futures: Vec<F>,
    results: Vec<Option<F::Output>>,
}

impl<F: Future + Unpin> Unpin for AllOf<F> {}

impl<F: Future + Unpin> Future for AllOf<F> {
    type Output = Vec<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        for (f, slot) in this.futures.iter_mut().zip(this.results.iter_mut()) {
            if slot.is_none() {
                if let Poll::Ready(v) = Pin::new(f).poll(cx) {
                    *slot = Some(v);
                }
            }
        }
        if this.results.iter().all(Option::is_some) {
            Poll::Ready(this.results.iter_mut().filter_map(Option::take).collect())
        } else {
            Poll::Pending
        }
    }
}

/// Waits for the first future to finish; on a tie the earliest in the list wins, so replays
/// choose the same winner. Returns its index and output.
pub fn any_of<F: Future + Unpin>(futures: Vec<F>) -> AnyOf<F> {
    AnyOf { futures }
}

/// Future of [`any_of`].
pub struct AnyOf<F> {
    futures: Vec<F>,
}

impl<F: Future + Unpin> Unpin for AnyOf<F> {}

impl<F: Future + Unpin> Future for AnyOf<F> {
    type Output = (usize, F::Output);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        for (i, f) in this.futures.iter_mut().enumerate() {
            if let Poll::Ready(v) = Pin::new(f).poll(cx) {
                return Poll::Ready((i, v));
            }
        }
        Poll::Pending
    }
}

/// Waits for the first of two futures of different types; on a tie `a` wins.
pub fn race<A: Future + Unpin, B: Future + Unpin>(a: A, b: B) -> Race<A, B> {
    Race { a, b }
}

/// Future of [`race`].
pub struct Race<A, B> {
    a: A,
    b: B,
}

impl<A: Future + Unpin, B: Future + Unpin> Future for Race<A, B> {
    type Output = Either<A::Output, B::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(v) = Pin::new(&mut this.a).poll(cx) {
            return Poll::Ready(Either::Left(v));
        }
        if let Poll::Ready(v) = Pin::new(&mut this.b).poll(cx) {
            return Poll::Ready(Either::Right(v));
        }
        Poll::Pending
    }
}
