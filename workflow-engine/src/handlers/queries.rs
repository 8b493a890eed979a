//! `Await`, `GetStatus` and `Expire`: reads, and removal of an expired record.

use baton_shared_schemas::messages::{ClientMessage, WorkflowEngineMessage};
use baton_shared_schemas::{ClientId, RequestId, TimerId, WorkflowId};

use super::{Step, keep, reply_outcome, write};
use crate::state::{Record, WorkflowState};
use crate::transition::{Effect, Next, Out};

pub(crate) fn await_result(state: Option<WorkflowState>, id: WorkflowId, client: ClientId, out: &mut Out<'_>) -> Step {
    let Some(mut state) = state else {
        super::reply_unknown(Some(client), id, None, out);
        return keep(None, "await of an unknown instance");
    };
    match &mut state.head.record {
        Record::Running(r) if r.waiting_clients.contains(&client) => keep(Some(state), "duplicate await"),
        Record::Running(r) => {
            r.waiting_clients.push(client);
            write(state, "client waits")
        }
        Record::Completed(c) => {
            reply_outcome(client, id, c.outcome.clone(), out);
            keep(Some(state), "await of an ended instance")
        }
    }
}

pub(crate) fn status(
    state: Option<WorkflowState>,
    id: WorkflowId,
    client: ClientId,
    request_id: RequestId,
    out: &mut Out<'_>,
) -> Step {
    let reply = match &state {
        Some(s) => ClientMessage::Status {
            request_id,
            workflow_id: id,
            status: s.status_view(),
        },
        None => ClientMessage::WorkflowUnknown {
            workflow_id: id,
            request_id: Some(request_id),
        },
    };
    out.emit(Effect::Client { client, message: reply });
    keep(state, "status")
}

pub(crate) fn expire(state: Option<WorkflowState>, out: &mut Out<'_>) -> Step {
    match state.as_ref().map(|s| (s.id, &s.head.record)) {
        Some((id, Record::Completed(c))) if c.expires_at <= out.ctx.now => {
            // A failed run kept its tags so it could be found and retried by tag; an ended one
            // had them removed, and the tag engine remembered that until now.
            super::tag_messages(&c.workflow_name, &c.tags, id, super::TagChange::Forget, out);
            (Next::Delete, "expired")
        }
        Some((id, Record::Completed(c))) => {
            // Its retention was extended since this timer was set (a failed run retried ended
            // again): the record keeps a pending expiry, never none.
            let (workflow, expires_at) = (c.workflow_name.clone(), c.expires_at);
            out.schedule(
                TimerId::for_rescheduling(out.message_id),
                expires_at,
                &workflow,
                WorkflowEngineMessage::Expire { workflow_id: id },
            );
            keep(state, "retention not over; expiry set again")
        }
        // Running again (a failed run retried): its next end sets a new expiry.
        Some(_) => keep(state, "running again; not expired"),
        None => keep(None, "already removed"),
    }
}
