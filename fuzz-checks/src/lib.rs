//! The checks behind Baton's fuzz targets (`fuzz/`), kept in the workspace so the regression
//! inputs a fuzzer found run as ordinary tests (`tests/regressions.rs`).
//!
//! Each check takes arbitrary bytes, as a broker or a store could hand them to a component,
//! and decodes them the way the component does. A check panics only if the decoder itself
//! misbehaves: it panics, or it accepts bytes whose value does not encode back to a value that
//! decodes the same (a decoder that accepts what the encoder never writes would let two
//! encodings of one message disagree).

use std::fmt::Debug;

use baton_shared_schemas::messages::{
    ClientMessage, ServiceTaskMessage, TagEngineMessage, TaskControlMessage, TimerMessage, WorkflowEngineMessage,
    WorkflowTaskMessage,
};
use baton_shared_schemas::{EncodedMessage, Envelope, HistoryEvent, WorkflowId, codec};
use baton_storage::{DeadLetter, IndexEntry, StoredWorkflow};
use baton_workflow_engine::WorkflowState;
use baton_workflow_engine::state::Head;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The message enums a topic carries, in the order the first byte of an [`envelope`] input
/// picks them.
pub const MESSAGE_KINDS: [&str; 7] = ["engine", "workflow", "service", "timer", "client", "task", "tag"];

/// Decodes `bytes` as `T`; if that succeeds, the value must survive an encode and a decode.
fn round_trips<T>(bytes: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    if let Ok(value) = codec::decode::<T>(bytes) {
        let again = codec::encode(&value).expect("a decoded value encodes");
        let back: T = codec::decode(&again).expect("an encoded value decodes");
        assert_eq!(back, value, "{} changed in a round trip", std::any::type_name::<T>());
    }
}

/// An envelope of one topic's messages: the first byte picks the enum ([`MESSAGE_KINDS`]),
/// the rest is the message as a consumer receives it.
pub fn envelope(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match usize::from(kind) % MESSAGE_KINDS.len() {
        0 => round_trips::<Envelope<WorkflowEngineMessage>>(bytes),
        1 => round_trips::<Envelope<WorkflowTaskMessage>>(bytes),
        2 => round_trips::<Envelope<ServiceTaskMessage>>(bytes),
        3 => round_trips::<Envelope<TimerMessage>>(bytes),
        4 => round_trips::<Envelope<ClientMessage>>(bytes),
        5 => round_trips::<Envelope<TaskControlMessage>>(bytes),
        _ => round_trips::<Envelope<TagEngineMessage>>(bytes),
    }
}

/// The first byte of an input for [`envelope`] that carries a fixture of `kind`.
pub fn envelope_kind_byte(kind: &str) -> Option<u8> {
    MESSAGE_KINDS
        .iter()
        .position(|k| *k == kind)
        .and_then(|i| u8::try_from(i).ok())
}

/// Splits `data` into parts at each `0xFF 0x00 0xFF` marker, the layout of multi-part inputs.
pub fn parts(data: &[u8]) -> Vec<&[u8]> {
    const MARKER: [u8; 3] = [0xFF, 0x00, 0xFF];
    let mut parts = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(MARKER.len()).position(|w| w == MARKER) {
        parts.push(&rest[..at]);
        rest = &rest[at + MARKER.len()..];
    }
    parts.push(rest);
    parts
}

/// A stored workflow instance, as the engine loads it: a head, then history entries (parts of
/// `data`). A state that loads must save to the same bytes' meaning.
pub fn stored_workflow(data: &[u8]) {
    let parts = parts(data);
    let (head, history) = parts.split_first().expect("one part at least");
    round_trips::<Head>(head);
    for entry in history {
        round_trips::<HistoryEvent>(entry);
    }
    let stored = StoredWorkflow {
        version: 1,
        head: head.to_vec(),
        history: history.iter().map(|e| e.to_vec()).collect(),
    };
    let id = WorkflowId::from_custom_id("Fuzz", "instance");
    if let Ok(state) = WorkflowState::decode(id, &stored) {
        let (head, _) = state.encode_for_save().expect("a loaded state encodes");
        let reloaded = WorkflowState::decode(id, &StoredWorkflow { head, ..stored }).expect("a saved state loads");
        assert_eq!(reloaded, state, "a stored state changed in a save and a load");
    }
}

/// The other records Baton reads back from its store or broker: instance-index entries, dead
/// letters and the messages timers hold (first byte picks which).
pub fn stored_record(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(entry) = IndexEntry::decode(bytes) {
                let again = entry.encode().expect("encodes");
                assert_eq!(IndexEntry::decode(&again).expect("decodes"), entry);
            }
        }
        1 => {
            if let Ok(letter) = DeadLetter::decode(bytes) {
                let again = letter.encode().expect("encodes");
                assert_eq!(DeadLetter::decode(&again).expect("decodes"), letter);
            }
        }
        _ => round_trips::<EncodedMessage>(bytes),
    }
}
