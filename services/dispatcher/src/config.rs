//! Dispatcher configuration.

use serde::Deserialize;

/// Settings of the dispatcher.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Jobs dispatched at once.
    pub concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { concurrency: 32 }
    }
}
