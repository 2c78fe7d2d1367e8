//! The policy rules file: loading, validation, and the checks built on it.
//!
//! The predecessor declared a rules.yaml and never loaded it (§2.2); here the file
//! is the policy. Its shape is [`PolicyRules`]; unknown keys are errors, so a typo
//! cannot silently disable a rule.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use skynet_contract::Risk;

use crate::sandbox;

/// The default rules, compiled in from `config/policy.toml`.
pub const DEFAULT_RULES: &str = include_str!("../../../config/policy.toml");

/// A rules file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("cannot read policy rules file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("policy rules {origin} are not valid TOML for the rules schema")]
    Parse {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("policy rules {origin}: {problem}")]
    Invalid { origin: String, problem: String },
}

/// Approval settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// READ_ONLY plans are approved without a person.
    pub auto_approve_read_only: bool,
    /// Phrase an approver of an ADMIN job must type.
    pub confirmation_phrase: String,
    /// Distinct approvers an ADMIN job needs.
    pub admin_approvers: u8,
    /// Seconds before an unanswered approval cancels the job.
    pub timeout_secs: u64,
    /// Whether the principal who requested a WRITE or ADMIN job may approve it.
    #[serde(default)]
    pub allow_self_approval: bool,
}

/// Risk classification.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskRules {
    /// Risk of actions not in `actions`.
    pub unknown_action: Risk,
    /// Actions that are never allowed.
    pub blocked: Vec<String>,
    /// Action → risk.
    pub actions: BTreeMap<String, Risk>,
}

/// Where steps may run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    pub allowed_roots: Vec<String>,
    pub denied_paths: Vec<String>,
}

/// A task-rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub per_minute: u32,
    pub per_hour: u32,
}

/// Rate limits: a default and per-requester overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    pub per_minute: u32,
    pub per_hour: u32,
    #[serde(default)]
    pub requesters: BTreeMap<String, Limit>,
}

/// What jobs the initiative service submits (CloudEvent `source`
/// `skynet/initiative`, which only it may use) may do. An initiative job never
/// waits for a person: one that would need approval is denied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitiativeRules {
    /// The highest risk an initiative job may have (default READ_ONLY).
    #[serde(default = "read_only")]
    pub max_risk: Risk,
    /// If not empty, the only actions an initiative job may use.
    #[serde(default)]
    pub actions: Vec<String>,
}

fn read_only() -> Risk {
    Risk::ReadOnly
}

impl Default for InitiativeRules {
    fn default() -> Self {
        InitiativeRules { max_risk: Risk::ReadOnly, actions: Vec::new() }
    }
}

/// The whole rules file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRules {
    pub approval: Approval,
    pub risk: RiskRules,
    pub sandbox: Sandbox,
    pub rate_limits: RateLimits,
    /// Commands allow-listed per project directory (tests, lint, build,
    /// install); without an entry they are detected from the project's files.
    #[serde(default)]
    pub projects: Vec<crate::project::ProjectCommands>,
    /// What the initiative service's jobs may do.
    #[serde(default)]
    pub initiative: InitiativeRules,
}

/// The answer of a single-action check (the predecessor's `/v1/policy/check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionCheck {
    pub allowed: bool,
    pub reason: String,
    pub requires_approval: bool,
    /// `low`, `med` or `high`.
    pub risk_level: &'static str,
}

impl PolicyRules {
    /// The compiled-in defaults.
    pub fn defaults() -> PolicyRules {
        // The default file is checked by a unit test; it cannot fail to parse.
        Self::from_toml(DEFAULT_RULES, "config/policy.toml (built in)").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Loads and validates `path`.
    pub fn load(path: &Path) -> Result<PolicyRules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read { path: path.into(), source })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates rules text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<PolicyRules, RulesError> {
        let rules: PolicyRules =
            toml::from_str(text).map_err(|source| RulesError::Parse { origin: origin.to_owned(), source })?;
        rules.validate().map_err(|problem| RulesError::Invalid { origin: origin.to_owned(), problem })?;
        Ok(rules)
    }

    fn validate(&self) -> Result<(), String> {
        if self.approval.confirmation_phrase.trim().is_empty() {
            return Err("approval.confirmation_phrase must not be empty".into());
        }
        if !(1..=5).contains(&self.approval.admin_approvers) {
            return Err(format!("approval.admin_approvers must be 1..=5, not {}", self.approval.admin_approvers));
        }
        if self.approval.timeout_secs == 0 {
            return Err("approval.timeout_secs must be positive".into());
        }
        if self.risk.unknown_action == Risk::ReadOnly {
            return Err("risk.unknown_action must not be READ_ONLY: unknown actions would run unapproved".into());
        }
        for name in self.risk.blocked.iter().chain(self.risk.actions.keys()) {
            if name.is_empty() || name.chars().any(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')) {
                return Err(format!("action name {name:?} must be lower-case letters, digits and '_'"));
            }
        }
        if let Some(both) = self.risk.blocked.iter().find(|b| self.risk.actions.contains_key(*b)) {
            return Err(format!("action {both:?} is both blocked and in risk.actions"));
        }
        if let Some((name, _)) = self.risk.actions.iter().find(|(_, r)| **r == Risk::Blocked) {
            return Err(format!("risk.actions.{name} = BLOCKED: list it in risk.blocked instead"));
        }
        if self.initiative.max_risk == Risk::Blocked {
            return Err("initiative.max_risk must be READ_ONLY, WRITE or ADMIN".into());
        }
        if let Some(bad) = self.initiative.actions.iter().find(|a| crate::catalog::action(a).is_none()) {
            return Err(format!("initiative.actions: {bad:?} is not a catalog action"));
        }
        if self.sandbox.allowed_roots.is_empty() {
            return Err("sandbox.allowed_roots must name at least one directory".into());
        }
        let limits =
            std::iter::once(Limit { per_minute: self.rate_limits.per_minute, per_hour: self.rate_limits.per_hour })
                .chain(self.rate_limits.requesters.values().copied());
        for l in limits {
            if l.per_minute == 0 || l.per_hour < l.per_minute {
                return Err(format!("rate limit {l:?}: per_minute must be > 0 and per_hour >= per_minute"));
            }
        }
        Ok(())
    }

    /// Risk of an action, case-insensitively (the predecessor's lookup was
    /// case-sensitive, so `GIT_STATUS` came out ADMIN, §2.6).
    pub fn classify(&self, action: &str) -> Risk {
        let name = action.trim().to_ascii_lowercase();
        if self.risk.blocked.contains(&name) {
            Risk::Blocked
        } else {
            self.risk.actions.get(&name).copied().unwrap_or(self.risk.unknown_action)
        }
    }

    /// Whether a plan of this risk waits for a person.
    pub fn requires_approval(&self, risk: Risk) -> bool {
        match risk {
            Risk::ReadOnly => !self.approval.auto_approve_read_only,
            Risk::Write | Risk::Admin | Risk::Blocked => true,
        }
    }

    /// Distinct approvers a plan of this risk needs.
    pub fn approvals_required(&self, risk: Risk) -> u8 {
        if risk >= Risk::Admin { self.approval.admin_approvers } else { 1 }
    }

    /// The predecessor's single-action check (§2.6), case-insensitive: an action
    /// containing a blocked name is blocked; otherwise it is classified and mapped
    /// to `low`/`med`/`high`.
    pub fn check_action(&self, action: &str) -> ActionCheck {
        let lower = action.trim().to_ascii_lowercase();
        if self.risk.blocked.iter().any(|b| lower.contains(b.as_str())) {
            return ActionCheck {
                allowed: false,
                reason: format!("Action '{action}' is blocked by policy"),
                requires_approval: false,
                risk_level: "high",
            };
        }
        let risk = self.classify(&lower);
        ActionCheck {
            allowed: true,
            reason: format!("Action classified as {}", risk.as_str()),
            requires_approval: self.requires_approval(risk),
            risk_level: match risk {
                Risk::ReadOnly => "low",
                Risk::Write => "med",
                Risk::Admin | Risk::Blocked => "high",
            },
        }
    }

    /// The limit that applies to `requester` (case-sensitive name).
    pub fn rate_limit(&self, requester: &str) -> Limit {
        self.rate_limits
            .requesters
            .get(requester)
            .copied()
            .unwrap_or(Limit { per_minute: self.rate_limits.per_minute, per_hour: self.rate_limits.per_hour })
    }

    /// The sandbox as it resolves now: one snapshot per decision (see
    /// [`sandbox::Bounds`]).
    pub fn sandbox_now(&self) -> sandbox::Bounds {
        sandbox::Bounds::now(&self.sandbox.allowed_roots, &self.sandbox.denied_paths)
    }

    /// Denies `paths` whatever the roots say (SKYNET's own data and tools).
    pub fn deny(&mut self, paths: impl IntoIterator<Item = PathBuf>) {
        for p in paths {
            let p = std::fs::canonicalize(&p).unwrap_or(p).display().to_string();
            if !self.sandbox.denied_paths.contains(&p) {
                self.sandbox.denied_paths.push(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_load_and_hold_the_predecessors_table() {
        let r = PolicyRules::defaults();
        let table = [
            ("git_status", Risk::ReadOnly),
            ("run_tests", Risk::ReadOnly),
            ("file_write", Risk::Write),
            ("build_project", Risk::Write),
            ("git_push", Risk::Admin),
            ("docker_compose_up", Risk::Admin),
            ("deploy_prod", Risk::Admin), // unknown → ADMIN
            ("shell_exec", Risk::Blocked),
            ("GIT_STATUS", Risk::ReadOnly), // case-insensitive now
        ];
        for (action, want) in table {
            assert_eq!(r.classify(action), want, "{action}");
        }
        assert_eq!(r.approval.confirmation_phrase, "execute");
        assert_eq!(r.rate_limit("admin"), Limit { per_minute: 10, per_hour: 100 });
        assert_eq!(r.rate_limit("alice"), Limit { per_minute: 120, per_hour: 1000 });
    }

    #[test]
    fn single_action_check_matches_the_predecessor_but_ignores_case() {
        let r = PolicyRules::defaults();
        let c = |a| {
            let x = r.check_action(a);
            (x.allowed, x.risk_level, x.requires_approval)
        };
        assert_eq!(c("git_status"), (true, "low", false));
        assert_eq!(c("file_write"), (true, "med", true));
        assert_eq!(c("deploy_prod"), (true, "high", true));
        assert_eq!(c("GIT_STATUS"), (true, "low", false));
        assert_eq!(c("run_shell_exec_now"), (false, "high", false));
        assert_eq!(r.check_action("Shell_Exec").reason, "Action 'Shell_Exec' is blocked by policy");
    }

    #[test]
    fn bad_files_are_refused_with_the_problem_named() {
        let good = DEFAULT_RULES;
        let cases = [
            (good.replace("admin_approvers = 1", "admin_approvers = 0"), "admin_approvers"),
            (good.replace("confirmation_phrase = \"execute\"", "confirmation_phrase = \" \""), "confirmation_phrase"),
            (good.replace("unknown_action = \"ADMIN\"", "unknown_action = \"READ_ONLY\""), "unknown_action"),
            (good.replace("git_status = \"READ_ONLY\"", "git_status = \"SOMETIMES\""), "not valid TOML"),
            (good.replace("[sandbox]", "[sandbox]\nallowed_rootz = []"), "not valid TOML"),
            (good.replace("per_minute = 120", "per_minute = 0"), "rate limit"),
            (good.replace("git_push = \"ADMIN\"", "shell_exec = \"ADMIN\""), "both blocked"),
        ];
        for (text, want) in cases {
            let err = PolicyRules::from_toml(&text, "test.toml").expect_err(want);
            let msg = format!("{err}");
            assert!(msg.contains(want) && msg.contains("test.toml"), "{msg}");
        }
        assert!(matches!(PolicyRules::load(Path::new("/nonexistent/rules.toml")), Err(RulesError::Read { .. })));
    }
}
