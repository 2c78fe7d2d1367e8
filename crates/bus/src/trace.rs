//! W3C trace context across the log. A job's trace starts at submission (the
//! submitter's `traceparent`, or a new trace) and every event of the job
//! carries one — as the CloudEvents distributed-tracing extension and as a
//! NATS header — naming the span of the service that recorded it. A service
//! handling an event opens its span as a child of the event's context
//! ([`adopt`], in the consumer loop), and what it records carries its own span
//! ([`current`], in the codec): one job, one trace, across every service.
//!
//! The contexts exist when the process installs a `tracing-opentelemetry`
//! layer (`skynet up` and `skynet run` do); otherwise nothing is added.

use std::collections::HashMap;

use async_nats::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header (and CloudEvents extension attribute) name.
pub const TRACEPARENT: &str = "traceparent";

/// Whether `s` has the shape of a W3C traceparent (what a hostile submitter
/// sends is not trusted further than that: the propagator parses the rest).
pub use skynet_contract::envelope::plausible_traceparent as plausible;

/// The traceparent of the current span, when it has a valid context.
pub fn current() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// Makes `span` a child of `traceparent` (ignored when it does not parse).
pub fn adopt(span: &tracing::Span, traceparent: &str) {
    if !plausible(traceparent) {
        return;
    }
    let carrier: HashMap<String, String> = [(TRACEPARENT.to_owned(), traceparent.to_owned())].into();
    let cx = TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The traceparent a message carries: our header, or a binary-mode
/// CloudEvent's `ce-traceparent`.
pub fn from_headers(headers: Option<&HeaderMap>) -> Option<String> {
    let h = headers?;
    [TRACEPARENT, "ce-traceparent"]
        .iter()
        .find_map(|k| h.get(*k))
        .map(|v| v.as_str().to_owned())
        .filter(|v| plausible(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_are_taken() {
        assert!(plausible("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(!plausible("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01; drop table"));
        assert!(!plausible(""));
        let mut h = HeaderMap::new();
        h.insert("ce-traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert_eq!(from_headers(Some(&h)).as_deref(), Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        let mut bad = HeaderMap::new();
        bad.insert("traceparent", "not one");
        assert_eq!(from_headers(Some(&bad)), None);
    }
}
