//! `Cancel`: end a running instance as cancelled.

use baton_shared_schemas::messages::WorkflowOutcome;
use baton_shared_schemas::{ClientId, WorkflowId};

use super::{Step, finish, keep, write};
use crate::state::{Record, WorkflowState};
use crate::transition::Out;

pub(crate) fn cancel(
    state: Option<WorkflowState>,
    id: WorkflowId,
    reason: &str,
    client: Option<ClientId>,
    out: &mut Out<'_>,
) -> Step {
    let Some(mut state) = state else {
        super::reply_unknown(client, id, None, out);
        return keep(None, "cancel of an unknown instance");
    };
    match &mut state.head.record {
        Record::Completed(_) => keep(Some(state), "cancel of an ended instance"),
        Record::Running(r) => {
            if let Some(client) = client {
                if !r.waiting_clients.contains(&client) {
                    r.waiting_clients.push(client);
                }
            }
            finish(
                &mut state,
                WorkflowOutcome::Cancelled {
                    reason: reason.to_string(),
                },
                out,
            );
            write(state, "cancelled")
        }
    }
}
