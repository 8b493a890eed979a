//! One handler per incoming message kind, and the state changes they share.

mod cancel;
mod queries;
mod start;
mod task_result;
mod workflow_task;

use std::collections::BTreeSet;

use baton_shared_schemas::messages::{
    ClientMessage, ExecuteWorkflowTask, TimerMessage, WorkflowEngineMessage, WorkflowOutcome, WorkflowTaskMessage,
};
use baton_shared_schemas::{ClientId, CommandId, HistoryEvent, Outcome, TimerId, Topic, WorkflowId, WorkflowTaskId};

use crate::EngineError;
use crate::state::{CompletedRecord, Record, RunningWorkflow, WorkflowState};
use crate::transition::{Next, Out};

pub(crate) type Step = (Next, &'static str);

pub(crate) fn keep(note: &'static str) -> Result<Step, EngineError> {
    Ok((Next::Keep, note))
}

pub(crate) fn write(state: WorkflowState, note: &'static str) -> Result<Step, EngineError> {
    Ok((Next::Write(Box::new(state)), note))
}

/// Routes a message to its handler.
pub(crate) fn handle(
    state: Option<WorkflowState>,
    message: &WorkflowEngineMessage,
    out: &mut Out<'_>,
) -> Result<Step, EngineError> {
    use WorkflowEngineMessage as M;
    match message {
        M::Start(m) => start::start(state, m, out),
        M::Await { workflow_id, client } => queries::await_result(state, *workflow_id, *client, out),
        M::GetStatus {
            workflow_id,
            client,
            request_id,
        } => queries::status(state, *workflow_id, *client, *request_id, out),
        M::Cancel {
            workflow_id,
            reason,
            client,
        } => cancel::cancel(state, *workflow_id, reason, *client, out),
        M::WorkflowTaskCompleted(m) => workflow_task::completed(state, m, out),
        M::WorkflowTaskFailed { task_id, failure, .. } => workflow_task::failed(state, *task_id, failure),
        M::TaskCompleted { task_id, output, .. } => {
            task_result::deliver(state, (*task_id).into(), Outcome::Completed(output.clone()), out)
        }
        M::TaskFailed { task_id, failure, .. } => {
            task_result::deliver(state, (*task_id).into(), Outcome::Failed(failure.clone()), out)
        }
        M::TimerFired { timer_id, .. } => task_result::deliver(
            state,
            (*timer_id).into(),
            Outcome::Completed(baton_shared_schemas::Payload::null()),
            out,
        ),
        M::Expire { .. } => queries::expire(state, out),
    }
}

/// The running record and history of a state, if it is running.
pub(crate) fn running(state: &mut WorkflowState) -> Option<(&mut RunningWorkflow, &mut Vec<HistoryEvent>)> {
    match &mut state.head.record {
        Record::Running(r) => Some((r, &mut state.history)),
        Record::Completed(_) => None,
    }
}

/// Starts the next workflow task: records its start in the history and sends the history to a
/// worker.
pub(crate) fn dispatch_workflow_task(
    id: WorkflowId,
    r: &mut RunningWorkflow,
    history: &mut Vec<HistoryEvent>,
    out: &mut Out<'_>,
) -> Result<(), EngineError> {
    r.task_index += 1;
    let task_id = WorkflowTaskId::derive(id, r.task_index);
    r.running_task = Some(task_id);
    history.push(HistoryEvent::WorkflowTaskStarted {
        index: r.task_index,
        at: out.ctx.now,
    });
    let task = ExecuteWorkflowTask {
        workflow_id: id,
        workflow_name: r.workflow_name.clone(),
        workflow_version: r.workflow_version,
        run_id: r.run_id,
        task_id,
        task_index: r.task_index,
        input: r.input.clone(),
        history_offset: 0,
        history: history.clone(),
        tags: r.tags.clone(),
        meta: r.meta.clone(),
    };
    out.emit(
        &Topic::workflow_task(&r.workflow_name),
        WorkflowTaskMessage::Execute(task),
    )
}

/// Tells a client how an instance ended.
pub(crate) fn reply_outcome(
    client: ClientId,
    workflow_id: WorkflowId,
    outcome: WorkflowOutcome,
    out: &mut Out<'_>,
) -> Result<(), EngineError> {
    out.emit(
        &Topic::client(client),
        ClientMessage::WorkflowResult { workflow_id, outcome },
    )
}

/// Ends a running instance: replaces it with its completed record, notifies waiting clients,
/// cancels its pending timers and schedules the record's removal.
pub(crate) fn finish(
    state: &mut WorkflowState,
    outcome: WorkflowOutcome,
    out: &mut Out<'_>,
) -> Result<(), EngineError> {
    let id = state.id;
    let Record::Running(r) = &state.head.record else {
        return Ok(());
    };
    let now = out.ctx.now;
    let expires_at = now.saturating_add(out.ctx.retention);
    for client in unique(&r.waiting_clients) {
        reply_outcome(client, id, outcome.clone(), out)?;
    }
    for (command, pending) in &r.pending {
        if pending.is_timer {
            out.emit(
                &Topic::timers(),
                TimerMessage::Cancel {
                    timer_id: (*command).into(),
                },
            )?;
        }
    }
    let expire = out.scheduled(
        &Topic::workflow_engine(&r.workflow_name),
        WorkflowEngineMessage::Expire { workflow_id: id },
    )?;
    out.emit(
        &Topic::timers(),
        TimerMessage::Schedule {
            timer_id: TimerId::for_retention(id),
            due: expires_at,
            message: expire,
        },
    )?;
    state.head.record = Record::Completed(CompletedRecord {
        workflow_name: r.workflow_name.clone(),
        workflow_version: r.workflow_version,
        tags: r.tags.clone(),
        started_at: r.started_at,
        ended_at: now,
        expires_at,
        workflow_tasks: r.task_index,
        outcome,
    });
    state.history.clear();
    state.replace_history = true;
    Ok(())
}

fn unique(clients: &[ClientId]) -> Vec<ClientId> {
    clients.iter().copied().collect::<BTreeSet<_>>().into_iter().collect()
}

/// Whether any buffered result completes something the code waits on.
pub(crate) fn wakes(events: &[HistoryEvent], waiting_on: &BTreeSet<CommandId>) -> bool {
    events
        .iter()
        .any(|e| matches!(e, HistoryEvent::ResultDelivered { command_id, .. } if waiting_on.contains(command_id)))
}
