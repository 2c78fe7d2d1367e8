//! Intake configuration.

use serde::Deserialize;

/// Settings of the intake service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Submissions validated and appended at once.
    pub concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { concurrency: 64 }
    }
}
