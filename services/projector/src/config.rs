//! Projector configuration.

use serde::Deserialize;

/// Settings of the projector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Most events written in one transaction.
    pub max_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { max_batch: 5000 }
    }
}
