//! The planner's handler is idempotent: the same `requested` delivery handled
//! twice records one plan.

use std::sync::Arc;

use skynet_bus::consumer::Disposition;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::JobId;
use skynet_job::{Command, Status};
use skynet_planner::{Config, Deps, handle};
use skynet_testkit::{Log, fetch_one, requested};

#[tokio::test]
async fn handling_the_same_requested_event_twice_plans_once() -> anyhow::Result<()> {
    let Log { client, js, jobs, admin, server: _server } = Log::start("planner").await?;
    let r = requested("t", "1", "check git status and run the tests");
    let job = JobId::for_request("t", "1");
    skynet_testkit::record(&admin, job, "open", Command::Open(r.clone())).await?;

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

#[tokio::test]
async fn a_memory_service_that_never_answers_costs_the_plan_its_budget_not_the_plan() -> anyhow::Result<()> {
    let Log { client, js, jobs, admin, server } = Log::start("planner").await?;
    // Someone takes the memory questions and never answers.
    let silent = server.connect().await?;
    let mut asked = silent.subscribe(skynet_contract::memory::SIMILAR_SUBJECT).await?;
    let r = requested("t", "2", "run the tests");
    let job = JobId::for_request("t", "2");
    skynet_testkit::record(&admin, job, "open", Command::Open(r)).await?;
    let deps = Deps {
        js: js.clone(),
        nats: client,
        jobs: jobs.clone(),
        rules: Arc::new(skynet_rules::PolicyRules::defaults()),
    };
    let msg = fetch_one(&js, EVENTS_STREAM, "planner").await?;
    let config = Config { memory_timeout_ms: 250, ..Config::default() };
    let planning = tokio::spawn(async move { handle(&config, &deps, msg).await });
    // The question was asked (with the job's directory) ...
    let q = futures::StreamExt::next(&mut asked).await.expect("the planner asked memory");
    let q: skynet_contract::memory::SimilarQuery = serde_json::from_slice(&q.payload)?;
    assert_eq!((q.intent.as_str(), q.working_dir.as_deref()), ("run the tests", Some("/tmp")));
    // ... and, unanswered, the job is planned anyway, with no memory in the event.
    assert!(matches!(planning.await?, Disposition::Ack));
    let history = jobs.store().load(job).await?;
    let planned = history.events.iter().find(|(_, e)| e.ty == "skynet.job.planned.v1").expect("planned");
    assert!(
        planned.1.data.get("memories").is_none() && planned.1.data.get("warnings").is_none(),
        "{:?}",
        planned.1.data
    );
    Ok(())
}
