//! `RetryTasks`: an operator retries failed tasks of a run that failed because of them; the
//! run resumes as if those tasks had not failed yet.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use baton_shared_schemas::messages::{ExecuteTask, ServiceTaskMessage, TaskFilter};
use baton_shared_schemas::{CommandId, HistoryEvent, Outcome, Payload, TaskId};

use super::{Step, TagChange, keep, tag_messages, write};
use crate::state::{PendingCommand, PendingKind, Record, WorkflowState};
use crate::transition::{Effect, Out};

struct TaskCall {
    position: u32,
    service: String,
    method: String,
    args: Payload,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
}

pub(crate) fn retry_tasks(state: Option<WorkflowState>, filter: &TaskFilter, out: &mut Out<'_>) -> Step {
    let Some(mut state) = state else {
        return keep(None, "retry of an unknown instance");
    };
    let id = state.id;
    let resumable = match &state.head.record {
        Record::Completed(c) => match &c.resumable {
            Some(r) => r.clone(),
            None => return keep(Some(state), "the instance did not fail"),
        },
        Record::Running(_) => {
            return keep(
                Some(state),
                "the instance is running; only a failed run's tasks can be retried",
            );
        }
    };
    let history = &state.history;
    let calls: HashMap<CommandId, TaskCall> = history
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::CommandRecorded { command, .. } => command.spec.task_call().map(|call| {
                let task = TaskCall {
                    position: command.position,
                    service: call.service.to_string(),
                    method: call.method.to_string(),
                    args: call.args.clone(),
                    tags: call.tags.to_vec(),
                    meta: call.meta.cloned().unwrap_or_default(),
                };
                (command.command_id, task)
            }),
            _ => None,
        })
        .collect();
    // Failures the code made no command after were not handled: they made the run fail.
    let after_last_command = history
        .iter()
        .rposition(|e| matches!(e, HistoryEvent::CommandRecorded { .. }))
        .map(|i| i + 1)
        .unwrap_or(0);
    let selected = |command_id: &CommandId, failure: &baton_shared_schemas::Failure| {
        let Some(call) = calls.get(command_id) else {
            return false;
        };
        filter.task_id.is_none_or(|t| t == TaskId::from(*command_id))
            && filter.service.as_deref().is_none_or(|s| s == call.service)
            && filter.failure.is_none_or(|kind| kind == failure.kind)
    };
    let retried: BTreeSet<CommandId> = history[after_last_command..]
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::ResultDelivered {
                command_id,
                outcome: Outcome::Failed(failure),
            } if selected(command_id, failure) => Some(*command_id),
            _ => None,
        })
        .collect();
    if retried.is_empty() {
        return keep(Some(state), "no failed task matches");
    }
    let task_index = history[..after_last_command]
        .iter()
        .rev()
        .find_map(|e| match e {
            HistoryEvent::WorkflowTaskStarted { index, .. } => Some(*index),
            _ => None,
        })
        .unwrap_or(0);
    // Back to the last workflow task that made commands: later task starts are dropped, and so
    // are the retried failures; other results stay.
    let mut new_history: Vec<HistoryEvent> = history[..after_last_command].to_vec();
    new_history.extend(
        history[after_last_command..]
            .iter()
            .filter(|e| match e {
                HistoryEvent::ResultDelivered { command_id, .. } => !retried.contains(command_id),
                _ => false,
            })
            .cloned(),
    );

    let mut r = *resumable;
    r.task_index = task_index;
    r.task_retry = 0;
    r.running_task = None;
    r.workflow_task_failure = None;
    r.buffered.clear();
    for command_id in &retried {
        let call = &calls[command_id];
        r.pending.insert(
            *command_id,
            PendingCommand {
                position: call.position,
                description: format!("task {}.{}", call.service, call.method),
                kind: PendingKind::Task {
                    service: call.service.clone(),
                },
            },
        );
        let task = ExecuteTask {
            task_id: (*command_id).into(),
            service: call.service.clone(),
            method: call.method.clone(),
            args: call.args.clone(),
            attempt: 1,
            workflow_id: id,
            workflow_name: r.workflow_name.clone(),
            previous_failures: Vec::new(),
            tags: call.tags.clone(),
            meta: call.meta.clone(),
        };
        out.emit(Effect::ServiceTask {
            service: call.service.clone(),
            message: ServiceTaskMessage::Execute(task),
        });
    }
    // What the code waited on before is not known here: wake on any result of the run.
    r.waiting_on = r
        .pending
        .keys()
        .copied()
        .chain(r.receives.iter().map(|rc| rc.command_id.nth(rc.received)))
        .collect();
    tag_messages(&r.workflow_name, &r.tags, id, TagChange::Add, out);
    state.head.record = Record::Running(r);
    state.history = new_history;
    state.replace_history = true;
    write(state, "failed tasks retried; the run resumes")
}
