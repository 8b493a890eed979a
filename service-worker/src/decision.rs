//! What a worker reports when a task ends, decided without I/O: a service task's attempt
//! either completes it, is retried later through the timer service, fails it for good, or was
//! handed to a later completion (delegated); a workflow task's replay either gives its new
//! commands or fails. The message ids of what it emits are derived from the task message, so
//! a redelivered task reports under the same ids.

use baton_shared_schemas::messages::{
    ExecuteTask, ExecuteWorkflowTask, ServiceTaskMessage, TagEngineMessage, TimerMessage, WorkflowEngineMessage,
    WorkflowTaskCompleted,
};
use std::time::Duration;

use baton_shared_schemas::{
    AttemptFailure, Cause, CodecError, Emitted, EncodedMessage, Failure, MessageId, Payload, TimerId, Timestamp, Topic,
    on_firing_clock,
};

use crate::retry::{RetryDecision, RetryPolicy};

/// How a service task's attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptEnd {
    /// The method returned (or failed, timed out or panicked: a [`Failure`]).
    Returned(Result<Payload, Failure>),
    /// The method handed the task to a later completion through the client.
    Delegated,
}

/// What a worker emits for an ended task.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// A result for the calling workflow's engine.
    Engine {
        /// The workflow name.
        workflow: String,
        /// The result.
        message: WorkflowEngineMessage,
    },
    /// A delegated task's registration, for the tag engine of its service.
    Delegated {
        /// The service.
        service: String,
        /// The registration.
        message: TagEngineMessage,
    },
    /// The next attempt, stored with the timer service until it is due.
    RetryLater {
        /// The timer that holds it.
        timer_id: TimerId,
        /// When the timer service fires it, by its clock.
        due: Timestamp,
        /// When it may run, by the clock of the worker that takes it: the held message's
        /// `emitted_at`. Equal to `due` but for an attempt fired early and held again.
        not_before: Timestamp,
        /// The next attempt.
        task: Box<ExecuteTask>,
    },
}

/// A number in `[0, 1)` derived from the task and attempt, for retry jitter.
fn unit_random(task: &ExecuteTask) -> f64 {
    let mut x = task.task_id.0.as_u128() as u64 ^ u64::from(task.attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Decides what an ended attempt of `task` reports, under the method's retry `policy`, at `now`.
pub fn attempt_ended(task: &ExecuteTask, end: AttemptEnd, policy: &RetryPolicy, now: Timestamp) -> Report {
    let failure = match end {
        AttemptEnd::Delegated => {
            return Report::Delegated {
                service: task.service.clone(),
                message: TagEngineMessage::TaskDelegated {
                    task_id: task.task_id,
                    workflow_name: task.workflow_name.clone(),
                    workflow_id: task.workflow_id,
                },
            };
        }
        AttemptEnd::Returned(Ok(output)) => {
            return Report::Engine {
                workflow: task.workflow_name.clone(),
                message: WorkflowEngineMessage::TaskCompleted {
                    workflow_id: task.workflow_id,
                    task_id: task.task_id,
                    output,
                },
            };
        }
        AttemptEnd::Returned(Err(failure)) => failure,
    };
    match policy.decide(task.attempt, &failure, unit_random(task)) {
        RetryDecision::RetryAfter(delay) => {
            let mut previous_failures = task.previous_failures.clone();
            previous_failures.push(AttemptFailure {
                attempt: task.attempt,
                at: now,
                kind: failure.kind,
                message: failure.message,
            });
            let next = ExecuteTask {
                attempt: task.attempt + 1,
                previous_failures,
                ..task.clone()
            };
            let due = now.saturating_add(delay);
            Report::RetryLater {
                timer_id: TimerId::for_retry(task.task_id, next.attempt),
                due,
                not_before: due,
                task: Box::new(next),
            }
        }
        RetryDecision::GiveUp => Report::Engine {
            workflow: task.workflow_name.clone(),
            message: WorkflowEngineMessage::TaskFailed {
                workflow_id: task.workflow_id,
                task_id: task.task_id,
                failure: Failure {
                    previous_attempts: task.previous_failures.clone(),
                    ..failure
                },
            },
        },
    }
}

/// Decides what a replayed workflow task reports.
pub fn replayed(task: &ExecuteWorkflowTask, result: Result<WorkflowTaskCompleted, Failure>) -> Report {
    let message = match result {
        Ok(done) => WorkflowEngineMessage::WorkflowTaskCompleted(done),
        Err(failure) => WorkflowEngineMessage::WorkflowTaskFailed {
            workflow_id: task.workflow_id,
            task_id: task.task_id,
            failure,
        },
    };
    Report::Engine {
        workflow: task.workflow_name.clone(),
        message,
    }
}

/// How long before the time it may run a retry (an attempt after the first, which only a
/// worker's retry timer sends) arrived, by the worker's clock `now`; `None` when it is due.
/// The attempt carries that time as its `emitted_at`: a timer service whose clock runs ahead
/// fires it early.
pub fn retry_early_by(task: &ExecuteTask, emitted_at: Timestamp, now: Timestamp) -> Option<Duration> {
    (task.attempt > 1 && emitted_at > now).then(|| emitted_at.saturating_duration_since(now))
}

/// The report that holds a retry that arrived early (see [`retry_early_by`]) until it may
/// run: again through the timer service, due at that time read on the service's clock
/// ([`on_firing_clock`], from when it fired the retry by its clock, `fired_at`, and the
/// worker's clock reading `now`), under a timer derived from the message that brought it.
pub fn hold_retry(
    task: &ExecuteTask,
    message_id: MessageId,
    emitted_at: Timestamp,
    now: Timestamp,
    fired_at: Option<Timestamp>,
) -> Report {
    Report::RetryLater {
        timer_id: TimerId::for_rescheduling(message_id),
        due: on_firing_clock(emitted_at, now, fired_at),
        not_before: emitted_at,
        task: Box::new(task.clone()),
    }
}

/// The report of a workflow task whose events do not continue a run this worker keeps: the
/// engine sends it again with the whole history.
pub fn needs_history(task: &ExecuteWorkflowTask) -> Report {
    Report::Engine {
        workflow: task.workflow_name.clone(),
        message: WorkflowEngineMessage::WorkflowTaskNeedsHistory {
            workflow_id: task.workflow_id,
            task_id: task.task_id,
        },
    }
}

impl Emitted for Report {
    /// A report is the one message its task message causes: id `cause.nth(index)`, and the
    /// next attempt a timer holds the continuation of that.
    fn encode(&self, cause: &Cause<'_>, index: u32) -> Result<EncodedMessage, CodecError> {
        let id = cause.message_id.nth(index);
        match self {
            Report::Engine { workflow, message } => cause.emit(&Topic::workflow_engine(workflow), message.clone(), id),
            Report::Delegated { service, message } => cause.emit(&Topic::service_tag(service), message.clone(), id),
            Report::RetryLater {
                timer_id,
                due,
                not_before,
                task,
            } => {
                let next = ServiceTaskMessage::Execute((**task).clone());
                // The held attempt is emitted, as far as its worker can tell, when it may run.
                let held = Cause {
                    now: *not_before,
                    ..*cause
                };
                let schedule = TimerMessage::Schedule {
                    timer_id: *timer_id,
                    due: *due,
                    message: held.emit(&Topic::service_task(&task.service), next, id.continuation())?,
                };
                cause.emit(&Topic::timers(), schedule, id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use baton_shared_schemas::{Envelope, FailureKind, MessageId, TaskId, TraceContext, WorkflowId};

    use super::*;

    fn task(attempt: u32) -> ExecuteTask {
        ExecuteTask {
            task_id: TaskId::new(),
            service: "Payment".into(),
            method: "charge".into(),
            args: Payload::null(),
            attempt,
            workflow_id: WorkflowId::new(),
            workflow_name: "Booking".into(),
            previous_failures: Vec::new(),
            tags: Vec::new(),
            meta: Default::default(),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        }
    }

    fn failure() -> Failure {
        Failure {
            retryable: true,
            ..Failure::new(FailureKind::ServiceError, "card declined")
        }
    }

    #[test]
    fn a_returned_value_completes_the_task_and_a_delegation_registers_it() {
        let t = task(1);
        let done = attempt_ended(&t, AttemptEnd::Returned(Ok(Payload::null())), &policy(), Timestamp(0));
        assert!(
            matches!(done, Report::Engine { workflow, message: WorkflowEngineMessage::TaskCompleted { task_id, .. } }
            if workflow == "Booking" && task_id == t.task_id)
        );
        let delegated = attempt_ended(&t, AttemptEnd::Delegated, &policy(), Timestamp(0));
        assert!(
            matches!(delegated, Report::Delegated { service, message: TagEngineMessage::TaskDelegated { task_id, .. } }
            if service == "Payment" && task_id == t.task_id)
        );
    }

    #[test]
    fn a_failure_is_retried_with_its_history_until_the_attempts_are_spent() {
        let now = Timestamp(1_000);
        let first = task(1);
        let Report::RetryLater {
            timer_id,
            due,
            not_before,
            task: next,
        } = attempt_ended(&first, AttemptEnd::Returned(Err(failure())), &policy(), now)
        else {
            panic!("the first failure is retried")
        };
        assert_eq!(timer_id, TimerId::for_retry(first.task_id, 2));
        assert!(due > now);
        assert_eq!(not_before, due, "it may run once due");
        assert_eq!(next.attempt, 2);
        assert_eq!(next.previous_failures.len(), 1);
        assert_eq!(next.previous_failures[0].message, "card declined");
        let last = ExecuteTask {
            previous_failures: next.previous_failures.clone(),
            ..task(3)
        };
        match attempt_ended(&last, AttemptEnd::Returned(Err(failure())), &policy(), now) {
            Report::Engine {
                message: WorkflowEngineMessage::TaskFailed { failure, .. },
                ..
            } => assert_eq!(
                failure.previous_attempts.len(),
                1,
                "the chain of earlier attempts goes along"
            ),
            other => panic!("the last attempt's failure fails the task: {other:?}"),
        }
    }

    #[test]
    fn a_retry_fired_before_its_due_time_by_the_workers_clock_is_held_until_then() {
        let now = Timestamp(10_000);
        let retry = task(2);
        assert_eq!(retry_early_by(&retry, Timestamp(9_000), now), None, "due: it runs");
        assert_eq!(
            retry_early_by(&task(1), Timestamp(15_000), now),
            None,
            "a first attempt is sent by the engine, never by a timer: never held"
        );
        let early = retry_early_by(&retry, Timestamp(15_000), now).expect("early");
        assert_eq!(early.as_millis(), 5_000);
        // Fired by a timer service whose clock reads an hour ahead.
        let message = MessageId::new();
        let fired_at = Timestamp(now.0 + 3_600_000);
        let Report::RetryLater {
            timer_id,
            due,
            not_before,
            task: held,
        } = hold_retry(&retry, message, Timestamp(15_000), now, Some(fired_at))
        else {
            panic!("held through the timer service")
        };
        assert_eq!(timer_id, TimerId::for_rescheduling(message));
        assert_eq!(not_before, Timestamp(15_000), "it still may run at its due time");
        assert_eq!(
            due,
            Timestamp(15_000 + 3_600_000),
            "due then, on the timer service's clock"
        );
        assert_eq!(*held, retry, "the same attempt");
        // The attempt it holds says when it may run.
        let trace = TraceContext::default();
        let cause = Cause {
            message_id: message,
            trace: &trace,
            now,
        };
        let schedule: Envelope<TimerMessage> = baton_shared_schemas::decode(
            &hold_retry(&retry, message, Timestamp(15_000), now, Some(fired_at))
                .encode(&cause, 0)
                .expect("encode")
                .bytes,
        )
        .expect("decode");
        let TimerMessage::Schedule { message: attempt, .. } = schedule.body else {
            panic!("a schedule")
        };
        let attempt: Envelope<ServiceTaskMessage> = baton_shared_schemas::decode(&attempt.bytes).expect("decode");
        assert_eq!(attempt.emitted_at, Timestamp(15_000));
    }

    #[test]
    fn the_same_attempt_twice_reports_identical_bytes() {
        let t = task(1);
        let cause = MessageId::new();
        let trace = TraceContext::default();
        let now = Timestamp(77);
        let report = || attempt_ended(&t, AttemptEnd::Returned(Err(failure())), &policy(), now);
        assert_eq!(report(), report(), "the retry delay's jitter is derived, not random");
        let at = Cause {
            message_id: cause,
            trace: &trace,
            now,
        };
        let bytes = |r: &Report| r.encode(&at, 0).expect("encode");
        assert_eq!(bytes(&report()), bytes(&report()));
        let envelope: Envelope<TimerMessage> = baton_shared_schemas::decode(&bytes(&report()).bytes).expect("decode");
        assert_eq!(envelope.message_id, cause.nth(0));
    }
}
