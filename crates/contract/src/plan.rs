//! Plans and execution specs: what the planner proposes and what the dispatcher
//! hands to the executors.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Risk class of an action, step or plan. Ordered: `ReadOnly < Write < Admin <
/// Blocked`, so the risk of a plan is the maximum over its steps.
///
/// On the wire the predecessor's upper-case names are used. Parsing is
/// case-insensitive (the predecessor treated `read_only` as WRITE, §19.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum Risk {
    #[serde(rename = "READ_ONLY", alias = "read_only")]
    ReadOnly,
    #[serde(rename = "WRITE", alias = "write")]
    Write,
    #[serde(rename = "ADMIN", alias = "admin")]
    Admin,
    #[serde(rename = "BLOCKED", alias = "blocked")]
    Blocked,
}

impl Risk {
    /// The wire name (`READ_ONLY`, `WRITE`, `ADMIN`, `BLOCKED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::ReadOnly => "READ_ONLY",
            Risk::Write => "WRITE",
            Risk::Admin => "ADMIN",
            Risk::Blocked => "BLOCKED",
        }
    }

    /// Case-insensitive parse; `None` for anything that is not one of the four.
    pub fn parse(s: &str) -> Option<Risk> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "READ_ONLY" | "READONLY" => Some(Risk::ReadOnly),
            "WRITE" => Some(Risk::Write),
            "ADMIN" => Some(Risk::Admin),
            "BLOCKED" => Some(Risk::Blocked),
            _ => None,
        }
    }
}

/// One step of a plan, as the planner proposed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// Short imperative title ("Run the tests").
    pub title: String,
    /// What the step does and why.
    #[serde(default)]
    pub description: String,
    /// The catalog action, when the planner knows it. An explicit action wins over
    /// the dispatcher's keyword mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Action parameters, when known.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, serde_json::Value>,
    /// The planner's risk estimate; the policy service decides the real one.
    pub risk: Risk,
    /// The planner's estimate of the step's duration.
    #[serde(default = "default_minutes")]
    pub estimated_minutes: u32,
    /// A failure of this step does not fail the job.
    #[serde(default)]
    pub continue_on_error: bool,
}

fn default_minutes() -> u32 {
    5
}

/// A plan: what the planner proposes for one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// One-line summary of the plan.
    pub summary: String,
    /// Steps, in execution order.
    pub steps: Vec<PlanStep>,
    /// Files the plan expects the job to produce (paths relative to the working dir).
    #[serde(default)]
    pub artifacts: Vec<String>,
}

impl Plan {
    /// The highest risk over all steps; an empty plan is `ReadOnly`.
    pub fn max_risk(&self) -> Risk {
        self.steps.iter().map(|s| s.risk).max().unwrap_or(Risk::ReadOnly)
    }

    /// Sum of the steps' estimates (the predecessor discarded the model's own total).
    pub fn total_estimated_minutes(&self) -> u32 {
        self.steps.iter().map(|s| s.estimated_minutes).sum()
    }
}

/// The parameter of an [`ExecStep`] holding the argv of a project's own task
/// (tests, lint, build, install), resolved by the dispatcher from the policy's
/// allow-list or the project's files. A plan can never set it.
pub const PROJECT_COMMAND: &str = "project_command";

/// One executable step: a catalog action with its parameters and limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecStep {
    /// Position in the plan (0-based).
    pub index: u32,
    /// The catalog action to run.
    pub action: String,
    /// The action's parameters.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// The step's own time limit in seconds.
    pub timeout_secs: u64,
    /// The risk the policy assigned to this step's action.
    pub risk: Risk,
    /// A failure of this step does not fail the job.
    #[serde(default)]
    pub continue_on_error: bool,
    /// Human description, from the plan step.
    #[serde(default)]
    pub description: String,
}

/// What the dispatcher hands to the scheduler and the executors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecSpec {
    /// Steps in order.
    pub steps: Vec<ExecStep>,
    /// Working directory every step runs in (already checked against the sandbox).
    pub working_dir: String,
    /// The whole job's time limit in seconds.
    pub total_timeout_secs: u64,
    /// The risk that was approved; no step may exceed it.
    pub approved_risk: Risk,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_parses_case_insensitively_and_orders() {
        assert_eq!(Risk::parse("read_only"), Some(Risk::ReadOnly));
        assert_eq!(Risk::parse(" Admin "), Some(Risk::Admin));
        assert_eq!(Risk::parse("LOW"), None);
        assert!(Risk::ReadOnly < Risk::Write && Risk::Write < Risk::Admin && Risk::Admin < Risk::Blocked);
        let r: Risk = serde_json::from_str("\"read_only\"").expect("alias");
        assert_eq!(r, Risk::ReadOnly);
        assert_eq!(serde_json::to_string(&Risk::ReadOnly).expect("ser"), "\"READ_ONLY\"");
    }
}
