//! The sentinel's settings: how often it looks, its limits, and its sinks.

use chrono::Duration;

use crate::sinks::Sink;

#[derive(Debug, Clone)]
pub struct Config {
    /// Time between evaluations.
    pub interval: std::time::Duration,
    /// An executor whose heartbeat is older is not online (the heartbeat
    /// bucket's own expiry).
    pub heartbeat_expiry: Duration,
    /// An executor lost this long is forgotten (its alert resolves).
    pub forget_lost_after: Duration,
    /// Jobs dispatched or scheduled this long without starting are "not starting".
    pub start_limit: Duration,
    /// A job awaiting approval this long raises a reminder (keep it below the
    /// policy's approval timeout, 300 s by default in config/policy.toml, so the
    /// reminder comes before the job is cancelled).
    pub approval_reminder: Duration,
    /// A running job with no event for this long has stalled.
    pub stall_limit: Duration,
    /// Pending messages on a durable consumer above this are a backlog.
    pub backlog_threshold: u64,
    /// Dead letters within this window keep their alert firing.
    pub dead_letter_window: Duration,
    /// Events the read models may be behind before it is an alert.
    pub projector_lag_threshold: u64,
    /// The same alert is not sent again within this time.
    pub cooldown: Duration,
    /// Where alerts go.
    pub sinks: Vec<Sink>,
    /// Attempts per notification and sink (with exponential backoff between).
    pub delivery_attempts: usize,
    /// First delay between attempts (doubling, at most 30 s).
    pub delivery_backoff: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: std::time::Duration::from_secs(2),
            heartbeat_expiry: Duration::seconds(10),
            forget_lost_after: Duration::hours(1),
            start_limit: Duration::seconds(60),
            approval_reminder: Duration::seconds(120),
            stall_limit: Duration::minutes(30),
            backlog_threshold: 1_000,
            dead_letter_window: Duration::minutes(5),
            projector_lag_threshold: 10_000,
            cooldown: Duration::seconds(300),
            sinks: Vec::new(),
            delivery_attempts: 5,
            delivery_backoff: std::time::Duration::from_millis(500),
        }
    }
}
