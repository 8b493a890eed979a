//! Commands that arrive before the instance they address.
//!
//! A client learns an instance's id once its start is accepted, and may then wait for it,
//! signal it, call or cancel it at once. The broker keeps one key's messages in order while
//! one consumer reads them, but not while a partition moves between engine replicas: on
//! Pulsar the replica taking over is handed new messages before the ones its predecessor left
//! unacknowledged. So a command for an instance not stored yet is sent back to the engine
//! through the timer service and handled again, a few times, before it is answered as
//! unknown (a wait or call is told the instance is unknown; a signal or cancel is dropped).

use std::time::Duration;

use baton_shared_schemas::TimerId;
use baton_shared_schemas::messages::{DeferredCommand, WorkflowEngineMessage};

use super::{Step, keep};
use crate::transition::{Effect, Out};

/// How often a command for an unknown instance is deferred before it is answered as unknown.
pub const DEFER_ATTEMPTS: u32 = 5;

/// How long each deferral waits. Pulsar hands a failed-over partition's unacknowledged
/// messages to the next consumer after one second (the broker's default), so the start a
/// command overtook arrives within the first or second deferral.
pub const DEFER_DELAY: Duration = Duration::from_secs(1);

/// Whether `command` addresses an instance that must exist already: a client's wait, signal,
/// call, cancel or repair. Queries of status are answered at once (they read what is stored
/// now); results and timers belong to instances that exist by construction.
pub(crate) fn needs_its_instance(command: &WorkflowEngineMessage) -> bool {
    use WorkflowEngineMessage as M;
    matches!(
        command,
        M::Await { .. }
            | M::Cancel { .. }
            | M::SendSignal { .. }
            | M::CallMethod { .. }
            | M::RetryWorkflowTask { .. }
            | M::RetryTasks { .. }
            | M::RetryTasksMatching { .. }
            | M::CompleteTimers { .. }
    )
}

/// Sends `command` back to the engine after [`DEFER_DELAY`], as deferral number `attempt`,
/// under a timer derived from the message being handled (a redelivery schedules the same one).
pub(crate) fn defer(command: DeferredCommand, attempt: u32, out: &mut Out<'_>) -> Step {
    let due = out.ctx.now.saturating_add(DEFER_DELAY);
    out.emit(Effect::Schedule {
        timer_id: TimerId::for_deferral(out.message_id),
        due,
        not_before: due,
        message: Box::new(Effect::Command {
            workflow: out.workflow.to_string(),
            message: WorkflowEngineMessage::Deferred { command, attempt },
        }),
    });
    let note = if attempt == 1 {
        "command for an unknown instance deferred"
    } else {
        "deferred command's instance still unknown; deferred again"
    };
    keep(None, note)
}
