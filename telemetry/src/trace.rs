//! Spans that follow one workflow across components.
//!
//! Each message carries a W3C `traceparent` in its envelope. A component handling a message
//! starts a span whose parent is that traceparent, and the messages it emits carry the new
//! span's traceparent, so one workflow forms one trace: client → engine → worker → engine → …
//!
//! Nothing is recorded unless [`enabled`]: a process turns tracing on by installing an
//! exporter ([`crate::otlp::install`], feature `otlp`); until then every call here is a
//! cheap no-op and envelopes keep the trace they came with.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue, global};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are recorded in this process.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turns span recording on or off (the exporter's installer does this).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// A span in progress; it ends when dropped.
pub struct MessageSpan {
    span: global::BoxedSpan,
}

impl MessageSpan {
    /// The `traceparent` that makes a message a child of this span.
    pub fn traceparent(&self) -> String {
        traceparent_of(self.span.span_context())
    }

    /// Marks the span failed, with the reason.
    pub fn fail(&mut self, reason: &str) {
        self.span
            .set_status(opentelemetry::trace::Status::error(reason.to_string()));
    }
}

impl Drop for MessageSpan {
    fn drop(&mut self) {
        self.span.end();
    }
}

fn traceparent_of(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// Reads a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`); `None` when malformed.
pub fn parse_traceparent(traceparent: &str) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    Some(SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags),
        true,
        TraceState::default(),
    ))
}

fn start(name: String, kind: SpanKind, parent: &Context, attributes: Vec<KeyValue>) -> MessageSpan {
    let tracer = global::tracer("baton");
    let span = tracer
        .span_builder(name)
        .with_kind(kind)
        .with_attributes(attributes)
        .start_with_context(&tracer, parent);
    MessageSpan { span }
}

/// A span for handling a message whose envelope carries `traceparent` (a new trace when it
/// carries none, or a malformed one). `None` when tracing is off.
pub fn consumer_span(name: String, traceparent: Option<&str>, attributes: Vec<KeyValue>) -> Option<MessageSpan> {
    if !enabled() {
        return None;
    }
    let parent = match traceparent.and_then(parse_traceparent) {
        Some(remote) => Context::new().with_remote_span_context(remote),
        None => Context::new(),
    };
    Some(start(name, SpanKind::Consumer, &parent, attributes))
}

/// A span for publishing a message that nothing caused (a client's request): a child of the
/// caller's current OpenTelemetry context, so a workflow started while serving a traced
/// request joins that request's trace. `None` when tracing is off.
pub fn producer_span(name: String, attributes: Vec<KeyValue>) -> Option<MessageSpan> {
    if !enabled() {
        return None;
    }
    Some(start(name, SpanKind::Producer, &Context::current(), attributes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_malformed_ones_are_refused() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = parse_traceparent(tp).expect("parses");
        assert_eq!(traceparent_of(&parsed), tp);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn nothing_is_recorded_while_tracing_is_off() {
        assert!(consumer_span("x".into(), None, Vec::new()).is_none());
        assert!(producer_span("x".into(), Vec::new()).is_none());
    }
}
