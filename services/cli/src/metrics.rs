//! The process's Prometheus exporter: installed once (the `metrics` facade's
//! global recorder), rendered by the API's `GET /metrics` and, when
//! `--metrics-listen` is set, by a scrape endpoint of its own for processes
//! without the API (`skynet run executor` on another host).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Histogram buckets, in seconds: from a fast stage (milliseconds) to a long job.
const BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The exporter of this process, installed on first use (none when another
/// recorder was installed first).
pub fn handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let built = PrometheusBuilder::new().set_buckets(BUCKETS).and_then(|b| b.install_recorder());
            match built {
                Ok(h) => {
                    // The recorder's housekeeping (a scrape drains histograms
                    // itself; upkeep bounds their memory between scrapes).
                    if let Ok(rt) = tokio::runtime::Handle::try_current() {
                        let upkeep = h.clone();
                        rt.spawn(async move {
                            let mut tick = tokio::time::interval(Duration::from_secs(5));
                            loop {
                                tick.tick().await;
                                upkeep.run_upkeep();
                            }
                        });
                    }
                    Some(h)
                }
                Err(e) => {
                    warn!(error = %e, "metrics exporter not installed");
                    None
                }
            }
        })
        .clone()
}

/// What the API's `GET /metrics` serves.
pub fn render() -> Option<skynet_api::MetricsRender> {
    let h = handle()?;
    Some(skynet_api::MetricsRender(std::sync::Arc::new(move || h.render())))
}

/// Serves `GET /metrics` on `addr` until `stop`.
pub async fn serve(addr: SocketAddr, stop: CancellationToken) -> anyhow::Result<()> {
    let Some(h) = handle() else { anyhow::bail!("no metrics exporter in this process") };
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let h = h.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], h.render()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(%addr, "metrics at /metrics");
    axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await?;
    Ok(())
}
