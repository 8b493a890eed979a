//! The engine's decision: one message applied to one instance's state, giving the next state
//! and the typed [`Effect`]s to carry out. Pure: no I/O, no clock (the time comes in the
//! [`TransitionContext`]) and no random ids, so the same state and message always give the
//! same decision. [`Cause::encode_all`] turns effects into the messages the runner stores in the
//! outbox and publishes, under ids derived from the message that caused them.

use std::time::Duration;

use baton_shared_schemas::messages::{
    ClientMessage, ServiceTaskMessage, TagEngineMessage, TaskControlMessage, TimerMessage, WorkflowEngineMessage,
    WorkflowTaskMessage,
};
use baton_shared_schemas::{
    Cause, ClientId, CodecError, Emitted, EncodedMessage, Envelope, MessageId, TimerId, Timestamp, Topic,
};

use crate::handlers;
use crate::state::WorkflowState;

/// What the engine needs to know besides the state and the message.
#[derive(Clone, Debug)]
pub struct TransitionContext {
    /// The engine's clock reading for this transition.
    pub now: Timestamp,
    /// How long a completed instance's record is kept.
    pub retention: Duration,
    /// When the timer service fired the message being handled, by its clock, if a timer held
    /// it and the service said so (a transport header): a message fired early is held again
    /// until its due time on that clock.
    pub fired_at: Option<Timestamp>,
}

/// What happens to the stored state.
#[derive(Debug)]
pub enum Next {
    /// Nothing changed (duplicates, queries): nothing is written. The state handed to
    /// [`apply`] comes back unchanged, so a caller that keeps states in memory hands them over
    /// instead of copying them.
    Keep(Option<Box<WorkflowState>>),
    /// Save this state; the runner puts the encoded effects in its outbox first.
    Write(Box<WorkflowState>),
    /// Remove the record.
    Delete,
}

/// A message the decision asks to emit, addressed by what it is for rather than by topic name.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// A workflow task for the workers hosting `workflow`.
    WorkflowTask {
        /// The workflow name.
        workflow: String,
        /// The task.
        message: WorkflowTaskMessage,
    },
    /// A service task for the workers hosting `service`.
    ServiceTask {
        /// The service name.
        service: String,
        /// The task.
        message: ServiceTaskMessage,
    },
    /// A control message (cancel) for every worker hosting `service`.
    TaskControl {
        /// The service name.
        service: String,
        /// The message.
        message: TaskControlMessage,
    },
    /// A reply to one client.
    Client {
        /// The client.
        client: ClientId,
        /// The reply.
        message: ClientMessage,
    },
    /// Tag maintenance for `workflow`'s tag index.
    Tag {
        /// The workflow name.
        workflow: String,
        /// The message.
        message: TagEngineMessage,
    },
    /// A message to the engine topic of `workflow` (a child's end reaching its parent).
    Engine {
        /// The workflow name.
        workflow: String,
        /// The message.
        message: WorkflowEngineMessage,
    },
    /// A command to the command topic of `workflow` (cancelling a child).
    Command {
        /// The workflow name.
        workflow: String,
        /// The command.
        message: WorkflowEngineMessage,
    },
    /// Cancels a timer at the timer service.
    CancelTimer {
        /// The timer.
        timer_id: TimerId,
    },
    /// Stores a timer that emits `message` when due.
    Schedule {
        /// The timer.
        timer_id: TimerId,
        /// When the timer service fires it, by its clock.
        due: Timestamp,
        /// When the message takes effect, by the clock of the engine that handles it: the
        /// held message's `emitted_at`. Equal to `due` but for a message fired early and held
        /// again, whose `due` makes up for the timer service's clock.
        not_before: Timestamp,
        /// What it emits then.
        message: Box<Effect>,
    },
}

/// The result of a transition.
#[derive(Debug)]
pub struct Decision {
    /// What happens to the stored state.
    pub next: Next,
    /// What to emit once the state is durable, in order.
    pub effects: Vec<Effect>,
    /// A short note for logs and metrics (`applied`, `duplicate result`, …).
    pub note: &'static str,
    /// How early the message, one a timer held, came by the engine's clock: it was held
    /// again until its due time (see [`early_by`]).
    pub early: Option<Duration>,
}

/// Collects the effects a transition emits.
pub(crate) struct Out<'a> {
    pub(crate) ctx: &'a TransitionContext,
    /// The workflow whose topic the message came from.
    pub(crate) workflow: &'a str,
    /// The id of the message being handled.
    pub(crate) message_id: MessageId,
    pub(crate) effects: Vec<Effect>,
}

impl Out<'_> {
    /// Emits an effect.
    pub(crate) fn emit(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// Stores a timer that sends `message` to `workflow`'s engine topic when due.
    pub(crate) fn schedule(
        &mut self,
        timer_id: TimerId,
        due: Timestamp,
        workflow: &str,
        message: WorkflowEngineMessage,
    ) {
        self.emit(Effect::Schedule {
            timer_id,
            due,
            not_before: due,
            message: Box::new(Effect::Engine {
                workflow: workflow.to_string(),
                message,
            }),
        });
    }
}

/// Why `message` can never be applied, if it cannot: a start whose tags break the bounds of
/// [`baton_shared_schemas::validate_tags`] (only a producer other than Baton's client can send
/// one). Such a message is dead-lettered with this reason, before any state is read or written.
pub fn refusal(message: &WorkflowEngineMessage) -> Option<String> {
    match message {
        WorkflowEngineMessage::Start(start) | WorkflowEngineMessage::StartChild { start, .. } => {
            baton_shared_schemas::validate_tags(&start.tags)
                .err()
                .map(|e| format!("start of {} refused: {e}", start.workflow_id))
        }
        _ => None,
    }
}

/// How long before the time it takes effect a message a timer held arrived, by the engine's
/// clock `now` (`None` when it is due). Such a message carries that time as its `emitted_at`
/// ([`Effect::Schedule::not_before`]): a timer service whose clock runs ahead fires it early,
/// and a timer never takes effect before its due time by the clock of the engine handling it.
pub fn early_by(message: &Envelope<WorkflowEngineMessage>, now: Timestamp) -> Option<Duration> {
    use WorkflowEngineMessage as M;
    let held = matches!(
        message.body,
        M::TimerFired { .. } | M::Expire { .. } | M::Deferred { .. }
    );
    (held && message.emitted_at > now).then(|| message.emitted_at.saturating_duration_since(now))
}

/// Applies one message, read from a topic of `workflow`, to an instance's state (`None` when
/// nothing is stored).
pub fn apply(
    state: Option<WorkflowState>,
    workflow: &str,
    message: &Envelope<WorkflowEngineMessage>,
    ctx: &TransitionContext,
) -> Decision {
    let mut out = Out {
        ctx,
        workflow,
        message_id: message.message_id,
        effects: Vec::new(),
    };
    let early = early_by(message, ctx.now);
    let (next, note) = match early {
        Some(_) => handlers::held::hold_until_due(state, message, &mut out),
        None => handlers::handle(state, &message.body, &mut out),
    };
    Decision {
        next,
        effects: out.effects,
        note,
        early,
    }
}

impl Emitted for Effect {
    /// The `i`-th effect gets message id `cause.nth(i)`, and the message a timer holds the
    /// continuation of that.
    fn encode(&self, cause: &Cause<'_>, index: u32) -> Result<EncodedMessage, CodecError> {
        encode_effect(self, cause, cause.message_id.nth(index))
    }
}

fn encode_effect(effect: &Effect, cause: &Cause<'_>, id: MessageId) -> Result<EncodedMessage, CodecError> {
    match effect {
        Effect::WorkflowTask { workflow, message } => cause.emit(&Topic::workflow_task(workflow), message.clone(), id),
        Effect::ServiceTask { service, message } => cause.emit(&Topic::service_task(service), message.clone(), id),
        Effect::TaskControl { service, message } => cause.emit(&Topic::task_control(service), message.clone(), id),
        Effect::Client { client, message } => cause.emit(&Topic::client(*client), message.clone(), id),
        Effect::Tag { workflow, message } => cause.emit(&Topic::workflow_tag(workflow), message.clone(), id),
        Effect::Engine { workflow, message } => cause.emit(&Topic::workflow_engine(workflow), message.clone(), id),
        Effect::Command { workflow, message } => cause.emit(&Topic::workflow_cmd(workflow), message.clone(), id),
        Effect::CancelTimer { timer_id } => {
            cause.emit(&Topic::timers(), TimerMessage::Cancel { timer_id: *timer_id }, id)
        }
        Effect::Schedule {
            timer_id,
            due,
            not_before,
            message,
        } => {
            // The held message is emitted, as far as its receiver can tell, when it takes effect.
            let held = Cause {
                now: *not_before,
                ..*cause
            };
            let schedule = TimerMessage::Schedule {
                timer_id: *timer_id,
                due: *due,
                message: encode_effect(message, &held, id.continuation())?,
            };
            cause.emit(&Topic::timers(), schedule, id)
        }
    }
}
