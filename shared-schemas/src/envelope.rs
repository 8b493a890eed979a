//! The one envelope every message travels in.

use serde::{Deserialize, Serialize};

use crate::{CodecError, MessageId, Timestamp, Topic, TopicMessage, codec};

/// Version of the envelope and message layouts written by this build. It is raised when a
/// layout changes in a way an older build would misread (a variant or field added); the
/// envelope's first three fields (this version, the message id, the emission time) keep their
/// layout in every version. Readers
/// accept every earlier version and refuse a later one ([`decode_envelope`]): bincode is not
/// self-describing, so bytes of a newer layout could otherwise decode as something else.
pub const SCHEMA_VERSION: u16 = 1;

/// Decodes an envelope after reading the header its writer put first: one written by a newer
/// build is refused with [`CodecError::NewerSchema`] before its body is read. Bytes whose
/// header does not decode are malformed, whatever their first field says.
pub fn decode_envelope<B: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<B>, CodecError> {
    // The fields every envelope starts with, in every version: a layout that never changes,
    // so a newer build's message is told from bytes that are no message at all.
    let (written, _, _): (u16, MessageId, Timestamp) = codec::decode_prefix(bytes)?;
    if written > SCHEMA_VERSION {
        return Err(CodecError::NewerSchema {
            written,
            known: SCHEMA_VERSION,
        });
    }
    codec::decode(bytes)
}

/// W3C trace context, carried so a trace spans client → engine → worker → engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// The `traceparent` header value, if the sender was traced.
    pub traceparent: Option<String>,
    /// The `tracestate` header value.
    pub tracestate: Option<String>,
}

/// A message with its header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<B> {
    /// Layout version the sender wrote. It stays the first field: readers read it before the
    /// rest.
    pub schema_version: u16,
    /// Unique id of this publish.
    pub message_id: MessageId,
    /// When the sender emitted it.
    pub emitted_at: Timestamp,
    /// Trace context of the sender.
    pub trace: TraceContext,
    /// The message itself.
    pub body: B,
}

impl<B> Envelope<B> {
    /// Wraps a body with a fresh message id.
    pub fn new(body: B, emitted_at: Timestamp) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            message_id: MessageId::new(),
            emitted_at,
            trace: TraceContext::default(),
            body,
        }
    }
}

impl<B> Envelope<B> {
    /// Wraps a body under a message id the caller derived (so a redelivered input emits
    /// byte-identical output), in the trace of the message that caused it.
    pub fn derived(body: B, message_id: MessageId, emitted_at: Timestamp, trace: TraceContext) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            message_id,
            emitted_at,
            trace,
            body,
        }
    }
}

/// A message encoded for its topic: what a component keeps in an outbox, what a timer
/// publishes when due, and what the transport sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodedMessage {
    /// Target topic.
    pub topic: String,
    /// Routing key on the target topic (derived from the body).
    pub key: String,
    /// The encoded envelope.
    pub bytes: Vec<u8>,
}

impl EncodedMessage {
    /// Encodes an envelope for `topic`.
    pub fn encode<M: TopicMessage>(topic: &Topic<M>, envelope: &Envelope<M>) -> Result<Self, CodecError> {
        Ok(Self {
            topic: topic.name().to_string(),
            key: envelope.body.routing_key(),
            bytes: codec::encode(envelope)?,
        })
    }
}

/// The message whose handling emits messages: their ids derive from its id, they continue its
/// trace, and they carry the handler's clock reading.
#[derive(Clone, Copy, Debug)]
pub struct Cause<'a> {
    /// The id of the message being handled.
    pub message_id: MessageId,
    /// Its trace context.
    pub trace: &'a TraceContext,
    /// When the handler emits.
    pub now: Timestamp,
}

impl<'a> Cause<'a> {
    /// The cause that is `envelope`, handled at `now`.
    pub fn of<M>(envelope: &'a Envelope<M>, now: Timestamp) -> Self {
        Self {
            message_id: envelope.message_id,
            trace: &envelope.trace,
            now,
        }
    }

    /// Encodes `body` for `topic` under `id` (derived from this cause).
    pub fn emit<M: TopicMessage>(
        &self,
        topic: &Topic<M>,
        body: M,
        id: MessageId,
    ) -> Result<EncodedMessage, CodecError> {
        EncodedMessage::encode(topic, &Envelope::derived(body, id, self.now, self.trace.clone()))
    }

    /// Encodes, in order, what this cause made a component emit.
    pub fn encode_all<E: Emitted>(&self, effects: &[E]) -> Result<Vec<EncodedMessage>, CodecError> {
        effects
            .iter()
            .zip(0u32..)
            .map(|(effect, index)| effect.encode(self, index))
            .collect()
    }
}

/// A message a component decided to emit.
pub trait Emitted {
    /// Encodes it as the `index`-th message `cause` made the component emit. Its id derives
    /// from the cause and the index (`cause.message_id.nth(index)`, or a continuation of it),
    /// so the same decision always encodes the same bytes.
    fn encode(&self, cause: &Cause<'_>, index: u32) -> Result<EncodedMessage, CodecError>;
}
