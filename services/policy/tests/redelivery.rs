//! The policy's handler is idempotent: the same `planned` delivery handled
//! twice records one decision and one deadline.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use skynet_bus::EventStore;
use skynet_bus::consumer::Disposition;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::job::Planned;
use skynet_contract::{JobId, Plan, PlanStep, Risk};
use skynet_job::{Command, Status};
use skynet_policy::deadlines::sweep;
use skynet_policy::{Deps, handle_planned};
use skynet_testkit::{Log, fetch_one, requested};

async fn planned_job(admin: &EventStore, id: &str, action: &str, risk: Risk) -> anyhow::Result<JobId> {
    let r = requested("t", id, "x");
    let job = JobId::for_request("t", id);
    let plan = Plan {
        summary: "s".into(),
        steps: vec![PlanStep {
            title: "step".into(),
            description: String::new(),
            action: Some(action.into()),
            params: BTreeMap::new(),
            risk,
            estimated_minutes: 1,
            continue_on_error: false,
        }],
        artifacts: vec![],
    };
    skynet_testkit::record(admin, job, "open", Command::Open(r.clone())).await?;
    let planned = Planned { plan, planner: "rules".into(), fallback_reason: None, memories: vec![], warnings: vec![] };
    skynet_testkit::record(admin, job, "plan", Command::RecordPlan(planned.clone())).await?;
    Ok(job)
}

#[tokio::test]
async fn handling_the_same_planned_event_twice_decides_once() -> anyhow::Result<()> {
    let Log { client, js, jobs, admin, server: _server } = Log::start("policy").await?;
    let deadlines = skynet_policy::deadlines::open(&js).await.map_err(|e| anyhow::anyhow!(e))?;
    let deps = Deps {
        js: js.clone(),
        nats: client.clone(),
        jobs: jobs.clone(),
        rules: Arc::new(skynet_rules::PolicyRules::defaults()),
    };
    let job = planned_job(&admin, "1", "build_project", Risk::Write).await?;

    let msg = fetch_one(&js, EVENTS_STREAM, "policy").await?;
    for _ in 0..2 {
        assert!(matches!(handle_planned(&deps, &deadlines, msg.clone()).await, Disposition::Ack));
    }
    let kinds: Vec<_> = jobs.store().load(job).await?.events.iter().map(|(_, e)| e.ty.clone()).collect();
    assert_eq!(kinds, ["skynet.job.requested.v1", "skynet.job.planned.v1", "skynet.job.policy_decided.v1"]);
    assert_eq!(jobs.load(job).await?.0.map(|j| j.status), Some(Status::AwaitingApproval));
    let deadline = deadlines.get(job).await.map_err(|e| anyhow::anyhow!(e))?.expect("deadline stored");
    assert!(deadline > Utc::now() + chrono::Duration::seconds(290), "default timeout 300 s: {deadline}");

    // The sweeper, run at a time past the deadline, cancels it — once.
    let later = deadline + chrono::Duration::seconds(1);
    assert_eq!(sweep(&deadlines, &jobs, later).await.map_err(|e| anyhow::anyhow!(e))?, 1);
    assert_eq!(sweep(&deadlines, &jobs, later).await.map_err(|e| anyhow::anyhow!(e))?, 0);
    assert_eq!(jobs.load(job).await?.0.map(|j| j.status), Some(Status::Cancelled));
    assert!(deadlines.get(job).await.map_err(|e| anyhow::anyhow!(e))?.is_none(), "deadline cleared");
    Ok(())
}

#[tokio::test]
async fn the_sweeper_leaves_jobs_that_were_answered_in_time() -> anyhow::Result<()> {
    let Log { client, js, jobs, admin, server: _server } = Log::start("policy").await?;
    let deadlines = skynet_policy::deadlines::open(&js).await.map_err(|e| anyhow::anyhow!(e))?;
    let deps = Deps {
        js: js.clone(),
        nats: client.clone(),
        jobs: jobs.clone(),
        rules: Arc::new(skynet_rules::PolicyRules::defaults()),
    };
    let job = planned_job(&admin, "2", "build_project", Risk::Write).await?;
    handle_planned(&deps, &deadlines, fetch_one(&js, EVENTS_STREAM, "policy").await?).await;
    let approve = Command::Approve {
        approver: "bob".into(),
        comment: None,
        confirmation: None,
        phrase_required: None,
        self_approval: false,
    };
    skynet_testkit::record(&admin, job, "approve", approve.clone()).await?;
    let later = Utc::now() + chrono::Duration::hours(1);
    assert_eq!(sweep(&deadlines, &jobs, later).await.map_err(|e| anyhow::anyhow!(e))?, 0);
    assert_eq!(jobs.load(job).await?.0.map(|j| j.status), Some(Status::Approved));
    assert!(deadlines.get(job).await.map_err(|e| anyhow::anyhow!(e))?.is_none(), "stale deadline cleared");
    Ok(())
}
