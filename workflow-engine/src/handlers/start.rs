//! `Start` and `StartChild`: create the instance and dispatch its first workflow task;
//! idempotent per id.

use std::collections::{BTreeMap, BTreeSet};

use baton_shared_schemas::messages::{ParentRef, StartWorkflow};

use super::{Step, TagChange, begin_workflow_task, keep, reply_outcome, tag_messages, write};
use crate::state::{Record, RunningWorkflow, WorkflowState};
use crate::transition::Out;

pub(crate) fn start(
    state: Option<WorkflowState>,
    m: &StartWorkflow,
    parent: Option<ParentRef>,
    out: &mut Out<'_>,
) -> Step {
    let Some(mut state) = state else {
        let mut running = RunningWorkflow {
            workflow_name: m.workflow_name.clone(),
            workflow_version: None,
            tags: m.tags.clone(),
            meta: m.meta.clone(),
            started_at: out.ctx.now,
            input: m.input.clone(),
            task_index: 0,
            running_task: None,
            pending: BTreeMap::new(),
            waiting_on: BTreeSet::new(),
            buffered: Vec::new(),
            workflow_task_failure: None,
            waiting_clients: m.reply_to.into_iter().collect(),
            task_retry: 0,
            generation: 0,
            parent,
            receives: Vec::new(),
            mailbox: Vec::new(),
            discarding_channels: BTreeSet::new(),
            seen_signals: BTreeSet::new(),
            discarded_signals: 0,
            method_calls: BTreeMap::new(),
        };
        let mut history = Vec::new();
        tag_messages(&m.workflow_name, &m.tags, m.workflow_id, TagChange::Add, out);
        begin_workflow_task(m.workflow_id, &mut running, &mut history, out);
        let mut state = WorkflowState::new(m.workflow_id, running);
        state.history = history;
        return write(state, "started");
    };
    // The id exists: a redelivered or repeated start attaches the caller instead of starting twice.
    match &mut state.head.record {
        Record::Running(r) => match m.reply_to {
            Some(client) if !r.waiting_clients.contains(&client) => {
                r.waiting_clients.push(client);
                write(state, "start attached a client to the running instance")
            }
            _ => keep(Some(state), "duplicate start"),
        },
        Record::Completed(c) => {
            if let Some(client) = m.reply_to {
                reply_outcome(client, m.workflow_id, c.outcome.clone(), out);
            }
            keep(Some(state), "start of an ended instance")
        }
    }
}
