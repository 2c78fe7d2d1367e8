//! API configuration.

use std::net::SocketAddr;

use serde::Deserialize;

/// Settings of the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Bearer token required by every mutating endpoint (and by reads when
    /// `open_reads` is false). Never logged.
    pub token: String,
    /// Whether reads work without the token.
    pub open_reads: bool,
    /// Requests per minute per client (token, else address); over it: 429.
    pub rate_per_minute: u32,
    /// Largest request body; over it: 413.
    pub body_limit: usize,
    /// How long to wait for a service's answer over NATS; then 503.
    pub service_timeout_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: String::new(),
            open_reads: true,
            rate_per_minute: 600,
            body_limit: 1024 * 1024,
            service_timeout_ms: 5000,
        }
    }
}
