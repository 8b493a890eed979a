//! `Start`: create the instance and dispatch its first workflow task; idempotent per id.

use std::collections::{BTreeMap, BTreeSet};

use baton_shared_schemas::MethodRunId;
use baton_shared_schemas::messages::StartWorkflow;

use super::{Step, dispatch_workflow_task, keep, reply_outcome, write};
use crate::EngineError;
use crate::state::{Record, RunningWorkflow, WorkflowState};
use crate::transition::Out;

pub(crate) fn start(state: Option<WorkflowState>, m: &StartWorkflow, out: &mut Out<'_>) -> Result<Step, EngineError> {
    let Some(mut state) = state else {
        let mut state = WorkflowState::new(
            m.workflow_id,
            RunningWorkflow {
                workflow_name: m.workflow_name.clone(),
                workflow_version: None,
                tags: m.tags.clone(),
                meta: m.meta.clone(),
                started_at: out.ctx.now,
                input: m.input.clone(),
                run_id: MethodRunId::main(m.workflow_id),
                task_index: 0,
                running_task: None,
                pending: BTreeMap::new(),
                waiting_on: BTreeSet::new(),
                buffered: Vec::new(),
                workflow_task_failure: None,
                waiting_clients: m.reply_to.into_iter().collect(),
            },
        );
        if let Some((r, history)) = super::running(&mut state) {
            dispatch_workflow_task(m.workflow_id, r, history, out)?;
        }
        return write(state, "started");
    };
    // The id exists: a redelivered or repeated start attaches the caller instead of starting twice.
    match &mut state.head.record {
        Record::Running(r) => match m.reply_to {
            Some(client) if !r.waiting_clients.contains(&client) => {
                r.waiting_clients.push(client);
                write(state, "start attached a client to the running instance")
            }
            _ => keep("duplicate start"),
        },
        Record::Completed(c) => {
            if let Some(client) = m.reply_to {
                reply_outcome(client, m.workflow_id, c.outcome.clone(), out)?;
            }
            keep("start of an ended instance")
        }
    }
}
