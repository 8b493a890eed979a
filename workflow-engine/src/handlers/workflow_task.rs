//! `WorkflowTaskCompleted` and `WorkflowTaskFailed`: the outcome of replaying workflow code.

use std::collections::BTreeMap;

use baton_shared_schemas::messages::{
    ExecuteTask, RunCompletion, ServiceTaskMessage, TimerMessage, WorkflowEngineMessage, WorkflowOutcome,
    WorkflowTaskCompleted,
};
use baton_shared_schemas::{CommandSpec, Failure, HistoryEvent, Topic, WorkflowTaskId};

use super::{Step, dispatch_workflow_task, finish, keep, running, wakes, write};
use crate::EngineError;
use crate::state::{PendingCommand, WorkflowState};
use crate::transition::Out;

pub(crate) fn completed(
    state: Option<WorkflowState>,
    m: &WorkflowTaskCompleted,
    out: &mut Out<'_>,
) -> Result<Step, EngineError> {
    let Some(mut state) = state else {
        return keep("workflow task result for an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        return keep("workflow task result for an ended instance");
    };
    if r.running_task != Some(m.task_id) {
        return keep("stale workflow task result");
    }
    r.running_task = None;
    r.workflow_task_failure = None;
    r.workflow_version.get_or_insert(m.workflow_version);

    for command in &m.new_commands {
        history.push(HistoryEvent::CommandRecorded {
            task_index: r.task_index,
            command: command.clone(),
        });
        let pending = PendingCommand {
            position: command.position,
            description: command.spec.describe(),
            is_timer: false,
        };
        match &command.spec {
            CommandSpec::ServiceTask { service, method, args } => {
                r.pending.insert(command.command_id, pending);
                let task = ExecuteTask {
                    task_id: command.command_id.into(),
                    service: service.clone(),
                    method: method.clone(),
                    args: args.clone(),
                    attempt: 1,
                    workflow_id: id,
                    workflow_name: r.workflow_name.clone(),
                    previous_failures: Vec::new(),
                    tags: Vec::new(),
                    meta: BTreeMap::new(),
                };
                out.emit(&Topic::service_task(service), ServiceTaskMessage::Execute(task))?;
            }
            CommandSpec::Timer { due } => {
                r.pending.insert(
                    command.command_id,
                    PendingCommand {
                        is_timer: true,
                        ..pending
                    },
                );
                let fired = WorkflowEngineMessage::TimerFired {
                    workflow_id: id,
                    timer_id: command.command_id.into(),
                };
                let message = out.scheduled(&Topic::workflow_engine(&r.workflow_name), fired)?;
                out.emit(
                    &Topic::timers(),
                    TimerMessage::Schedule {
                        timer_id: command.command_id.into(),
                        due: *due,
                        message,
                    },
                )?;
            }
            CommandSpec::Inline { .. } => {}
        }
    }

    if let Some(completion) = &m.completion {
        let outcome = match completion {
            RunCompletion::Completed(p) => WorkflowOutcome::Completed(p.clone()),
            RunCompletion::Failed(f) => WorkflowOutcome::Failed(f.clone()),
        };
        finish(&mut state, outcome, out)?;
        return write(state, "workflow ended");
    }

    r.waiting_on = m.waiting_on.iter().copied().collect();
    let buffered = std::mem::take(&mut r.buffered);
    let wake = wakes(&buffered, &r.waiting_on);
    history.extend(buffered);
    if wake {
        dispatch_workflow_task(id, r, history, out)?;
        return write(state, "workflow task applied; buffered results woke the workflow");
    }
    write(state, "workflow task applied")
}

pub(crate) fn failed(
    state: Option<WorkflowState>,
    task_id: WorkflowTaskId,
    failure: &Failure,
) -> Result<Step, EngineError> {
    let Some(mut state) = state else {
        return keep("workflow task failure for an unknown instance");
    };
    let Some((r, _)) = running(&mut state) else {
        return keep("workflow task failure for an ended instance");
    };
    if r.running_task != Some(task_id) {
        return keep("stale workflow task failure");
    }
    // The instance waits, visibly, for a fix and a retry of this workflow task; results that
    // arrive meanwhile stay buffered so the history still ends with the failed task's start.
    r.running_task = None;
    r.workflow_task_failure = Some(failure.clone());
    write(state, "workflow task failed")
}
