//! Typed signal channels: declared once as a constant, used by workflow code to receive and by
//! clients to send.

use std::marker::PhantomData;

use baton_shared_schemas::{CommandId, CommandSpec, SignalFilter};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::WorkflowContext;
use crate::deferred::Deferred;

/// A named channel carrying values of type `T`.
///
/// ```text
/// pub const DECISION: Channel<Decision> = Channel::new("decision");
/// // in the workflow:   let decision = ctx.receive(&DECISION).await?;
/// // from a client:     handle.signal(&DECISION, &Decision::Approve).await?;
/// ```
pub struct Channel<T> {
    name: &'static str,
    _value: PhantomData<fn() -> T>,
}

impl<T> Channel<T> {
    /// A channel named `name` (unique within its workflow).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _value: PhantomData,
        }
    }

    /// The channel's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// Selects signals by a field of their JSON value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter(pub(crate) SignalFilter);

impl Filter {
    /// Signals whose value at `pointer` (a JSON pointer such as `/status`; empty for the whole
    /// value) equals `value`.
    pub fn eq<V: Serialize>(pointer: &str, value: &V) -> Result<Self, serde_json::Error> {
        Ok(Self(SignalFilter {
            pointer: pointer.to_string(),
            equals: serde_json::to_string(value)?,
        }))
    }
}

/// Receives up to a limit of signals from one channel, one deferred at a time.
pub struct Receiver<T> {
    ctx: WorkflowContext,
    command: Option<CommandId>,
    next: u32,
    limit: u32,
    _value: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Iterator for Receiver<T> {
    type Item = Deferred<T>;

    /// The next signal's deferred, or `None` once the limit is reached.
    fn next(&mut self) -> Option<Deferred<T>> {
        if self.next >= self.limit {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(Deferred::for_command(
            self.ctx.clone(),
            self.command.map(|c| c.nth(index)),
        ))
    }
}

impl WorkflowContext {
    /// Waits for the next signal on a channel. Signals sent before this receive wait in the
    /// instance's mailbox (unless the channel discards them) and are taken in order.
    pub fn receive<T: DeserializeOwned>(&self, channel: &Channel<T>) -> Deferred<T> {
        let id = self.command(CommandSpec::Receive {
            channel: channel.name.to_string(),
            filter: None,
            limit: 1,
        });
        Deferred::for_command(self.clone(), id.map(|c| c.nth(0)))
    }

    /// Waits for the next signal on a channel whose value matches `filter`; others stay in the
    /// mailbox for other receives.
    pub fn receive_matching<T: DeserializeOwned>(&self, channel: &Channel<T>, filter: Filter) -> Deferred<T> {
        let id = self.command(CommandSpec::Receive {
            channel: channel.name.to_string(),
            filter: Some(filter.0),
            limit: 1,
        });
        Deferred::for_command(self.clone(), id.map(|c| c.nth(0)))
    }

    /// Receives up to `limit` signals on a channel (optionally filtered), in arrival order.
    pub fn receive_many<T: DeserializeOwned>(
        &self,
        channel: &Channel<T>,
        limit: u32,
        filter: Option<Filter>,
    ) -> Receiver<T> {
        let limit = limit.max(1);
        let command = self.command(CommandSpec::Receive {
            channel: channel.name.to_string(),
            filter: filter.map(|f| f.0),
            limit,
        });
        Receiver {
            ctx: self.clone(),
            command,
            next: 0,
            limit,
            _value: PhantomData,
        }
    }

    /// Declares that the channel drops signals no receive is waiting for (those already kept
    /// are dropped too). By default a channel keeps them in the mailbox.
    pub fn discard_unreceived<T>(&self, channel: &Channel<T>) {
        self.command(CommandSpec::DeclareChannel {
            channel: channel.name.to_string(),
            discard_unreceived: true,
        });
    }
}
