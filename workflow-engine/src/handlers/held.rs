//! Messages a timer held (a fired timer, an expiry, a deferred command) that reach the engine
//! before the time they take effect, by its clock.
//!
//! The timer service fires by its own clock. One that runs ahead of the engine's fires early,
//! and a timer must never take effect before its due time by the clock of the engine that
//! handles it. So such a message is held again, unchanged, until its time: the new timer is
//! due at that time read on the timer service's clock (the service says when it fired, by its
//! clock), so it fires once early, then on time; the message keeps the time it takes effect.

use baton_shared_schemas::messages::WorkflowEngineMessage;
use baton_shared_schemas::{Envelope, TimerId, on_firing_clock};

use super::{Step, keep};
use crate::state::WorkflowState;
use crate::transition::{Effect, Out};

/// Holds `message`, which arrived before the time it takes effect, until that time.
pub(crate) fn hold_until_due(
    state: Option<WorkflowState>,
    message: &Envelope<WorkflowEngineMessage>,
    out: &mut Out<'_>,
) -> Step {
    let not_before = message.emitted_at;
    let held = match &message.body {
        // A deferred command came back on the command topic; the others on the engine topic.
        WorkflowEngineMessage::Deferred { .. } => Effect::Command {
            workflow: out.workflow.to_string(),
            message: message.body.clone(),
        },
        body => Effect::Engine {
            workflow: out.workflow.to_string(),
            message: body.clone(),
        },
    };
    out.emit(Effect::Schedule {
        timer_id: TimerId::for_rescheduling(out.message_id),
        due: on_firing_clock(not_before, out.ctx.now, out.ctx.fired_at),
        not_before,
        message: Box::new(held),
    });
    keep(state, "a timer fired early; held until its due time")
}
