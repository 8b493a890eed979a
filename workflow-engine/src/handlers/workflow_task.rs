//! `WorkflowTaskCompleted`, `WorkflowTaskFailed` and `RetryWorkflowTask`: the outcome of
//! replaying workflow code, and an operator's retry of a failed replay.

use std::collections::BTreeSet;

use baton_shared_schemas::messages::{
    ExecuteTask, ParentRef, RunCompletion, ServiceTaskMessage, StartWorkflow, WorkflowEngineMessage, WorkflowOutcome,
    WorkflowTaskCompleted,
};
use baton_shared_schemas::{CommandSpec, Failure, HistoryEvent, Payload, WorkflowId, WorkflowTaskId};

use super::signals::drain_mailbox;
use super::{
    Events, Step, begin_workflow_task, cancel_owned_work, finish, keep, running, send_workflow_task, wakes, write,
};
use crate::state::{ActiveReceive, PendingCommand, PendingKind, RunningWorkflow, WorkflowState};
use crate::transition::{Effect, Out};

pub(crate) fn completed(state: Option<WorkflowState>, m: &WorkflowTaskCompleted, out: &mut Out<'_>) -> Step {
    let Some(mut state) = state else {
        return keep(None, "workflow task result for an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        return keep(Some(state), "workflow task result for an ended instance");
    };
    if r.running_task != Some(m.task_id) {
        return keep(Some(state), "stale workflow task result");
    }
    r.running_task = None;
    r.workflow_task_failure = None;
    r.workflow_version.get_or_insert(m.workflow_version);

    for command in &m.new_commands {
        history.push(HistoryEvent::CommandRecorded {
            task_index: r.task_index,
            command: command.clone(),
        });
        let pending = |kind| PendingCommand {
            position: command.position,
            description: command.spec.describe(),
            kind,
        };
        match &command.spec {
            CommandSpec::ServiceTask { .. } | CommandSpec::ServiceTaskWithOptions { .. } => {
                if let Some(call) = command.spec.task_call() {
                    r.pending.insert(
                        command.command_id,
                        pending(PendingKind::Task {
                            service: call.service.to_string(),
                        }),
                    );
                    let task = ExecuteTask {
                        task_id: command.command_id.into(),
                        service: call.service.to_string(),
                        method: call.method.to_string(),
                        args: call.args.clone(),
                        attempt: 1,
                        workflow_id: id,
                        workflow_name: r.workflow_name.clone(),
                        previous_failures: Vec::new(),
                        tags: call.tags.to_vec(),
                        meta: call.meta.cloned().unwrap_or_default(),
                    };
                    out.emit(Effect::ServiceTask {
                        service: call.service.to_string(),
                        message: ServiceTaskMessage::Execute(task),
                    });
                }
            }
            CommandSpec::Timer { due } => {
                r.pending.insert(command.command_id, pending(PendingKind::Timer));
                let fired = WorkflowEngineMessage::TimerFired {
                    workflow_id: id,
                    timer_id: command.command_id.into(),
                };
                out.schedule(command.command_id.into(), *due, &r.workflow_name, fired);
            }
            CommandSpec::Receive { channel, filter, limit } => {
                r.receives.push(ActiveReceive {
                    command_id: command.command_id,
                    channel: channel.clone(),
                    filter: filter.clone(),
                    limit: (*limit).max(1),
                    received: 0,
                });
            }
            CommandSpec::DeclareChannel {
                channel,
                discard_unreceived,
            } => {
                if *discard_unreceived {
                    r.discarding_channels.insert(channel.clone());
                    let before = r.mailbox.len();
                    r.mailbox.retain(|s| &s.channel != channel);
                    r.discarded_signals += u32::try_from(before - r.mailbox.len()).unwrap_or(u32::MAX);
                } else {
                    r.discarding_channels.remove(channel);
                }
            }
            CommandSpec::ChildWorkflow {
                workflow,
                input,
                tags,
                meta,
                detached,
            } => {
                let start = StartWorkflow {
                    workflow_id: command.command_id.child_workflow(),
                    workflow_name: workflow.clone(),
                    input: input.clone(),
                    tags: tags.clone(),
                    meta: meta.clone(),
                    reply_to: None,
                };
                let message = if *detached {
                    WorkflowEngineMessage::Start(start)
                } else {
                    r.pending.insert(
                        command.command_id,
                        pending(PendingKind::Child {
                            workflow: workflow.clone(),
                        }),
                    );
                    let parent = ParentRef {
                        workflow_name: r.workflow_name.clone(),
                        workflow_id: id,
                        command_id: command.command_id,
                    };
                    WorkflowEngineMessage::StartChild { start, parent }
                };
                out.emit(Effect::Command {
                    workflow: workflow.clone(),
                    message,
                });
            }
            CommandSpec::MethodReturned { invocation_id, result } => {
                super::methods::answer(id, r, *invocation_id, result.clone(), out);
            }
            CommandSpec::Inline { .. } | CommandSpec::Patch { .. } => {}
        }
    }

    match &m.completion {
        Some(RunCompletion::Completed(p)) => {
            finish(&mut state, WorkflowOutcome::Completed(p.clone()), out);
            return write(state, "workflow ended");
        }
        Some(RunCompletion::Failed(f)) => {
            finish(&mut state, WorkflowOutcome::Failed(f.clone()), out);
            return write(state, "workflow ended");
        }
        Some(RunCompletion::ContinueAsNew(input)) => {
            continue_as_new(id, r, input, out);
            state.history.clear();
            state.replace_history = true;
            if let Some((r, history)) = running(&mut state) {
                begin_workflow_task(id, r, history, out);
            }
            return write(state, "continued as new");
        }
        None => {}
    }

    r.waiting_on = m.waiting_on.iter().copied().collect();
    let buffered = std::mem::take(&mut r.buffered);
    let mut wake = wakes(&buffered, &r.waiting_on);
    history.extend(buffered);
    if !r.mailbox.is_empty() {
        wake |= drain_mailbox(r, history);
    }
    if wake {
        begin_workflow_task(id, r, history, out);
        return write(state, "workflow task applied; available results woke the workflow");
    }
    write(state, "workflow task applied")
}

/// Restarts the run with a new input: owned work stops, the history starts afresh; tags,
/// waiting clients, the parent and unconsumed signals carry over.
fn continue_as_new(id: WorkflowId, r: &mut RunningWorkflow, input: &Payload, out: &mut Out<'_>) {
    cancel_owned_work(id, r, out);
    super::methods::answer_unanswered(id, r, "the instance continued as new before answering", out);
    r.method_calls.clear();
    r.generation += 1;
    r.input = input.clone();
    r.task_index = 0;
    r.task_retry = 0;
    r.pending.clear();
    r.waiting_on = BTreeSet::new();
    // Results of the old run's commands can no longer be used; signals can.
    r.buffered.clear();
    r.receives.clear();
    r.discarding_channels.clear();
    r.workflow_task_failure = None;
}

pub(crate) fn failed(state: Option<WorkflowState>, task_id: WorkflowTaskId, failure: &Failure) -> Step {
    let Some(mut state) = state else {
        return keep(None, "workflow task failure for an unknown instance");
    };
    let Some((r, _)) = running(&mut state) else {
        return keep(Some(state), "workflow task failure for an ended instance");
    };
    if r.running_task != Some(task_id) {
        return keep(Some(state), "stale workflow task failure");
    }
    // The instance waits, visibly, for a fix and a retry of this workflow task; results that
    // arrive meanwhile stay buffered so the history still ends with the failed task's start.
    r.running_task = None;
    r.workflow_task_failure = Some(failure.clone());
    write(state, "workflow task failed")
}

pub(crate) fn retry(state: Option<WorkflowState>, out: &mut Out<'_>) -> Step {
    let Some(mut state) = state else {
        return keep(None, "retry of an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        return keep(Some(state), "retry of an ended instance");
    };
    if r.running_task.is_some() || r.workflow_task_failure.is_none() {
        return keep(Some(state), "no failed workflow task to retry");
    }
    r.workflow_task_failure = None;
    r.task_retry += 1;
    send_workflow_task(id, r, history, Events::Whole, out);
    write(state, "workflow task retried")
}

/// A worker does not keep the run where the task's events start: the same task again, with
/// the whole history. Nothing changes in the state.
pub(crate) fn needs_history(state: Option<WorkflowState>, task_id: WorkflowTaskId, out: &mut Out<'_>) -> Step {
    let Some(mut state) = state else {
        return keep(None, "history request for an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        return keep(Some(state), "history request for an ended instance");
    };
    if r.running_task != Some(task_id) {
        return keep(Some(state), "stale history request");
    }
    send_workflow_task(id, r, history, Events::Whole, out);
    keep(Some(state), "whole history sent")
}
