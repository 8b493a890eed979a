//! Wire-format tests: every message variant round-trips, the checked-in golden fixtures decode
//! to the same values forever, and random or truncated bytes never panic the decoder.
//!
//! To add fixtures after appending a variant, run with `BATON_BLESS=1`; existing fixtures are
//! never rewritten.

use std::collections::BTreeMap;
use std::path::PathBuf;

use baton_shared_schemas::messages::*;
use baton_shared_schemas::*;
use proptest::prelude::*;
use uuid::Uuid;

fn uuid(n: u8) -> Uuid {
    Uuid::from_bytes([n; 16])
}

fn envelope<B>(body: B) -> Envelope<B> {
    Envelope {
        schema_version: 1,
        message_id: MessageId(uuid(0xEE)),
        emitted_at: Timestamp(1_700_000_000_000),
        trace: TraceContext {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: None,
        },
        body,
    }
}

fn failure() -> Failure {
    Failure {
        kind: FailureKind::ServiceError,
        message: "card declined".into(),
        error: Some(Payload {
            codec: PayloadCodec::Json,
            bytes: br#"{"Declined":"insufficient funds"}"#.to_vec(),
        }),
        retryable: false,
        previous_attempts: vec![AttemptFailure {
            attempt: 1,
            at: Timestamp(1_700_000_000_500),
            kind: FailureKind::Panic,
            message: "boom".into(),
        }],
    }
}

fn payload() -> Payload {
    Payload {
        codec: PayloadCodec::Json,
        bytes: br#"{"amount":120}"#.to_vec(),
    }
}

fn meta() -> BTreeMap<String, String> {
    BTreeMap::from([("tenant".to_string(), "acme".to_string())])
}

fn history() -> Vec<HistoryEvent> {
    vec![
        HistoryEvent::WorkflowTaskStarted {
            index: 1,
            at: Timestamp(1_700_000_000_000),
        },
        HistoryEvent::CommandRecorded {
            task_index: 1,
            command: RecordedCommand {
                position: 0,
                command_id: CommandId(uuid(3)),
                spec: CommandSpec::ServiceTask {
                    service: "Payment".into(),
                    method: "charge".into(),
                    args: payload(),
                },
            },
        },
        HistoryEvent::CommandRecorded {
            task_index: 1,
            command: RecordedCommand {
                position: 1,
                command_id: CommandId(uuid(4)),
                spec: CommandSpec::Timer { due: Timestamp(5) },
            },
        },
        HistoryEvent::CommandRecorded {
            task_index: 1,
            command: RecordedCommand {
                position: 2,
                command_id: CommandId(uuid(5)),
                spec: CommandSpec::Inline { result: payload() },
            },
        },
        HistoryEvent::ResultDelivered {
            command_id: CommandId(uuid(3)),
            outcome: Outcome::Completed(payload()),
        },
        HistoryEvent::ResultDelivered {
            command_id: CommandId(uuid(4)),
            outcome: Outcome::Failed(failure()),
        },
        HistoryEvent::WorkflowTaskStarted {
            index: 2,
            at: Timestamp(1_700_000_000_900),
        },
    ]
}

fn engine_messages() -> Vec<(&'static str, WorkflowEngineMessage)> {
    let wf = WorkflowId(uuid(1));
    vec![
        (
            "engine_start",
            WorkflowEngineMessage::Start(StartWorkflow {
                workflow_id: wf,
                workflow_name: "Booking".into(),
                input: payload(),
                tags: vec!["customer:42".into()],
                meta: meta(),
                reply_to: Some(ClientId(uuid(2))),
            }),
        ),
        (
            "engine_await",
            WorkflowEngineMessage::Await {
                workflow_id: wf,
                client: ClientId(uuid(2)),
            },
        ),
        (
            "engine_get_status",
            WorkflowEngineMessage::GetStatus {
                workflow_id: wf,
                client: ClientId(uuid(2)),
                request_id: RequestId(uuid(9)),
            },
        ),
        (
            "engine_cancel",
            WorkflowEngineMessage::Cancel {
                workflow_id: wf,
                reason: "operator".into(),
                client: None,
            },
        ),
        (
            "engine_workflow_task_completed",
            WorkflowEngineMessage::WorkflowTaskCompleted(WorkflowTaskCompleted {
                workflow_id: wf,
                task_id: WorkflowTaskId(uuid(6)),
                workflow_version: 2,
                new_commands: vec![RecordedCommand {
                    position: 0,
                    command_id: CommandId(uuid(3)),
                    spec: CommandSpec::Timer { due: Timestamp(7) },
                }],
                waiting_on: vec![CommandId(uuid(3))],
                completion: Some(RunCompletion::Completed(payload())),
            }),
        ),
        (
            "engine_workflow_task_completed_failed_run",
            WorkflowEngineMessage::WorkflowTaskCompleted(WorkflowTaskCompleted {
                workflow_id: wf,
                task_id: WorkflowTaskId(uuid(6)),
                workflow_version: 1,
                new_commands: vec![],
                waiting_on: vec![],
                completion: Some(RunCompletion::Failed(failure())),
            }),
        ),
        (
            "engine_workflow_task_failed",
            WorkflowEngineMessage::WorkflowTaskFailed {
                workflow_id: wf,
                task_id: WorkflowTaskId(uuid(6)),
                failure: failure(),
            },
        ),
        (
            "engine_task_completed",
            WorkflowEngineMessage::TaskCompleted {
                workflow_id: wf,
                task_id: TaskId(uuid(3)),
                output: payload(),
            },
        ),
        (
            "engine_task_failed",
            WorkflowEngineMessage::TaskFailed {
                workflow_id: wf,
                task_id: TaskId(uuid(3)),
                failure: failure(),
            },
        ),
        (
            "engine_timer_fired",
            WorkflowEngineMessage::TimerFired {
                workflow_id: wf,
                timer_id: TimerId(uuid(4)),
            },
        ),
        ("engine_expire", WorkflowEngineMessage::Expire { workflow_id: wf }),
        (
            "engine_retry_tasks_matching",
            WorkflowEngineMessage::RetryTasksMatching {
                workflow_id: wf,
                filter: TaskFilter {
                    task_id: None,
                    service: Some("Payment".into()),
                    failure: Some(FailureKind::ExecutionTimeout),
                },
            },
        ),
        (
            "engine_call_method",
            WorkflowEngineMessage::CallMethod {
                workflow_id: wf,
                invocation_id: RequestId(uuid(16)),
                method: "progress".into(),
                args: payload(),
                reply_to: Some(ClientId(uuid(2))),
            },
        ),
        (
            "engine_send_signal",
            WorkflowEngineMessage::SendSignal {
                workflow_id: wf,
                signal_id: SignalId(uuid(10)),
                channel: "decision".into(),
                value: payload(),
            },
        ),
        (
            "engine_deferred_signal",
            WorkflowEngineMessage::Deferred {
                command: DeferredCommand::new(WorkflowEngineMessage::SendSignal {
                    workflow_id: wf,
                    signal_id: SignalId(uuid(10)),
                    channel: "decision".into(),
                    value: payload(),
                })
                .expect("not deferred"),
                attempt: 2,
            },
        ),
        (
            "engine_retry_workflow_task",
            WorkflowEngineMessage::RetryWorkflowTask { workflow_id: wf },
        ),
        (
            "engine_retry_tasks",
            WorkflowEngineMessage::RetryTasks {
                workflow_id: wf,
                selector: TaskSelector {
                    task_id: Some(TaskId(uuid(3))),
                    service: Some("Payment".into()),
                },
            },
        ),
        (
            "engine_complete_timers",
            WorkflowEngineMessage::CompleteTimers { workflow_id: wf },
        ),
        (
            "engine_start_child",
            WorkflowEngineMessage::StartChild {
                start: StartWorkflow {
                    workflow_id: WorkflowId(uuid(11)),
                    workflow_name: "Child".into(),
                    input: payload(),
                    tags: vec![],
                    meta: meta(),
                    reply_to: None,
                },
                parent: ParentRef {
                    workflow_name: "Booking".into(),
                    workflow_id: wf,
                    command_id: CommandId(uuid(11)),
                },
            },
        ),
        (
            "engine_child_ended",
            WorkflowEngineMessage::ChildEnded {
                workflow_id: wf,
                command_id: CommandId(uuid(11)),
                outcome: WorkflowOutcome::Failed(failure()),
            },
        ),
        (
            "engine_workflow_task_continue_as_new",
            WorkflowEngineMessage::WorkflowTaskCompleted(WorkflowTaskCompleted {
                workflow_id: wf,
                task_id: WorkflowTaskId(uuid(6)),
                workflow_version: 1,
                new_commands: vec![
                    RecordedCommand {
                        position: 0,
                        command_id: CommandId(uuid(12)),
                        spec: CommandSpec::Receive {
                            channel: "decision".into(),
                            filter: Some(SignalFilter {
                                pointer: "/status".into(),
                                equals: "\"approved\"".into(),
                            }),
                            limit: 2,
                        },
                    },
                    RecordedCommand {
                        position: 1,
                        command_id: CommandId(uuid(13)),
                        spec: CommandSpec::DeclareChannel {
                            channel: "decision".into(),
                            discard_unreceived: true,
                        },
                    },
                    RecordedCommand {
                        position: 2,
                        command_id: CommandId(uuid(14)),
                        spec: CommandSpec::ChildWorkflow {
                            workflow: "Child".into(),
                            input: payload(),
                            tags: vec!["t".into()],
                            meta: meta(),
                            detached: false,
                        },
                    },
                    RecordedCommand {
                        position: 3,
                        command_id: CommandId(uuid(15)),
                        spec: CommandSpec::Patch {
                            change_id: "new-pricing".into(),
                        },
                    },
                ],
                waiting_on: vec![],
                completion: Some(RunCompletion::ContinueAsNew(payload())),
            }),
        ),
    ]
}

fn workflow_task_messages() -> Vec<(&'static str, WorkflowTaskMessage)> {
    let mut with_methods = history();
    with_methods.extend([
        HistoryEvent::MethodCalled {
            invocation_id: RequestId(uuid(16)),
            method: "progress".into(),
            args: payload(),
        },
        HistoryEvent::CommandRecorded {
            task_index: 2,
            command: RecordedCommand {
                position: 3,
                command_id: CommandId(uuid(17)),
                spec: CommandSpec::MethodReturned {
                    invocation_id: RequestId(uuid(16)),
                    result: Ok(payload()),
                },
            },
        },
        HistoryEvent::WorkflowTaskStarted {
            index: 3,
            at: Timestamp(1_700_000_001_000),
        },
    ]);
    let methods = (
        "workflow_task_execute_with_methods",
        WorkflowTaskMessage::Execute(ExecuteWorkflowTask {
            workflow_id: WorkflowId(uuid(1)),
            workflow_name: "Loan".into(),
            workflow_version: Some(2),
            run_id: MethodRunId(uuid(8)),
            task_id: WorkflowTaskId(uuid(6)),
            task_index: 3,
            input: payload(),
            history_offset: 0,
            history: with_methods,
            tags: vec![],
            meta: meta(),
        }),
    );
    let task_options = (
        "workflow_task_execute_with_task_options",
        WorkflowTaskMessage::Execute(ExecuteWorkflowTask {
            workflow_id: WorkflowId(uuid(1)),
            workflow_name: "Loan".into(),
            workflow_version: Some(2),
            run_id: MethodRunId(uuid(8)),
            task_id: WorkflowTaskId(uuid(6)),
            task_index: 1,
            input: payload(),
            history_offset: 0,
            history: vec![
                HistoryEvent::WorkflowTaskStarted {
                    index: 1,
                    at: Timestamp(1_700_000_000_000),
                },
                HistoryEvent::CommandRecorded {
                    task_index: 1,
                    command: RecordedCommand {
                        position: 0,
                        command_id: CommandId(uuid(18)),
                        spec: CommandSpec::ServiceTaskWithOptions {
                            service: "Credit".into(),
                            method: "score".into(),
                            args: payload(),
                            tags: vec!["applicant:7".into()],
                            meta: meta(),
                        },
                    },
                },
            ],
            tags: vec![],
            meta: meta(),
        }),
    );
    vec![
        task_options,
        methods,
        (
            "workflow_task_execute",
            WorkflowTaskMessage::Execute(ExecuteWorkflowTask {
                workflow_id: WorkflowId(uuid(1)),
                workflow_name: "Booking".into(),
                workflow_version: Some(1),
                run_id: MethodRunId(uuid(8)),
                task_id: WorkflowTaskId(uuid(6)),
                task_index: 2,
                input: payload(),
                history_offset: 0,
                history: history(),
                tags: vec!["vip".into()],
                meta: meta(),
            }),
        ),
    ]
}

fn service_task_messages() -> Vec<(&'static str, ServiceTaskMessage)> {
    vec![(
        "service_task_execute",
        ServiceTaskMessage::Execute(ExecuteTask {
            task_id: TaskId(uuid(3)),
            service: "Payment".into(),
            method: "charge".into(),
            args: payload(),
            attempt: 2,
            workflow_id: WorkflowId(uuid(1)),
            workflow_name: "Booking".into(),
            previous_failures: failure().previous_attempts,
            tags: vec![],
            meta: meta(),
        }),
    )]
}

fn timer_messages() -> Vec<(&'static str, TimerMessage)> {
    vec![
        (
            "timer_schedule",
            TimerMessage::Schedule {
                timer_id: TimerId(uuid(4)),
                due: Timestamp(1_700_000_060_000),
                message: ScheduledMessage {
                    topic: "workflow-engine:Booking".into(),
                    key: "k".into(),
                    bytes: vec![1, 2, 3],
                },
            },
        ),
        (
            "timer_cancel",
            TimerMessage::Cancel {
                timer_id: TimerId(uuid(4)),
            },
        ),
    ]
}

fn client_messages() -> Vec<(&'static str, ClientMessage)> {
    let wf = WorkflowId(uuid(1));
    vec![
        (
            "client_result_completed",
            ClientMessage::WorkflowResult {
                workflow_id: wf,
                outcome: WorkflowOutcome::Completed(payload()),
            },
        ),
        (
            "client_result_failed",
            ClientMessage::WorkflowResult {
                workflow_id: wf,
                outcome: WorkflowOutcome::Failed(failure()),
            },
        ),
        (
            "client_result_cancelled",
            ClientMessage::WorkflowResult {
                workflow_id: wf,
                outcome: WorkflowOutcome::Cancelled {
                    reason: "operator".into(),
                },
            },
        ),
        (
            "client_unknown",
            ClientMessage::WorkflowUnknown {
                workflow_id: wf,
                request_id: Some(RequestId(uuid(9))),
            },
        ),
        (
            "client_method_result",
            ClientMessage::MethodResult {
                invocation_id: RequestId(uuid(16)),
                workflow_id: wf,
                result: Err(failure()),
            },
        ),
        (
            "client_method_result_instance_ended",
            ClientMessage::MethodResult {
                invocation_id: RequestId(uuid(17)),
                workflow_id: wf,
                result: Err(Failure::new(FailureKind::InstanceEnded, "instance has ended")),
            },
        ),
        (
            "client_workflow_ids",
            ClientMessage::WorkflowIds {
                request_id: RequestId(uuid(9)),
                ids: vec![wf],
                next_cursor: Some("c".into()),
            },
        ),
        (
            "client_status",
            ClientMessage::Status {
                request_id: RequestId(uuid(9)),
                workflow_id: wf,
                status: WorkflowStatusView {
                    workflow_name: "Booking".into(),
                    workflow_version: Some(1),
                    status: WorkflowStatus::Running,
                    started_at: Timestamp(1),
                    ended_at: None,
                    tags: vec!["a".into()],
                    pending_commands: 2,
                    workflow_tasks: 3,
                    workflow_task_failure: Some(failure()),
                    outcome: None,
                },
            },
        ),
    ]
}

fn task_control_messages() -> Vec<(&'static str, TaskControlMessage)> {
    vec![(
        "task_control_cancel",
        TaskControlMessage::Cancel {
            task_id: TaskId(uuid(3)),
        },
    )]
}

fn tag_messages() -> Vec<(&'static str, TagEngineMessage)> {
    let wf = WorkflowId(uuid(1));
    let tagged = |name: &'static str, command: TaggedCommand| {
        (
            name,
            TagEngineMessage::ByTag {
                workflow_name: "Booking".into(),
                tag: "vip".into(),
                command,
                cursor: Some("c".into()),
            },
        )
    };
    vec![
        (
            "tag_add",
            TagEngineMessage::AddTag {
                workflow_name: "Booking".into(),
                tag: "vip".into(),
                workflow_id: wf,
            },
        ),
        (
            "tag_remove",
            TagEngineMessage::RemoveTag {
                workflow_name: "Booking".into(),
                tag: "vip".into(),
                workflow_id: wf,
            },
        ),
        (
            "tag_forget",
            TagEngineMessage::ForgetTag {
                workflow_name: "Booking".into(),
                tag: "vip".into(),
                workflow_id: wf,
            },
        ),
        (
            "tag_get_ids",
            TagEngineMessage::GetIds {
                workflow_name: "Booking".into(),
                tag: "vip".into(),
                cursor: None,
                limit: 100,
                client: ClientId(uuid(2)),
                request_id: RequestId(uuid(9)),
            },
        ),
        tagged(
            "tag_by_tag_signal",
            TaggedCommand::Signal {
                channel: "decision".into(),
                value: payload(),
                signal_id: SignalId(uuid(10)),
            },
        ),
        tagged(
            "tag_by_tag_cancel",
            TaggedCommand::Cancel {
                reason: "operator".into(),
            },
        ),
        tagged("tag_by_tag_retry_workflow_task", TaggedCommand::RetryWorkflowTask),
        tagged(
            "tag_by_tag_retry_tasks",
            TaggedCommand::RetryTasks {
                selector: TaskSelector::default(),
            },
        ),
        tagged("tag_by_tag_complete_timers", TaggedCommand::CompleteTimers),
        tagged(
            "tag_by_tag_retry_tasks_matching",
            TaggedCommand::RetryTasksMatching {
                filter: TaskFilter {
                    failure: Some(FailureKind::Panic),
                    ..TaskFilter::default()
                },
            },
        ),
        tagged(
            "tag_by_tag_call_method",
            TaggedCommand::CallMethod {
                method: "refresh".into(),
                args: payload(),
            },
        ),
        (
            "tag_task_delegated",
            TagEngineMessage::TaskDelegated {
                task_id: TaskId(uuid(3)),
                workflow_name: "Booking".into(),
                workflow_id: wf,
            },
        ),
        (
            "tag_complete_delegated_ok",
            TagEngineMessage::CompleteDelegatedTask {
                task_id: TaskId(uuid(3)),
                result: Ok(payload()),
            },
        ),
        (
            "tag_complete_delegated_err",
            TagEngineMessage::CompleteDelegatedTask {
                task_id: TaskId(uuid(3)),
                result: Err("rejected".into()),
            },
        ),
    ]
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

/// Round-trips each sample and checks it against its golden fixture. Returns how many were checked.
fn check_all<M>(samples: Vec<(&'static str, M)>) -> usize
where
    M: TopicMessage + PartialEq + std::fmt::Debug,
{
    let bless = std::env::var_os("BATON_BLESS").is_some();
    let mut checked = 0;
    for (name, body) in samples {
        let env = envelope(body);
        let bytes = encode(&env).expect("encodes");
        let back: Envelope<M> = decode(&bytes).expect("decodes");
        assert_eq!(back, env, "{name} round trip");

        let path = fixture_dir().join(format!("{name}.bin"));
        match std::fs::read(&path) {
            Ok(golden) => {
                let old: Envelope<M> =
                    decode(&golden).unwrap_or_else(|e| panic!("golden fixture {name} no longer decodes: {e}"));
                assert_eq!(old, env, "golden fixture {name} decodes to a different value");
                checked += 1;
            }
            Err(_) if bless => {
                std::fs::write(&path, &bytes).expect("write fixture");
                checked += 1;
            }
            Err(e) => panic!(
                "missing golden fixture {} ({e}); run with BATON_BLESS=1 to create it",
                path.display()
            ),
        }
    }
    checked
}

#[test]
fn every_message_round_trips_and_matches_its_golden_fixture() {
    let n = check_all(engine_messages())
        + check_all(workflow_task_messages())
        + check_all(service_task_messages())
        + check_all(timer_messages())
        + check_all(client_messages())
        + check_all(task_control_messages())
        + check_all(tag_messages());
    let files = std::fs::read_dir(fixture_dir()).expect("fixture dir").count();
    assert_eq!(n, files, "every fixture file must be decoded by this test");
}

#[test]
fn a_deferred_command_cannot_hold_another() {
    let command = WorkflowEngineMessage::Await {
        workflow_id: WorkflowId(uuid(1)),
        client: ClientId(uuid(2)),
    };
    let once = WorkflowEngineMessage::Deferred {
        command: DeferredCommand::new(command).expect("not deferred"),
        attempt: 1,
    };
    assert!(DeferredCommand::new(once.clone()).is_none());
    // Bytes that nest one anyway (built by hand) are refused, not decoded.
    let nested = WorkflowEngineMessage::Deferred {
        command: DeferredCommand(Box::new(once)),
        attempt: 1,
    };
    let bytes = encode(&envelope(nested)).expect("encodes");
    let refused = decode::<Envelope<WorkflowEngineMessage>>(&bytes).expect_err("nested deferral refused");
    assert!(refused.to_string().contains("another deferred command"), "{refused}");
}

#[test]
fn decoder_rejects_unknown_codec_and_trailing_bytes() {
    let mut bytes = encode(&envelope(timer_messages().remove(1).1)).expect("encodes");
    bytes.push(0);
    assert!(matches!(
        decode::<Envelope<TimerMessage>>(&bytes),
        Err(CodecError::TrailingBytes { .. })
    ));
    bytes[0] = 99;
    assert!(matches!(
        decode::<Envelope<TimerMessage>>(&bytes),
        Err(CodecError::UnknownCodec(99))
    ));
    assert!(matches!(decode::<Envelope<TimerMessage>>(&[]), Err(CodecError::Empty)));
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Envelope<WorkflowEngineMessage>>(&bytes);
        let _ = decode::<Envelope<WorkflowTaskMessage>>(&bytes);
        let _ = decode::<Envelope<ServiceTaskMessage>>(&bytes);
        let _ = decode::<Envelope<TimerMessage>>(&bytes);
        let _ = decode::<Envelope<ClientMessage>>(&bytes);
        let _ = decode::<Envelope<TaskControlMessage>>(&bytes);
        let _ = decode::<Envelope<TagEngineMessage>>(&bytes);
    }

    #[test]
    fn truncated_or_corrupted_messages_are_errors_not_panics(cut in 0usize..10_000, flip in any::<(usize, u8)>()) {
        for (_, body) in engine_messages() {
            let bytes = encode(&envelope(body)).expect("encodes");
            let cut = cut % bytes.len();
            prop_assert!(decode::<Envelope<WorkflowEngineMessage>>(&bytes[..cut]).is_err());
            let mut corrupted = bytes.clone();
            let at = flip.0 % corrupted.len();
            corrupted[at] ^= flip.1 | 1;
            let _ = decode::<Envelope<WorkflowEngineMessage>>(&corrupted);
        }
    }
}

#[test]
fn an_envelope_of_a_newer_schema_version_is_refused_before_its_body_is_read() {
    use baton_shared_schemas::{SCHEMA_VERSION, decode_envelope};

    let message = timer_messages().remove(1).1;
    let current = envelope(message.clone());
    let bytes = encode(&current).expect("encodes");
    assert_eq!(decode_envelope::<TimerMessage>(&bytes).expect("this version"), current);
    let older = Envelope {
        schema_version: SCHEMA_VERSION - 1,
        ..current.clone()
    };
    let bytes = encode(&older).expect("encodes");
    assert_eq!(
        decode_envelope::<TimerMessage>(&bytes).expect("an older version"),
        older
    );
    for newer in [SCHEMA_VERSION + 1, 99, u16::MAX] {
        let mut bytes = encode(&Envelope {
            schema_version: newer,
            ..current.clone()
        })
        .expect("encodes");
        // A newer layout: the body may be anything this build cannot read.
        bytes.extend_from_slice(b"\xffa field this build does not know");
        let refused = decode_envelope::<TimerMessage>(&bytes).expect_err("newer refused");
        assert!(
            matches!(refused, CodecError::NewerSchema { written, known } if written == newer && known == SCHEMA_VERSION),
            "{refused}"
        );
        assert_eq!(
            refused.to_string(),
            format!("written by schema version {newer}, this reader knows ≤ {SCHEMA_VERSION}")
        );
    }
    assert!(matches!(decode_envelope::<TimerMessage>(&[]), Err(CodecError::Empty)));
    // Bytes whose first field reads as a newer version but that hold no envelope header are
    // malformed, not a newer build's message: they are dead-lettered at once.
    for garbage in [&b"\x01not bincode at all"[..], &[1, 2, 3], &[1, 99, 16, 0]] {
        assert!(
            matches!(
                decode_envelope::<TimerMessage>(garbage),
                Err(CodecError::Malformed { .. })
            ),
            "{garbage:?}"
        );
    }
}
