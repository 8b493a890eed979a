//! `TaskCompleted`, `TaskFailed`, `TimerFired`, `ChildEnded`, `CompleteTimers`: results of
//! commands reach the instance.

use baton_shared_schemas::messages::WorkflowOutcome;
use baton_shared_schemas::{CommandId, Failure, FailureKind, Outcome, Payload};

use super::{Step, begin_workflow_task, deliver, keep, running, write};
use crate::state::{PendingKind, WorkflowState};
use crate::transition::{Effect, Out};

/// How a child's end reads to its parent.
pub(crate) fn child_outcome(outcome: &WorkflowOutcome) -> Outcome {
    match outcome {
        WorkflowOutcome::Completed(p) => Outcome::Completed(p.clone()),
        WorkflowOutcome::Failed(f) => Outcome::Failed(f.clone()),
        WorkflowOutcome::Cancelled { reason } => Outcome::Failed(Failure::new(
            FailureKind::Cancelled,
            format!("child workflow cancelled: {reason}"),
        )),
    }
}

pub(crate) fn command_result(
    state: Option<WorkflowState>,
    command_id: CommandId,
    outcome: Outcome,
    out: &mut Out<'_>,
) -> Step {
    let Some(mut state) = state else {
        return keep(None, "result for an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        return keep(Some(state), "result for an ended instance");
    };
    // The pending set is the semantic dedupe: a redelivered or repeated result finds nothing.
    if r.pending.remove(&command_id).is_none() {
        return keep(Some(state), "duplicate result");
    }
    if deliver(r, history, command_id, outcome) {
        begin_workflow_task(id, r, history, out);
        return write(state, "result woke the workflow");
    }
    let note = if r.running_task.is_some() {
        "result buffered"
    } else {
        "result recorded"
    };
    write(state, note)
}

pub(crate) fn complete_timers(state: Option<WorkflowState>, out: &mut Out<'_>) -> Step {
    let Some(mut state) = state else {
        return keep(None, "complete timers of an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        return keep(Some(state), "complete timers of an ended instance");
    };
    let timers: Vec<CommandId> = r
        .pending
        .iter()
        .filter(|(_, p)| p.kind == PendingKind::Timer)
        .map(|(c, _)| *c)
        .collect();
    if timers.is_empty() {
        return keep(Some(state), "no pending timer");
    }
    let mut wake = false;
    for timer in timers {
        r.pending.remove(&timer);
        out.emit(Effect::CancelTimer { timer_id: timer.into() });
        wake |= deliver(r, history, timer, Outcome::Completed(Payload::null()));
    }
    if wake {
        begin_workflow_task(id, r, history, out);
    }
    write(state, "timers completed")
}
