//! API configuration.

use std::net::SocketAddr;

use serde::Deserialize;

/// Settings of the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Whether reads (jobs, history, step output, live events) work without a
    /// token holding the `read` role. Off unless set explicitly.
    pub open_reads: bool,
    /// Requests per minute per client (token, else address); over it: 429.
    pub rate_per_minute: u32,
    /// Largest request body; over it: 413.
    pub body_limit: usize,
    /// How long to wait for a service's answer over NATS; then 503.
    pub service_timeout_ms: u64,
    /// Live event streams (`GET /v1/events`) open at once; over it: 503.
    pub max_sse: usize,
    /// Events buffered per live stream; a reader that falls further behind is dropped.
    pub sse_buffer: usize,
    /// What `GET /metrics` serves: the process's Prometheus exposition, from
    /// whoever installed the exporter (`skynet up`); none: 404.
    #[serde(skip)]
    pub metrics: Option<MetricsRender>,
}

/// Renders the Prometheus text exposition of this process.
#[derive(Clone)]
pub struct MetricsRender(pub std::sync::Arc<dyn Fn() -> String + Send + Sync>);

impl std::fmt::Debug for MetricsRender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsRender")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            open_reads: false,
            rate_per_minute: 600,
            body_limit: 1024 * 1024,
            service_timeout_ms: 5000,
            max_sse: 256,
            sse_buffer: 1024,
            metrics: None,
        }
    }
}
