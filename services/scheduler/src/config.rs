//! Scheduler configuration.

use serde::Deserialize;

/// Weights of the score's parts (the predecessor's §8.4 by default).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub health: f64,
    pub load: f64,
    pub capability: f64,
    pub success: f64,
    pub latency: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { health: 0.30, load: 0.25, capability: 0.25, success: 0.15, latency: 0.05 }
    }
}

/// Settings of the scheduler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub weights: Weights,
    /// Deliveries of a job to wait for any executor to come online before
    /// failing it (with backoff, about two minutes in all).
    pub no_executor_attempts: i64,
    /// Finished jobs older than this do not count towards success and latency.
    pub stats_window_hours: i64,
    pub concurrency: usize,
    /// The watchdog: a scheduled job must start within this long...
    pub start_within_secs: u64,
    /// ...and end within its own total timeout plus this grace after that.
    pub watchdog_grace_secs: u64,
    /// How often the watchdog's deadlines are swept.
    pub watchdog_every_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            weights: Weights::default(),
            no_executor_attempts: 9,
            stats_window_hours: 24,
            concurrency: 32,
            start_within_secs: 600,
            watchdog_grace_secs: 60,
            watchdog_every_ms: 30_000,
        }
    }
}
