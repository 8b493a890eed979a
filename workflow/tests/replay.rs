//! Replay executor tests: pure, no I/O. A small simulator plays the engine's part (appending
//! task starts, recording commands, delivering results) so each test reads as a scenario.

use std::cell::Cell;
use std::time::Duration;

use baton_shared_schemas::messages::{ExecuteWorkflowTask, RunCompletion, WorkflowTaskCompleted};
use baton_shared_schemas::*;
use baton_workflow::*;
use serde::{Deserialize, Serialize};

struct Sim {
    registry: Registry,
    name: &'static str,
    id: WorkflowId,
    input: Payload,
    history: Vec<HistoryEvent>,
    index: u32,
    commands: Vec<RecordedCommand>,
    /// The run kept between tasks, as a sticky worker keeps it: every step checks that it
    /// continues to the same result as a replay of the whole history.
    session: Option<baton_workflow::replay::Session>,
}

impl Sim {
    fn new<W: Workflow>(input: &W::Input) -> Self {
        Self::with_registry(registry_of(&[erase::<W>()]), W::NAME, input)
    }

    fn with_registry<I: Serialize>(registry: Registry, name: &'static str, input: &I) -> Self {
        Self {
            registry,
            name,
            id: WorkflowId::new(),
            input: Payload::json(input).expect("input"),
            history: Vec::new(),
            index: 0,
            commands: Vec::new(),
            session: None,
        }
    }

    /// New code for the instance: a worker restarts with it, so no run is kept.
    fn deploy(&mut self, registry: Registry) {
        self.registry = registry;
        self.session = None;
    }

    /// The task as a sticky worker gets it: the events after the previous task's start.
    fn continuing(&self, task: &ExecuteWorkflowTask) -> ExecuteWorkflowTask {
        let starts: Vec<usize> = task
            .history
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, HistoryEvent::WorkflowTaskStarted { .. }))
            .map(|(i, _)| i)
            .collect();
        let offset = starts.iter().rev().nth(1).map_or(0, |i| i + 1);
        ExecuteWorkflowTask {
            history_offset: u32::try_from(offset).expect("offset"),
            history: task.history[offset..].to_vec(),
            input: Payload::null(),
            ..task.clone()
        }
    }

    /// Runs the task on the kept run (or starts one), as a sticky worker would.
    fn sticky(&mut self, task: &ExecuteWorkflowTask) -> Result<WorkflowTaskCompleted, Failure> {
        use baton_workflow::replay::{ResumeError, Session};
        let (session, done) = match self.session.take() {
            Some(mut session) => match session.resume(&self.continuing(task)) {
                Ok(done) => (Some(session), Ok(done)),
                Err(ResumeError::NeedsHistory) => panic!("a run that took every task must continue"),
                Err(ResumeError::Failed(failure)) => (None, Err(failure)),
            },
            None => match Session::start(&self.registry, task) {
                Ok((session, done)) => (Some(session), Ok(done)),
                Err(failure) => (None, Err(failure)),
            },
        };
        self.session = session.filter(|s| !s.is_finished());
        done
    }

    fn task_message(&self) -> ExecuteWorkflowTask {
        ExecuteWorkflowTask {
            workflow_id: self.id,
            workflow_name: self.name.to_string(),
            workflow_version: None,
            run_id: MethodRunId::main(self.id),
            task_id: WorkflowTaskId::derive(self.id, self.index),
            task_index: self.index,
            input: self.input.clone(),
            history_offset: 0,
            history: self.history.clone(),
            tags: vec![],
            meta: Default::default(),
        }
    }

    /// Runs the next workflow task and records its commands, as the engine would.
    fn step(&mut self) -> Result<WorkflowTaskCompleted, Failure> {
        self.index += 1;
        self.history.push(HistoryEvent::WorkflowTaskStarted {
            index: self.index,
            at: Timestamp(1_000 * u64::from(self.index)),
        });
        let task = self.task_message();
        let replayed = baton_workflow::replay::execute(&self.registry, &task);
        let continued = self.sticky(&task);
        assert_eq!(
            continued, replayed,
            "the kept run and a replay of the whole history agree on task {}",
            self.index
        );
        let done = replayed?;
        for c in &done.new_commands {
            self.history.push(HistoryEvent::CommandRecorded {
                task_index: self.index,
                command: c.clone(),
            });
            self.commands.push(c.clone());
        }
        Ok(done)
    }

    /// Re-runs the last workflow task without recording anything (a duplicate execution).
    fn rerun_last(&self) -> Result<WorkflowTaskCompleted, Failure> {
        let mut history = self.history.clone();
        // Drop what the last task recorded: a duplicate execution sees the same input as the original.
        while matches!(history.last(), Some(HistoryEvent::CommandRecorded { task_index, .. }) if *task_index == self.index)
        {
            history.pop();
        }
        let mut msg = self.task_message();
        msg.history = history;
        baton_workflow::replay::execute(&self.registry, &msg)
    }

    fn complete(&mut self, position: u32, value: impl Serialize) {
        let id = self.command(position).command_id;
        self.history.push(HistoryEvent::ResultDelivered {
            command_id: id,
            outcome: Outcome::Completed(Payload::json(&value).expect("value")),
        });
    }

    fn fail(&mut self, position: u32, failure: Failure) {
        let id = self.command(position).command_id;
        self.history.push(HistoryEvent::ResultDelivered {
            command_id: id,
            outcome: Outcome::Failed(failure),
        });
    }

    fn fire(&mut self, position: u32) {
        let id = self.command(position).command_id;
        self.history.push(HistoryEvent::ResultDelivered {
            command_id: id,
            outcome: Outcome::Completed(Payload::null()),
        });
    }

    fn command(&self, position: u32) -> &RecordedCommand {
        self.commands
            .iter()
            .find(|c| c.position == position)
            .expect("command at position")
    }
}

fn registry_of(workflows: &[std::sync::Arc<dyn ErasedWorkflow>]) -> Registry {
    let mut r = Registry::new();
    for w in workflows {
        r.register(w.clone(), CheckMode::Simple).expect("register");
    }
    r
}

fn method_of(c: &RecordedCommand) -> String {
    match &c.spec {
        CommandSpec::ServiceTask { service, method, .. } => format!("{service}.{method}"),
        other => other.describe(),
    }
}

fn output<T: serde::de::DeserializeOwned>(done: &WorkflowTaskCompleted) -> T {
    match &done.completion {
        Some(RunCompletion::Completed(p)) => p.decode().expect("output"),
        other => panic!("expected completion, got {other:?}"),
    }
}

// --- A booking-like saga -------------------------------------------------------------------

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum BookingError {
    Declined,
    SoldOut,
}

impl std::fmt::Display for BookingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
enum BookingOutcome {
    Booked,
    Compensated { reason: String },
}

struct Saga;
impl Workflow for Saga {
    const NAME: &'static str = "Saga";
    type Input = u32;
    type Output = BookingOutcome;
    type Error = String;

    async fn run(ctx: WorkflowContext, amount: u32) -> Result<BookingOutcome, String> {
        let charge: Result<String, CallError<BookingError>> =
            ctx.call_service("Payment", "charge", Payload::json(&(amount,))).await;
        let receipt = match charge {
            Ok(r) => r,
            Err(CallError::Service(BookingError::Declined)) => {
                return Ok(BookingOutcome::Compensated {
                    reason: "declined".into(),
                });
            }
            Err(e) => return Err(e.to_string()),
        };
        let flight: Result<String, CallError<BookingError>> =
            ctx.call_service("Flight", "book", Payload::json(&())).await;
        match flight {
            Ok(_) => Ok(BookingOutcome::Booked),
            Err(CallError::Service(BookingError::SoldOut)) => {
                let refund: Result<(), CallError<BookingError>> =
                    ctx.call_service("Payment", "refund", Payload::json(&(receipt,))).await;
                refund.map_err(|e| e.to_string())?;
                Ok(BookingOutcome::Compensated {
                    reason: "flight sold out".into(),
                })
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

fn service_failure(error: &BookingError, attempts: u32) -> Failure {
    Failure {
        kind: FailureKind::ServiceError,
        message: format!("{error:?}"),
        error: Some(Payload::json(error).expect("error")),
        retryable: false,
        previous_attempts: (1..attempts)
            .map(|attempt| AttemptFailure {
                attempt,
                at: Timestamp(1),
                kind: FailureKind::ServiceError,
                message: "unavailable".into(),
            })
            .collect(),
    }
}

#[test]
fn sequential_calls_resume_from_history() {
    let mut sim = Sim::new::<Saga>(&120);
    let t1 = sim.step().expect("task 1");
    assert_eq!(
        t1.new_commands.iter().map(method_of).collect::<Vec<_>>(),
        ["Payment.charge"]
    );
    assert_eq!(t1.waiting_on, vec![t1.new_commands[0].command_id]);
    assert!(t1.completion.is_none());

    sim.complete(0, "receipt-1");
    let t2 = sim.step().expect("task 2");
    assert_eq!(
        t2.new_commands.iter().map(method_of).collect::<Vec<_>>(),
        ["Flight.book"]
    );
    assert_eq!(t2.new_commands[0].position, 1);

    sim.complete(1, "seat 4A");
    let t3 = sim.step().expect("task 3");
    assert!(t3.new_commands.is_empty());
    assert_eq!(output::<BookingOutcome>(&t3), BookingOutcome::Booked);
}

#[test]
fn command_ids_are_deterministic_across_duplicate_executions() {
    let mut sim = Sim::new::<Saga>(&120);
    let first = sim.step().expect("task 1");
    let again = sim.rerun_last().expect("duplicate task 1");
    assert_eq!(
        first, again,
        "a workflow task executed twice emits the same commands and ids"
    );
}

#[test]
fn exhausted_retries_surface_as_a_typed_error_that_the_workflow_compensates() {
    let mut sim = Sim::new::<Saga>(&120);
    sim.step().expect("task 1");
    sim.complete(0, "receipt-9");
    sim.step().expect("task 2");
    // The flight service failed on every attempt; its last error is the business one.
    sim.fail(1, service_failure(&BookingError::SoldOut, 3));
    let t3 = sim.step().expect("task 3");
    assert_eq!(
        t3.new_commands.iter().map(method_of).collect::<Vec<_>>(),
        ["Payment.refund"],
        "compensation runs"
    );
    let args = match &t3.new_commands[0].spec {
        CommandSpec::ServiceTask { args, .. } => args.decode::<(String,)>().expect("args"),
        other => panic!("{other:?}"),
    };
    assert_eq!(args.0, "receipt-9", "the refund uses the recorded receipt");
    sim.complete(2, ());
    let t4 = sim.step().expect("task 4");
    assert_eq!(
        output::<BookingOutcome>(&t4),
        BookingOutcome::Compensated {
            reason: "flight sold out".into()
        }
    );
}

#[test]
fn an_untyped_failure_fails_the_run_with_the_workflow_error() {
    let mut sim = Sim::new::<Saga>(&120);
    sim.step().expect("task 1");
    sim.fail(0, Failure::new(FailureKind::Panic, "payment service panicked"));
    let t2 = sim.step().expect("task 2");
    match t2.completion {
        Some(RunCompletion::Failed(f)) => {
            assert_eq!(f.kind, FailureKind::WorkflowError);
            assert!(f.message.contains("payment service panicked"), "{}", f.message);
            let typed: String = f.error.expect("typed error").decode().expect("string");
            assert!(typed.contains("panicked"), "{typed}");
        }
        other => panic!("{other:?}"),
    }
}

// --- Races ------------------------------------------------------------------------------------

struct Race;
impl Workflow for Race {
    const NAME: &'static str = "Race";
    type Input = ();
    type Output = Vec<String>;
    type Error = String;

    async fn run(ctx: WorkflowContext, _: ()) -> Result<Vec<String>, String> {
        let mut log = Vec::new();
        let quote = ctx
            .call_service::<String, String>("Quotes", "fetch", Payload::json(&()))
            .dispatch();
        let timeout = ctx.sleep(Duration::from_secs(5));
        match race(quote, timeout).await {
            Either::Left(q) => log.push(format!("quote {}", q.map_err(|e| e.to_string())?)),
            Either::Right(()) => log.push("timeout".to_string()),
        }
        let fast = ctx
            .call_service::<String, String>("A", "go", Payload::json(&()))
            .dispatch();
        let slow = ctx
            .call_service::<String, String>("B", "go", Payload::json(&()))
            .dispatch();
        let (winner, value) = any_of(vec![fast, slow]).await;
        log.push(format!("winner {winner} {}", value.map_err(|e| e.to_string())?));
        // Keep going so later tasks replay the race again.
        ctx.call_service::<(), String>("Log", "write", Payload::json(&log))
            .await
            .map_err(|e| e.to_string())?;
        Ok(log)
    }
}

#[test]
fn any_of_race_replays_identically() {
    let mut sim = Sim::new::<Race>(&());
    let t1 = sim.step().expect("task 1");
    assert_eq!(t1.new_commands.len(), 2, "task and timer");
    assert_eq!(t1.waiting_on.len(), 2, "waits on either");
    // The timer fires first and alone: the timeout branch wins.
    sim.fire(1);
    let t2 = sim.step().expect("task 2");
    assert_eq!(
        t2.new_commands.iter().map(method_of).collect::<Vec<_>>(),
        ["A.go", "B.go"]
    );
    // The quote arrives late; both A and B complete in the same batch: the first listed wins.
    sim.complete(0, "late quote");
    sim.complete(3, "from B");
    sim.complete(2, "from A");
    let t3 = sim.step().expect("task 3");
    assert_eq!(t3.new_commands.iter().map(method_of).collect::<Vec<_>>(), ["Log.write"]);
    let logged: Vec<String> = match &t3.new_commands[0].spec {
        CommandSpec::ServiceTask { args, .. } => args.decode().expect("log"),
        other => panic!("{other:?}"),
    };
    assert_eq!(logged, vec!["timeout".to_string(), "winner 0 from A".to_string()]);
    // Later replays see the same winners even though every result is now known.
    sim.complete(4, ());
    let t4 = sim.step().expect("task 4");
    assert_eq!(output::<Vec<String>>(&t4), logged);
}

#[test]
fn a_result_delivered_earlier_wins_the_race_on_replay() {
    let mut sim = Sim::new::<Race>(&());
    sim.step().expect("task 1");
    sim.complete(0, "q");
    sim.step().expect("task 2");
    sim.complete(3, "from B");
    sim.step().expect("task 3: B alone wins");
    sim.complete(2, "from A");
    sim.complete(4, ());
    let t = sim.step().expect("task 4");
    assert_eq!(
        output::<Vec<String>>(&t),
        vec!["quote q".to_string(), "winner 1 from B".to_string()]
    );
}

// --- Non-determinism --------------------------------------------------------------------------

struct HotelFirst;
impl Workflow for HotelFirst {
    const NAME: &'static str = "Saga";
    type Input = u32;
    type Output = BookingOutcome;
    type Error = String;

    async fn run(ctx: WorkflowContext, _: u32) -> Result<BookingOutcome, String> {
        let _: Result<String, CallError<BookingError>> = ctx.call_service("Hotel", "book", Payload::json(&())).await;
        Ok(BookingOutcome::Booked)
    }
}

#[test]
fn a_changed_workflow_is_detected_as_non_determinism() {
    let mut sim = Sim::new::<Saga>(&120);
    sim.step().expect("task 1 on the original code");
    sim.complete(0, "receipt");
    // Deploy a different body under the same name and version.
    sim.deploy(registry_of(&[erase::<HotelFirst>()]));
    let err = sim.step().expect_err("changed code");
    assert_eq!(err.kind, FailureKind::NonDeterminism);
    assert!(
        err.message.contains("position 0")
            && err.message.contains("Payment.charge")
            && err.message.contains("Hotel.book"),
        "{}",
        err.message
    );
}

struct ChargeOnly;
impl Workflow for ChargeOnly {
    const NAME: &'static str = "Saga";
    type Input = u32;
    type Output = BookingOutcome;
    type Error = String;

    async fn run(ctx: WorkflowContext, _: u32) -> Result<BookingOutcome, String> {
        ctx.sleep(Duration::from_secs(1)).await;
        Ok(BookingOutcome::Booked)
    }
}

#[test]
fn a_command_of_another_kind_is_detected_even_without_checks() {
    let mut sim = Sim::new::<Saga>(&120);
    sim.step().expect("task 1");
    sim.complete(0, "receipt");
    let mut registry = Registry::new();
    registry
        .register(erase::<ChargeOnly>(), CheckMode::None)
        .expect("register");
    sim.deploy(registry);
    let err = sim.step().expect_err("timer where a task was");
    assert_eq!(err.kind, FailureKind::NonDeterminism, "{err}");
}

struct Fickle;
thread_local! { static CALL_FLIGHT_FIRST: Cell<bool> = const { Cell::new(true) }; }
impl Workflow for Fickle {
    const NAME: &'static str = "Fickle";
    type Input = ();
    type Output = ();
    type Error = String;

    async fn run(ctx: WorkflowContext, _: ()) -> Result<(), String> {
        if CALL_FLIGHT_FIRST.with(Cell::get) {
            let a = ctx
                .call_service::<(), String>("Flight", "book", Payload::json(&()))
                .dispatch();
            let b = ctx
                .call_service::<(), String>("Hotel", "book", Payload::json(&()))
                .dispatch();
            let _ = all_of(vec![a, b]).await;
        } else {
            let _ = ctx
                .call_service::<(), String>("Flight", "book", Payload::json(&()))
                .await;
        }
        Ok(())
    }
}

#[test]
fn a_command_the_code_no_longer_makes_is_detected() {
    let mut sim = Sim::new::<Fickle>(&());
    sim.step().expect("task 1");
    sim.complete(0, ());
    // Changed code comes with a new deployment: the worker keeps no run from before.
    CALL_FLIGHT_FIRST.with(|c| c.set(false));
    sim.deploy(sim.registry.clone());
    let err = sim.step().expect_err("missing command");
    CALL_FLIGHT_FIRST.with(|c| c.set(true));
    assert_eq!(err.kind, FailureKind::NonDeterminism);
    assert!(
        err.message.contains("position 1") && err.message.contains("no longer makes it"),
        "{}",
        err.message
    );
}

// --- Context facilities ---------------------------------------------------------------------------

thread_local! { static INLINE_RUNS: Cell<u32> = const { Cell::new(0) }; }

struct Facilities;
impl Workflow for Facilities {
    const NAME: &'static str = "Facilities";
    type Input = ();
    type Output = (u64, u64, u64, u64);
    type Error = String;

    async fn run(ctx: WorkflowContext, _: ()) -> Result<(u64, u64, u64, u64), String> {
        let token: u64 = ctx.inline(|| {
            INLINE_RUNS.with(|c| c.set(c.get() + 1));
            4242
        });
        let random = ctx.random_u64();
        let started = ctx.now().as_millis();
        ctx.sleep(Duration::from_millis(250)).await;
        Ok((token, random, started, ctx.now().as_millis()))
    }
}

#[test]
fn inline_now_and_random_are_stable_across_replays() {
    let mut sim = Sim::new::<Facilities>(&());
    let t1 = sim.step().expect("task 1");
    // Each step runs the task twice: on the kept run and as a replay of the whole history;
    // both are the task's first execution.
    assert_eq!(INLINE_RUNS.with(Cell::get), 2);
    assert!(matches!(t1.new_commands[0].spec, CommandSpec::Inline { .. }));
    match t1.new_commands[1].spec {
        CommandSpec::Timer { due } => {
            assert_eq!(due, Timestamp(1_250), "timer due = task time + duration")
        }
        ref other => panic!("{other:?}"),
    }
    sim.fire(1);
    let t2 = sim.step().expect("task 2");
    assert_eq!(
        INLINE_RUNS.with(Cell::get),
        2,
        "the inline closure is not run again, on replay or by the kept run"
    );
    let (token, random, started, resumed) = output::<(u64, u64, u64, u64)>(&t2);
    assert_eq!((token, started, resumed), (4242, 1_000, 2_000));
    let again = sim.rerun_last().expect("replay");
    assert_eq!(output::<(u64, u64, u64, u64)>(&again).1, random, "random values replay");
}

struct Panicky;
impl Workflow for Panicky {
    const NAME: &'static str = "Panicky";
    type Input = ();
    type Output = ();
    type Error = String;

    async fn run(_: WorkflowContext, _: ()) -> Result<(), String> {
        panic!("bug in workflow code")
    }
}

#[test]
fn a_panic_fails_the_workflow_task_not_the_process() {
    let mut sim = Sim::new::<Panicky>(&());
    let err = sim.step().expect_err("panic");
    assert_eq!(err.kind, FailureKind::Panic);
    assert!(err.message.contains("bug in workflow code"));
}

struct Foreign;
impl Workflow for Foreign {
    const NAME: &'static str = "Foreign";
    type Input = ();
    type Output = ();
    type Error = String;

    async fn run(_: WorkflowContext, _: ()) -> Result<(), String> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[test]
fn waiting_on_a_foreign_future_is_reported() {
    let mut sim = Sim::new::<Foreign>(&());
    let err = sim.step().expect_err("blocked");
    assert_eq!(err.kind, FailureKind::Blocked);
}

#[test]
fn bad_input_fails_the_workflow_task_with_a_clear_message() {
    let mut sim = Sim::with_registry(registry_of(&[erase::<Saga>()]), "Saga", &"not a number");
    let err = sim.step().expect_err("bad input");
    assert_eq!(err.kind, FailureKind::InvalidArguments);
    assert!(err.message.contains("Saga"), "{}", err.message);
}

#[test]
fn an_unknown_workflow_is_reported() {
    let mut sim = Sim::with_registry(Registry::new(), "Nope", &());
    let err = sim.step().expect_err("unknown");
    assert_eq!(err.kind, FailureKind::UnknownMethod);
}

// --- Versions -------------------------------------------------------------------------------------

struct GreetV1;
impl Workflow for GreetV1 {
    const NAME: &'static str = "Greet";
    const VERSION: u32 = 1;
    type Input = ();
    type Output = String;
    type Error = String;

    async fn run(_: WorkflowContext, _: ()) -> Result<String, String> {
        Ok("v1".into())
    }
}

struct GreetV2;
impl Workflow for GreetV2 {
    const NAME: &'static str = "Greet";
    const VERSION: u32 = 2;
    type Input = ();
    type Output = String;
    type Error = String;

    async fn run(_: WorkflowContext, _: ()) -> Result<String, String> {
        Ok("v2".into())
    }
}

#[test]
fn new_instances_run_the_highest_version_and_pinned_ones_keep_theirs() {
    let registry = registry_of(&[erase::<GreetV1>(), erase::<GreetV2>()]);
    let mut fresh = Sim::with_registry(registry.clone(), "Greet", &());
    let done = fresh.step().expect("new instance");
    assert_eq!((done.workflow_version, output::<String>(&done)), (2, "v2".to_string()));

    let mut pinned = Sim::with_registry(registry, "Greet", &());
    pinned.index = 1;
    pinned.history.push(HistoryEvent::WorkflowTaskStarted {
        index: 1,
        at: Timestamp(1),
    });
    let mut msg = pinned.task_message();
    msg.workflow_version = Some(1);
    let done = baton_workflow::replay::execute(&pinned.registry, &msg).expect("pinned instance");
    assert_eq!((done.workflow_version, output::<String>(&done)), (1, "v1".to_string()));

    msg.workflow_version = Some(3);
    let err = baton_workflow::replay::execute(&pinned.registry, &msg).expect_err("unknown version");
    assert!(err.message.contains("v3"), "{}", err.message);
    let mut dup = Registry::new();
    dup.register(erase::<GreetV1>(), CheckMode::Simple).expect("first");
    assert!(
        dup.register(erase::<GreetV1>(), CheckMode::Simple).is_err(),
        "the same version twice is refused"
    );
}

// --- Sticky execution ----------------------------------------------------------------------------

/// A kept run takes only events that continue exactly where it stopped: anything else (events
/// from elsewhere, commands it did not report, another run) asks for the whole history, and the
/// run it kept is of no further use.
#[test]
fn a_kept_run_continues_only_from_where_it_stopped() {
    use baton_workflow::replay::{ResumeError, Session};
    let mut sim = Sim::new::<Saga>(&120);
    sim.step().expect("task 1");
    sim.complete(0, "receipt-1");
    sim.index += 1;
    sim.history.push(HistoryEvent::WorkflowTaskStarted {
        index: sim.index,
        at: Timestamp(2_000),
    });
    let whole = sim.task_message();
    let next = sim.continuing(&whole);
    assert!(next.history_offset > 0);
    let fresh = || {
        let mut first = whole.clone();
        let first_end = first
            .history
            .iter()
            .position(|e| matches!(e, HistoryEvent::WorkflowTaskStarted { index: 1, .. }))
            .expect("task 1 start");
        first.history.truncate(first_end + 1);
        first.task_index = 1;
        let (session, _) = Session::start(&sim.registry, &first).expect("task 1");
        session
    };
    let needs_history = |session: &mut Session, task: &ExecuteWorkflowTask| {
        assert!(
            matches!(session.resume(task), Err(ResumeError::NeedsHistory)),
            "{task:?}"
        );
    };

    let mut skipped = next.clone();
    skipped.history_offset += 1;
    skipped.history.remove(0);
    needs_history(&mut fresh(), &skipped);

    let mut foreign = next.clone();
    for event in &mut foreign.history {
        if let HistoryEvent::CommandRecorded { command, .. } = event {
            command.position += 7;
        }
    }
    needs_history(&mut fresh(), &foreign);

    let mut other_run = next.clone();
    other_run.run_id = MethodRunId::main_of_generation(sim.id, 1);
    needs_history(&mut fresh(), &other_run);

    // The events that do continue it give what a replay of the whole history gives.
    let continued = fresh().resume(&next).expect("continues");
    let replayed = baton_workflow::replay::execute(&sim.registry, &whole).expect("replays");
    assert_eq!(continued, replayed);
    // And the same task twice is not continued twice.
    let mut session = fresh();
    session.resume(&next).expect("continues");
    needs_history(&mut session, &next);
}
