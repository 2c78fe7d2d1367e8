//! A message that keeps failing is given up on after its deliveries — really
//! redelivered by the server, not a handler called in a loop — dead-lettered,
//! and its job ends `failed` naming the stage, instead of waiting for ever.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::Utc;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition};
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::{EventStore, Jobs, bootstrap};
use skynet_contract::JobId;
use skynet_contract::job::Stage;
use skynet_job::{Command, Status, decide};
use skynet_testkit::{NatsServer, eventually, requested};

#[tokio::test]
async fn a_message_past_its_deliveries_fails_its_job_with_the_stage_and_reason() -> anyhow::Result<()> {
    let server = NatsServer::start()?;
    let js = bootstrap(&server.connect().await?).await?;
    let store = EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
    let r = requested("t", "stuck", "check git status");
    let job = JobId::for_request("t", "stuck");
    Jobs::new(store.clone(), "intake")
        .execute(job, "open", Utc::now(), |s| decide(s, Command::Open(r.clone())))
        .await?;

    // The planner's consumer, with a handler that never manages.
    let planner = async_nats::jetstream::new(server.connect_as("planner").await?);
    let jobs = Jobs::new(EventStore::open(planner.clone()).await.map_err(|e| anyhow::anyhow!(e))?, "planner");
    let mut spec =
        ConsumerSpec::new(EVENTS_STREAM, "planner", "planner", 1).failing_jobs(jobs.clone(), Stage::Planning);
    spec.max_deliveries = 3;
    let attempts = Arc::new(AtomicUsize::new(0));
    let counter = attempts.clone();
    let handler = move |_msg| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            Disposition::Retry("the model is down".into())
        }
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let done = stop.clone();
    let run = tokio::spawn(consumer::run(planner, spec, handler, done.cancelled_owned()));

    let failed = eventually(Duration::from_secs(20), "the job failed", || async {
        let (state, _) = jobs.load(job).await.ok()?;
        (state?.status == Status::Failed).then_some(())
    })
    .await;
    stop.cancel();
    let _ = run.await;
    failed?;
    assert_eq!(attempts.load(Ordering::SeqCst), 3, "delivered three times by the server, then given up");
    let history = store.load(job).await?;
    let (_, last) = history.events.last().expect("events");
    assert_eq!(last.ty, "skynet.job.failed.v1");
    assert_eq!(last.source, "skynet/planner");
    assert_eq!(last.data["stage"], "planning");
    let reason = last.data["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("gave up") && reason.contains("the model is down"), "{reason}");
    assert_eq!(skynet_testkit::count_messages(&js, "SKYNET_DLQ", "skynet.dlq.planner").await?, 1);
    Ok(())
}
