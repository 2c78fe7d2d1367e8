//! Each strategy triggers exactly on its conditions, and not a second before.

use chrono::{DateTime, Duration, Utc};
use skynet_contract::JobId;
use skynet_contract::initiative::{Counts, Decided, Facts, Outcome, SeenFailure, Strategy};

use super::*;
use crate::ledger::Recorded;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z").expect("time").to_utc()
}

/// An idle system with one free executor.
fn idle(secs: u64) -> Facts {
    Facts { idle_secs: secs, executors_online: 1, ..Facts::default() }
}

fn ran(strategy: Strategy, hours_ago: f64) -> Ledger {
    let mut l = Ledger::default();
    let d = Decided {
        strategy,
        outcome: Outcome::Submitted,
        reason: String::new(),
        limit: None,
        facts: Facts::default(),
        counts: Counts::default(),
        job_id: Some(JobId(uuid::Uuid::from_u128(7))),
        intent: None,
        plan: None,
        working_dir: None,
    };
    l.apply(1, now() - Duration::seconds((hours_ago * 3600.0) as i64), "e", Recorded::Decided(Box::new(d)));
    l
}

fn failure(age_secs: i64, message: &str) -> SeenFailure {
    SeenFailure {
        job_id: JobId(uuid::Uuid::from_u128(1)),
        action: "run_tests".into(),
        message: message.into(),
        at: now() - Duration::seconds(age_secs),
        working_dir: Some("/tmp".into()),
    }
}

fn triggers(strategy: Strategy, config: &Config, facts: &Facts, ledger: &Ledger) -> bool {
    matches!(evaluate(strategy, config, facts, ledger, now()), Verdict::Trigger(_))
}

#[test]
fn maintenance_needs_idle_300_s_and_24_h_since_the_last() {
    let c = Config::default();
    let m = Strategy::Maintenance;
    let none = Ledger::default();
    assert!(!triggers(m, &c, &idle(299), &none), "idle one second short");
    assert!(triggers(m, &c, &idle(300), &none), "never ran: triggers once idle");
    assert!(!triggers(m, &c, &Facts { active_jobs: 1, ..idle(10_000) }, &none), "a job is running");
    assert!(!triggers(m, &c, &Facts { executors_online: 0, ..idle(10_000) }, &none), "nothing could run it");
    assert!(!triggers(m, &c, &idle(10_000), &ran(m, 23.99)));
    assert!(triggers(m, &c, &idle(10_000), &ran(m, 24.0)));
    assert!(triggers(m, &c, &idle(10_000), &ran(Strategy::Optimization, 1.0)), "another strategy's run does not count");
    let mut off = c.clone();
    off.maintenance.enabled = false;
    assert_eq!(evaluate(m, &off, &idle(10_000), &none, now()), Verdict::Wait("disabled".into()));
    match evaluate(m, &c, &idle(40), &none, now()) {
        Verdict::Wait(why) => assert_eq!(why, "idle 40 s of 300 s"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn recovery_needs_failures_at_least_60_s_old_and_at_most_2_jobs_active() {
    let c = Config::default();
    let r = Strategy::Recovery;
    let none = Ledger::default();
    let with = |errors: Vec<SeenFailure>, active: u64| Facts { pending_errors: errors, active_jobs: active, ..idle(0) };
    assert!(!triggers(r, &c, &with(vec![], 0), &none), "no failures");
    assert!(!triggers(r, &c, &with(vec![failure(59, "x")], 0), &none), "59 s old");
    assert!(triggers(r, &c, &with(vec![failure(60, "x")], 0), &none), "60 s old");
    assert!(
        triggers(r, &c, &with(vec![failure(5, "new"), failure(61, "old")], 2), &none),
        "the oldest counts; 2 active is allowed"
    );
    assert!(!triggers(r, &c, &with(vec![failure(600, "x")], 3), &none), "3 jobs active");
    assert!(
        triggers(r, &c, &with(vec![failure(600, "x")], 0), &ran(r, 0.01)),
        "a recent recovery holds nothing back: the facts hold only failures since it (SQL)"
    );
}

#[test]
fn optimization_needs_idle_an_opportunity_and_48_h() {
    let c = Config::default();
    let o = Strategy::Optimization;
    let none = Ledger::default();
    assert!(triggers(o, &c, &idle(300), &none), "the baseline review");
    assert!(!triggers(o, &c, &idle(299), &none));
    let mut no_baseline = c.clone();
    no_baseline.optimization.baseline_opportunity = false;
    assert!(!triggers(o, &no_baseline, &idle(300), &none), "no opportunity");
    assert!(triggers(o, &no_baseline, &Facts { failure_rate_24h: 0.2, ..idle(300) }, &none));
    assert!(!triggers(o, &no_baseline, &Facts { failure_rate_24h: 0.19, ..idle(300) }, &none));
    assert!(triggers(o, &no_baseline, &Facts { success_strategies: 1, ..idle(300) }, &none));
    assert!(!triggers(o, &c, &idle(300), &ran(o, 47.99)));
    assert!(triggers(o, &c, &idle(300), &ran(o, 48.0)));
    let busy = Facts { executors_online: 2, executors_busy: 2, ..idle(0) };
    assert_eq!(opportunities(&busy, &no_baseline), ["all 2 executors busy"]);
}

#[test]
fn proposals_are_catalog_plans_and_quote_outside_text_on_one_line() {
    let c = Config::default();
    let facts = Facts {
        pending_errors: vec![
            failure(100, "boom\nInjected: line\u{0}"),
            failure(100, &"x".repeat(500)),
            failure(100, "third"),
            failure(100, "fourth, beyond max_errors"),
        ],
        ..idle(0)
    };
    let (intent, plan, dir) = proposal(Strategy::Recovery, &c, &facts, "why");
    assert!(!intent.chars().any(char::is_control), "{intent:?}");
    assert!(intent.contains("boom Injected: line"), "{intent}");
    assert!(intent.contains("third") && !intent.contains("fourth"), "at most max_errors quoted: {intent}");
    assert!(intent.len() < 1000, "quotes are capped");
    assert!(plan.steps.iter().all(|s| s.action.is_some() && s.continue_on_error));
    let listed: Vec<_> = plan.steps.iter().filter(|s| s.action.as_deref() == Some("list_directory")).collect();
    assert_eq!(listed.len(), 1, "each failed job's directory once");
    assert_eq!(dir, None);
    let (_, plan, _) = proposal(Strategy::Maintenance, &c, &idle(0), "why");
    let actions: Vec<_> = plan.steps.iter().filter_map(|s| s.action.clone()).collect();
    assert_eq!(actions, ["check_disk_space", "check_memory"]);
}
