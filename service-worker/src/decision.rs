//! What a worker reports when a task ends, decided without I/O: a service task's attempt
//! either completes it, is retried later through the timer service, fails it for good, or was
//! handed to a later completion (delegated); a workflow task's replay either gives its new
//! commands or fails. The message ids of what it emits are derived from the task message, so
//! a redelivered task reports under the same ids.

use baton_shared_schemas::messages::{
    ExecuteTask, ExecuteWorkflowTask, ServiceTaskMessage, TagEngineMessage, TimerMessage, WorkflowEngineMessage,
    WorkflowTaskCompleted,
};
use baton_shared_schemas::{
    AttemptFailure, Cause, CodecError, Emitted, EncodedMessage, Failure, Payload, TimerId, Timestamp, Topic,
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
        /// When it runs.
        due: Timestamp,
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
            Report::RetryLater {
                timer_id: TimerId::for_retry(task.task_id, next.attempt),
                due: now.saturating_add(delay),
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
            Report::RetryLater { timer_id, due, task } => {
                let next = ServiceTaskMessage::Execute((**task).clone());
                let schedule = TimerMessage::Schedule {
                    timer_id: *timer_id,
                    due: *due,
                    message: cause.emit(&Topic::service_task(&task.service), next, id.continuation())?,
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
            task: next,
        } = attempt_ended(&first, AttemptEnd::Returned(Err(failure())), &policy(), now)
        else {
            panic!("the first failure is retried")
        };
        assert_eq!(timer_id, TimerId::for_retry(first.task_id, 2));
        assert!(due > now);
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
