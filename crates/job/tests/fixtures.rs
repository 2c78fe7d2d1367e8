//! Shared fixtures: a canonical history that reaches every status, and a sample
#![allow(dead_code)] // shared between test binaries; each uses part of it
//! event of every kind.

use std::collections::BTreeMap;

use skynet_contract::job::*;
use skynet_contract::{ExecSpec, ExecStep, Plan, PlanStep, Risk};
use skynet_job::{Job, Status, replay};

pub fn requested() -> Requested {
    Requested {
        intent: "check git status".into(),
        working_dir: Some("/tmp".into()),
        project: None,
        requested_by: Some("alice".into()),
        constraints: BTreeMap::new(),
        plan: None,
        request_source: "test".into(),
        request_id: "1".into(),
    }
}

pub fn plan(risk: Risk) -> Plan {
    Plan {
        summary: "s".into(),
        steps: vec![PlanStep {
            title: "Check git status".into(),
            description: String::new(),
            action: Some("git_status".into()),
            params: BTreeMap::new(),
            risk,
            estimated_minutes: 1,
            continue_on_error: false,
        }],
        artifacts: vec![],
    }
}

pub fn policy(risk: Risk, allowed: bool, approval: bool, approvals: u8) -> PolicyDecided {
    PolicyDecided {
        allowed,
        risk,
        step_risks: vec![risk],
        requires_approval: approval,
        approvals_required: approvals,
        auto_approved: !approval,
        reasons: vec![],
        blocked_steps: vec![],
        approval_timeout_secs: Some(300),
    }
}

pub fn spec() -> ExecSpec {
    ExecSpec {
        steps: vec![ExecStep {
            index: 0,
            action: "git_status".into(),
            params: BTreeMap::new(),
            timeout_secs: 30,
            risk: Risk::ReadOnly,
            continue_on_error: false,
            description: String::new(),
        }],
        working_dir: "/tmp".into(),
        total_timeout_secs: 1800,
        approved_risk: Risk::Write,
    }
}

/// A history that leaves the job in `status`.
pub fn history(status: Status) -> Vec<JobEvent> {
    use JobEvent as E;
    let mut h = vec![E::Requested(requested())];
    let path: &[Status] = &[
        Status::Planned,
        Status::AwaitingApproval,
        Status::Approved,
        Status::Dispatched,
        Status::Scheduled,
        Status::Running,
        Status::Cancelling,
    ];
    let push = |h: &mut Vec<JobEvent>, s: Status| match s {
        Status::Planned => h.push(E::Planned(Planned {
            plan: plan(Risk::Write),
            planner: "rules".into(),
            fallback_reason: None,
            memories: vec![],
            warnings: vec![],
        })),
        Status::AwaitingApproval => h.push(E::PolicyDecided(policy(Risk::Write, true, true, 1))),
        Status::Approved => h.push(E::Approved(Approved { approver: "bob".into(), comment: None })),
        Status::Dispatched => h.push(E::Dispatched(Dispatched { spec: spec() })),
        Status::Scheduled => h.push(E::Scheduled(Scheduled { provider: "mock".into(), scores: vec![] })),
        Status::Running => h.push(E::Started(Started { executor: "x1".into(), lease: 1 })),
        Status::Cancelling => h.push(E::CancelRequested(CancelRequested { by: "a".into(), reason: "r".into() })),
        _ => {}
    };
    match status {
        Status::Requested => {}
        Status::Succeeded => {
            for s in &path[..6] {
                push(&mut h, *s);
            }
            h.push(E::StepStarted(StepStarted { step: 0, executor: "x1".into(), lease: 1 }));
            h.push(E::StepSucceeded(StepSucceeded {
                step: 0,
                exit_code: 0,
                duration_ms: 1,
                output_ref: None,
                stdout: None,
                stderr: None,
                lease: 1,
            }));
            h.push(E::Succeeded(Succeeded { tolerated_failures: vec![], provider: None, duration_ms: 1 }));
        }
        Status::Failed => h.push(E::PlanningFailed(PlanningFailed { reason: "x".into() })),
        Status::Denied => {
            push(&mut h, Status::Planned);
            h.push(E::PolicyDecided(policy(Risk::Blocked, false, false, 0)));
        }
        Status::Cancelled => h.push(E::Cancelled(Cancelled { by: "a".into(), reason: "r".into() })),
        Status::TimedOut => {
            for s in &path[..6] {
                push(&mut h, *s);
            }
            h.push(E::TimedOut(TimedOut { scope: TimeoutScope::Job, step: None, limit_secs: 1, provider: None }));
        }
        target => {
            for s in path {
                push(&mut h, *s);
                if *s == target {
                    break;
                }
            }
        }
    }
    h
}

pub fn job_in(status: Status) -> Job {
    let job = replay(&history(status)).expect("history replays").expect("job exists");
    assert_eq!(job.status, status, "fixture history for {status:?}");
    job
}

/// A sample event of `kind`, with a lease matching the fixture's executor.
pub fn sample(kind: JobEventKind) -> JobEvent {
    use JobEvent as E;
    use JobEventKind as K;
    match kind {
        K::Requested => E::Requested(requested()),
        K::Planned => E::Planned(Planned {
            plan: plan(Risk::ReadOnly),
            planner: "rules".into(),
            fallback_reason: None,
            memories: vec![],
            warnings: vec![],
        }),
        K::PlanningFailed => E::PlanningFailed(PlanningFailed { reason: "no".into() }),
        K::PolicyDecided => E::PolicyDecided(policy(Risk::ReadOnly, true, false, 0)),
        K::Approved => E::Approved(Approved { approver: "carol".into(), comment: None }),
        K::Denied => E::Denied(Denied { by: "carol".into(), reason: "no".into() }),
        K::Dispatched => E::Dispatched(Dispatched { spec: spec() }),
        K::Scheduled => E::Scheduled(Scheduled { provider: "mock".into(), scores: vec![] }),
        K::Started => E::Started(Started { executor: "x2".into(), lease: 2 }),
        K::StepStarted => E::StepStarted(StepStarted { step: 0, executor: "x1".into(), lease: 1 }),
        K::StepOutput => {
            E::StepOutput(StepOutput { step: 0, stream: OutputStream::Stdout, seq: 0, chunk: "hi".into() })
        }
        K::StepSucceeded => E::StepSucceeded(StepSucceeded {
            step: 0,
            exit_code: 0,
            duration_ms: 1,
            output_ref: None,
            stdout: None,
            stderr: None,
            lease: 1,
        }),
        K::StepFailed => E::StepFailed(StepFailed {
            step: 0,
            exit_code: Some(1),
            error: "x".into(),
            duration_ms: 1,
            continue_on_error: false,
            output_ref: None,
            stdout: None,
            stderr: None,
            lease: 1,
        }),
        K::ArtifactStored => E::ArtifactStored(ArtifactStored {
            name: "out.txt".into(),
            bucket: "b".into(),
            key: "k".into(),
            size_bytes: 1,
            content_type: "text/plain".into(),
            sha256: "00".into(),
            lease: 1,
        }),
        K::Succeeded => E::Succeeded(Succeeded { tolerated_failures: vec![], provider: None, duration_ms: 1 }),
        K::Failed => E::Failed(Failed { stage: Stage::Execution, reason: "x".into(), step: None, provider: None }),
        K::CancelRequested => E::CancelRequested(CancelRequested { by: "a".into(), reason: "r".into() }),
        K::Cancelled => E::Cancelled(Cancelled { by: "a".into(), reason: "r".into() }),
        K::TimedOut => E::TimedOut(TimedOut { scope: TimeoutScope::Job, step: None, limit_secs: 1, provider: None }),
    }
}
