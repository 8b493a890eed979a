//! `TaskCompleted`, `TaskFailed`, `TimerFired`: a command's result reaches the instance.

use baton_shared_schemas::{CommandId, HistoryEvent, Outcome};

use super::{Step, dispatch_workflow_task, keep, running, write};
use crate::EngineError;
use crate::state::WorkflowState;
use crate::transition::Out;

pub(crate) fn deliver(
    state: Option<WorkflowState>,
    command_id: CommandId,
    outcome: Outcome,
    out: &mut Out<'_>,
) -> Result<Step, EngineError> {
    let Some(mut state) = state else {
        return keep("result for an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        return keep("result for an ended instance");
    };
    // The pending set is the semantic dedupe: a redelivered or repeated result finds nothing.
    if r.pending.remove(&command_id).is_none() {
        return keep("duplicate result");
    }
    let event = HistoryEvent::ResultDelivered { command_id, outcome };
    if r.running_task.is_some() || r.workflow_task_failure.is_some() {
        r.buffered.push(event);
        return write(state, "result buffered");
    }
    history.push(event);
    if r.waiting_on.contains(&command_id) {
        dispatch_workflow_task(id, r, history, out)?;
        return write(state, "result woke the workflow");
    }
    write(state, "result recorded")
}
