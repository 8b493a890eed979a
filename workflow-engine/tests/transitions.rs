//! Engine transition tests: pure functions, no I/O. Each test feeds messages to `apply` and
//! asserts on the next state and the messages it emits.

use std::time::Duration;

use baton_shared_schemas::messages::*;
use baton_shared_schemas::*;
use baton_workflow_engine::{
    DEFER_ATTEMPTS, DEFER_DELAY, Effect, Next, Record, TransitionContext, WorkflowState, apply, refusal,
};

const NAME: &str = "Booking";

struct Harness {
    id: WorkflowId,
    state: Option<WorkflowState>,
    now: Timestamp,
    client: ClientId,
    /// The id of the last message sent.
    last_message: MessageId,
    /// When the timer service fired the messages sent, by its clock (`None`: not said).
    fired_at: Option<Timestamp>,
}

/// An effect with its single-variant message enum unwrapped, for short matches.
#[derive(Debug)]
enum Emitted {
    WorkflowTask(ExecuteWorkflowTask),
    ServiceTask(String, ExecuteTask),
    CancelTimer(TimerId),
    Schedule {
        timer_id: TimerId,
        due: Timestamp,
        not_before: Timestamp,
        message: Box<Effect>,
    },
    Client(ClientId, ClientMessage),
    Tag(TagEngineMessage),
    Control(String, TaskControlMessage),
    /// A command to another workflow's command topic: (workflow, message).
    Command(String, WorkflowEngineMessage),
    /// A message to another workflow's engine topic: (workflow, message).
    Engine(String, WorkflowEngineMessage),
}

fn flatten(effect: Effect) -> Emitted {
    match effect {
        Effect::WorkflowTask {
            message: WorkflowTaskMessage::Execute(t),
            ..
        } => Emitted::WorkflowTask(t),
        Effect::ServiceTask {
            service,
            message: ServiceTaskMessage::Execute(t),
        } => Emitted::ServiceTask(service, t),
        Effect::TaskControl { service, message } => Emitted::Control(service, message),
        Effect::Client { client, message } => Emitted::Client(client, message),
        Effect::Tag { message, .. } => Emitted::Tag(message),
        Effect::Engine { workflow, message } => Emitted::Engine(workflow, message),
        Effect::Command { workflow, message } => Emitted::Command(workflow, message),
        Effect::CancelTimer { timer_id } => Emitted::CancelTimer(timer_id),
        Effect::Schedule {
            timer_id,
            due,
            not_before,
            message,
        } => Emitted::Schedule {
            timer_id,
            due,
            not_before,
            message,
        },
    }
}

impl Harness {
    fn new() -> Self {
        Self {
            id: WorkflowId::new(),
            state: None,
            now: Timestamp(10_000),
            client: ClientId::new(),
            last_message: MessageId::new(),
            fired_at: None,
        }
    }

    /// Applies a message; returns the note and the decoded messages. Keeps the new state.
    fn send(&mut self, body: WorkflowEngineMessage) -> (&'static str, Vec<Emitted>) {
        self.send_emitted_at(body, Timestamp(self.now.0 + 10))
    }

    /// Like [`send`](Self::send), for a message whose envelope says it was emitted at
    /// `emitted_at` (a message a timer held says when it takes effect).
    fn send_emitted_at(&mut self, body: WorkflowEngineMessage, emitted_at: Timestamp) -> (&'static str, Vec<Emitted>) {
        self.now = Timestamp(self.now.0 + 10);
        let ctx = TransitionContext {
            now: self.now,
            retention: Duration::from_secs(60),
            fired_at: self.fired_at,
        };
        let message = Envelope::new(body, emitted_at);
        self.last_message = message.message_id;
        let decision = apply(self.state.clone(), NAME, &message, &ctx);
        // The decision is pure: the same message on the same state decides the same, down to
        // the bytes and ids of what it emits.
        let again = apply(self.state.clone(), NAME, &message, &ctx);
        assert_eq!(
            decision.effects, again.effects,
            "the same message twice gives the same effects"
        );
        let encode = |effects: &[Effect]| Cause::of(&message, self.now).encode_all(effects).expect("encode");
        let bytes = encode(&decision.effects);
        assert_eq!(bytes, encode(&again.effects), "and byte-identical messages");
        let ids: std::collections::HashSet<_> = bytes.iter().map(|m| m.bytes.clone()).collect();
        assert_eq!(ids.len(), bytes.len(), "every emitted message is distinct");
        let emitted = decision.effects.into_iter().map(flatten).collect();
        match decision.next {
            Next::Keep(back) => assert_eq!(
                back.map(|s| *s),
                self.state,
                "a decision that changes nothing hands the state back as it was"
            ),
            Next::Write(s) => {
                assert!(
                    s.head.outbox.is_empty(),
                    "the runner, not the decision, fills the outbox"
                );
                let mut s = *s;
                s.mark_saved();
                self.state = Some(s);
            }
            Next::Delete => self.state = None,
        }
        (decision.note, emitted)
    }

    fn start(&mut self) -> ExecuteWorkflowTask {
        let (note, out) = self.send(WorkflowEngineMessage::Start(StartWorkflow {
            workflow_id: self.id,
            workflow_name: NAME.into(),
            input: Payload::json(&"trip").expect("input"),
            tags: vec!["customer:7".into()],
            meta: Default::default(),
            reply_to: Some(self.client),
        }));
        assert_eq!(note, "started");
        match out.as_slice() {
            [
                Emitted::Tag(TagEngineMessage::AddTag { tag, .. }),
                Emitted::WorkflowTask(t),
            ] => {
                assert_eq!(tag, "customer:7");
                t.clone()
            }
            other => panic!("{other:?}"),
        }
    }

    fn task_done(
        &mut self,
        task: &ExecuteWorkflowTask,
        commands: Vec<RecordedCommand>,
        waiting: Vec<CommandId>,
        completion: Option<RunCompletion>,
    ) -> (&'static str, Vec<Emitted>) {
        self.send(WorkflowEngineMessage::WorkflowTaskCompleted(WorkflowTaskCompleted {
            workflow_id: self.id,
            task_id: task.task_id,
            workflow_version: 1,
            new_commands: commands,
            waiting_on: waiting,
            completion,
        }))
    }

    fn call(&self, task: &ExecuteWorkflowTask, position: u32, service: &str) -> RecordedCommand {
        RecordedCommand {
            position,
            command_id: CommandId::derive(self.id, task.run_id, task.task_index, position),
            spec: CommandSpec::ServiceTask {
                service: service.into(),
                method: "run".into(),
                args: Payload::null(),
            },
        }
    }

    fn running(&self) -> &baton_workflow_engine::RunningWorkflow {
        match &self.state.as_ref().expect("state").head.record {
            Record::Running(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn history(&self) -> &[HistoryEvent] {
        &self.state.as_ref().expect("state").history
    }
}

#[test]
fn start_creates_the_instance_and_dispatches_the_first_workflow_task() {
    let mut h = Harness::new();
    let t1 = h.start();
    assert_eq!(t1.task_index, 1);
    assert_eq!(
        t1.history,
        vec![HistoryEvent::WorkflowTaskStarted { index: 1, at: h.now }]
    );
    assert_eq!(h.running().running_task, Some(t1.task_id));
    assert_eq!(h.running().waiting_clients, vec![h.client]);
}

#[test]
fn a_start_with_more_tags_than_an_instance_may_have_is_refused_before_any_state() {
    let start = |tags: Vec<String>| StartWorkflow {
        workflow_id: WorkflowId::new(),
        workflow_name: NAME.into(),
        input: Payload::null(),
        tags,
        meta: Default::default(),
        reply_to: None,
    };
    let most: Vec<String> = (0..tags::MAX_TAGS_PER_INSTANCE).map(|i| format!("t{i}")).collect();
    assert_eq!(refusal(&WorkflowEngineMessage::Start(start(most))), None);
    let flood: Vec<String> = (0..10_000).map(|i| format!("t{i}")).collect();
    let reason = refusal(&WorkflowEngineMessage::Start(start(flood))).expect("refused");
    assert!(reason.contains("at most 100 tags, not 10000"), "{reason}");
    let bad_child = WorkflowEngineMessage::StartChild {
        start: start(vec!["a\nb".into()]),
        parent: ParentRef {
            workflow_id: WorkflowId::new(),
            workflow_name: NAME.into(),
            command_id: TimerId::new().into(),
        },
    };
    assert!(refusal(&bad_child).is_some_and(|r| r.contains("control characters")));
}

#[test]
fn a_repeated_start_does_not_start_twice_but_attaches_a_new_caller() {
    let mut h = Harness::new();
    h.start();
    let again = StartWorkflow {
        workflow_id: h.id,
        workflow_name: NAME.into(),
        input: Payload::null(),
        tags: vec![],
        meta: Default::default(),
        reply_to: Some(h.client),
    };
    let (note, out) = h.send(WorkflowEngineMessage::Start(again.clone()));
    assert_eq!((note, out.len()), ("duplicate start", 0));
    let other = ClientId::new();
    let (note, out) = h.send(WorkflowEngineMessage::Start(StartWorkflow {
        reply_to: Some(other),
        ..again
    }));
    assert_eq!(out.len(), 0, "{note}");
    assert_eq!(h.running().waiting_clients, vec![h.client, other]);
    assert_eq!(h.running().task_index, 1, "no second workflow task");
}

#[test]
fn commands_of_a_workflow_task_are_dispatched_and_results_wake_the_workflow() {
    let mut h = Harness::new();
    let t1 = h.start();
    let charge = h.call(&t1, 0, "Payment");
    let (_, out) = h.task_done(&t1, vec![charge.clone()], vec![charge.command_id], None);
    let task = match out.as_slice() {
        [Emitted::ServiceTask(service, task)] => {
            assert_eq!(service, "Payment");
            task.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (task.task_id, task.attempt, task.workflow_id),
        (charge.command_id.into(), 1, h.id)
    );
    assert!(h.running().pending.contains_key(&charge.command_id));

    let (note, out) = h.send(WorkflowEngineMessage::TaskCompleted {
        workflow_id: h.id,
        task_id: task.task_id,
        output: Payload::json(&"receipt").expect("p"),
    });
    assert_eq!(note, "result woke the workflow");
    let t2 = match out.as_slice() {
        [Emitted::WorkflowTask(t)] => t.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(t2.task_index, 2);
    // The task carries only what followed the previous task's start: a worker that ran that
    // task continues the run it kept.
    assert_eq!(t2.history_offset, 1);
    assert!(matches!(
        t2.history.as_slice(),
        [
            HistoryEvent::CommandRecorded { .. },
            HistoryEvent::ResultDelivered { .. },
            HistoryEvent::WorkflowTaskStarted { index: 2, .. }
        ]
    ));
    assert_eq!(t2.input, Payload::null(), "a continuing worker knows the input");

    // A worker that does not keep the run asks for the rest: the same task, whole.
    let (note, out) = h.send(WorkflowEngineMessage::WorkflowTaskNeedsHistory {
        workflow_id: h.id,
        task_id: t2.task_id,
    });
    assert_eq!(note, "whole history sent");
    let whole = match out.as_slice() {
        [Emitted::WorkflowTask(t)] => t.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((whole.task_id, whole.history_offset), (t2.task_id, 0));
    assert_eq!(whole.input, t1.input);
    assert!(matches!(
        whole.history.as_slice(),
        [
            HistoryEvent::WorkflowTaskStarted { index: 1, .. },
            HistoryEvent::CommandRecorded { .. },
            HistoryEvent::ResultDelivered { .. },
            HistoryEvent::WorkflowTaskStarted { index: 2, .. }
        ]
    ));
    // A request for a task that is no longer running changes nothing and sends nothing.
    let (note, out) = h.send(WorkflowEngineMessage::WorkflowTaskNeedsHistory {
        workflow_id: h.id,
        task_id: t1.task_id,
    });
    assert_eq!((note, out.len()), ("stale history request", 0));
}

#[test]
fn redelivered_results_and_stale_workflow_task_results_change_nothing() {
    let mut h = Harness::new();
    let t1 = h.start();
    let charge = h.call(&t1, 0, "Payment");
    h.task_done(&t1, vec![charge.clone()], vec![charge.command_id], None);
    let done = WorkflowEngineMessage::TaskCompleted {
        workflow_id: h.id,
        task_id: charge.command_id.into(),
        output: Payload::null(),
    };
    h.send(done.clone());
    let before = h.state.clone();
    let (note, out) = h.send(done);
    assert_eq!((note, out.len()), ("duplicate result", 0));
    assert_eq!(h.state, before);
    let (note, out) = h.task_done(&t1, vec![h.call(&t1, 0, "Payment")], vec![], None);
    assert_eq!((note, out.len()), ("stale workflow task result", 0));
    assert_eq!(h.state, before);
}

#[test]
fn results_arriving_during_a_workflow_task_are_buffered_then_applied() {
    let mut h = Harness::new();
    let t1 = h.start();
    let (a, b) = (h.call(&t1, 0, "Flight"), h.call(&t1, 1, "Hotel"));
    h.task_done(&t1, vec![a.clone(), b.clone()], vec![a.command_id], None);
    // `a` completes and wakes task 2; `b` completes while task 2 runs.
    let (_, out) = h.send(WorkflowEngineMessage::TaskCompleted {
        workflow_id: h.id,
        task_id: a.command_id.into(),
        output: Payload::null(),
    });
    let t2 = match out.as_slice() {
        [Emitted::WorkflowTask(t)] => t.clone(),
        other => panic!("{other:?}"),
    };
    let (note, out) = h.send(WorkflowEngineMessage::TaskCompleted {
        workflow_id: h.id,
        task_id: b.command_id.into(),
        output: Payload::null(),
    });
    assert_eq!((note, out.len()), ("result buffered", 0));
    assert_eq!(h.running().buffered.len(), 1);
    // Task 2 now waits on `b`, which is buffered: applying task 2 dispatches task 3 at once.
    let (_, out) = h.task_done(&t2, vec![], vec![b.command_id], None);
    let t3 = match out.as_slice() {
        [Emitted::WorkflowTask(t)] => t.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(t3.task_index, 3);
    assert!(h.running().buffered.is_empty());
    let delivered_b = t3
        .history
        .iter()
        .position(|e| matches!(e, HistoryEvent::ResultDelivered { command_id, .. } if *command_id == b.command_id));
    let started_3 = t3
        .history
        .iter()
        .position(|e| matches!(e, HistoryEvent::WorkflowTaskStarted { index: 3, .. }));
    assert!(delivered_b < started_3, "b is visible to task 3 and not to task 2");
}

#[test]
fn a_result_nobody_waits_on_is_recorded_without_a_workflow_task() {
    let mut h = Harness::new();
    let t1 = h.start();
    let (a, b) = (h.call(&t1, 0, "Flight"), h.call(&t1, 1, "Hotel"));
    h.task_done(&t1, vec![a.clone(), b.clone()], vec![a.command_id], None);
    let (note, out) = h.send(WorkflowEngineMessage::TaskCompleted {
        workflow_id: h.id,
        task_id: b.command_id.into(),
        output: Payload::null(),
    });
    assert_eq!((note, out.len()), ("result recorded", 0));
    assert_eq!(h.running().task_index, 1);
}

#[test]
fn exhausted_retries_reach_the_workflow_as_a_failed_result() {
    let mut h = Harness::new();
    let t1 = h.start();
    let flight = h.call(&t1, 0, "Flight");
    h.task_done(&t1, vec![flight.clone()], vec![flight.command_id], None);
    let failure = Failure {
        kind: FailureKind::ServiceError,
        message: "sold out".into(),
        error: Some(Payload::json(&"SoldOut").expect("p")),
        retryable: false,
        previous_attempts: vec![AttemptFailure {
            attempt: 1,
            at: Timestamp(1),
            kind: FailureKind::ServiceError,
            message: "timeout".into(),
        }],
    };
    let (_, out) = h.send(WorkflowEngineMessage::TaskFailed {
        workflow_id: h.id,
        task_id: flight.command_id.into(),
        failure: failure.clone(),
    });
    let t2 = match out.as_slice() {
        [Emitted::WorkflowTask(t)] => t.clone(),
        other => panic!("{other:?}"),
    };
    assert!(t2.history.contains(&HistoryEvent::ResultDelivered {
        command_id: flight.command_id,
        outcome: Outcome::Failed(failure)
    }));
}

#[test]
fn completion_notifies_clients_cancels_timers_and_schedules_removal() {
    let mut h = Harness::new();
    let t1 = h.start();
    let timer = RecordedCommand {
        position: 0,
        command_id: CommandId::derive(h.id, t1.run_id, 1, 0),
        spec: CommandSpec::Timer { due: Timestamp(99_999) },
    };
    let (_, out) = h.task_done(&t1, vec![timer.clone()], vec![timer.command_id], None);
    assert!(matches!(
        out.as_slice(),
        [Emitted::Schedule {
            due: Timestamp(99_999),
            ..
        }]
    ));
    // A cancellation ends it while the timer is pending.
    let (note, out) = h.send(WorkflowEngineMessage::Cancel {
        workflow_id: h.id,
        reason: "operator".into(),
        client: None,
    });
    assert_eq!(note, "cancelled");
    let mut saw = (false, false, false);
    for e in out
        .iter()
        .filter(|e| !matches!(e, Emitted::Tag(TagEngineMessage::RemoveTag { .. })))
    {
        match e {
            Emitted::Client(
                c,
                ClientMessage::WorkflowResult {
                    outcome: WorkflowOutcome::Cancelled { reason },
                    ..
                },
            ) => {
                assert_eq!((c, reason.as_str()), (&h.client, "operator"));
                saw.0 = true;
            }
            Emitted::CancelTimer(timer_id) => {
                assert_eq!(*timer_id, TimerId::from(timer.command_id));
                saw.1 = true;
            }
            Emitted::Schedule {
                timer_id, due, message, ..
            } => {
                assert_eq!(*timer_id, TimerId::for_retention(h.id, h.last_message));
                assert!(matches!(
                    message.as_ref(),
                    Effect::Engine { workflow, message: WorkflowEngineMessage::Expire { workflow_id } }
                        if workflow == NAME && *workflow_id == h.id
                ));
                assert_eq!(*due, Timestamp(h.now.0 + 60_000));
                saw.2 = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(saw, (true, true, true));
    assert!(
        !h.history().is_empty(),
        "the completed record keeps its history until the retention ends, for operators to read"
    );
}

#[test]
fn await_after_completion_replies_at_once_and_unknown_ids_are_reported() {
    let mut h = Harness::new();
    let t1 = h.start();
    h.task_done(
        &t1,
        vec![],
        vec![],
        Some(RunCompletion::Completed(Payload::json(&42).expect("p"))),
    );
    let late = ClientId::new();
    let (_, out) = h.send(WorkflowEngineMessage::Await {
        workflow_id: h.id,
        client: late,
    });
    assert!(
        matches!(out.as_slice(), [Emitted::Client(c, ClientMessage::WorkflowResult { outcome: WorkflowOutcome::Completed(p), .. })] if *c == late && p.decode::<i32>().ok() == Some(42))
    );
    // An unknown id is answered as unknown once the wait has been deferred DEFER_ATTEMPTS
    // times without the instance appearing.
    let mut unknown = Harness::new();
    let mut message = WorkflowEngineMessage::Await {
        workflow_id: unknown.id,
        client: late,
    };
    for attempt in 1..=DEFER_ATTEMPTS {
        let (_, out) = unknown.send(message);
        message = deferred(&out, attempt, unknown.now);
    }
    let (note, out) = unknown.send(message);
    assert_eq!(note, "await of an unknown instance");
    assert!(matches!(
        out.as_slice(),
        [Emitted::Client(c, ClientMessage::WorkflowUnknown { workflow_id, request_id: None })] if *c == late && *workflow_id == unknown.id
    ));
    assert_eq!(unknown.state, None, "nothing is stored for an unknown id");
}

/// The one effect of a deferral: a timer due `DEFER_DELAY` after `now` that brings the command
/// back to the workflow's command topic as deferral `attempt`. Returns that message.
fn deferred(out: &[Emitted], attempt: u32, now: Timestamp) -> WorkflowEngineMessage {
    let [Emitted::Schedule { due, message, .. }] = out else {
        panic!("expected one deferral, got {out:?}");
    };
    assert_eq!(*due, now.saturating_add(DEFER_DELAY));
    let Effect::Command { workflow, message } = message.as_ref() else {
        panic!("a deferral goes back to the command topic: {message:?}");
    };
    assert_eq!(workflow, NAME);
    let WorkflowEngineMessage::Deferred { attempt: got, .. } = message else {
        panic!("not a deferred command: {message:?}");
    };
    assert_eq!(*got, attempt);
    message.clone()
}

#[test]
fn a_wait_that_overtakes_its_start_is_deferred_until_the_start_arrives() {
    let mut h = Harness::new();
    let waiter = ClientId::new();
    let (note, out) = h.send(WorkflowEngineMessage::Await {
        workflow_id: h.id,
        client: waiter,
    });
    assert_eq!(note, "command for an unknown instance deferred");
    let again = deferred(&out, 1, h.now);
    let (note, out) = h.send(again);
    assert_eq!(note, "deferred command's instance still unknown; deferred again");
    let again = deferred(&out, 2, h.now);

    h.start();
    let (note, out) = h.send(again);
    assert_eq!(note, "client waits");
    assert!(out.is_empty(), "{out:?}");
    assert!(
        h.running().waiting_clients.contains(&waiter),
        "the waiter gets the result when it ends"
    );
}

#[test]
fn a_signal_that_overtakes_its_start_reaches_the_instance() {
    let mut h = Harness::new();
    let (note, out) = h.signal("decision", serde_json::json!("approve"));
    assert_eq!(note, "command for an unknown instance deferred");
    let again = deferred(&out, 1, h.now);
    h.start();
    let (note, _) = h.send(again);
    assert_eq!(note, "signal kept in the mailbox");
    assert_eq!(h.running().mailbox.len(), 1);
}

#[test]
fn results_and_status_queries_of_an_unknown_instance_are_not_deferred() {
    let mut h = Harness::new();
    let client = ClientId::new();
    let (_, out) = h.send(WorkflowEngineMessage::GetStatus {
        workflow_id: h.id,
        client,
        request_id: RequestId::new(),
    });
    assert!(
        matches!(
            out.as_slice(),
            [Emitted::Client(_, ClientMessage::WorkflowUnknown { .. })]
        ),
        "{out:?}"
    );
    let (note, out) = h.send(WorkflowEngineMessage::TaskCompleted {
        workflow_id: h.id,
        task_id: TaskId::new(),
        output: Payload::null(),
    });
    assert_eq!(note, "result for an unknown instance");
    assert!(out.is_empty());
}

#[test]
fn a_failed_workflow_task_leaves_the_instance_waiting_and_visible() {
    let mut h = Harness::new();
    let t1 = h.start();
    let failure = Failure::new(
        FailureKind::NonDeterminism,
        "position 0: history has task A.run but code now makes task B.run",
    );
    let (note, _) = h.send(WorkflowEngineMessage::WorkflowTaskFailed {
        workflow_id: h.id,
        task_id: t1.task_id,
        failure: failure.clone(),
    });
    assert_eq!(note, "workflow task failed");
    let request_id = RequestId::new();
    let (_, out) = h.send(WorkflowEngineMessage::GetStatus {
        workflow_id: h.id,
        client: h.client,
        request_id,
    });
    match out.as_slice() {
        [
            Emitted::Client(
                _,
                ClientMessage::Status {
                    status, request_id: r, ..
                },
            ),
        ] => {
            assert_eq!(*r, request_id);
            assert_eq!(status.status, WorkflowStatus::Running);
            assert_eq!(status.workflow_task_failure.as_ref(), Some(&failure));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expiry_removes_only_completed_records_whose_retention_ended() {
    let mut h = Harness::new();
    let t1 = h.start();
    let (note, out) = h.send(WorkflowEngineMessage::Expire { workflow_id: h.id });
    assert_eq!((note, out.len()), ("running again; not expired", 0));
    let (_, ended) = h.task_done(&t1, vec![], vec![], Some(RunCompletion::Completed(Payload::null())));
    let expires_at = Timestamp(h.now.0 + 60_000);
    assert!(
        ended.iter().any(|e| matches!(e,
            Emitted::Tag(TagEngineMessage::RemoveTag { tag, workflow_id, .. }) if tag == "customer:7" && *workflow_id == h.id)),
        "an ended instance leaves its tags for good: {ended:?}"
    );
    // An expiry that comes before the retention ends (the instance was retried and ended
    // again since) sets the expiry again: an ended record always has one pending.
    let (note, out) = h.send(WorkflowEngineMessage::Expire { workflow_id: h.id });
    assert_eq!(note, "retention not over; expiry set again");
    match out.as_slice() {
        [
            Emitted::Schedule {
                timer_id,
                due,
                not_before,
                message,
            },
        ] => {
            assert_eq!(*timer_id, TimerId::for_rescheduling(h.last_message));
            assert_eq!((*due, *not_before), (expires_at, expires_at));
            assert!(matches!(message.as_ref(),
                Effect::Engine { message: WorkflowEngineMessage::Expire { workflow_id }, .. } if *workflow_id == h.id));
        }
        other => panic!("{other:?}"),
    }
    h.now = Timestamp(h.now.0 + 61_000);
    let (note, expired) = h.send(WorkflowEngineMessage::Expire { workflow_id: h.id });
    assert_eq!(note, "expired");
    assert!(h.state.is_none());
    assert!(
        matches!(expired.as_slice(),
            [Emitted::Tag(TagEngineMessage::ForgetTag { tag, workflow_id, .. })] if tag == "customer:7" && *workflow_id == h.id),
        "the tag engine forgets the expired instance: {expired:?}"
    );
}

#[test]
fn a_timer_that_fires_before_its_due_time_by_the_engines_clock_is_held_until_then() {
    let mut h = Harness::new();
    let t1 = h.start();
    let due = Timestamp(h.now.0 + 3_600_000);
    let timer = RecordedCommand {
        position: 0,
        command_id: CommandId::derive(h.id, t1.run_id, 1, 0),
        spec: CommandSpec::Timer { due },
    };
    h.task_done(&t1, vec![timer.clone()], vec![timer.command_id], None);
    let fired = WorkflowEngineMessage::TimerFired {
        workflow_id: h.id,
        timer_id: timer.command_id.into(),
    };
    // A timer service 90 minutes ahead fires it at once; the message says when it takes
    // effect, the service when it fired it by its clock.
    let lead = 5_400_000;
    h.fired_at = Some(Timestamp(h.now.0 + 10 + lead));
    let (note, out) = h.send_emitted_at(fired.clone(), due);
    assert_eq!(note, "a timer fired early; held until its due time");
    match out.as_slice() {
        [
            Emitted::Schedule {
                timer_id,
                due: again,
                not_before,
                message,
            },
        ] => {
            assert_eq!(*timer_id, TimerId::for_rescheduling(h.last_message));
            assert_eq!(*not_before, due, "it still takes effect at its due time");
            assert_eq!(
                *again,
                Timestamp(due.0 + lead),
                "due at its time read on the timer service's clock"
            );
            assert_eq!(
                message.as_ref(),
                &Effect::Engine {
                    workflow: NAME.into(),
                    message: fired.clone()
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(h.running().pending.contains_key(&timer.command_id), "still pending");
    // A timer service that does not say when it fired is taken to lead by as much as the
    // message came early.
    h.fired_at = None;
    let (_, out) = h.send_emitted_at(fired.clone(), due);
    let early = due.0 - h.now.0;
    assert!(
        matches!(out.as_slice(), [Emitted::Schedule { due: again, .. }] if *again == Timestamp(due.0 + early)),
        "{out:?}"
    );
    // Held messages of every kind: an expiry and a deferred command, too.
    for held in [
        WorkflowEngineMessage::Expire { workflow_id: h.id },
        WorkflowEngineMessage::Deferred {
            command: DeferredCommand::new(WorkflowEngineMessage::CompleteTimers { workflow_id: h.id })
                .expect("not deferred"),
            attempt: 1,
        },
    ] {
        let (note, out) = h.send_emitted_at(held, Timestamp(h.now.0 + 5_000));
        assert_eq!((note, out.len()), ("a timer fired early; held until its due time", 1));
    }
    // Other messages are never held, whatever their sender's clock says.
    let (note, _) = h.send_emitted_at(
        WorkflowEngineMessage::GetStatus {
            workflow_id: h.id,
            client: h.client,
            request_id: RequestId::new(),
        },
        Timestamp(h.now.0 + 5_000),
    );
    assert_eq!(note, "status");
    // At its due time it takes effect.
    h.now = due;
    let (note, out) = h.send_emitted_at(fired, due);
    assert_eq!(note, "result woke the workflow", "{out:?}");
    assert!(!h.running().pending.contains_key(&timer.command_id));
}

#[test]
fn stored_form_round_trips_with_appended_history() {
    let mut h = Harness::new();
    let t1 = h.start();
    let c = h.call(&t1, 0, "Payment");
    h.task_done(&t1, vec![c.clone()], vec![c.command_id], None);
    let state = h.state.clone().expect("state");
    let (head, history) = WorkflowState {
        stored_history: 0,
        ..state.clone()
    }
    .encode_for_save()
    .expect("encode");
    let entries = match history {
        baton_storage::HistoryWrite::Append(e) => e,
        other => panic!("{other:?}"),
    };
    let decoded = WorkflowState::decode(
        h.id,
        &baton_storage::StoredWorkflow {
            version: 3,
            head,
            history: entries,
        },
    )
    .expect("decode");
    assert_eq!(decoded.head, state.head);
    assert_eq!(decoded.history, state.history);
    // Only what is new since the last save is written.
    match state.encode_for_save().expect("encode").1 {
        baton_storage::HistoryWrite::Append(e) => assert!(e.is_empty()),
        other => panic!("{other:?}"),
    }
}

// --- Signals ----------------------------------------------------------------------------------

impl Harness {
    fn signal(&mut self, channel: &str, value: serde_json::Value) -> (&'static str, Vec<Emitted>) {
        self.send(WorkflowEngineMessage::SendSignal {
            workflow_id: self.id,
            signal_id: SignalId::new(),
            channel: channel.into(),
            value: Payload::json(&value).expect("p"),
        })
    }

    fn receive(
        &self,
        task: &ExecuteWorkflowTask,
        position: u32,
        channel: &str,
        filter: Option<SignalFilter>,
        limit: u32,
    ) -> RecordedCommand {
        RecordedCommand {
            position,
            command_id: CommandId::derive(self.id, task.run_id, task.task_index, position),
            spec: CommandSpec::Receive {
                channel: channel.into(),
                filter,
                limit,
            },
        }
    }

    fn delivered(&self) -> Vec<(CommandId, serde_json::Value)> {
        self.history()
            .iter()
            .filter_map(|e| match e {
                HistoryEvent::ResultDelivered {
                    command_id,
                    outcome: Outcome::Completed(p),
                } => Some((*command_id, p.decode().unwrap_or(serde_json::Value::Null))),
                _ => None,
            })
            .collect()
    }
}

fn only_workflow_task(out: &[Emitted]) -> ExecuteWorkflowTask {
    let tasks: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Emitted::WorkflowTask(t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(tasks.len(), 1, "{out:?}");
    tasks[0].clone()
}

#[test]
fn a_signal_sent_before_the_receive_waits_in_the_mailbox() {
    let mut h = Harness::new();
    let t1 = h.start();
    let (note, _) = h.signal("decision", serde_json::json!("approve"));
    assert_eq!(note, "signal kept in the mailbox");
    let rc = h.receive(&t1, 0, "decision", None, 1);
    let value_id = rc.command_id.nth(0);
    let (_, out) = h.task_done(&t1, vec![rc], vec![value_id], None);
    let t2 = only_workflow_task(&out);
    assert_eq!(t2.task_index, 2, "the kept signal wakes the workflow at once");
    assert_eq!(h.delivered(), vec![(value_id, serde_json::json!("approve"))]);
    assert!(h.running().mailbox.is_empty());
}

#[test]
fn a_signal_sent_after_the_receive_wakes_the_workflow() {
    let mut h = Harness::new();
    let t1 = h.start();
    let rc = h.receive(&t1, 0, "decision", None, 1);
    let value_id = rc.command_id.nth(0);
    h.task_done(&t1, vec![rc], vec![value_id], None);
    let (note, out) = h.signal("decision", serde_json::json!("approve"));
    assert_eq!(note, "signal woke the workflow");
    only_workflow_task(&out);
    assert!(h.running().receives.is_empty(), "a one-value receive is done");
}

#[test]
fn filters_and_limits_select_which_signals_a_receive_takes() {
    let mut h = Harness::new();
    let t1 = h.start();
    let filter = SignalFilter {
        pointer: "/status".into(),
        equals: "\"approved\"".into(),
    };
    let rc = h.receive(&t1, 0, "decision", Some(filter), 2);
    h.task_done(&t1, vec![rc.clone()], vec![rc.command_id.nth(0)], None);
    h.signal("decision", serde_json::json!({"status": "rejected"}));
    let (note, out) = h.signal("decision", serde_json::json!({"status": "approved", "n": 1}));
    assert_eq!(note, "signal woke the workflow");
    let t2 = only_workflow_task(&out);
    // Arrives while task 2 runs: kept, since the code may be moving on.
    h.signal("decision", serde_json::json!({"status": "approved", "n": 2}));
    h.signal("decision", serde_json::json!({"status": "approved", "n": 3}));
    h.task_done(&t2, vec![], vec![rc.command_id.nth(1)], None);
    let delivered = h.delivered();
    assert_eq!(delivered.len(), 2, "the limit is 2");
    assert_eq!(
        delivered[0],
        (rc.command_id.nth(0), serde_json::json!({"status": "approved", "n": 1}))
    );
    assert_eq!(
        delivered[1],
        (rc.command_id.nth(1), serde_json::json!({"status": "approved", "n": 2}))
    );
    let kept: Vec<_> = h
        .running()
        .mailbox
        .iter()
        .map(|s| s.value.decode::<serde_json::Value>().expect("json"))
        .collect();
    assert_eq!(
        kept,
        vec![
            serde_json::json!({"status": "rejected"}),
            serde_json::json!({"status": "approved", "n": 3})
        ]
    );
}

#[test]
fn a_receive_the_code_stopped_waiting_on_does_not_take_signals() {
    let mut h = Harness::new();
    let t1 = h.start();
    // The code raced a receive against a timer; the timer won and the code went on to a
    // second receive on the same channel.
    let first = h.receive(&t1, 0, "decision", None, 1);
    let timer = RecordedCommand {
        position: 1,
        command_id: CommandId::derive(h.id, t1.run_id, 1, 1),
        spec: CommandSpec::Timer { due: Timestamp(1) },
    };
    h.task_done(
        &t1,
        vec![first.clone(), timer.clone()],
        vec![first.command_id.nth(0), timer.command_id],
        None,
    );
    let (_, out) = h.send(WorkflowEngineMessage::TimerFired {
        workflow_id: h.id,
        timer_id: timer.command_id.into(),
    });
    let t2 = only_workflow_task(&out);
    let second = h.receive(&t2, 2, "decision", None, 1);
    h.task_done(&t2, vec![second.clone()], vec![second.command_id.nth(0)], None);
    let (note, _) = h.signal("decision", serde_json::json!("approve"));
    assert_eq!(note, "signal woke the workflow");
    assert_eq!(
        h.delivered().last().map(|d| d.0),
        Some(second.command_id.nth(0)),
        "the awaited receive took it"
    );
}

#[test]
fn a_discarding_channel_drops_signals_nobody_waits_for() {
    let mut h = Harness::new();
    let t1 = h.start();
    h.signal("ping", serde_json::json!(1));
    let declare = RecordedCommand {
        position: 0,
        command_id: CommandId::derive(h.id, t1.run_id, 1, 0),
        spec: CommandSpec::DeclareChannel {
            channel: "ping".into(),
            discard_unreceived: true,
        },
    };
    h.task_done(&t1, vec![declare], vec![CommandId::new()], None);
    assert!(
        h.running().mailbox.is_empty(),
        "kept signals are dropped on declaration"
    );
    let (note, _) = h.signal("ping", serde_json::json!(2));
    assert_eq!(note, "signal discarded");
    assert_eq!(h.running().discarded_signals, 2);
}

#[test]
fn a_duplicate_signal_is_taken_once() {
    let mut h = Harness::new();
    let t1 = h.start();
    let rc = h.receive(&t1, 0, "decision", None, 5);
    let awaited = rc.command_id.nth(0);
    h.task_done(&t1, vec![rc], vec![awaited], None);
    let signal = WorkflowEngineMessage::SendSignal {
        workflow_id: h.id,
        signal_id: SignalId::new(),
        channel: "decision".into(),
        value: Payload::json(&1).expect("p"),
    };
    h.send(signal.clone());
    let (note, _) = h.send(signal);
    assert_eq!(note, "duplicate signal");
    assert_eq!(h.delivered().len(), 1);
}

// --- Repair ---------------------------------------------------------------------------------------

#[test]
fn retrying_a_failed_workflow_task_replays_from_the_same_place() {
    let mut h = Harness::new();
    let t1 = h.start();
    h.send(WorkflowEngineMessage::WorkflowTaskFailed {
        workflow_id: h.id,
        task_id: t1.task_id,
        failure: Failure::new(FailureKind::NonDeterminism, "changed"),
    });
    let (note, out) = h.send(WorkflowEngineMessage::RetryWorkflowTask { workflow_id: h.id });
    assert_eq!(note, "workflow task retried");
    let retried = only_workflow_task(&out);
    assert_eq!((retried.task_index, retried.history.clone()), (1, t1.history.clone()));
    assert_ne!(
        retried.task_id, t1.task_id,
        "a late result of the failed attempt is stale"
    );
    let (note, _) = h.task_done(&t1, vec![], vec![], Some(RunCompletion::Completed(Payload::null())));
    assert_eq!(note, "stale workflow task result");
    let (note, _) = h.task_done(
        &retried,
        vec![],
        vec![],
        Some(RunCompletion::Completed(Payload::null())),
    );
    assert_eq!(note, "workflow ended");
    let (note, _) = h.send(WorkflowEngineMessage::RetryWorkflowTask { workflow_id: h.id });
    assert_eq!(note, "retry of an ended instance");
}

#[test]
fn completing_timers_fires_them_now_and_cancels_them_at_the_timer_service() {
    let mut h = Harness::new();
    let t1 = h.start();
    let timer = RecordedCommand {
        position: 0,
        command_id: CommandId::derive(h.id, t1.run_id, 1, 0),
        spec: CommandSpec::Timer {
            due: Timestamp(u64::MAX / 2),
        },
    };
    h.task_done(&t1, vec![timer.clone()], vec![timer.command_id], None);
    let (note, out) = h.send(WorkflowEngineMessage::CompleteTimers { workflow_id: h.id });
    assert_eq!(note, "timers completed");
    assert!(
        out.iter()
            .any(|e| matches!(e, Emitted::CancelTimer(timer_id) if *timer_id == TimerId::from(timer.command_id)))
    );
    only_workflow_task(&out);
    let (note, _) = h.send(WorkflowEngineMessage::TimerFired {
        workflow_id: h.id,
        timer_id: timer.command_id.into(),
    });
    assert_eq!(note, "duplicate result", "the real firing later changes nothing");
}

#[test]
fn retrying_the_failed_task_of_a_failed_run_resumes_it() {
    let mut h = Harness::new();
    let t1 = h.start();
    let charge = h.call(&t1, 0, "Payment");
    h.task_done(&t1, vec![charge.clone()], vec![charge.command_id], None);
    let failure = Failure::new(FailureKind::Panic, "bug in Payment");
    let (_, out) = h.send(WorkflowEngineMessage::TaskFailed {
        workflow_id: h.id,
        task_id: charge.command_id.into(),
        failure: failure.clone(),
    });
    let t2 = only_workflow_task(&out);
    // The code did not handle the failure: the run fails.
    h.task_done(&t2, vec![], vec![], Some(RunCompletion::Failed(failure)));
    assert!(matches!(
        h.state.as_ref().map(|s| &s.head.record),
        Some(Record::Completed(_))
    ));
    let (note, _) = h.send(WorkflowEngineMessage::RetryTasks {
        workflow_id: h.id,
        selector: TaskSelector {
            task_id: None,
            service: Some("Hotel".into()),
        },
    });
    assert_eq!(note, "no failed task matches");
    let id = h.id;
    let by_kind = move |failure| WorkflowEngineMessage::RetryTasksMatching {
        workflow_id: id,
        filter: TaskFilter {
            failure: Some(failure),
            ..TaskFilter::default()
        },
    };
    let (note, _) = h.send(by_kind(FailureKind::ExecutionTimeout));
    assert_eq!(
        note, "no failed task matches",
        "it failed by panicking, not by timing out"
    );
    let (note, out) = h.send(WorkflowEngineMessage::RetryTasks {
        workflow_id: h.id,
        selector: TaskSelector::default(),
    });
    assert_eq!(note, "failed tasks retried; the run resumes");
    let task = out.iter().find_map(|e| match e {
        Emitted::ServiceTask(_, t) => Some(t.clone()),
        _ => None,
    });
    assert_eq!(
        task.map(|t| (t.task_id, t.attempt)),
        Some((charge.command_id.into(), 1))
    );
    assert_eq!(h.running().task_index, 1, "back to the task that made the call");
    assert!(
        !h.history()
            .iter()
            .any(|e| matches!(e, HistoryEvent::ResultDelivered { .. })),
        "the failure is forgotten"
    );
    // The fixed service succeeds: the run continues from there.
    let (note, out) = h.send(WorkflowEngineMessage::TaskCompleted {
        workflow_id: h.id,
        task_id: charge.command_id.into(),
        output: Payload::null(),
    });
    assert_eq!(note, "result woke the workflow");
    assert_eq!(only_workflow_task(&out).task_index, 2);
}

// --- Children, cancellation, continue-as-new ------------------------------------------------------

#[test]
fn a_child_is_started_with_its_parent_and_its_end_reaches_the_parent() {
    let mut h = Harness::new();
    let t1 = h.start();
    let child = RecordedCommand {
        position: 0,
        command_id: CommandId::derive(h.id, t1.run_id, 1, 0),
        spec: CommandSpec::ChildWorkflow {
            workflow: "Invoice".into(),
            input: Payload::null(),
            tags: vec![],
            meta: Default::default(),
            detached: false,
        },
    };
    let (_, out) = h.task_done(&t1, vec![child.clone()], vec![child.command_id], None);
    match out.as_slice() {
        [Emitted::Command(workflow, WorkflowEngineMessage::StartChild { start, parent })] => {
            assert_eq!(workflow, "Invoice");
            assert_eq!(start.workflow_id, child.command_id.child_workflow());
            assert_eq!((parent.workflow_id, parent.command_id), (h.id, child.command_id));
        }
        other => panic!("{other:?}"),
    }
    let (note, out) = h.send(WorkflowEngineMessage::ChildEnded {
        workflow_id: h.id,
        command_id: child.command_id,
        outcome: WorkflowOutcome::Cancelled {
            reason: "operator".into(),
        },
    });
    assert_eq!(note, "result woke the workflow");
    let t2 = only_workflow_task(&out);
    assert!(t2.history.iter().any(|e| matches!(e, HistoryEvent::ResultDelivered { outcome: Outcome::Failed(f), .. } if f.kind == FailureKind::Cancelled)));
}

#[test]
fn cancelling_a_parent_cancels_its_children_and_asks_its_tasks_to_stop() {
    let mut h = Harness::new();
    let t1 = h.start();
    let task = h.call(&t1, 0, "Payment");
    let child = RecordedCommand {
        position: 1,
        command_id: CommandId::derive(h.id, t1.run_id, 1, 1),
        spec: CommandSpec::ChildWorkflow {
            workflow: "Invoice".into(),
            input: Payload::null(),
            tags: vec![],
            meta: Default::default(),
            detached: false,
        },
    };
    let detached = RecordedCommand {
        position: 2,
        command_id: CommandId::derive(h.id, t1.run_id, 1, 2),
        spec: CommandSpec::ChildWorkflow {
            workflow: "Audit".into(),
            input: Payload::null(),
            tags: vec![],
            meta: Default::default(),
            detached: true,
        },
    };
    h.task_done(
        &t1,
        vec![task.clone(), child.clone(), detached],
        vec![task.command_id],
        None,
    );
    let (_, out) = h.send(WorkflowEngineMessage::Cancel {
        workflow_id: h.id,
        reason: "customer".into(),
        client: None,
    });
    assert!(out.iter().any(|e| matches!(e, Emitted::Control(s, TaskControlMessage::Cancel { task_id }) if s == "Payment" && *task_id == TaskId::from(task.command_id))));
    assert!(out.iter().any(|e| matches!(e, Emitted::Command(w, WorkflowEngineMessage::Cancel { workflow_id, .. }) if w == "Invoice" && *workflow_id == child.command_id.child_workflow())));
    assert!(
        !out.iter().any(|e| matches!(e, Emitted::Command(w, _) if w == "Audit")),
        "detached children are left alone"
    );
}

#[test]
fn a_child_tells_its_parent_how_it_ended() {
    let mut h = Harness::new();
    let parent = ParentRef {
        workflow_name: "Billing".into(),
        workflow_id: WorkflowId::new(),
        command_id: CommandId::new(),
    };
    let (_, out) = h.send(WorkflowEngineMessage::StartChild {
        start: StartWorkflow {
            workflow_id: h.id,
            workflow_name: NAME.into(),
            input: Payload::null(),
            tags: vec![],
            meta: Default::default(),
            reply_to: None,
        },
        parent: parent.clone(),
    });
    let t1 = only_workflow_task(&out);
    let (_, out) = h.task_done(
        &t1,
        vec![],
        vec![],
        Some(RunCompletion::Completed(Payload::json(&7).expect("p"))),
    );
    assert!(out.iter().any(|e| matches!(e, Emitted::Engine(workflow, WorkflowEngineMessage::ChildEnded { workflow_id, command_id, outcome: WorkflowOutcome::Completed(_) })
        if workflow == "Billing" && *workflow_id == parent.workflow_id && *command_id == parent.command_id)));
}

#[test]
fn continue_as_new_restarts_with_fresh_history_and_keeps_unread_signals() {
    let mut h = Harness::new();
    let t1 = h.start();
    let c = h.call(&t1, 0, "Payment");
    let (_, out) = h.task_done(&t1, vec![c.clone()], vec![c.command_id], None);
    assert_eq!(out.len(), 1);
    let (_, out) = h.send(WorkflowEngineMessage::TaskCompleted {
        workflow_id: h.id,
        task_id: c.command_id.into(),
        output: Payload::null(),
    });
    let t2 = only_workflow_task(&out);
    h.signal("unsubscribe", serde_json::json!(true));
    let (note, out) = h.task_done(
        &t2,
        vec![],
        vec![],
        Some(RunCompletion::ContinueAsNew(Payload::json(&"month 2").expect("p"))),
    );
    assert_eq!(note, "continued as new");
    let fresh = only_workflow_task(&out);
    assert_eq!(fresh.task_index, 1);
    assert_eq!(fresh.history.len(), 1, "only the new task's start");
    assert_ne!(fresh.run_id, t1.run_id, "new command ids");
    assert_eq!(fresh.input.decode::<String>().expect("input"), "month 2");
    assert_eq!(h.running().mailbox.len(), 1, "unread signals carry over");
    assert_eq!(h.running().waiting_clients, vec![h.client]);
}
