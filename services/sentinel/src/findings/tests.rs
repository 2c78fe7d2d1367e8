use chrono::Duration;
use skynet_contract::executor::ProviderStatus;

use super::*;

fn executor(id: &str, seen: DateTime<Utc>, goodbye: bool, running: u32) -> ExecutorSeen {
    let provider = ProviderStatus {
        health: Health::Healthy,
        message: String::new(),
        capabilities: vec!["*".into()],
        latency_ms: 0,
    };
    ExecutorSeen {
        status: ExecutorStatus {
            id: id.into(),
            providers: [("local".to_owned(), provider)].into(),
            capacity: 2,
            running,
            started_at: seen,
            heartbeat_at: seen,
            version: String::new(),
        },
        last_seen: seen,
        goodbye,
    }
}

fn kinds(f: &[Finding]) -> Vec<(AlertKind, &str, Severity)> {
    f.iter().map(|f| (f.kind, f.subject.as_str(), f.severity)).collect()
}

#[test]
fn every_executor_gone_is_one_critical_alert_and_waiting_jobs_one_more() {
    let now = Utc::now();
    let facts = Facts {
        executors_known: true,
        executors: vec![
            executor("e1", now - Duration::seconds(30), false, 0),
            executor("e2", now - Duration::seconds(40), false, 0),
        ],
        jobs: Some(JobFacts { not_starting: 7, ..Default::default() }),
        ..Default::default()
    };
    let (f, observed) = findings(&facts, &Config::default(), now);
    assert_eq!(
        kinds(&f),
        [
            (AlertKind::ExecutorsNone, "all", Severity::Critical),
            (AlertKind::JobsNotStarting, "all", Severity::Critical)
        ]
    );
    assert!(f[0].summary.contains("e1 30 s ago"), "{}", f[0].summary);
    assert!(f[1].summary.starts_with("7 jobs not started") && f[1].summary.contains("no executor is online"));
    assert!(!observed.contains(&AlertKind::ExecutorLost), "what fired of single executors is not over");
}

#[test]
fn a_lost_executor_among_live_ones_is_a_warning_and_a_clean_stop_is_nothing() {
    let now = Utc::now();
    let facts = Facts {
        executors_known: true,
        executors: vec![
            executor("live", now, false, 0),
            executor("lost", now - Duration::seconds(11), false, 0),
            executor("stopped", now - Duration::seconds(60), true, 0),
        ],
        ..Default::default()
    };
    let (f, _) = findings(&facts, &Config::default(), now);
    assert_eq!(kinds(&f), [(AlertKind::ExecutorLost, "lost", Severity::Warning)]);
    assert_eq!(f[0].labels.get("executor").map(String::as_str), Some("lost"));
}

#[test]
fn full_executors_and_unhealthy_providers_are_findings() {
    let now = Utc::now();
    let mut sick = executor("e1", now, false, 2);
    let p = sick.status.providers.get_mut("local").map(|p| {
        p.health = Health::Unhealthy;
        p.message = "disk full\nrm -rf".into();
    });
    assert!(p.is_some());
    let facts = Facts { executors_known: true, executors: vec![sick], ..Default::default() };
    let (f, _) = findings(&facts, &Config::default(), now);
    assert_eq!(
        kinds(&f),
        [
            (AlertKind::ProviderUnhealthy, "e1/local", Severity::Warning),
            (AlertKind::CapacityExhausted, "all", Severity::Warning)
        ]
    );
    assert!(!f[0].summary.contains('\n'), "outside text stays one line: {}", f[0].summary);
}

#[test]
fn checks_that_could_not_run_are_not_observed() {
    let now = Utc::now();
    let facts = Facts {
        dependencies: vec![("postgres".into(), Some("connection refused".into())), ("nats".into(), None)],
        ..Default::default()
    };
    let (f, observed) = findings(&facts, &Config::default(), now);
    assert_eq!(kinds(&f), [(AlertKind::DependencyDown, "postgres", Severity::Critical)]);
    assert_eq!(observed, [AlertKind::DependencyDown].into());
    // NATS down: the object stores went unchecked, so no dependency alert resolves.
    let facts = Facts { dependencies: vec![("nats".into(), Some("refused".into()))], ..Default::default() };
    let (f, observed) = findings(&facts, &Config::default(), now);
    assert_eq!(kinds(&f), [(AlertKind::DependencyDown, "nats", Severity::Critical)]);
    assert!(observed.is_empty(), "{observed:?}");
}

#[test]
fn approvals_stalls_backlogs_lag_and_dead_letters_grouped_by_origin() {
    let now = Utc::now();
    let waiting =
        |id: &str, intent: &str| JobWaiting { id: id.into(), intent: intent.into(), since: now - Duration::minutes(3) };
    let letter = |origin: &str, code: &str| DeadLetterSeen {
        origin: origin.into(),
        code: code.into(),
        reason: "bad".into(),
        at: now,
    };
    let facts = Facts {
        jobs: Some(JobFacts {
            awaiting_approval: vec![waiting("0123456789abcdef", "deploy \u{1b}[31mprod")],
            stalled: vec![waiting("fedcba9876543210", "build")],
            ..Default::default()
        }),
        consumers: Some(vec![("planner".into(), 5_000), ("policy".into(), 3)]),
        dead_letters: Some(vec![
            letter("planner", "undecodable"),
            letter("planner", "gave_up"),
            letter("policy", "bad_data"),
        ]),
        projector_lag: Some(20_000),
        ..Default::default()
    };
    let (f, _) = findings(&facts, &Config::default(), now);
    assert_eq!(
        kinds(&f),
        [
            (AlertKind::ApprovalWaiting, "0123456789abcdef", Severity::Info),
            (AlertKind::JobStalled, "fedcba9876543210", Severity::Warning),
            (AlertKind::QueueBacklog, "planner", Severity::Warning),
            (AlertKind::DeadLetters, "planner", Severity::Warning),
            (AlertKind::DeadLetters, "policy", Severity::Warning),
            (AlertKind::ProjectorLag, "read_models", Severity::Warning),
        ]
    );
    let reminder = &f[0].summary;
    assert!(reminder.contains("(skynet approve 0123456789abcdef): \"deploy  [31mprod\""), "{reminder}");
    assert!(!reminder.contains('\u{1b}'), "{reminder}");
    assert!(f[3].summary.starts_with("2 dead letters from planner"), "{}", f[3].summary);
}
