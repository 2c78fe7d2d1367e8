//! CLI output against golden files (`tests/golden/*.txt`). Regenerate with
//! `SKYNET_BLESS=1 cargo test -p skynet-cli --test golden` and review the diff.

use chrono::{DateTime, Utc};
use serde_json::json;
use skynet_cli::render::{self, Style};
use skynet_contract::Envelope;

const JOB: &str = "0f3c8a1e-5b7d-5c2a-9e11-2f6b8d4c7a90";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

fn ev(kind: &str, time: &str, data: serde_json::Value) -> Envelope {
    Envelope {
        id: format!("e-{kind}"),
        source: "skynet/test".into(),
        ty: format!("skynet.job.{kind}.v1"),
        subject: Some(JOB.into()),
        time: at(time),
        data,
        traceparent: None,
    }
}

fn timeline() -> Vec<Envelope> {
    vec![
        ev(
            "requested",
            "2026-11-21T10:00:00Z",
            json!({"intent": "check git status and run the tests", "requested_by": "alice", "request_source": "cli", "request_id": "1"}),
        ),
        ev(
            "planned",
            "2026-11-21T10:00:00.010Z",
            json!({"planner": "rules", "plan": {"summary": "s", "steps": [{"action": "git_status"}, {"action": "run_tests"}]},
                "warnings": ["3 runs of `run_tests` in /srv/app failed with \"exit code #\" (last 2026-11-20 09:00 UTC): failure pattern fp-1"]}),
        ),
        ev(
            "policy_decided",
            "2026-11-21T10:00:00.020Z",
            json!({"allowed": true, "risk": "READ_ONLY", "requires_approval": false, "approvals_required": 0}),
        ),
        ev("dispatched", "2026-11-21T10:00:00.030Z", json!({"spec": {"steps": [{}, {}], "working_dir": "/srv/app"}})),
        ev("scheduled", "2026-11-21T10:00:00.040Z", json!({"provider": "local"})),
        ev("started", "2026-11-21T10:00:00.050Z", json!({"executor": "exec-a", "lease": 1})),
        ev("step_started", "2026-11-21T10:00:00.060Z", json!({"step": 0})),
        ev(
            "step_output",
            "2026-11-21T10:00:00.070Z",
            json!({"step": 0, "stream": "stdout", "seq": 0, "chunk": "On branch main\nnothing to commit\n"}),
        ),
        ev("step_succeeded", "2026-11-21T10:00:00.080Z", json!({"step": 0, "exit_code": 0, "duration_ms": 20})),
        ev("step_started", "2026-11-21T10:00:00.090Z", json!({"step": 1})),
        ev("step_failed", "2026-11-21T10:00:01Z", json!({"step": 1, "error": "exit code 1"})),
        ev("failed", "2026-11-21T10:00:01.010Z", json!({"stage": "execution", "reason": "step 1 failed"})),
    ]
}

fn check(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("SKYNET_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(expected == actual, "{name} differs from its golden file:\n--- expected\n{expected}\n--- actual\n{actual}");
}

#[test]
fn event_lines() {
    let plain = Style { color: false };
    let text: String = timeline().iter().map(|e| render::event_line(e, plain) + "\n").collect();
    check("watch.txt", &text);
    // Colors only when asked for.
    assert!(!text.contains('\u{1b}'));
    assert!(render::event_line(&timeline()[11], Style { color: true }).contains("\u{1b}[31m"));
}

#[test]
fn jobs_table() {
    let rows = vec![
        json!({"id": JOB, "status": "succeeded", "risk": "READ_ONLY", "requested_by": "alice", "created_at": "2026-11-21T10:00:00+00:00", "intent": "check git status"}),
        json!({"id": "7d2f0b3a-0000-5000-8000-000000000001", "status": "awaiting_approval", "risk": "ADMIN", "requested_by": "bob", "created_at": "2026-11-21T09:59:00+00:00", "intent": "deploy to production, then check the logs of every service we run in the cluster please"}),
    ];
    check("jobs.txt", &render::jobs_table(&rows, Style { color: false }));
    assert_eq!(render::jobs_table(&[], Style { color: false }), "no jobs\n");
}

#[test]
fn job_detail() {
    let detail = json!({
        "job": {"id": JOB, "status": "failed", "intent": "check git status and run the tests", "requested_by": "alice", "risk": "READ_ONLY", "provider": "local", "executor": "exec-a", "error": "step 1 failed"},
        "steps": [
            {"idx": 0, "action": "git_status", "status": "succeeded", "title": "Check git status"},
            {"idx": 1, "action": "run_tests", "status": "failed", "title": "Run the tests", "error": "exit code 1"}
        ]
    });
    check("job.txt", &render::job_detail(&detail, &timeline(), Style { color: false }));
}

#[test]
fn initiative_status() {
    let status: skynet_contract::initiative::InitiativeStatus = serde_json::from_value(json!({
        "paused": true,
        "switched": ["2026-11-21T09:00:00Z", {"by": "ops", "reason": "release freeze"}],
        "counts": {"last_hour": 1, "last_day": 3, "running": 0, "per_hour": 5, "per_day": 20, "concurrent": 2},
        "strategies": [
            {"strategy": "maintenance", "enabled": true, "last_submitted": "2026-11-21T08:00:00Z",
             "last_decision": ["2026-11-21T08:00:00Z", "submitted", "idle 312 s, no maintenance in the last 48 h"],
             "now": "paused; would trigger: idle 4000 s, 2.0 h since the last maintenance"},
            {"strategy": "recovery", "enabled": true,
             "last_decision": ["2026-11-21T07:00:00Z", "limited", "2 failure(s) waiting, the oldest 90 s old"],
             "now": "waits: no failures waiting"},
            {"strategy": "optimization", "enabled": false, "now": "waits: disabled"}
        ],
        "facts": {"active_jobs": 0, "pending_jobs": 1, "idle_secs": 4000, "failure_rate_24h": 0.25,
                  "executors_online": 2, "executors_busy": 0, "success_strategies": 0},
        "interval_secs": 300
    }))
    .expect("a status");
    let text = skynet_cli::commands::initiative::render(&status, Style { color: false });
    check("initiative.txt", &text);
    assert!(!text.contains('\u{1b}'));
}
