//! W3C trace context (`traceparent`) across d-engine's wire: in the metadata of client
//! requests, and per replicated entry in append messages ([`EntryTracer`]).
//!
//! The functions work on `tracing` spans. With the `otel` feature and an OpenTelemetry
//! layer in the subscriber (`tracing-opentelemetry`), a span's `traceparent` is its
//! OpenTelemetry span context, and a remote `traceparent` becomes a span's parent, so one
//! trace follows a request from the client through the leader to every follower. Without
//! the feature they do nothing: [`traceparent`] is `None`, [`set_remote_parent`] leaves
//! the span a root.
//!
//! Every span d-engine makes per request or per entry has the target [`TRACE_TARGET`]:
//! a subscriber that does not enable that target pays nothing for them.

use std::fmt;
use std::sync::Arc;

use d_engine_core::{Entry, LogIndex, NodeId};

/// The `tracing` target of d-engine's per-request and per-entry spans.
pub const TRACE_TARGET: &str = "d_engine::trace";

/// The metadata key (HTTP/2 header) of the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Carries the trace context of replicated entries across the wire.
///
/// A node's transport asks [`outgoing`](Self::outgoing) for the entries of each append it
/// encodes, and its peer server hands what an accepted append carried to
/// [`incoming`](Self::incoming) before the append reaches the node. Both run on transport
/// tasks, concurrently with the node's own threads: keep them short.
pub trait EntryTracer: Send + Sync + 'static {
    /// The `traceparent` of each traced entry among `entries` (an append to `peer`).
    fn outgoing(&self, peer: NodeId, entries: &[Entry]) -> Vec<(LogIndex, String)>;

    /// An accepted append from `from` carried these entries' trace context.
    fn incoming(&self, from: NodeId, traces: Vec<(LogIndex, String)>);
}

/// A shared [`EntryTracer`], comparable by identity so that configs holding one stay `Eq`.
#[derive(Clone)]
pub struct SharedEntryTracer(pub Arc<dyn EntryTracer>);

impl fmt::Debug for SharedEntryTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedEntryTracer")
    }
}

impl PartialEq for SharedEntryTracer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SharedEntryTracer {}

/// The `traceparent` of an incoming request's headers, if it has a readable one.
pub fn traceparent_header(headers: &tonic::codegen::http::HeaderMap) -> Option<&str> {
    headers.get(TRACEPARENT).and_then(|value| value.to_str().ok())
}

/// Adds the current span's `traceparent` to an outgoing request's metadata (nothing when
/// the span is not traced).
pub fn inject_current(metadata: &mut tonic::metadata::MetadataMap) {
    if let Some(value) = traceparent(&tracing::Span::current()) {
        insert(metadata, &value);
    }
}

/// Puts `traceparent` into an outgoing request's metadata (a value that is not valid
/// header text is left out: it cannot be a W3C trace context).
pub fn insert(metadata: &mut tonic::metadata::MetadataMap, traceparent: &str) {
    if let Ok(value) = traceparent.parse() {
        metadata.insert(TRACEPARENT, value);
    }
}

#[cfg(feature = "otel")]
mod otel {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TRACEPARENT;

    /// See [`super::traceparent`].
    pub(super) fn traceparent(span: &tracing::Span) -> Option<String> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        if !context.span().span_context().is_sampled() {
            return None;
        }
        let mut carrier = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove(TRACEPARENT)
    }

    /// See [`super::set_remote_parent`].
    pub(super) fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
        if span.is_disabled() {
            return;
        }
        let carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            // Fails only without an OpenTelemetry layer, where there is nothing to link.
            let _ = span.set_parent(parent);
        }
    }
}

/// `span`'s W3C `traceparent`, when an OpenTelemetry layer records it and it is sampled;
/// `None` otherwise (always without the `otel` feature).
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    #[cfg(feature = "otel")]
    return otel::traceparent(span);
    #[cfg(not(feature = "otel"))]
    {
        let _ = span;
        None
    }
}

/// Makes the remote span that `traceparent` names the parent of `span`. Call it right
/// after creating `span`, before entering it. Does nothing when `traceparent` is malformed,
/// the span is disabled, or without the `otel` feature.
pub fn set_remote_parent(span: &tracing::Span, traceparent: &str) {
    #[cfg(feature = "otel")]
    otel::set_remote_parent(span, traceparent);
    #[cfg(not(feature = "otel"))]
    let _ = (span, traceparent);
}

/// Whether a W3C `traceparent` says its trace is sampled (flag bit 0 of its last field).
/// A malformed one is not.
pub fn is_sampled(traceparent: &str) -> bool {
    let mut fields = traceparent.split('-');
    let well_formed = fields.next().is_some_and(|version| version.len() == 2)
        && fields.next().is_some_and(|trace_id| trace_id.len() == 32)
        && fields.next().is_some_and(|span_id| span_id.len() == 16);
    let flags = fields.next().and_then(|flags| u8::from_str_radix(flags, 16).ok());
    well_formed && flags.is_some_and(|flags| flags & 1 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sampled_flag_is_read_from_well_formed_traceparents_only() {
        assert!(is_sampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
        assert!(!is_sampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), "not sampled");
        assert!(is_sampled("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"), "bit 0 counts, not the byte");
        for malformed in ["", "garbage", "00-abc-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f0-01"] {
            assert!(!is_sampled(malformed), "{malformed:?}");
        }
    }
}
