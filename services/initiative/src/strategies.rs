//! The strategies: when each triggers, and what it proposes. Pure — the
//! facts, the ledger and the clock are arguments — so every trigger is tested
//! exactly on its conditions.
//!
//! The predecessor's triggers (maintenance: idle ≥ 300 s and 24 h since the
//! last; recovery: failures waiting, ≤ 2 jobs active, one at least 60 s old;
//! optimisation: idle, an opportunity, 48 h since the last), each configurable.
//! Nothing is proposed while no executor is online: the job could not run.

use chrono::{DateTime, Utc};
use skynet_contract::Plan;
use skynet_contract::initiative::{Facts, Strategy};

use crate::config::Config;
use crate::ledger::Ledger;

/// What an evaluation of one strategy concludes.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Its conditions hold: propose, with why.
    Trigger(String),
    /// They do not, with what is missing.
    Wait(String),
}

/// The fraction of failed runs at or above which failures are an opportunity.
const HIGH_FAILURE_RATE: f64 = 0.2;
/// The longest failure message quoted in an intent.
const QUOTE: usize = 160;

/// Whether `strategy` triggers now.
pub fn evaluate(strategy: Strategy, config: &Config, facts: &Facts, ledger: &Ledger, now: DateTime<Utc>) -> Verdict {
    if !config.enabled(strategy) {
        return Verdict::Wait("disabled".into());
    }
    if facts.executors_online == 0 {
        return Verdict::Wait("no executor online: a job could not run".into());
    }
    let since = ledger.hours_since(strategy, now);
    let due = |interval: f64| match since {
        None => Ok(format!("no {} in the last {} h", strategy.as_str(), config.window().num_hours())),
        Some(h) if h >= interval => Ok(format!("{h:.1} h since the last {}", strategy.as_str())),
        Some(h) => Err(format!("{h:.1} h of {interval} h since the last {}", strategy.as_str())),
    };
    let idle = |min: u64| {
        if facts.active_jobs > 0 {
            Err(format!("{} job(s) running", facts.active_jobs))
        } else if facts.idle_secs < min {
            Err(format!("idle {} s of {min} s", facts.idle_secs))
        } else {
            Ok(format!("idle {} s", facts.idle_secs))
        }
    };
    let verdict = match strategy {
        Strategy::Maintenance => idle(config.maintenance.min_idle_secs)
            .and_then(|i| due(config.maintenance.interval_hours).map(|d| format!("{i}, {d}"))),
        Strategy::Recovery => {
            let r = &config.recovery;
            let oldest = facts.pending_errors.iter().map(|e| (now - e.at).num_seconds()).max();
            match oldest {
                None => Err("no failures waiting".to_owned()),
                Some(_) if facts.active_jobs > r.max_active_jobs => {
                    Err(format!("{} jobs running, more than {}", facts.active_jobs, r.max_active_jobs))
                }
                Some(age) if age < i64::try_from(r.min_error_age_secs).unwrap_or(i64::MAX) => {
                    Err(format!("the oldest failure is {age} s old, younger than {} s", r.min_error_age_secs))
                }
                Some(age) => Ok(format!("{} failure(s) waiting, the oldest {age} s old", facts.pending_errors.len())),
            }
        }
        Strategy::Optimization => {
            let found = opportunities(facts, config);
            idle(config.optimization.min_idle_secs).and_then(|i| {
                if found.is_empty() {
                    Err("no opportunity".to_owned())
                } else {
                    due(config.optimization.interval_hours).map(|d| format!("{i}, {d}; {}", found.join("; ")))
                }
            })
        }
    };
    match verdict {
        Ok(why) => Verdict::Trigger(why),
        Err(why) => Verdict::Wait(why),
    }
}

/// What an optimisation review could look at.
pub fn opportunities(facts: &Facts, config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if facts.failure_rate_24h >= HIGH_FAILURE_RATE {
        out.push(format!("high failure rate: {:.0} % of the last 24 h's runs", facts.failure_rate_24h * 100.0));
    }
    if facts.executors_online > 0 && facts.executors_busy == facts.executors_online {
        out.push(format!("all {} executors busy", facts.executors_online));
    }
    if facts.success_strategies > 0 {
        out.push(format!("{} reusable success strategies in memory", facts.success_strategies));
    }
    if out.is_empty() && config.optimization.baseline_opportunity {
        out.push("periodic optimisation review".into());
    }
    out
}

/// What `strategy` proposes: the intent, the plan (the configured catalog
/// actions; recovery adds a listing of each failed job's directory) and the
/// working directory.
pub fn proposal(strategy: Strategy, config: &Config, facts: &Facts, why: &str) -> (String, Plan, Option<String>) {
    let p = config.proposal(strategy);
    let mut intent = format!("{} [initiative {}: {}]", p.intent, strategy.as_str(), quote(why));
    let mut steps: Vec<_> = p.steps.iter().map(crate::config::Step::plan_step).collect();
    if strategy == Strategy::Recovery {
        let errors = facts.pending_errors.iter().take(config.recovery.max_errors);
        let quoted: Vec<String> =
            errors.clone().map(|e| format!("{}: {}", quote(&e.action), quote(&e.message))).collect();
        intent.push_str(&format!(" Failures: {}", quoted.join("; ")));
        let mut dirs: Vec<&str> = errors.filter_map(|e| e.working_dir.as_deref()).collect();
        dirs.sort_unstable();
        dirs.dedup();
        for dir in dirs {
            let step = crate::config::Step {
                action: "list_directory".into(),
                title: format!("List {}", quote(dir)),
                params: [("directory".to_owned(), serde_json::Value::from(dir))].into(),
            };
            steps.push(step.plan_step());
        }
    }
    let plan = Plan { summary: format!("initiative {}: {}", strategy.as_str(), quote(why)), steps, artifacts: vec![] };
    (intent, plan, p.working_dir.clone())
}

/// Outside text (failure messages come from executors' output) as one line,
/// capped: control characters blanked.
fn quote(s: &str) -> String {
    let mut out: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(QUOTE).collect();
    if s.chars().count() > QUOTE {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
