//! The deterministic replay executor: runs one workflow task.
//!
//! The history is walked in order. A `ResultDelivered` makes a result visible; a
//! `WorkflowTaskStarted` moves the logical clock and polls the workflow once (results only
//! change between tasks, so one poll reaches the point where every branch waits). Commands the
//! code makes while replaying a past task must match the ones recorded for that task; after
//! the last task, new commands and the set of commands the code waits on are reported.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::task::{Context, Poll, Waker};

use baton_shared_schemas::messages::{ExecuteWorkflowTask, RunCompletion, WorkflowTaskCompleted};
use baton_shared_schemas::{CommandSpec, Failure, FailureKind, HistoryEvent, Payload, RequestId};

use crate::methods::HandlerFuture;

use crate::context::{ContextState, RecordedEntry, WorkflowContext};
use crate::definition::Registry;

fn non_determinism(message: String) -> Failure {
    Failure::new(FailureKind::NonDeterminism, message)
}

/// The text of a panic payload (`&str` or `String` panics; a placeholder otherwise).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-string payload".to_string())
}

/// Executes a workflow task against the registry: replays the history and returns what the
/// code does next, or why the task cannot be completed (the workflow then waits for a fix).
pub fn execute(registry: &Registry, task: &ExecuteWorkflowTask) -> Result<WorkflowTaskCompleted, Failure> {
    let hosted = registry
        .get(&task.workflow_name, task.workflow_version)
        .map_err(|e| Failure::new(FailureKind::UnknownMethod, e.to_string()))?;
    if task.history_offset != 0 {
        return Err(Failure::new(
            FailureKind::Blocked,
            "partial histories need a warm worker cache, which this worker does not have",
        ));
    }
    match task.history.last() {
        Some(HistoryEvent::WorkflowTaskStarted { index, .. }) if *index == task.task_index => {}
        _ => {
            return Err(non_determinism(format!(
                "history does not end with the start of workflow task {}",
                task.task_index
            )));
        }
    }

    let mut recorded = HashMap::new();
    for event in &task.history {
        if let HistoryEvent::CommandRecorded { task_index, command } = event {
            recorded.insert(
                command.position,
                RecordedEntry {
                    command: command.clone(),
                    task_index: *task_index,
                    matched: false,
                },
            );
        }
    }
    let ctx = WorkflowContext::new(ContextState {
        workflow_id: task.workflow_id,
        workflow_name: task.workflow_name.clone(),
        run_id: task.run_id,
        tags: task.tags.clone(),
        meta: task.meta.clone(),
        check_mode: hosted.check_mode,
        recorded,
        results: HashMap::new(),
        next_position: 0,
        task_index: 0,
        final_task_index: task.task_index,
        now: Default::default(),
        new_commands: Vec::new(),
        waiting: Vec::new(),
        violation: None,
        random_counter: 0,
        continue_as_new: None,
        handlers: HashMap::new(),
    });
    let mut run = hosted.workflow.start(ctx.clone(), &task.input)?;
    let mut cx = Context::from_waker(Waker::noop());
    let mut completion = None;
    // Method calls made visible since the last task start, and the handlers running.
    let mut calls: Vec<(RequestId, String, Payload)> = Vec::new();
    let mut handlers: Vec<(RequestId, HandlerFuture)> = Vec::new();

    for event in &task.history {
        match event {
            HistoryEvent::ResultDelivered { command_id, outcome } => {
                ctx.state.borrow_mut().results.insert(*command_id, outcome.clone());
            }
            HistoryEvent::CommandRecorded { .. } => {}
            HistoryEvent::MethodCalled {
                invocation_id,
                method,
                args,
            } => {
                calls.push((*invocation_id, method.clone(), args.clone()));
            }
            HistoryEvent::WorkflowTaskStarted { index, at } => {
                if completion.is_some() {
                    return Err(non_determinism(format!(
                        "the workflow returned before workflow task {index} of its history"
                    )));
                }
                {
                    let mut s = ctx.state.borrow_mut();
                    s.task_index = *index;
                    s.now = *at;
                    s.waiting.clear();
                }
                let polled = catch_unwind(AssertUnwindSafe(|| run.as_mut().poll(&mut cx))).map_err(|p| {
                    Failure::new(
                        FailureKind::Panic,
                        format!("workflow code panicked: {}", panic_message(p.as_ref())),
                    )
                })?;
                if let Poll::Ready(done) = polled {
                    completion = Some(done);
                }
                // Start the handlers of calls visible to this task, then poll every handler in
                // call order; a handler that returns answers its caller through a command.
                for (invocation_id, method, args) in calls.drain(..) {
                    let handler = ctx.state.borrow().handlers.get(&method).cloned();
                    match handler {
                        Some(handler) => handlers.push((invocation_id, handler(args))),
                        None => {
                            let failure = Failure::new(
                                FailureKind::UnknownMethod,
                                format!("workflow {} has no method {method}", task.workflow_name),
                            );
                            ctx.command(CommandSpec::MethodReturned {
                                invocation_id,
                                result: Err(failure),
                            });
                        }
                    }
                }
                let mut still_running = Vec::with_capacity(handlers.len());
                for (invocation_id, mut handler) in handlers.drain(..) {
                    let polled = catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(&mut cx))).map_err(|p| {
                        Failure::new(
                            FailureKind::Panic,
                            format!("method handler panicked: {}", panic_message(p.as_ref())),
                        )
                    })?;
                    match polled {
                        Poll::Ready(result) => {
                            ctx.command(CommandSpec::MethodReturned { invocation_id, result });
                        }
                        Poll::Pending => still_running.push((invocation_id, handler)),
                    }
                }
                handlers = still_running;
                if let Some(violation) = ctx.state.borrow_mut().violation.take() {
                    return Err(violation);
                }
                if *index < task.task_index {
                    let s = ctx.state.borrow();
                    let missing = s
                        .recorded
                        .values()
                        .filter(|e| e.task_index == *index && !e.matched)
                        .map(|e| e.command.position)
                        .min();
                    if let Some(position) = missing {
                        let entry = &s.recorded[&position];
                        return Err(non_determinism(format!(
                            "position {position}: history has {} made by workflow task {index}, but the code no longer makes it",
                            entry.command.spec.describe()
                        )));
                    }
                }
            }
        }
    }

    let mut s = ctx.state.borrow_mut();
    if completion.is_none() {
        if let Some(input) = s.continue_as_new.take() {
            completion = Some(RunCompletion::ContinueAsNew(input));
        }
    }
    let mut waiting = std::mem::take(&mut s.waiting);
    waiting.sort_unstable();
    waiting.dedup();
    if completion.is_none() && waiting.is_empty() {
        return Err(Failure::new(
            FailureKind::Blocked,
            "the workflow waits on something that is not a Baton command (only futures from the workflow context can be awaited)",
        ));
    }
    Ok(WorkflowTaskCompleted {
        workflow_id: task.workflow_id,
        task_id: task.task_id,
        workflow_version: hosted.workflow.version(),
        new_commands: std::mem::take(&mut s.new_commands),
        waiting_on: if completion.is_some() { Vec::new() } else { waiting },
        completion: completion.map(|c: RunCompletion| c),
    })
}
