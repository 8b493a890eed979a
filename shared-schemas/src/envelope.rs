//! The one envelope every message travels in.

use serde::{Deserialize, Serialize};

use crate::{MessageId, Timestamp};

/// Version of the envelope and message layouts written by this build. Readers accept every
/// earlier version (fields and variants are only appended).
pub const SCHEMA_VERSION: u16 = 1;

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
    /// Layout version the sender wrote.
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
