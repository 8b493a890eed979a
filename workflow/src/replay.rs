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
/// The task must carry the whole history; [`Session`] also takes the events since its last task.
pub fn execute(registry: &Registry, task: &ExecuteWorkflowTask) -> Result<WorkflowTaskCompleted, Failure> {
    if task.history_offset != 0 {
        return Err(Failure::new(
            FailureKind::Blocked,
            "partial histories need a warm worker cache, which this worker does not have",
        ));
    }
    Session::start(registry, task).map(|(_, done)| done)
}

/// Why a [`Session`] did not complete a task that carries only the events since an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeError {
    /// The session is not where the task's events start (another worker ran tasks since, or
    /// this one was not told of a change): the task needs the whole history.
    NeedsHistory,
    /// The task failed, as it would on a replay of the whole history.
    Failed(Failure),
}

/// A run kept alive between its workflow tasks: its suspended code, its context and how much
/// of its history it has seen, so the next task needs to carry only the events since (sticky
/// execution). Not `Send`: a session stays on the thread that started it.
pub struct Session {
    ctx: WorkflowContext,
    run: crate::definition::RunFuture,
    run_id: baton_shared_schemas::MethodRunId,
    workflow_name: String,
    workflow_version: u32,
    /// History entries seen, from the start of the run.
    seen: u32,
    /// Index of the last task executed.
    last_task: u32,
    /// The commands that task reported, which the next task's events record.
    reported: Vec<baton_shared_schemas::RecordedCommand>,
    /// Method calls made visible since the last task start, and the handlers running.
    calls: Vec<(RequestId, String, Payload)>,
    handlers: Vec<(RequestId, HandlerFuture)>,
    completion: Option<RunCompletion>,
}

impl Session {
    /// Starts a run from its whole history (`task.history_offset` must be 0) and executes the
    /// task; the session continues from there.
    pub fn start(registry: &Registry, task: &ExecuteWorkflowTask) -> Result<(Session, WorkflowTaskCompleted), Failure> {
        let hosted = registry
            .get(&task.workflow_name, task.workflow_version)
            .map_err(|e| Failure::new(FailureKind::UnknownMethod, e.to_string()))?;
        if task.history_offset != 0 {
            return Err(non_determinism(format!(
                "a run cannot start from history entry {}",
                task.history_offset
            )));
        }
        ends_with_task_start(task)?;
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
        let run = hosted.workflow.start(ctx.clone(), &task.input)?;
        let mut session = Session {
            ctx,
            run,
            run_id: task.run_id,
            workflow_name: task.workflow_name.clone(),
            workflow_version: hosted.workflow.version(),
            seen: 0,
            last_task: 0,
            reported: Vec::new(),
            calls: Vec::new(),
            handlers: Vec::new(),
            completion: None,
        };
        for event in &task.history {
            session.feed(event, task)?;
        }
        let done = session.finish_task(task)?;
        Ok((session, done))
    }

    /// Executes a task whose events continue where this session left off. After an error the
    /// session is of no further use.
    pub fn resume(&mut self, task: &ExecuteWorkflowTask) -> Result<WorkflowTaskCompleted, ResumeError> {
        if task.run_id != self.run_id
            || task.workflow_name != self.workflow_name
            || task.workflow_version.is_some_and(|v| v != self.workflow_version)
            || task.history_offset != self.seen
            || task.task_index <= self.last_task
            || self.completion.is_some()
        {
            return Err(ResumeError::NeedsHistory);
        }
        ends_with_task_start(task).map_err(ResumeError::Failed)?;
        // The events open with the commands the last task reported, as the engine recorded
        // them: anything else means this session's view is not the engine's.
        let recorded: Vec<_> = task
            .history
            .iter()
            .filter_map(|e| match e {
                HistoryEvent::CommandRecorded { task_index, command } if *task_index == self.last_task => Some(command),
                _ => None,
            })
            .collect();
        if recorded.len() != self.reported.len() || recorded.iter().zip(&self.reported).any(|(a, b)| *a != b) {
            return Err(ResumeError::NeedsHistory);
        }
        {
            let mut s = self.ctx.state.borrow_mut();
            s.final_task_index = task.task_index;
        }
        for event in &task.history {
            self.feed(event, task).map_err(ResumeError::Failed)?;
        }
        self.finish_task(task).map_err(ResumeError::Failed)
    }

    /// Whether the run has returned (no task can follow).
    pub fn is_finished(&self) -> bool {
        self.completion.is_some()
    }

    /// Applies one history event; a task start polls the code.
    fn feed(&mut self, event: &HistoryEvent, task: &ExecuteWorkflowTask) -> Result<(), Failure> {
        self.seen += 1;
        match event {
            HistoryEvent::ResultDelivered { command_id, outcome } => {
                self.ctx.state.borrow_mut().results.insert(*command_id, outcome.clone());
            }
            HistoryEvent::CommandRecorded { .. } => {}
            HistoryEvent::MethodCalled {
                invocation_id,
                method,
                args,
            } => {
                self.calls.push((*invocation_id, method.clone(), args.clone()));
            }
            HistoryEvent::WorkflowTaskStarted { index, at } => {
                if self.completion.is_some() {
                    return Err(non_determinism(format!(
                        "the workflow returned before workflow task {index} of its history"
                    )));
                }
                {
                    let mut s = self.ctx.state.borrow_mut();
                    s.task_index = *index;
                    s.now = *at;
                    s.waiting.clear();
                }
                let mut cx = Context::from_waker(Waker::noop());
                let polled = catch_unwind(AssertUnwindSafe(|| self.run.as_mut().poll(&mut cx))).map_err(|p| {
                    Failure::new(
                        FailureKind::Panic,
                        format!("workflow code panicked: {}", panic_message(p.as_ref())),
                    )
                })?;
                if let Poll::Ready(done) = polled {
                    self.completion = Some(done);
                }
                // Start the handlers of calls visible to this task, then poll every handler in
                // call order; a handler that returns answers its caller through a command.
                for (invocation_id, method, args) in self.calls.drain(..) {
                    let handler = self.ctx.state.borrow().handlers.get(&method).cloned();
                    match handler {
                        Some(handler) => self.handlers.push((invocation_id, handler(args))),
                        None => {
                            let failure = Failure::new(
                                FailureKind::UnknownMethod,
                                format!("workflow {} has no method {method}", task.workflow_name),
                            );
                            self.ctx.command(CommandSpec::MethodReturned {
                                invocation_id,
                                result: Err(failure),
                            });
                        }
                    }
                }
                let mut still_running = Vec::with_capacity(self.handlers.len());
                for (invocation_id, mut handler) in self.handlers.drain(..) {
                    let polled = catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(&mut cx))).map_err(|p| {
                        Failure::new(
                            FailureKind::Panic,
                            format!("method handler panicked: {}", panic_message(p.as_ref())),
                        )
                    })?;
                    match polled {
                        Poll::Ready(result) => {
                            self.ctx.command(CommandSpec::MethodReturned { invocation_id, result });
                        }
                        Poll::Pending => still_running.push((invocation_id, handler)),
                    }
                }
                self.handlers = still_running;
                if let Some(violation) = self.ctx.state.borrow_mut().violation.take() {
                    return Err(violation);
                }
                if *index < task.task_index {
                    let s = self.ctx.state.borrow();
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
        Ok(())
    }

    /// What the task reports once its last event (its own start) is applied.
    fn finish_task(&mut self, task: &ExecuteWorkflowTask) -> Result<WorkflowTaskCompleted, Failure> {
        let mut s = self.ctx.state.borrow_mut();
        if self.completion.is_none() {
            if let Some(input) = s.continue_as_new.take() {
                self.completion = Some(RunCompletion::ContinueAsNew(input));
            }
        }
        let mut waiting = std::mem::take(&mut s.waiting);
        waiting.sort_unstable();
        waiting.dedup();
        if self.completion.is_none() && waiting.is_empty() {
            return Err(Failure::new(
                FailureKind::Blocked,
                "the workflow waits on something that is not a Baton command (only futures from the workflow context can be awaited)",
            ));
        }
        let new_commands = std::mem::take(&mut s.new_commands);
        // Replayed commands are done with: only their positions matter from here on.
        s.recorded.clear();
        self.reported = new_commands.clone();
        self.last_task = task.task_index;
        Ok(WorkflowTaskCompleted {
            workflow_id: task.workflow_id,
            task_id: task.task_id,
            workflow_version: self.workflow_version,
            new_commands,
            waiting_on: if self.completion.is_some() { Vec::new() } else { waiting },
            completion: self.completion.clone(),
        })
    }
}

/// Checks that a task's events end with its own start.
fn ends_with_task_start(task: &ExecuteWorkflowTask) -> Result<(), Failure> {
    match task.history.last() {
        Some(HistoryEvent::WorkflowTaskStarted { index, .. }) if *index == task.task_index => Ok(()),
        _ => Err(non_determinism(format!(
            "history does not end with the start of workflow task {}",
            task.task_index
        ))),
    }
}
