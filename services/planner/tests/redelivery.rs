//! The planner's handler is idempotent: the same `requested` delivery handled
//! twice records one plan.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use skynet_bus::consumer::Disposition;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::{EventStore, Jobs, bootstrap};
use skynet_contract::JobId;
use skynet_contract::job::Requested;
use skynet_job::{Command, Status, decide};
use skynet_planner::{Config, Deps, handle};
use skynet_testkit::{NatsServer, fetch_one};

#[tokio::test]
async fn handling_the_same_requested_event_twice_plans_once() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let client = server.connect().await?;
    let js = bootstrap(&client).await?;
    let jobs = Jobs::new(EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?, "planner");
    let r = Requested {
        intent: "check git status and run the tests".into(),
        working_dir: Some("/tmp".into()),
        project: None,
        requested_by: None,
        constraints: BTreeMap::new(),
        plan: None,
        request_source: "t".into(),
        request_id: "1".into(),
    };
    let job = JobId::for_request("t", "1");
    jobs.execute(job, "open", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?;

    let deps = Deps {
        js: js.clone(),
        nats: client.clone(),
        jobs: jobs.clone(),
        rules: Arc::new(skynet_rules::PolicyRules::defaults()),
    };
    let msg = fetch_one(&js, EVENTS_STREAM, "planner").await?;
    for _ in 0..2 {
        assert!(matches!(handle(&Config::default(), &deps, msg.clone()).await, Disposition::Ack));
    }
    let history = jobs.store().load(job).await?;
    let kinds: Vec<_> = history.events.iter().map(|(_, e)| e.ty.as_str()).collect();
    assert_eq!(kinds, ["skynet.job.requested.v1", "skynet.job.planned.v1"]);
    assert_eq!(jobs.load(job).await?.0.map(|j| j.status), Some(Status::Planned));
    Ok(())
}
