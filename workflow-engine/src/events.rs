//! The CloudEvents a transition emits (when `engine.events` is on): the instance's status
//! changes on `events:{Workflow}`, and the service tasks it dispatched or whose results it
//! took on `events:{Service}`. Decided from the transition alone (no clock, no random ids:
//! each event's id derives from the message that caused it), and saved in the outbox with
//! the state, so an event is published at least once, exactly when its transition happened.

use baton_shared_schemas::events::{CloudEvent, kinds, service_events_topic, workflow_events_topic};
use baton_shared_schemas::messages::{ServiceTaskMessage, WorkflowEngineMessage, WorkflowOutcome};
use baton_shared_schemas::{EncodedMessage, Failure, MessageId, Payload, Timestamp, WorkflowId};
use baton_storage::{IndexEntry, InstanceStatus};
use serde_json::{Value, json};

use crate::state::{Record, WorkflowState};
use crate::transition::Effect;

/// Event indices start here, far above any effect's, so their ids never meet.
const FIRST_EVENT: u32 = 1 << 24;

/// What a transition did, as far as events tell.
pub struct Transition<'a> {
    /// The instance.
    pub id: WorkflowId,
    /// The message that caused it.
    pub cause: MessageId,
    /// The transition's time.
    pub now: Timestamp,
    /// The index entry before (`None` for a new instance).
    pub before: Option<&'a IndexEntry>,
    /// The index entry after.
    pub after: &'a IndexEntry,
    /// The state after.
    pub state: &'a WorkflowState,
    /// The message.
    pub message: &'a WorkflowEngineMessage,
    /// For a task result: the task's service, read from the state before.
    pub result_service: Option<&'a str>,
    /// The transition's effects.
    pub effects: &'a [Effect],
}

fn json_of(p: &Payload) -> Value {
    serde_json::from_slice(&p.bytes).unwrap_or(Value::Null)
}

fn failure_json(f: &Failure) -> Value {
    json!({
        "kind": format!("{:?}", f.kind),
        "message": f.message,
        "error": f.error.as_ref().map(json_of),
        "attempts": f.previous_attempts.len() + 1,
    })
}

/// The events of one transition, encoded for the outbox.
pub fn events(t: &Transition<'_>) -> Vec<EncodedMessage> {
    let mut out: Vec<(String, String, &'static str, String, Value)> = Vec::new();
    let workflow = t.after.workflow.as_str();
    let workflow_source = format!("/baton/workflows/{workflow}");
    let before = t.before.map(|e| e.status);
    if before != Some(t.after.status) {
        let kind = match (before, t.after.status) {
            (None, _) => Some(kinds::WORKFLOW_STARTED),
            (_, InstanceStatus::Stuck) => Some(kinds::WORKFLOW_STUCK),
            (Some(_), InstanceStatus::Running) => Some(kinds::WORKFLOW_RESUMED),
            (_, InstanceStatus::Completed) => Some(kinds::WORKFLOW_COMPLETED),
            (_, InstanceStatus::Failed) => Some(kinds::WORKFLOW_FAILED),
            (_, InstanceStatus::Cancelled) => Some(kinds::WORKFLOW_CANCELLED),
        };
        let mut data = json!({
            "workflow": workflow,
            "id": t.id.to_string(),
            "status": t.after.status.as_str(),
            "tags": t.after.tags,
            "startedAt": t.after.started_at.0,
            "endedAt": t.after.ended_at.map(|e| e.0),
        });
        match &t.state.head.record {
            Record::Completed(c) => match &c.outcome {
                WorkflowOutcome::Completed(output) => data["output"] = json_of(output),
                WorkflowOutcome::Failed(f) => data["failure"] = failure_json(f),
                WorkflowOutcome::Cancelled { reason } => data["reason"] = json!(reason),
            },
            Record::Running(r) => {
                if let Some(f) = &r.workflow_task_failure {
                    data["failure"] = failure_json(f);
                }
            }
        }
        if let Some(kind) = kind {
            out.push((
                workflow_events_topic(workflow),
                workflow_source.clone(),
                kind,
                t.id.to_string(),
                data,
            ));
            // A new instance that also ended in its first transition reports both.
            if before.is_none() && t.after.status != InstanceStatus::Running {
                let end = match t.after.status {
                    InstanceStatus::Stuck => kinds::WORKFLOW_STUCK,
                    InstanceStatus::Completed => kinds::WORKFLOW_COMPLETED,
                    InstanceStatus::Failed => kinds::WORKFLOW_FAILED,
                    InstanceStatus::Cancelled => kinds::WORKFLOW_CANCELLED,
                    InstanceStatus::Running => kinds::WORKFLOW_STARTED,
                };
                let data = out.last().map(|e| e.4.clone()).unwrap_or_default();
                out.push((
                    workflow_events_topic(workflow),
                    workflow_source.clone(),
                    end,
                    t.id.to_string(),
                    data,
                ));
            }
        }
    }
    match (t.message, t.result_service) {
        (WorkflowEngineMessage::TaskCompleted { task_id, output, .. }, Some(service)) => out.push((
            service_events_topic(service),
            format!("/baton/services/{service}"),
            kinds::TASK_COMPLETED,
            task_id.to_string(),
            json!({"service": service, "taskId": task_id.to_string(), "workflow": workflow, "workflowId": t.id.to_string(), "output": json_of(output)}),
        )),
        (WorkflowEngineMessage::TaskFailed { task_id, failure, .. }, Some(service)) => out.push((
            service_events_topic(service),
            format!("/baton/services/{service}"),
            kinds::TASK_FAILED,
            task_id.to_string(),
            json!({"service": service, "taskId": task_id.to_string(), "workflow": workflow, "workflowId": t.id.to_string(), "failure": failure_json(failure)}),
        )),
        _ => {}
    }
    for effect in t.effects {
        if let Effect::ServiceTask {
            service,
            message: ServiceTaskMessage::Execute(task),
        } = effect
        {
            out.push((
                service_events_topic(service),
                format!("/baton/services/{service}"),
                kinds::TASK_DISPATCHED,
                task.task_id.to_string(),
                json!({
                    "service": service,
                    "method": task.method,
                    "taskId": task.task_id.to_string(),
                    "attempt": task.attempt,
                    "workflow": workflow,
                    "workflowId": t.id.to_string(),
                }),
            ));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, (topic, source, kind, subject, data))| {
            let id = t.cause.nth(FIRST_EVENT + i as u32);
            let event = CloudEvent::new(id.to_string(), source, kind, subject.clone(), t.now, data);
            EncodedMessage {
                topic,
                key: subject,
                bytes: event.to_json(),
            }
        })
        .collect()
}
