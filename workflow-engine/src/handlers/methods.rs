//! `CallMethod`: a method of a running instance is called; its handler runs beside the main
//! function and its `MethodReturned` command answers the caller.

use baton_shared_schemas::messages::ClientMessage;
use baton_shared_schemas::{ClientId, Failure, FailureKind, HistoryEvent, Payload, RequestId, WorkflowId};

use super::{Step, begin_workflow_task, keep, running, write};
use crate::state::{RunningWorkflow, WorkflowState};
use crate::transition::{Effect, Out};

fn reply(
    client: Option<ClientId>,
    workflow_id: WorkflowId,
    invocation_id: RequestId,
    result: Result<Payload, Failure>,
    out: &mut Out<'_>,
) {
    if let Some(client) = client {
        out.emit(Effect::Client {
            client,
            message: ClientMessage::MethodResult {
                invocation_id,
                workflow_id,
                result,
            },
        });
    }
}

pub(crate) fn call(
    state: Option<WorkflowState>,
    workflow_id: WorkflowId,
    invocation_id: RequestId,
    method: &str,
    args: &Payload,
    reply_to: Option<ClientId>,
    out: &mut Out<'_>,
) -> Step {
    let Some(mut state) = state else {
        super::reply_unknown(reply_to, workflow_id, Some(invocation_id), out);
        return keep(None, "method call on an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        let failure = Failure::new(
            FailureKind::InstanceEnded,
            format!("instance {id} has ended; its methods cannot be called"),
        );
        reply(reply_to, id, invocation_id, Err(failure), out);
        return keep(Some(state), "method call on an ended instance");
    };
    // A redelivered call (its id is derived when sent by tag) is dropped whether it is still
    // running or already answered.
    let seen =
        |e: &HistoryEvent| matches!(e, HistoryEvent::MethodCalled { invocation_id: i, .. } if *i == invocation_id);
    if r.method_calls.contains_key(&invocation_id) || history.iter().chain(&r.buffered).any(seen) {
        return keep(Some(state), "duplicate method call");
    }
    r.method_calls.insert(invocation_id, reply_to);
    let event = HistoryEvent::MethodCalled {
        invocation_id,
        method: method.to_string(),
        args: args.clone(),
    };
    if r.running_task.is_some() || r.workflow_task_failure.is_some() {
        r.buffered.push(event);
        return write(state, "method call buffered");
    }
    history.push(event);
    begin_workflow_task(id, r, history, out);
    write(state, "method call started")
}

/// Answers a call whose handler returned.
pub(crate) fn answer(
    id: WorkflowId,
    r: &mut RunningWorkflow,
    invocation_id: RequestId,
    result: Result<Payload, Failure>,
    out: &mut Out<'_>,
) {
    if let Some(client) = r.method_calls.remove(&invocation_id) {
        reply(client, id, invocation_id, result, out);
    }
}

/// Answers every call still waiting with a failure (the run ended or restarted).
pub(crate) fn answer_unanswered(id: WorkflowId, r: &RunningWorkflow, why: &str, out: &mut Out<'_>) {
    for (invocation_id, client) in &r.method_calls {
        reply(
            *client,
            id,
            *invocation_id,
            Err(Failure::new(FailureKind::Cancelled, why)),
            out,
        );
    }
}
