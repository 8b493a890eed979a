//! Every message that crosses a Baton topic, the id types, topic naming and the wire codec.
//!
//! This crate is the root of the workspace graph: it depends on no other Baton crate and on no
//! broker or storage client. Components exchange only the types defined here, encoded with
//! [`codec::encode`] and decoded with [`codec::decode`]; nothing outside this crate names bincode.
//!
//! Evolution rule: enum variants and struct fields are only ever appended. Golden fixtures of every
//! message live in `tests/fixtures/` and must decode forever.

pub mod codec;
pub mod envelope;
pub mod events;
pub mod failure;
pub mod history;
pub mod ids;
pub mod messages;
pub mod payload;
pub mod tags;
pub mod time;
pub mod topics;

pub use codec::{CodecError, decode, encode};
pub use envelope::{Cause, Emitted, EncodedMessage, Envelope, SCHEMA_VERSION, TraceContext, decode_envelope};
pub use failure::{AttemptFailure, Failure, FailureKind};
pub use history::{CommandSpec, HistoryEvent, Outcome, RecordedCommand, SignalFilter, TaskCall};
pub use ids::{
    ClientId, CommandId, MessageId, MethodRunId, RequestId, SignalId, TaskId, TimerId, WorkflowId, WorkflowTaskId,
};
pub use payload::{Payload, PayloadCodec, PayloadError};
pub use tags::{InvalidTag, InvalidTags, validate_tag, validate_tags};
pub use time::{Timestamp, on_firing_clock};
pub use topics::{Topic, TopicMessage};
