//! The dispatcher's handler is idempotent: the same delivery handled twice
//! records one spec.

use std::collections::BTreeMap;
use std::sync::Arc;

use skynet_bus::consumer::Disposition;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::job::Planned;
use skynet_contract::{JobId, Plan, PlanStep, Risk};
use skynet_dispatcher::{Deps, handle};
use skynet_job::{Command, Status};
use skynet_testkit::{Log, auto_approved, fetch_one, requested};

#[tokio::test]
async fn handling_the_same_approval_twice_dispatches_once() -> anyhow::Result<()> {
    let Log { js, jobs, admin, server: _server, .. } = Log::start("dispatcher").await?;
    let job = JobId::for_request("t", "1");
    let r = requested("t", "1", "check git status");
    let plan = Plan {
        summary: "s".into(),
        steps: vec![PlanStep {
            title: "Check git status".into(),
            description: String::new(),
            action: None,
            params: BTreeMap::new(),
            risk: Risk::ReadOnly,
            estimated_minutes: 1,
            continue_on_error: false,
        }],
        artifacts: vec![],
    };
    let decision = auto_approved(1);
    let commands = [
        Command::Open(r),
        Command::RecordPlan(Planned {
            plan,
            planner: "rules".into(),
            fallback_reason: None,
            memories: vec![],
            warnings: vec![],
        }),
        Command::DecidePolicy(decision),
    ];
    for (i, c) in commands.iter().enumerate() {
        skynet_testkit::record(&admin, job, &i.to_string(), c.clone()).await?;
    }
    let deps = Deps {
        js: js.clone(),
        jobs: jobs.clone(),
        rules: Arc::new(skynet_rules::PolicyRules::defaults()),
        pause: skynet_bus::pause::PauseWatch::never(),
    };
    let msg = fetch_one(&js, EVENTS_STREAM, "dispatcher").await?;
    for _ in 0..2 {
        assert!(matches!(handle(&deps, msg.clone()).await, Disposition::Ack));
    }
    let (state, _) = jobs.load(job).await?;
    let state = state.expect("job");
    assert_eq!(state.status, Status::Dispatched);
    assert_eq!(state.version, 4, "requested, planned, policy_decided, dispatched: once");
    assert_eq!(state.spec.map(|s| s.steps[0].action.clone()).as_deref(), Some("git_status"));
    Ok(())
}
