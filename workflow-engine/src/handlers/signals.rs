//! `SendSignal`: a value for one of the instance's channels, and how receives take signals.

use baton_shared_schemas::{HistoryEvent, Outcome, Payload, SignalFilter, SignalId};

use super::{Step, begin_workflow_task, deliver, keep, running, write};
use crate::state::{MailboxSignal, RunningWorkflow, WorkflowState};
use crate::transition::Out;

/// Whether a value passes a receive's filter. A value that is not JSON never matches a filter.
pub(crate) fn matches(filter: &Option<SignalFilter>, value: &Payload) -> bool {
    let Some(filter) = filter else { return true };
    let (Ok(value), Ok(expected)) = (
        serde_json::from_slice::<serde_json::Value>(&value.bytes),
        serde_json::from_str::<serde_json::Value>(&filter.equals),
    ) else {
        return false;
    };
    value.pointer(&filter.pointer) == Some(&expected)
}

/// What became of an offered signal.
pub(crate) enum Offer {
    /// A receive took it; `true` if the code waits on that receive.
    Taken(bool),
    /// Kept in the mailbox.
    Kept,
    /// Dropped by a discarding channel.
    Discarded,
}

/// Gives a signal to the first active receive that matches it and that the code is waiting on;
/// otherwise keeps it in the mailbox, or drops it if its channel discards unreceived signals.
/// A receive the code no longer waits on (it lost a race) never takes a signal, and while a
/// workflow task runs nothing is taken, since the code may be moving to another receive.
pub(crate) fn offer(r: &mut RunningWorkflow, history: &mut Vec<HistoryEvent>, signal: MailboxSignal) -> Offer {
    let found = if r.running_task.is_some() {
        None
    } else {
        r.receives.iter().position(|rc| {
            rc.channel == signal.channel
                && r.waiting_on.contains(&rc.command_id.nth(rc.received))
                && matches(&rc.filter, &signal.value)
        })
    };
    if let Some(i) = found {
        let receive = &mut r.receives[i];
        let value_id = receive.command_id.nth(receive.received);
        receive.received += 1;
        if receive.received >= receive.limit {
            r.receives.remove(i);
        }
        return Offer::Taken(deliver(r, history, value_id, Outcome::Completed(signal.value)));
    }
    if r.running_task.is_none() && r.discarding_channels.contains(&signal.channel) {
        r.discarded_signals += 1;
        return Offer::Discarded;
    }
    r.mailbox.push(signal);
    Offer::Kept
}

/// Gives mailbox signals to the receives the code now waits on, oldest first. Returns whether
/// any of them is awaited.
pub(crate) fn drain_mailbox(r: &mut RunningWorkflow, history: &mut Vec<HistoryEvent>) -> bool {
    let mut woke = false;
    let mailbox = std::mem::take(&mut r.mailbox);
    for signal in mailbox {
        match offer(r, history, signal) {
            Offer::Taken(w) => woke |= w,
            Offer::Kept | Offer::Discarded => {}
        }
    }
    woke
}

pub(crate) fn send(
    state: Option<WorkflowState>,
    signal_id: SignalId,
    channel: &str,
    value: &Payload,
    out: &mut Out<'_>,
) -> Step {
    let Some(mut state) = state else {
        return keep(None, "signal for an unknown instance");
    };
    let id = state.id;
    let Some((r, history)) = running(&mut state) else {
        return keep(Some(state), "signal for an ended instance");
    };
    if !r.seen_signals.insert(signal_id) {
        return keep(Some(state), "duplicate signal");
    }
    let signal = MailboxSignal {
        signal_id,
        channel: channel.to_string(),
        value: value.clone(),
    };
    match offer(r, history, signal) {
        Offer::Taken(true) => {
            begin_workflow_task(id, r, history, out);
            write(state, "signal woke the workflow")
        }
        Offer::Taken(false) => write(state, "signal received"),
        Offer::Kept => write(state, "signal kept in the mailbox"),
        Offer::Discarded => write(state, "signal discarded"),
    }
}
