//! W3C trace context across the log. A job's trace starts at submission (the
//! submitter's `traceparent`, or a new trace) and every event of the job
//! carries one — as the CloudEvents distributed-tracing extension and as a
//! NATS header — naming the span of the service that recorded it. A service
//! handling an event opens its span as a child of the event's context
//! ([`adopt`], in the consumer loop), and what it records carries its own span
//! ([`current`], in the codec): one job, one trace, across every service.
//!
//! With a `tracing-opentelemetry` layer installed (when traces are exported)
//! the context is the current span's. Without one (the default: spans cost
//! throughput) the job's context still travels: the consumer loop keeps the
//! event's `traceparent` for the task handling it ([`within`]), what that task
//! records carries it on, and a job's first event starts a new trace.

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

tokio::task_local! {
    /// The trace context of the event the current task is handling.
    static INBOUND: Option<String>;
}

/// Runs `f` as the handling of an event that carries `traceparent`.
pub async fn within<F: std::future::Future>(traceparent: Option<String>, f: F) -> F::Output {
    INBOUND.scope(traceparent, f).await
}

/// The trace context what the current task records should carry: the current
/// span's when spans are traced, else the handled event's.
pub fn current() -> Option<String> {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut carrier);
        return carrier.remove(TRACEPARENT);
    }
    INBOUND.try_with(Clone::clone).ok().flatten()
}

/// A new trace (not sampled: only a tracing layer decides to record).
pub fn new_root() -> String {
    let (trace, span) = (uuid::Uuid::new_v4().simple().to_string(), uuid::Uuid::new_v4().simple().to_string());
    format!("00-{trace}-{}-00", &span[..16])
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
        assert!(plausible(&new_root()));
    }

    #[tokio::test]
    async fn without_spans_the_handled_events_context_goes_on() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
        assert_eq!(current(), None);
        assert_eq!(within(Some(tp.clone()), async { current() }).await, Some(tp));
    }
}
