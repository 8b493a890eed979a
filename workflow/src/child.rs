//! Child workflows started from workflow code.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::time::Duration;

use baton_shared_schemas::{CommandSpec, Failure, FailureKind, Payload, WorkflowId};

use crate::context::WorkflowContext;
use crate::deferred::Deferred;
use crate::definition::Workflow;

/// A child workflow about to be started: await it, [`dispatch`](Self::dispatch) it, or
/// [`detach`](Self::detach) it.
#[must_use = "a child workflow is started only when awaited, dispatched or detached"]
pub struct ChildCall<W: Workflow> {
    ctx: WorkflowContext,
    input: Result<Payload, baton_shared_schemas::PayloadError>,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    _workflow: std::marker::PhantomData<fn() -> W>,
}

impl<W: Workflow> ChildCall<W> {
    /// Tags of the child.
    pub fn tags(mut self, tags: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Metadata of the child.
    pub fn meta(mut self, meta: BTreeMap<String, String>) -> Self {
        self.meta = meta;
        self
    }

    fn spec(&mut self, detached: bool) -> Result<CommandSpec, Failure> {
        let input = std::mem::replace(&mut self.input, Ok(Payload::null())).map_err(|e| {
            Failure::new(
                FailureKind::Serialization,
                format!("cannot encode input of {}: {e}", W::NAME),
            )
        })?;
        Ok(CommandSpec::ChildWorkflow {
            workflow: W::NAME.to_string(),
            input,
            tags: std::mem::take(&mut self.tags),
            meta: std::mem::take(&mut self.meta),
            detached,
        })
    }

    /// Starts the child now; the deferred resolves with its output, or with its own error as
    /// `CallError::Service`. Cancelling or ending the parent cancels the child.
    pub fn dispatch(mut self) -> Deferred<W::Output, W::Error> {
        match self.spec(false) {
            Ok(spec) => {
                let id = self.ctx.command(spec);
                Deferred::for_command(self.ctx, id)
            }
            Err(failure) => Deferred::failed(self.ctx, failure),
        }
    }

    /// Starts the child with a global timeout: if it has not ended within `after`, the
    /// deferred ends with a `TimedOut` failure (the child keeps running until the parent ends).
    pub fn timeout(self, after: Duration) -> Deferred<W::Output, W::Error> {
        self.dispatch().with_timeout(after)
    }

    /// Starts the child and forgets it: the parent neither waits for it nor cancels it.
    /// Returns the child's id.
    pub fn detach(mut self) -> WorkflowId {
        let spec = match self.spec(true) {
            Ok(spec) => spec,
            Err(failure) => {
                self.ctx.violate(failure);
                return WorkflowId(uuid::Uuid::nil());
            }
        };
        self.ctx
            .command(spec)
            .map(|c| c.child_workflow())
            .unwrap_or(WorkflowId(uuid::Uuid::nil()))
    }
}

impl<W: Workflow> IntoFuture for ChildCall<W> {
    type Output = Result<W::Output, crate::CallError<W::Error>>;
    type IntoFuture = Deferred<W::Output, W::Error>;

    fn into_future(self) -> Self::IntoFuture {
        self.dispatch()
    }
}

impl WorkflowContext {
    /// A child workflow of type `W` with this input. Its id is derived from this call's
    /// position, so a replay addresses the same child.
    pub fn child<W: Workflow>(&self, input: &W::Input) -> ChildCall<W> {
        ChildCall {
            ctx: self.clone(),
            input: Payload::json(input),
            tags: Vec::new(),
            meta: BTreeMap::new(),
            _workflow: std::marker::PhantomData,
        }
    }
}
