//! Logs and traces of this process. Logs go to stderr (`SKYNET_LOG` filters
//! them). When `OTEL_EXPORTER_OTLP_ENDPOINT` is set, SKYNET's spans also
//! become OpenTelemetry spans, exported over OTLP/HTTP (JSON), each handling
//! span a child of its event's trace context; otherwise nothing is recorded or
//! leaves the process, and events still carry their job's trace context (see
//! `skynet_bus::trace`).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The spans that become OpenTelemetry spans: SKYNET's own.
const SPANS: &str = "warn,skynet_bus=info,skynet_intake=info,skynet_planner=info,skynet_policy=info,\
skynet_dispatcher=info,skynet_scheduler=info,skynet_executor=info,skynet_memory=info,skynet_sentinel=info,skynet_initiative=info,\
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
    let Some(endpoint) = otlp_endpoint else {
        // No export: no span becomes an OpenTelemetry span (work per span for
        // nothing); events still carry their job's trace
        // context (see `skynet_bus::trace`).
        tracing_subscriber::registry().with(logs).try_init()?;
        return Ok(Telemetry(None));
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()?;
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("skynet").build();
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
    let spans =
        tracing_opentelemetry::layer().with_tracer(provider.tracer("skynet")).with_filter(EnvFilter::new(SPANS));
    tracing_subscriber::registry().with(logs).with(spans).try_init()?;
    Ok(Telemetry(Some(provider)))
}
