//! One handler per incoming message kind, and the state changes they share.

mod cancel;
pub(crate) mod early;
pub(crate) mod held;
mod methods;
mod queries;
mod repair;
mod results;
mod signals;
mod start;
mod workflow_task;

use std::collections::BTreeSet;

use baton_shared_schemas::messages::{
    ClientMessage, DeferredCommand, ExecuteWorkflowTask, TagEngineMessage, TaskControlMessage, WorkflowEngineMessage,
    WorkflowOutcome, WorkflowTaskMessage,
};
use baton_shared_schemas::{
    ClientId, CommandId, HistoryEvent, MethodRunId, Outcome, Payload, TimerId, WorkflowId, WorkflowTaskId,
};

use crate::state::{CompletedRecord, PendingKind, Record, RunningWorkflow, WorkflowState};
use crate::transition::{Effect, Next, Out};

pub(crate) type Step = (Next, &'static str);

/// Changes nothing: the state handed in goes back to the caller as it was.
pub(crate) fn keep(state: Option<WorkflowState>, note: &'static str) -> Step {
    (Next::Keep(state.map(Box::new)), note)
}

pub(crate) fn write(state: WorkflowState, note: &'static str) -> Step {
    (Next::Write(Box::new(state)), note)
}

/// Routes a message to its handler; a command for an instance not stored yet is deferred
/// (see [`early`]).
pub(crate) fn handle(state: Option<WorkflowState>, message: &WorkflowEngineMessage, out: &mut Out<'_>) -> Step {
    match message {
        WorkflowEngineMessage::Deferred { command, attempt } => {
            if state.is_none() && *attempt < early::DEFER_ATTEMPTS {
                early::defer(command.clone(), attempt + 1, out)
            } else {
                route(state, &command.0, out)
            }
        }
        // `needs_its_instance` holds for no deferred command, so this one can be wrapped.
        command if state.is_none() && early::needs_its_instance(command) => {
            early::defer(DeferredCommand(Box::new(command.clone())), 1, out)
        }
        message => route(state, message, out),
    }
}

/// Hands a message to the handler of its kind.
fn route(state: Option<WorkflowState>, message: &WorkflowEngineMessage, out: &mut Out<'_>) -> Step {
    use WorkflowEngineMessage as M;
    match message {
        // Decoding refuses a deferred command inside another, so this is never reached.
        M::Deferred { .. } => keep(state, "deferred command inside a deferred command"),
        M::Start(m) => start::start(state, m, None, out),
        M::StartChild { start, parent } => start::start(state, start, Some(parent.clone()), out),
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
        M::RetryWorkflowTask { .. } => workflow_task::retry(state, out),
        M::TaskCompleted { task_id, output, .. } => {
            results::command_result(state, (*task_id).into(), Outcome::Completed(output.clone()), out)
        }
        M::TaskFailed { task_id, failure, .. } => {
            results::command_result(state, (*task_id).into(), Outcome::Failed(failure.clone()), out)
        }
        M::TimerFired { timer_id, .. } => {
            results::command_result(state, (*timer_id).into(), Outcome::Completed(Payload::null()), out)
        }
        M::ChildEnded {
            command_id, outcome, ..
        } => results::command_result(state, *command_id, results::child_outcome(outcome), out),
        M::CompleteTimers { .. } => results::complete_timers(state, out),
        M::SendSignal {
            signal_id,
            channel,
            value,
            ..
        } => signals::send(state, *signal_id, channel, value, out),
        M::RetryTasks { selector, .. } => repair::retry_tasks(state, &selector.clone().into(), out),
        M::RetryTasksMatching { filter, .. } => repair::retry_tasks(state, filter, out),
        M::WorkflowTaskNeedsHistory { task_id, .. } => workflow_task::needs_history(state, *task_id, out),
        M::Expire { .. } => queries::expire(state, out),
        M::CallMethod {
            workflow_id,
            invocation_id,
            method,
            args,
            reply_to,
        } => methods::call(state, *workflow_id, *invocation_id, method, args, *reply_to, out),
    }
}

/// The running record and history of a state, if it is running.
pub(crate) fn running(state: &mut WorkflowState) -> Option<(&mut RunningWorkflow, &mut Vec<HistoryEvent>)> {
    match &mut state.head.record {
        Record::Running(r) => Some((r, &mut state.history)),
        Record::Completed(_) => None,
    }
}

/// Starts the next workflow task: records its start in the history and sends it.
pub(crate) fn begin_workflow_task(
    id: WorkflowId,
    r: &mut RunningWorkflow,
    history: &mut Vec<HistoryEvent>,
    out: &mut Out<'_>,
) {
    r.task_index += 1;
    r.task_retry = 0;
    history.push(HistoryEvent::WorkflowTaskStarted {
        index: r.task_index,
        at: out.ctx.now,
    });
    send_workflow_task(id, r, history, Events::SinceLastTask, out);
}

/// Which of the history a workflow task carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Events {
    /// Only what follows the start of the run's previous task: a worker that ran that task
    /// keeps the run and continues it (sticky execution); one that does not asks for the rest.
    SinceLastTask,
    /// The whole history: a retry (the failed attempt's worker dropped the run) or an answer
    /// to a worker that asked for it.
    Whole,
}

/// Where the events a task carries start: after the start of the previous task, if any.
fn events_start(history: &[HistoryEvent], events: Events) -> usize {
    if events == Events::Whole {
        return 0;
    }
    let mut starts = history
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, e)| matches!(e, HistoryEvent::WorkflowTaskStarted { .. }));
    starts.next();
    starts.next().map_or(0, |(i, _)| i + 1)
}

/// Sends the workflow task whose start ends the history to a worker.
pub(crate) fn send_workflow_task(
    id: WorkflowId,
    r: &mut RunningWorkflow,
    history: &[HistoryEvent],
    events: Events,
    out: &mut Out<'_>,
) {
    let task_id = WorkflowTaskId::derive_retry(id, r.task_index, r.task_retry);
    r.running_task = Some(task_id);
    let offset = events_start(history, events);
    // A worker continuing the run knows its input already.
    let input = if offset == 0 { r.input.clone() } else { Payload::null() };
    let task = ExecuteWorkflowTask {
        workflow_id: id,
        workflow_name: r.workflow_name.clone(),
        workflow_version: r.workflow_version,
        run_id: MethodRunId::main_of_generation(id, r.generation),
        task_id,
        task_index: r.task_index,
        input,
        history_offset: u32::try_from(offset).unwrap_or(u32::MAX),
        history: history[offset..].to_vec(),
        tags: r.tags.clone(),
        meta: r.meta.clone(),
    };
    out.emit(Effect::WorkflowTask {
        workflow: r.workflow_name.clone(),
        message: WorkflowTaskMessage::Execute(task),
    });
}

/// Records a result: into the history if the code can see it now, into the buffer while a
/// workflow task is in flight or failed. Returns whether it was recorded and is awaited.
pub(crate) fn deliver(
    r: &mut RunningWorkflow,
    history: &mut Vec<HistoryEvent>,
    command_id: CommandId,
    outcome: Outcome,
) -> bool {
    let event = HistoryEvent::ResultDelivered { command_id, outcome };
    if r.running_task.is_some() || r.workflow_task_failure.is_some() {
        r.buffered.push(event);
        return false;
    }
    history.push(event);
    r.waiting_on.contains(&command_id)
}

/// Tells a client (if any) that the instance does not exist.
pub(crate) fn reply_unknown(
    client: Option<ClientId>,
    workflow_id: WorkflowId,
    request_id: Option<baton_shared_schemas::RequestId>,
    out: &mut Out<'_>,
) {
    if let Some(client) = client {
        out.emit(Effect::Client {
            client,
            message: ClientMessage::WorkflowUnknown {
                workflow_id,
                request_id,
            },
        });
    }
}

/// Tells a client how an instance ended.
pub(crate) fn reply_outcome(client: ClientId, workflow_id: WorkflowId, outcome: WorkflowOutcome, out: &mut Out<'_>) {
    out.emit(Effect::Client {
        client,
        message: ClientMessage::WorkflowResult { workflow_id, outcome },
    });
}

/// Stops what the run still has going: running tasks are asked to stop, timers cancelled,
/// children cancelled.
pub(crate) fn cancel_owned_work(id: WorkflowId, r: &RunningWorkflow, out: &mut Out<'_>) {
    for (command, pending) in &r.pending {
        out.emit(match &pending.kind {
            PendingKind::Task { service } => Effect::TaskControl {
                service: service.clone(),
                message: TaskControlMessage::Cancel {
                    task_id: (*command).into(),
                },
            },
            PendingKind::Timer => Effect::CancelTimer {
                timer_id: (*command).into(),
            },
            PendingKind::Child { workflow } => Effect::Command {
                workflow: workflow.clone(),
                message: WorkflowEngineMessage::Cancel {
                    workflow_id: command.child_workflow(),
                    reason: format!("parent workflow {id} ended"),
                    client: None,
                },
            },
        });
    }
}

/// What becomes of an instance's tags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TagChange {
    /// It carries them (it started, or runs again).
    Add,
    /// It ended and no longer carries them, for good.
    Remove,
    /// Its record expired: the tag engine keeps nothing for it.
    Forget,
}

/// Publishes tag maintenance for an instance's tags.
pub(crate) fn tag_messages(workflow_name: &str, tags: &[String], id: WorkflowId, change: TagChange, out: &mut Out<'_>) {
    for tag in tags {
        let workflow = workflow_name.to_string();
        let (workflow_name, tag, workflow_id) = (workflow.clone(), tag.clone(), id);
        let message = match change {
            TagChange::Add => TagEngineMessage::AddTag {
                workflow_name,
                tag,
                workflow_id,
            },
            TagChange::Remove => TagEngineMessage::RemoveTag {
                workflow_name,
                tag,
                workflow_id,
            },
            TagChange::Forget => TagEngineMessage::ForgetTag {
                workflow_name,
                tag,
                workflow_id,
            },
        };
        out.emit(Effect::Tag { workflow, message });
    }
}

/// Ends a running instance: replaces it with its completed record, notifies waiting clients
/// and the parent, stops owned work and schedules the record's removal. A failed run keeps
/// its history and last state so failed tasks can be retried.
pub(crate) fn finish(state: &mut WorkflowState, outcome: WorkflowOutcome, out: &mut Out<'_>) {
    let id = state.id;
    let Record::Running(r) = &state.head.record else {
        return;
    };
    let now = out.ctx.now;
    let expires_at = now.saturating_add(out.ctx.retention);
    for client in unique(&r.waiting_clients) {
        reply_outcome(client, id, outcome.clone(), out);
    }
    if let Some(parent) = &r.parent {
        out.emit(Effect::Engine {
            workflow: parent.workflow_name.clone(),
            message: WorkflowEngineMessage::ChildEnded {
                workflow_id: parent.workflow_id,
                command_id: parent.command_id,
                outcome: outcome.clone(),
            },
        });
    }
    cancel_owned_work(id, r, out);
    methods::answer_unanswered(id, r, "the instance ended before answering", out);
    let failed = matches!(outcome, WorkflowOutcome::Failed(_));
    if !failed {
        tag_messages(&r.workflow_name, &r.tags, id, TagChange::Remove, out);
    }
    out.schedule(
        TimerId::for_retention(id, out.message_id),
        expires_at,
        &r.workflow_name,
        WorkflowEngineMessage::Expire { workflow_id: id },
    );
    let resumable = failed.then(|| {
        let mut snapshot = r.clone();
        snapshot.waiting_clients.clear();
        Box::new(snapshot)
    });
    state.head.record = Record::Completed(CompletedRecord {
        workflow_name: r.workflow_name.clone(),
        workflow_version: r.workflow_version,
        tags: r.tags.clone(),
        started_at: r.started_at,
        ended_at: now,
        expires_at,
        workflow_tasks: r.task_index,
        outcome,
        resumable,
    });
    // The history stays stored until the retention ends, so operators can read how the run
    // went; the runner drops its in-memory copy once saved.
}

fn unique(clients: &[ClientId]) -> Vec<ClientId> {
    clients.iter().copied().collect::<BTreeSet<_>>().into_iter().collect()
}

/// Whether any of these events lets the code make progress: a result it waits on, or a
/// method call (which always needs its handler run).
pub(crate) fn wakes(events: &[HistoryEvent], waiting_on: &BTreeSet<CommandId>) -> bool {
    events.iter().any(|e| match e {
        HistoryEvent::ResultDelivered { command_id, .. } => waiting_on.contains(command_id),
        HistoryEvent::MethodCalled { .. } => true,
        _ => false,
    })
}
