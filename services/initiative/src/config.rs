//! The initiative's settings: how often it looks, its limits, and each
//! strategy's trigger and plan (`config/initiative.toml`, or the operator's
//! file). Checked at load: unknown keys, unknown actions and ill-typed
//! parameters stop the service with the problem named — a plan is catalog
//! actions, never free text. Whether a step's risk is acceptable is the
//! policy's decision, not this file's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use skynet_contract::initiative::Strategy;
use skynet_contract::{PlanStep, Risk};
use skynet_rules::catalog;

/// The default settings, compiled in.
pub const DEFAULT: &str = include_str!("../../../config/initiative.toml");

/// A settings file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read initiative settings {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("initiative settings {origin} are not valid")]
    Parse {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("initiative settings {origin}: {problem}")]
    Invalid { origin: String, problem: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seconds between evaluations.
    pub interval_secs: u64,
    pub limits: Limits,
    pub maintenance: Maintenance,
    pub recovery: Recovery,
    pub optimization: Optimization,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub per_hour: u32,
    pub per_day: u32,
    pub concurrent: u32,
}

/// What every strategy proposes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    pub intent: String,
    #[serde(default)]
    pub working_dir: Option<String>,
    pub steps: Vec<Step>,
}

/// One step of a strategy's plan: a catalog action and its parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub action: String,
    pub title: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

impl Step {
    /// As a plan step. Labelled READ_ONLY (what the initiative intends); the
    /// policy classifies the action itself and takes the higher. A diagnostic
    /// step's failure is part of the report, so it never stops the others.
    pub fn plan_step(&self) -> PlanStep {
        PlanStep {
            title: self.title.clone(),
            description: String::new(),
            action: Some(self.action.clone()),
            params: self.params.clone(),
            risk: Risk::ReadOnly,
            estimated_minutes: 1,
            continue_on_error: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    pub enabled: bool,
    pub min_idle_secs: u64,
    pub interval_hours: f64,
    #[serde(flatten)]
    pub proposal: Proposal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    pub enabled: bool,
    pub max_active_jobs: u64,
    pub min_error_age_secs: u64,
    pub max_errors: usize,
    #[serde(flatten)]
    pub proposal: Proposal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Optimization {
    pub enabled: bool,
    pub min_idle_secs: u64,
    pub interval_hours: f64,
    pub baseline_opportunity: bool,
    #[serde(flatten)]
    pub proposal: Proposal,
}

impl Default for Config {
    fn default() -> Self {
        // The compiled-in file is checked by a unit test; it cannot fail.
        Config::from_toml(DEFAULT, "config/initiative.toml (built in)").unwrap_or_else(|e| panic!("{e}"))
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|source| ConfigError::Parse { origin: origin.to_owned(), source })?;
        config.validate().map_err(|problem| ConfigError::Invalid { origin: origin.to_owned(), problem })?;
        Ok(config)
    }

    /// Whether `strategy` is evaluated at all.
    pub fn enabled(&self, strategy: Strategy) -> bool {
        match strategy {
            Strategy::Maintenance => self.maintenance.enabled,
            Strategy::Recovery => self.recovery.enabled,
            Strategy::Optimization => self.optimization.enabled,
        }
    }

    pub fn proposal(&self, strategy: Strategy) -> &Proposal {
        match strategy {
            Strategy::Maintenance => &self.maintenance.proposal,
            Strategy::Recovery => &self.recovery.proposal,
            Strategy::Optimization => &self.optimization.proposal,
        }
    }

    /// The longest look back any decision needs: the daily limit, and each
    /// strategy's own interval (a last run older than that triggers anyway).
    pub fn window(&self) -> chrono::Duration {
        let hours = 24f64.max(self.maintenance.interval_hours).max(self.optimization.interval_hours);
        chrono::Duration::seconds((hours * 3600.0) as i64)
    }

    fn validate(&self) -> Result<(), String> {
        if self.interval_secs == 0 {
            return Err("interval_secs must be positive".into());
        }
        if self.limits.per_hour == 0 || self.limits.per_day < self.limits.per_hour || self.limits.concurrent == 0 {
            return Err("limits: per_hour and concurrent must be positive and per_day at least per_hour".into());
        }
        for (name, hours) in
            [("maintenance", self.maintenance.interval_hours), ("optimization", self.optimization.interval_hours)]
        {
            if !(0.0..=24.0 * 366.0).contains(&hours) {
                return Err(format!("{name}.interval_hours must be between 0 and a year"));
            }
        }
        if !(1..=10).contains(&self.recovery.max_errors) {
            return Err("recovery.max_errors must be 1..=10".into());
        }
        for strategy in Strategy::ALL {
            let p = self.proposal(strategy);
            let name = strategy.as_str();
            if p.intent.trim().is_empty() || p.intent.chars().any(char::is_control) {
                return Err(format!("{name}.intent must be one line of text"));
            }
            if p.steps.is_empty() || p.steps.len() > 20 {
                return Err(format!("{name}.steps: 1 to 20 steps"));
            }
            for (i, step) in p.steps.iter().enumerate() {
                let action = catalog::action(&step.action)
                    .ok_or_else(|| format!("{name}.steps[{i}]: {:?} is not a catalog action", step.action))?;
                catalog::check_params(action, &step.params).map_err(|e| format!("{name}.steps[{i}]: {e}"))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_file_loads() {
        let c = Config::default();
        assert_eq!((c.limits.per_hour, c.limits.per_day, c.limits.concurrent), (5, 20, 2));
        assert_eq!(c.window(), chrono::Duration::hours(48));
    }

    #[test]
    fn bad_files_are_refused_naming_the_problem() {
        let cases = [
            (DEFAULT.replace("check_memory\"", "format_everything\""), "not a catalog action"),
            (DEFAULT.replace("per_day = 20", "per_day = 2"), "per_day at least per_hour"),
            (DEFAULT.replace("interval_secs = 300", "interval_secs = 300\nfree_text = \"rm -rf /\""), "unknown field"),
            (
                DEFAULT.replace(
                    "{ action = \"check_memory\", title = \"Check memory\" },",
                    "{ action = \"git_log\", title = \"Log\", params = { limit = \"ten\" } },",
                ),
                "limit",
            ),
        ];
        for (text, want) in cases {
            let e = Config::from_toml(&text, "t").expect_err(want);
            let shown = format!("{e}: {}", std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default());
            assert!(shown.contains(want), "{shown}");
        }
    }
}
