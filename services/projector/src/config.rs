//! Projector configuration.

use serde::Deserialize;

/// Settings of the projector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Most events written in one transaction.
    pub max_batch: usize,
    /// Stop at the first batch boundary at or after this sequence: the read
    /// models as of a point in the log (and a deterministic stop for tests).
    pub until: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_batch: 5000, until: None }
    }
}
