//! Policy service configuration. The rules themselves are in the rules file
//! (`config/policy.toml`), passed in as [`crate::Deps::rules`].

use serde::Deserialize;

/// Settings of the policy service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Planned jobs classified at once.
    pub concurrency: usize,
    /// How often approval deadlines are checked.
    pub sweep_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config { concurrency: 32, sweep_interval_ms: 1000 }
    }
}
