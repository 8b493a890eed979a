//! Client verbs and engine behaviour through the real components in embedded mode.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use baton::components::transport::{OutgoingMessage, SubscriptionKind, headers};
use baton::{
    CallError, Client, ClientError, Embedded, FailureKind, MethodOptions, RetryPolicy, ServiceOptions, StartOptions,
    TaskContext, Workflow, WorkflowContext, WorkflowError, WorkflowId, WorkflowStatus,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FlakyError {
    Transient(u32),
    Fatal(String),
}

impl std::fmt::Display for FlakyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl baton::ServiceError for FlakyError {
    fn is_retryable(&self) -> bool {
        matches!(self, FlakyError::Transient(_))
    }
}

/// A service whose behaviour each test controls.
#[baton::service]
pub trait Flaky {
    async fn echo(&self, value: String) -> Result<String, FlakyError>;
    async fn fail_until(&self, succeed_on_attempt: u32) -> Result<u32, FlakyError>;
    async fn fatal(&self) -> Result<(), FlakyError>;
    async fn slow(&self, millis: u64) -> Result<(), FlakyError>;
    async fn gate(&self) -> Result<(), FlakyError>;
}

struct FlakyImpl {
    attempts: AtomicU32,
    gate: tokio::sync::Semaphore,
}

impl Default for FlakyImpl {
    fn default() -> Self {
        Self {
            attempts: AtomicU32::new(0),
            gate: tokio::sync::Semaphore::new(0),
        }
    }
}

impl Flaky for Arc<FlakyImpl> {
    async fn echo(&self, value: String) -> Result<String, FlakyError> {
        Ok(value)
    }

    async fn fail_until(&self, succeed_on_attempt: u32) -> Result<u32, FlakyError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let attempt = TaskContext::current().attempt;
        if attempt < succeed_on_attempt {
            Err(FlakyError::Transient(attempt))
        } else {
            Ok(attempt)
        }
    }

    async fn fatal(&self) -> Result<(), FlakyError> {
        Err(FlakyError::Fatal("no way".into()))
    }

    async fn slow(&self, millis: u64) -> Result<(), FlakyError> {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(())
    }

    async fn gate(&self) -> Result<(), FlakyError> {
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| FlakyError::Fatal(e.to_string()))?;
        permit.forget();
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Scenario {
    Echo(String),
    Sleep(u64),
    Retry(u32),
    Fatal,
    Slow(u64),
    FailWorkflow(String),
}

struct Scenarios;
impl Workflow for Scenarios {
    const NAME: &'static str = "Scenarios";
    type Input = Scenario;
    type Output = String;
    type Error = String;

    async fn run(ctx: WorkflowContext, scenario: Scenario) -> Result<String, String> {
        let flaky = ctx.service::<FlakyStub>();
        match scenario {
            Scenario::Echo(v) => flaky.echo(v).await.map_err(|e| e.to_string()),
            Scenario::Sleep(ms) => {
                let before = ctx.now();
                ctx.sleep(Duration::from_millis(ms)).await;
                Ok(format!(
                    "slept {}",
                    ctx.now().saturating_duration_since(before).as_millis() >= u128::from(ms)
                ))
            }
            Scenario::Retry(n) => match flaky.fail_until(n).await {
                Ok(attempt) => Ok(format!("succeeded on attempt {attempt}")),
                Err(CallError::Service(FlakyError::Transient(a))) => Ok(format!("gave up after attempt {a}")),
                Err(e) => Err(e.to_string()),
            },
            Scenario::Fatal => match flaky.fatal().await {
                Err(CallError::Service(FlakyError::Fatal(why))) => Ok(format!("caught fatal: {why}")),
                other => Err(format!("unexpected {other:?}")),
            },
            Scenario::Slow(ms) => match flaky.slow(ms).await {
                Err(CallError::Failed(f)) => {
                    Ok(format!("{:?} after {} attempts", f.kind, f.previous_attempts.len() + 1))
                }
                other => Err(format!("unexpected {other:?}")),
            },
            Scenario::FailWorkflow(why) => Err(why),
        }
    }
}

static SWITCH: AtomicBool = AtomicBool::new(false);

/// Takes a different path once SWITCH is set: the deployed code "changed" under the instance.
struct Changing;
impl Workflow for Changing {
    const NAME: &'static str = "Changing";
    type Input = ();
    type Output = ();
    type Error = String;

    async fn run(ctx: WorkflowContext, _: ()) -> Result<(), String> {
        let flaky = ctx.service::<FlakyStub>();
        if SWITCH.load(Ordering::SeqCst) {
            flaky.slow(1).await.map_err(|e| e.to_string())?;
        } else {
            flaky.gate().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

async fn start(flaky: Arc<FlakyImpl>) -> Embedded {
    builder(flaky).start().await.expect("start")
}

fn builder(flaky: Arc<FlakyImpl>) -> baton::EmbeddedBuilder {
    let options = ServiceOptions::with_retry(RetryPolicy {
        max_attempts: 4,
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..RetryPolicy::default()
    })
    .method(
        "slow",
        MethodOptions {
            timeout: Duration::from_millis(50),
            retry: RetryPolicy {
                max_attempts: 2,
                initial_delay: Duration::from_millis(5),
                ..RetryPolicy::default()
            },
        },
    );
    Embedded::builder()
        .service_with(FlakyService::new(flaky), options)
        .workflow::<Scenarios>()
        .workflow::<Changing>()
}

/// A worker that keeps no run between tasks and replays each from its whole history, as a
/// worker restarted with new code does: the tests "deploy" by switching code in place.
fn replaying() -> baton::WorkerConfig {
    baton::WorkerConfig {
        sticky_runs: 0,
        ..baton::WorkerConfig::default()
    }
}

async fn run(baton: &Embedded, scenario: Scenario) -> Result<String, WorkflowError<String>> {
    baton
        .client()
        .start::<Scenarios>(&scenario)
        .await
        .expect("start")
        .result()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_is_returned_to_the_starter_and_to_later_clients() {
    let baton = start(Arc::default()).await;
    let handle = baton
        .client()
        .start::<Scenarios>(&Scenario::Echo("hello".into()))
        .await
        .expect("start");
    assert_eq!(handle.result().await.expect("result"), "hello");
    // A fresh client (as after a restart) asks for the result of the finished instance.
    let later = Client::connect(baton.transport().clone()).await.expect("connect");
    assert_eq!(
        later
            .handle::<Scenarios>(handle.id())
            .result()
            .await
            .expect("result after completion"),
        "hello"
    );
    let status = later.status("Scenarios", handle.id()).await.expect("status");
    assert_eq!(status.status, WorkflowStatus::Completed);
    assert!(status.ended_at.is_some() && status.workflow_tasks >= 2);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_twice_with_one_id_runs_once() {
    let flaky = Arc::new(FlakyImpl::default());
    let baton = start(flaky.clone()).await;
    let id = WorkflowId::new();
    let options = StartOptions {
        id: Some(id),
        ..StartOptions::default()
    };
    let a = baton
        .client()
        .start_with::<Scenarios>(&Scenario::Retry(1), options.clone())
        .await
        .expect("start");
    let b = baton
        .client()
        .start_with::<Scenarios>(&Scenario::Retry(1), options)
        .await
        .expect("start again");
    assert_eq!(a.result().await.expect("a"), "succeeded on attempt 1");
    assert_eq!(b.result().await.expect("b"), "succeeded on attempt 1");
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 1, "the task ran once");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_success() {
    let flaky = Arc::new(FlakyImpl::default());
    let baton = start(flaky.clone()).await;
    assert_eq!(
        run(&baton, Scenario::Retry(3)).await.expect("result"),
        "succeeded on attempt 3"
    );
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 3);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_reach_the_workflow_as_the_typed_error() {
    let flaky = Arc::new(FlakyImpl::default());
    let baton = start(flaky.clone()).await;
    assert_eq!(
        run(&baton, Scenario::Retry(100)).await.expect("result"),
        "gave up after attempt 4"
    );
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 4, "max_attempts = 4");
    assert_eq!(
        run(&baton, Scenario::Fatal).await.expect("result"),
        "caught fatal: no way",
        "non-retryable errors are not retried"
    );
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_over_its_execution_timeout_fails_and_is_retried() {
    let baton = start(Arc::default()).await;
    assert_eq!(
        run(&baton, Scenario::Slow(2_000)).await.expect("result"),
        "ExecutionTimeout after 2 attempts"
    );
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_timers_resume_the_workflow() {
    let baton = start(Arc::default()).await;
    let t0 = Instant::now();
    assert_eq!(run(&baton, Scenario::Sleep(120)).await.expect("result"), "slept true");
    assert!(t0.elapsed() >= Duration::from_millis(120));
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_error_reaches_the_client_typed() {
    let baton = start(Arc::default()).await;
    match run(&baton, Scenario::FailWorkflow("out of stock".into())).await {
        Err(WorkflowError::Failed(e)) => assert_eq!(e, "out of stock"),
        other => panic!("{other:?}"),
    }
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiting_workflow_ends_it_for_every_waiter() {
    let baton = start(Arc::default()).await;
    let handle = baton
        .client()
        .start::<Scenarios>(&Scenario::Sleep(3_600_000))
        .await
        .expect("start");
    let status = handle.status().await.expect("status");
    assert_eq!(status.status, WorkflowStatus::Running);
    handle.cancel("customer changed their mind").await.expect("cancel");
    match handle.result().await {
        Err(WorkflowError::Cancelled { reason }) => {
            assert_eq!(reason, "customer changed their mind")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(handle.status().await.expect("status").status, WorkflowStatus::Cancelled);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_instances_are_reported_not_awaited_forever() {
    let baton = start(Arc::default()).await;
    let ghost = WorkflowId::new();
    match baton.client().handle::<Scenarios>(ghost).result().await {
        Err(WorkflowError::Client(ClientError::UnknownWorkflow(id))) => assert_eq!(id, ghost),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        baton.client().status("Scenarios", ghost).await,
        Err(ClientError::UnknownWorkflow(_))
    ));
    baton.shutdown().await;
}

async fn wait_for_failure(client: &Client, name: &str, id: WorkflowId) -> baton::Failure {
    for _ in 0..400 {
        let status = client.status(name, id).await.expect("status");
        if let Some(f) = status.workflow_task_failure {
            assert_eq!(
                status.status,
                WorkflowStatus::Running,
                "the instance is kept, waiting for a fix"
            );
            return f;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no workflow task failure became visible")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_code_under_a_running_instance_is_a_visible_non_determinism_error() {
    let flaky = Arc::new(FlakyImpl::default());
    let baton = builder(flaky.clone())
        .worker_config(replaying())
        .start()
        .await
        .expect("start");
    SWITCH.store(false, Ordering::SeqCst);
    let handle = baton.client().start::<Changing>(&()).await.expect("start");
    // The first workflow task records a call to `gate`, which blocks until released.
    for _ in 0..400 {
        if handle.status().await.expect("status").pending_commands == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // "Deploy" code that makes a different call at that position, then let the call finish.
    SWITCH.store(true, Ordering::SeqCst);
    flaky.gate.add_permits(1);
    let failure = wait_for_failure(baton.client(), "Changing", handle.id()).await;
    assert_eq!(failure.kind, FailureKind::NonDeterminism, "{failure}");
    assert!(
        failure.message.contains("Flaky.gate") && failure.message.contains("Flaky.slow"),
        "{failure}"
    );
    // Other instances keep running meanwhile.
    assert_eq!(
        run(&baton, Scenario::Echo("unaffected".into())).await.expect("result"),
        "unaffected"
    );
    SWITCH.store(false, Ordering::SeqCst);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_that_does_not_fit_the_workflow_is_a_visible_failure() {
    let baton = start(Arc::default()).await;
    let bad = baton::Payload::json(&serde_json_like()).expect("payload");
    let id = baton
        .client()
        .start_raw("Scenarios", bad, StartOptions::default())
        .await
        .expect("start");
    let failure = wait_for_failure(baton.client(), "Scenarios", id).await;
    assert_eq!(failure.kind, FailureKind::InvalidArguments);
    assert!(failure.message.contains("Scenarios"), "{failure}");
    baton.shutdown().await;
}

fn serde_json_like() -> std::collections::BTreeMap<String, u32> {
    std::collections::BTreeMap::from([("unexpected".to_string(), 1)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_go_to_dead_letter_topics_and_components_carry_on() {
    let baton = start(Arc::default()).await;
    let transport = baton.transport().clone();
    let topics = [
        "workflow-cmd:Scenarios",
        "workflow-engine:Scenarios",
        "workflow-task:Scenarios",
        "service-task:Flaky",
        "timers",
    ];
    let mut dead_letters = Vec::new();
    for topic in topics {
        dead_letters.push(
            transport
                .subscribe(&format!("dlq:{topic}"), "ops", SubscriptionKind::Shared)
                .await
                .expect("dlq"),
        );
        transport
            .publish(
                topic,
                OutgoingMessage::new("garbage", b"\x01not bincode at all".to_vec()),
            )
            .await
            .expect("publish");
        transport
            .publish(topic, OutgoingMessage::new("empty", Vec::new()))
            .await
            .expect("publish");
    }
    for (topic, dlq) in topics.iter().zip(dead_letters.iter_mut()) {
        for _ in 0..2 {
            let dead = tokio::time::timeout(Duration::from_secs(10), dlq.next())
                .await
                .expect("dead-lettered in time")
                .expect("delivery");
            let reason = dead.header(headers::DEAD_LETTER_REASON).unwrap_or_default().to_string();
            assert!(
                reason.contains("undecodable") || reason.contains("malformed") || reason.contains("empty"),
                "{topic}: {reason}"
            );
            assert_eq!(dead.header(headers::ORIGINAL_TOPIC), Some(*topic));
            dead.ack().await;
        }
    }
    assert_still_serves(&baton).await;
    baton.shutdown().await;
}

/// Checks that the instance still runs workflows (after bad input it had to refuse).
async fn assert_still_serves(baton: &Embedded) {
    assert_eq!(
        run(baton, Scenario::Echo("still alive".into())).await.expect("result"),
        "still alive"
    );
}

/// Publishes `message` on the Scenarios command topic as a foreign producer would, and returns
/// the reason it was dead-lettered with (asserting it was not redelivered first).
async fn dead_letter_reason_of(
    baton: &Embedded,
    message: baton::components::schemas::messages::WorkflowEngineMessage,
) -> String {
    use baton::components::schemas::{SCHEMA_VERSION, Topic};

    let transport = baton.transport().clone();
    let mut dlq = transport
        .subscribe("dlq:workflow-cmd:Scenarios", "ops", SubscriptionKind::Shared)
        .await
        .expect("dlq");
    let topic = Topic::workflow_cmd("Scenarios");
    transport
        .publish(topic.name(), written_by_version(&topic, message, SCHEMA_VERSION))
        .await
        .expect("publish");
    let dead = tokio::time::timeout(Duration::from_secs(10), dlq.next())
        .await
        .expect("dead-lettered in time")
        .expect("delivery");
    assert_eq!(dead.redeliveries, 0, "poison is not redelivered first");
    let reason = dead.header(headers::DEAD_LETTER_REASON).unwrap_or_default().to_string();
    dead.ack().await;
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_an_unreadable_stored_state_is_dead_lettered_at_once() {
    use baton::components::schemas::messages::WorkflowEngineMessage;
    use baton::components::storage::{Expected, HistoryWrite, WorkflowWrite};

    let baton = start(Arc::default()).await;
    // A record no engine wrote: its head is not a head.
    let id = WorkflowId::new();
    baton
        .stores()
        .workflows
        .save(WorkflowWrite::new(
            id,
            Expected::Absent,
            b"not a head".to_vec(),
            HistoryWrite::Append(Vec::new()),
        ))
        .await
        .expect("store the corrupt record");
    let cancel = WorkflowEngineMessage::Cancel {
        workflow_id: id,
        reason: "operator".into(),
        client: None,
    };
    let reason = dead_letter_reason_of(&baton, cancel).await;
    assert!(
        reason.contains(&format!("stored state of workflow {id} is unreadable")),
        "{reason}"
    );
    assert_still_serves(&baton).await;
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_with_more_tags_than_an_instance_may_have_is_dead_lettered_and_nothing_is_stored() {
    use baton::components::schemas::Payload;
    use baton::components::schemas::messages::{StartWorkflow, WorkflowEngineMessage};

    let baton = start(Arc::default()).await;
    // Baton's client refuses this before sending; another producer might not.
    let id = WorkflowId::new();
    let flood = WorkflowEngineMessage::Start(StartWorkflow {
        workflow_id: id,
        workflow_name: "Scenarios".into(),
        input: Payload::null(),
        tags: (0..10_000).map(|i| format!("t{i}")).collect(),
        meta: Default::default(),
        reply_to: None,
    });
    let reason = dead_letter_reason_of(&baton, flood).await;
    assert!(
        reason.contains(&format!("start of {id} refused")) && reason.contains("at most 100 tags, not 10000"),
        "{reason}"
    );
    assert_eq!(
        baton.stores().workflows.load(id).await.expect("load").map(|_| ()),
        None,
        "nothing stored"
    );
    assert_still_serves(&baton).await;
    baton.shutdown().await;
}

/// The bytes of `body` in an envelope claiming to be written by schema version `version`.
fn written_by_version<M: baton::components::schemas::TopicMessage>(
    topic: &baton::components::schemas::Topic<M>,
    body: M,
    version: u16,
) -> OutgoingMessage {
    use baton::components::schemas::{EncodedMessage, Envelope, Timestamp};

    let envelope = Envelope {
        schema_version: version,
        ..Envelope::new(body, Timestamp::now_system())
    };
    baton::components::transport::outgoing(EncodedMessage::encode(topic, &envelope).expect("encode")).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_written_by_a_newer_schema_version_is_never_misread_on_any_topic() {
    use baton::components::schemas::messages::{StartWorkflow, TimerMessage, WorkflowEngineMessage};
    use baton::components::schemas::{Payload, SCHEMA_VERSION, TimerId, Topic};

    let baton = start(Arc::default()).await;
    let transport = baton.transport().clone();
    let newer = SCHEMA_VERSION + 98;
    let id = WorkflowId::new();
    let start_of = |workflow_id| {
        WorkflowEngineMessage::Start(StartWorkflow {
            workflow_id,
            workflow_name: "Scenarios".into(),
            input: Payload::json(&Scenario::Echo("from the newer build".into())).expect("input"),
            tags: Vec::new(),
            meta: Default::default(),
            reply_to: None,
        })
    };
    // What a newer build writes: a start, and messages for the other consumed topics, each of a
    // layout this build could decode and would misread but for the version.
    let engine_message = start_of(id);
    let bytes_of_a_task = written_by_version(&Topic::workflow_cmd("Scenarios"), start_of(WorkflowId::new()), newer);
    let letters: Vec<(String, OutgoingMessage)> = vec![
        (
            Topic::workflow_cmd("Scenarios").name().to_string(),
            written_by_version(&Topic::workflow_cmd("Scenarios"), engine_message, newer),
        ),
        (
            Topic::workflow_engine("Scenarios").name().to_string(),
            written_by_version(
                &Topic::workflow_engine("Scenarios"),
                WorkflowEngineMessage::Expire { workflow_id: id },
                newer,
            ),
        ),
        (
            Topic::timers().name().to_string(),
            written_by_version(
                &Topic::timers(),
                TimerMessage::Cancel {
                    timer_id: TimerId::new(),
                },
                newer,
            ),
        ),
        (
            Topic::workflow_task("Scenarios").name().to_string(),
            bytes_of_a_task.clone(),
        ),
        (Topic::service_task("Flaky").name().to_string(), bytes_of_a_task),
    ];
    let mut dead_letters = Vec::new();
    for (topic, message) in letters {
        dead_letters.push((
            topic.clone(),
            transport
                .subscribe(&format!("dlq:{topic}"), "ops", SubscriptionKind::Shared)
                .await
                .expect("dlq"),
        ));
        transport.publish(&topic, message).await.expect("publish");
    }
    for (topic, dlq) in &mut dead_letters {
        let dead = tokio::time::timeout(Duration::from_secs(10), dlq.next())
            .await
            .expect("dead-lettered in time")
            .expect("delivery");
        let reason = dead.header(headers::DEAD_LETTER_REASON).unwrap_or_default().to_string();
        assert!(
            reason.contains(&format!(
                "written by schema version {newer}, this reader knows ≤ {SCHEMA_VERSION}"
            )),
            "{topic}: {reason}"
        );
        assert!(
            reason.starts_with("redelivered "),
            "{topic}: left for an upgraded replica before it was dead-lettered: {reason}"
        );
        dead.ack().await;
    }
    assert_eq!(
        baton.stores().workflows.load(id).await.expect("load").map(|_| ()),
        None,
        "the newer start was not run as this version"
    );
    // Messages of this version beside them are handled as before.
    assert_still_serves(&baton).await;
    baton.shutdown().await;
}
