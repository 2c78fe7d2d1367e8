//! Logs and traces of this process. Logs go to stderr (`SKYNET_LOG` filters
//! them). Spans also become OpenTelemetry spans, so a job's trace context
//! travels on its events (see `skynet_bus::trace`); they are exported over
//! OTLP/HTTP (JSON) only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set — otherwise
//! nothing is recorded beyond the context itself (traces are not sampled unless
//! a submitter's context asks for it), and nothing leaves the process.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The spans that become OpenTelemetry spans: SKYNET's own.
const SPANS: &str = "warn,skynet_bus=info,skynet_intake=info,skynet_planner=info,skynet_policy=info,\
skynet_dispatcher=info,skynet_scheduler=info,skynet_executor=info,skynet_memory=info,skynet_sentinel=info,\
skynet_projector=info,skynet_api=info";

/// Flushes the exporter when dropped (the end of `main`).
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the process's subscriber: logs filtered by `SKYNET_LOG` (else
/// `default_filter`), spans of SKYNET's crates to OpenTelemetry, exported to
/// `otlp_endpoint` (`…:4318`; `/v1/traces` is appended) when given.
pub fn init(default_filter: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::try_from_env("SKYNET_LOG").unwrap_or_else(|_| default_filter.into()));
    let mut builder = SdkTracerProvider::builder();
    match otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpJson)
                .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
                .build()?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("skynet").build();
            builder = builder.with_batch_exporter(exporter).with_resource(resource);
        }
        // A context to propagate, nothing recorded: a trace is sampled only
        // when its submitter's context says so (and then exported nowhere).
        None => builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
    }
    let provider = builder.build();
    let spans =
        tracing_opentelemetry::layer().with_tracer(provider.tracer("skynet")).with_filter(EnvFilter::new(SPANS));
    tracing_subscriber::registry().with(logs).with(spans).try_init()?;
    Ok(Telemetry(Some(provider)))
}
