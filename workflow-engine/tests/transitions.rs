//! Engine transition tests: pure functions, no I/O. Each test feeds messages to `apply` and
//! asserts on the next state and the messages it emits.

use std::time::Duration;

use baton_shared_schemas::messages::*;
use baton_shared_schemas::*;
use baton_workflow_engine::state::OutboxMessage;
use baton_workflow_engine::{Next, Record, TransitionContext, WorkflowState, apply};

const NAME: &str = "Booking";

struct Harness {
    id: WorkflowId,
    state: Option<WorkflowState>,
    now: Timestamp,
    client: ClientId,
}

#[derive(Debug)]
enum Emitted {
    WorkflowTask(ExecuteWorkflowTask),
    ServiceTask(String, ExecuteTask),
    Timer(TimerMessage),
    Client(ClientId, ClientMessage),
}

fn decode_out(m: &OutboxMessage) -> Emitted {
    if m.topic == Topic::workflow_task(NAME).name() {
        let e: Envelope<WorkflowTaskMessage> = codec::decode(&m.bytes).expect("workflow task");
        let WorkflowTaskMessage::Execute(t) = e.body;
        Emitted::WorkflowTask(t)
    } else if let Some(service) = m.topic.strip_prefix("service-task:") {
        let e: Envelope<ServiceTaskMessage> = codec::decode(&m.bytes).expect("service task");
        let ServiceTaskMessage::Execute(t) = e.body;
        Emitted::ServiceTask(service.to_string(), t)
    } else if m.topic == "timers" {
        Emitted::Timer(codec::decode::<Envelope<TimerMessage>>(&m.bytes).expect("timer").body)
    } else if let Some(client) = m.topic.strip_prefix("client:") {
        let e: Envelope<ClientMessage> = codec::decode(&m.bytes).expect("client");
        Emitted::Client(client.parse().expect("client id"), e.body)
    } else {
        panic!("unexpected topic {}", m.topic)
    }
}

impl Harness {
    fn new() -> Self {
        Self {
            id: WorkflowId::new(),
            state: None,
            now: Timestamp(10_000),
            client: ClientId::new(),
        }
    }

    /// Applies a message; returns the note and the decoded messages. Keeps the new state.
    fn send(&mut self, body: WorkflowEngineMessage) -> (&'static str, Vec<Emitted>) {
        self.now = Timestamp(self.now.0 + 10);
        let ctx = TransitionContext {
            now: self.now,
            retention: Duration::from_secs(60),
        };
        let decision = apply(self.state.clone(), &Envelope::new(body, self.now), &ctx).expect("transition");
        let emitted = decision.publish.iter().map(decode_out).collect();
        match decision.next {
            Next::Keep => {}
            Next::Write(s) => {
                assert_eq!(
                    s.head.outbox, decision.publish,
                    "the outbox holds exactly what is published"
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
            [Emitted::WorkflowTask(t)] => t.clone(),
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
    assert!(matches!(
        t2.history.as_slice(),
        [
            HistoryEvent::WorkflowTaskStarted { index: 1, .. },
            HistoryEvent::CommandRecorded { .. },
            HistoryEvent::ResultDelivered { .. },
            HistoryEvent::WorkflowTaskStarted { index: 2, .. }
        ]
    ));
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
        [Emitted::Timer(TimerMessage::Schedule {
            due: Timestamp(99_999),
            ..
        })]
    ));
    // A cancellation ends it while the timer is pending.
    let (note, out) = h.send(WorkflowEngineMessage::Cancel {
        workflow_id: h.id,
        reason: "operator".into(),
        client: None,
    });
    assert_eq!(note, "cancelled");
    let mut saw = (false, false, false);
    for e in &out {
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
            Emitted::Timer(TimerMessage::Cancel { timer_id }) => {
                assert_eq!(*timer_id, TimerId::from(timer.command_id));
                saw.1 = true;
            }
            Emitted::Timer(TimerMessage::Schedule { timer_id, due, .. }) => {
                assert_eq!(*timer_id, TimerId::for_retention(h.id));
                assert_eq!(*due, Timestamp(h.now.0 + 60_000));
                saw.2 = true;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(saw, (true, true, true));
    assert!(h.history().is_empty(), "the completed record keeps no history");
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
    let mut unknown = Harness::new();
    let (_, out) = unknown.send(WorkflowEngineMessage::Await {
        workflow_id: unknown.id,
        client: late,
    });
    assert!(matches!(
        out.as_slice(),
        [Emitted::Client(_, ClientMessage::WorkflowUnknown { .. })]
    ));
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
    let (note, _) = h.send(WorkflowEngineMessage::Expire { workflow_id: h.id });
    assert_eq!(note, "not expired");
    h.task_done(&t1, vec![], vec![], Some(RunCompletion::Completed(Payload::null())));
    let (note, _) = h.send(WorkflowEngineMessage::Expire { workflow_id: h.id });
    assert_eq!(note, "not expired");
    h.now = Timestamp(h.now.0 + 61_000);
    let (note, _) = h.send(WorkflowEngineMessage::Expire { workflow_id: h.id });
    assert_eq!(note, "expired");
    assert!(h.state.is_none());
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
