//! The sans-IO transition: one message applied to one instance's state.

use std::time::Duration;

use baton_shared_schemas::messages::ScheduledMessage;
use baton_shared_schemas::messages::WorkflowEngineMessage;
use baton_shared_schemas::{Envelope, MessageId, SCHEMA_VERSION, Timestamp, Topic, TopicMessage, TraceContext, codec};

use crate::EngineError;
use crate::handlers;
use crate::state::{OutboxMessage, WorkflowState};

/// What the engine needs to know besides the state and the message.
#[derive(Clone, Debug)]
pub struct TransitionContext {
    /// The engine's clock reading for this transition.
    pub now: Timestamp,
    /// How long a completed instance's record is kept.
    pub retention: Duration,
}

/// What happens to the stored state.
#[derive(Debug)]
pub enum Next {
    /// Nothing changed (duplicates, queries): nothing is written.
    Keep,
    /// Save this state (its outbox holds the decision's messages).
    Write(Box<WorkflowState>),
    /// Remove the record.
    Delete,
}

/// The result of a transition.
#[derive(Debug)]
pub struct Decision {
    /// What happens to the stored state.
    pub next: Next,
    /// Messages to publish once the state is durable.
    pub publish: Vec<OutboxMessage>,
    /// A short note for logs and metrics (`applied`, `duplicate result`, …).
    pub note: &'static str,
}

/// Collects the messages a transition emits, in the sender's trace context.
pub(crate) struct Out<'a> {
    pub(crate) ctx: &'a TransitionContext,
    trace: &'a TraceContext,
    pub(crate) messages: Vec<OutboxMessage>,
}

impl Out<'_> {
    fn envelope<M>(&self, body: M) -> Envelope<M> {
        Envelope {
            schema_version: SCHEMA_VERSION,
            message_id: MessageId::new(),
            emitted_at: self.ctx.now,
            trace: self.trace.clone(),
            body,
        }
    }

    /// Emits a message on a topic.
    pub(crate) fn emit<M: TopicMessage>(&mut self, topic: &Topic<M>, body: M) -> Result<(), EngineError> {
        let key = body.routing_key();
        let bytes = codec::encode(&self.envelope(body)).map_err(EngineError::Encode)?;
        self.messages.push(OutboxMessage {
            topic: topic.name().to_string(),
            key,
            bytes,
        });
        Ok(())
    }

    /// Encodes a message to be published later by the timer service.
    pub(crate) fn scheduled<M: TopicMessage>(
        &self,
        topic: &Topic<M>,
        body: M,
    ) -> Result<ScheduledMessage, EngineError> {
        let key = body.routing_key();
        let bytes = codec::encode(&self.envelope(body)).map_err(EngineError::Encode)?;
        Ok(ScheduledMessage {
            topic: topic.name().to_string(),
            key,
            bytes,
        })
    }
}

/// Applies one message to an instance's state (`None` when nothing is stored).
pub fn apply(
    state: Option<WorkflowState>,
    message: &Envelope<WorkflowEngineMessage>,
    ctx: &TransitionContext,
) -> Result<Decision, EngineError> {
    let mut out = Out {
        ctx,
        trace: &message.trace,
        messages: Vec::new(),
    };
    let (next, note) = handlers::handle(state, &message.body, &mut out)?;
    let next = match next {
        Next::Write(mut s) => {
            s.head.outbox = out.messages.clone();
            Next::Write(s)
        }
        other => other,
    };
    Ok(Decision {
        next,
        publish: out.messages,
        note,
    })
}
