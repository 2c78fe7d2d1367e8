//! The event store against a real nats-server: optimistic concurrency, replay,
//! duplicate suppression, and bootstrap.

use std::collections::BTreeMap;

use chrono::Utc;
use skynet_bus::{AppendError, EventStore, Jobs, Outcome, bootstrap};
use skynet_contract::JobId;
use skynet_contract::job::{Cancelled, JobEvent, Requested};
use skynet_job::{Command, Rejection, Status, decide};
use skynet_testkit::NatsServer;

fn requested(id: &str) -> Requested {
    Requested {
        intent: "check git status".into(),
        working_dir: None,
        project: None,
        requested_by: None,
        constraints: BTreeMap::new(),
        plan: None,
        request_source: "store-test".into(),
        request_id: id.into(),
    }
}

async fn setup() -> anyhow::Result<(NatsServer, Jobs)> {
    let server = NatsServer::start()?;
    let client = server.connect().await?;
    let js = bootstrap(&client).await?;
    // Bootstrap twice: the second run verifies instead of failing.
    bootstrap(&client).await?;
    let store = EventStore::open(js).await.map_err(|e| anyhow::anyhow!(e))?;
    // The intake opens jobs; other commands go through their owner (`as_`).
    Ok((server, Jobs::new(store, "intake")))
}

/// The repository of `service` on the same store.
fn as_(jobs: &Jobs, service: &str) -> Jobs {
    Jobs::new(jobs.store().clone(), service)
}

#[tokio::test]
async fn racing_conflicting_appends_store_exactly_one() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("race");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    let opened = jobs.envelopes(job, "open", Utc::now(), &[JobEvent::Requested(r)]);
    let seq = jobs.store().append(job, 0, &opened).await?;

    // Two writers both saw `seq` and both want to record a different event.
    let cancel = |by: &str| JobEvent::Cancelled(Cancelled { by: by.into(), reason: "race".into() });
    let a = jobs.envelopes(job, "writer-a", Utc::now(), &[cancel("a")]);
    let b = jobs.envelopes(job, "writer-b", Utc::now(), &[cancel("b")]);
    let (ra, rb) = tokio::join!(jobs.store().append(job, seq, &a), jobs.store().append(job, seq, &b));
    let results = [ra, rb];
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results.iter().filter(|r| matches!(r, Err(AppendError::Conflict { .. }))).count();
    assert_eq!((ok, conflicts), (1, 1), "exactly one append wins: {results:?}");

    let history = jobs.store().load(job).await?;
    assert_eq!(history.events.len(), 2, "requested + one cancellation");
    Ok(())
}

#[tokio::test]
async fn expected_zero_means_the_job_must_not_exist() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("zero");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    let first = jobs.envelopes(job, "c1", Utc::now(), &[JobEvent::Requested(r.clone())]);
    jobs.store().append(job, 0, &first).await?;
    // A different event id (different cause), so dedupe cannot hide the check.
    let second = jobs.envelopes(job, "c2", Utc::now(), &[JobEvent::Requested(r)]);
    let err = jobs.store().append(job, 0, &second).await.expect_err("job exists");
    assert!(err.is_conflict(), "{err}");
    Ok(())
}

#[tokio::test]
async fn republishing_the_same_event_id_stores_it_once() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("dup");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    let env = jobs.envelopes(job, "same-cause", Utc::now(), &[JobEvent::Requested(r)]);
    let s1 = jobs.store().append(job, 0, &env).await?;
    // A retry after a lost ack: same id, the expectation it had before.
    let s2 = jobs.store().append(job, 0, &env).await?;
    assert_eq!(s1, s2, "the duplicate is acknowledged with the original sequence");
    assert_eq!(jobs.store().load(job).await?.events.len(), 1);
    Ok(())
}

/// What the store hands out of a job's messages is the log's, byte for byte:
/// from what it holds after its own append, and after a retry whose event was
/// already stored with another time (the log's copy is the truth, not ours).
#[tokio::test]
async fn the_messages_held_are_the_logs_even_after_a_retried_append() -> anyhow::Result<()> {
    let (server, jobs) = setup().await?;
    let client = server.connect().await?;
    let logged = |job: JobId| {
        let client = client.clone();
        async move {
            let all = skynet_bus::read::read_all(&client, "SKYNET_EVENTS", &format!("skynet.job.{job}.>"), 1)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            anyhow::Ok(all.into_iter().map(|m| (m.seq, m.payload)).collect::<Vec<_>>())
        }
    };
    let held = |v: Vec<skynet_bus::read::Stored>| v.into_iter().map(|m| (m.seq, m.payload)).collect::<Vec<_>>();
    let r = requested("retried");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    let earlier = Utc::now() - chrono::Duration::seconds(60);
    let first = jobs.envelopes(job, "cause", earlier, &[JobEvent::Requested(r.clone())]);
    let again = jobs.envelopes(job, "cause", Utc::now(), &[JobEvent::Requested(r)]);
    assert_eq!(first[0].id, again[0].id, "a retry carries the same event id");
    let stored = jobs.store().append_checked(job, 0, &first).await?;
    assert!(stored.fresh);
    let cancel = jobs.envelopes(
        job,
        "cancel",
        Utc::now(),
        &[JobEvent::Cancelled(Cancelled { by: "tester".into(), reason: "test".into() })],
    );
    let last = jobs.store().append(job, stored.seq, &cancel).await?;
    assert_eq!(held(jobs.store().messages_through(job, last, "test").await?), logged(job).await?);

    let retried = jobs.store().append_checked(job, 0, &again).await;
    // Refused (the job has events) or answered as a duplicate: either way not ours.
    if let Ok(r) = retried {
        assert_eq!((r.seq, r.fresh), (stored.seq, false));
    }
    assert_eq!(held(jobs.store().messages_through(job, last, "test").await?), logged(job).await?);
    assert_eq!(held(jobs.store().messages_through(job, stored.seq, "test").await?), logged(job).await?[..1]);
    Ok(())
}

#[tokio::test]
async fn execute_replays_decides_and_reports_rejections() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("exec");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    let open = jobs.execute(job, "m1", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?;
    assert!(matches!(open, Outcome::Appended { .. }));
    let again = jobs.execute(job, "m2", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?;
    assert_eq!(again, Outcome::Rejected(Rejection::AlreadyExists));

    // Many concurrent writers on one job: every one succeeds after retries, none is lost.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let jobs = jobs.clone();
        tasks.push(tokio::spawn(async move {
            let out = skynet_contract::job::StepOutput {
                step: 0,
                stream: skynet_contract::job::OutputStream::Stdout,
                seq: i,
                chunk: format!("chunk {i}"),
            };
            // Output is only legal while running, so this is refused by the job, not the store.
            jobs.execute(job, &format!("w{i}"), Utc::now(), |s| decide(s, Command::RecordOutput(out.clone()))).await
        }));
    }
    for t in tasks {
        assert!(matches!(t.await??, Outcome::Rejected(Rejection::Illegal(_))));
    }

    let (state, last) = jobs.load(job).await?;
    let state = state.expect("job exists");
    assert_eq!(state.status, Status::Requested);
    assert!(last > 0);
    Ok(())
}

/// A clustered stream lets any replica answer a read, and one behind the
/// leader returns a job's history without the newest events. A service must
/// never take that for the job's state: the event it handles is not in it.
/// Here the "event being handled" is past the job's end (another job's), as a
/// lagging replica would make it look: the read is refused, not acted on.
#[tokio::test]
async fn a_history_that_stops_before_the_event_handled_is_never_taken_for_the_state() -> anyhow::Result<()> {
    let (server, jobs) = setup().await?;
    let (a, b) = (requested("behind-a"), requested("behind-b"));
    let (job_a, job_b) =
        (JobId::for_request(&a.request_source, &a.request_id), JobId::for_request(&b.request_source, &b.request_id));
    jobs.execute(job_a, "a", Utc::now(), |s| decide(s, Command::Open(a.clone()))).await?;
    jobs.execute(job_b, "b", Utc::now(), |s| decide(s, Command::Open(b.clone()))).await?;
    // Another process (nothing cached, nothing held), as a consumer is.
    let js = async_nats::jetstream::new(server.connect().await?);
    let policy = Jobs::new(EventStore::open(js).await.map_err(|e| anyhow::anyhow!(e))?, "policy");
    let (_, at_a) = policy.load(job_a).await?;
    let (_, at_b) = policy.load(job_b).await?;
    assert!(at_b > at_a, "b was stored after a");

    let (state, seq) = policy.load_at(job_a, at_a).await?;
    assert_eq!((state.map(|j| j.status), seq), (Some(Status::Requested), at_a), "a read that reaches the event");
    let err = policy.load_at(job_a, at_b).await.expect_err("a read that stops short is refused");
    assert!(
        matches!(err, skynet_bus::ExecuteError::Behind { handling, read, .. } if handling == at_b && read == at_a),
        "{err}"
    );
    assert!(err.to_string().contains("before the event being handled"), "{err}");
    Ok(())
}

#[tokio::test]
async fn concurrent_commands_on_one_job_all_land_through_conflict_retries() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("approvals");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    jobs.execute(job, "open", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?;
    // Cancel and fail-planning race: exactly one can apply; the other is refused
    // on the state it finds after reloading, never lost in a conflict.
    let (policy, planner) = (as_(&jobs, "policy"), as_(&jobs, "planner"));
    let (a, b) = tokio::join!(
        policy.execute(job, "cancel", Utc::now(), |s| {
            decide(s, Command::Cancel { by: "a".into(), reason: "r".into() })
        }),
        planner.execute(job, "fail", Utc::now(), |s| { decide(s, Command::FailPlanning { reason: "x".into() }) }),
    );
    let outcomes = [a?, b?];
    let appended = outcomes.iter().filter(|o| matches!(o, Outcome::Appended { .. })).count();
    assert_eq!(appended, 1, "{outcomes:?}");
    assert!(outcomes.iter().any(|o| matches!(o, Outcome::Rejected(Rejection::AlreadyFinished(_)))));
    assert_eq!(jobs.store().load(job).await?.events.len(), 2);
    Ok(())
}

#[tokio::test]
async fn replay_pages_through_long_histories_in_order() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("long");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    // Another job's events interleaved must not leak into this job's replay.
    let other = JobId::for_request("store-test", "other");
    let open = jobs.envelopes(job, "open", Utc::now(), &[JobEvent::Requested(r)]);
    let mut seq = jobs.store().append(job, 0, &open).await?;
    let mut other_seq = 0;
    for i in 0..1100u32 {
        let out = JobEvent::StepOutput(skynet_contract::job::StepOutput {
            step: 0,
            stream: skynet_contract::job::OutputStream::Stdout,
            seq: i,
            chunk: format!("line {i}"),
        });
        seq = jobs
            .store()
            .append(job, seq, &jobs.envelopes(job, &format!("o{i}"), Utc::now(), std::slice::from_ref(&out)))
            .await?;
        if i % 100 == 0 {
            other_seq = jobs
                .store()
                .append(other, other_seq, &jobs.envelopes(other, &format!("x{i}"), Utc::now(), &[out]))
                .await?;
        }
    }
    let history = jobs.store().load(job).await?;
    assert_eq!(history.events.len(), 1101);
    assert_eq!(history.last_seq, seq);
    assert!(history.events.windows(2).all(|w| w[0].0 < w[1].0), "in stream order");
    let chunks: Vec<_> = history.events[1..].iter().map(|(_, e)| e.data["seq"].as_u64().unwrap_or(u64::MAX)).collect();
    assert_eq!(chunks, (0..1100).collect::<Vec<u64>>());
    assert_eq!(jobs.store().load(other).await?.events.len(), 11);
    Ok(())
}

// Forging a raw publish is the point of this helper.
#[allow(clippy::disallowed_methods)]
/// Publishes raw bytes into a job's log, as only a broken or hostile writer
/// with publish rights on the subject could (here: the admin role).
async fn forge(server: &NatsServer, subject: String, payload: &[u8]) -> anyhow::Result<()> {
    let admin = server.connect().await?;
    let js = async_nats::jetstream::new(admin);
    js.publish(subject, payload.to_vec().into()).await?.await?;
    Ok(())
}

#[tokio::test]
async fn an_undecodable_event_is_skipped_and_fails_the_job_with_the_reason() -> anyhow::Result<()> {
    let (server, jobs) = setup().await?;
    let r = requested("garbage");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    jobs.execute(job, "open", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?;
    forge(&server, format!("skynet.job.{job}.planned"), b"\x00 not a CloudEvent").await?;

    // The job still loads (the garbage is reported, not folded)...
    let replayed = jobs.replay(job).await?;
    assert_eq!(replayed.state.as_ref().map(|j| j.status), Some(Status::Requested));
    assert_eq!(replayed.skipped.len(), 1, "{:?}", replayed.skipped);
    // ...and the next service to touch it ends it instead of planning it.
    let planner = as_(&jobs, "planner");
    let plan = Command::FailPlanning { reason: "irrelevant".into() };
    let out = planner.execute(job, "m", Utc::now(), |s| decide(s, plan.clone())).await?;
    assert_eq!(out, Outcome::Rejected(Rejection::AlreadyFinished(Status::Failed)));
    let (state, _) = jobs.load(job).await?;
    assert_eq!(state.map(|j| j.status), Some(Status::Failed));
    let history = jobs.store().load(job).await?;
    let (_, last) = history.events.last().expect("events");
    assert_eq!(last.ty, "skynet.job.failed.v1");
    assert_eq!(last.source, "skynet/planner");
    assert_eq!(last.data["stage"], "integrity");
    let reason = last.data["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("sequence 2") && reason.contains("CloudEvent"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn an_event_under_the_wrong_source_is_never_folded() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("forged");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    jobs.execute(job, "open", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?;
    // A `planned` written by the executor (allowed by no honest permission set).
    let plan = skynet_contract::Plan { summary: "forged".into(), steps: vec![], artifacts: vec![] };
    let planned = JobEvent::Planned(skynet_contract::job::Planned {
        plan,
        planner: "x".into(),
        fallback_reason: None,
        memories: vec![],
        warnings: vec![],
    });
    let executor = as_(&jobs, "executor");
    let (_, seq) = jobs.load(job).await?;
    executor.store().append(job, seq, &executor.envelopes(job, "forged", Utc::now(), &[planned])).await?;

    let replayed = jobs.replay(job).await?;
    assert_eq!(replayed.state.as_ref().map(|j| j.status), Some(Status::Requested), "not folded");
    assert!(replayed.skipped[0].1.contains("skynet/planner"), "{:?}", replayed.skipped);
    // The intake may not fail jobs, so it decides on what it could fold...
    let again = jobs.execute(job, "m2", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?;
    assert_eq!(again, Outcome::Rejected(Rejection::AlreadyExists));
    // ...and the policy service, which may, ends the job.
    let cancel = Command::Cancel { by: "x".into(), reason: "y".into() };
    let out = as_(&jobs, "policy").execute(job, "m3", Utc::now(), |s| decide(s, cancel.clone())).await?;
    assert_eq!(out, Outcome::Rejected(Rejection::AlreadyFinished(Status::Failed)));
    Ok(())
}

#[tokio::test]
async fn a_consumer_ahead_of_this_processs_own_append_waits_for_it_instead_of_reading_the_log() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("ahead");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    let Outcome::Appended { seq, state, .. } =
        jobs.execute(job, "open", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?
    else {
        anyhow::bail!("not opened")
    };
    // Another stage of this process is appending the event at `seq + 1`: the
    // server may hand it to the next consumer before that stage has its ack.
    let policy = as_(&jobs, "policy");
    let appending = jobs.store().cache().appending(job);
    let ahead = tokio::spawn({
        let policy = as_(&policy, "policy");
        async move { policy.load_at(job, seq + 1).await }
    });
    // One turn of this single-threaded runtime: the consumer runs until its
    // first await, which is the wait (it checks what is held without any).
    tokio::task::yield_now().await;
    assert!(!ahead.is_finished(), "the consumer waits");
    // What the appending stage computed — marked, so only the cache can
    // have given it: the log holds no event past `seq`, and a read of it
    // would find the job behind the event handled and fail.
    let mut computed = *state;
    computed.request.intent = "as the appending stage computed it".into();
    jobs.store().cache().put(job, &computed, seq + 1);
    drop(appending);
    let (got, at) = ahead.await??;
    assert_eq!(at, seq + 1);
    assert_eq!(got.map(|j| j.request.intent), Some("as the appending stage computed it".to_owned()));

    // With nothing in flight, a miss reads the log at once (and here finds it behind).
    let err = policy.load_at(job, seq + 2).await.expect_err("nothing holds seq + 2");
    assert!(err.to_string().contains("behind") || format!("{err:?}").contains("Behind"), "{err}");
    Ok(())
}

#[tokio::test]
async fn a_reader_of_a_whole_history_ahead_of_this_processs_own_append_waits_for_it() -> anyhow::Result<()> {
    let (_server, jobs) = setup().await?;
    let r = requested("history-ahead");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    let Outcome::Appended { seq, .. } =
        jobs.execute(job, "open", Utc::now(), |s| decide(s, Command::Open(r.clone()))).await?
    else {
        anyhow::bail!("not opened")
    };
    // The memory service is handed the job's last event (at `seq + 1`)
    // while the stage appending it still waits for its acknowledgement.
    let appending = jobs.store().cache().appending(job);
    let mut reader = tokio::spawn({
        let store = jobs.store().clone();
        async move { store.messages_through(job, seq + 1, "test").await }
    });
    // Without the wait the reader reads the log at once (a few milliseconds
    // here) and finds the job short of the event it was handed.
    let waited = tokio::time::timeout(std::time::Duration::from_millis(300), &mut reader).await;
    assert!(waited.is_err(), "the reader waits for the append in flight: {waited:?}");
    let cancel = jobs.envelopes(
        job,
        "cancel",
        Utc::now(),
        &[JobEvent::Cancelled(Cancelled { by: "tester".into(), reason: "test".into() })],
    );
    let last = jobs.store().append(job, seq, &cancel).await?;
    assert_eq!(last, seq + 1);
    drop(appending);
    // Woken by the append's end, not by the wait's 1 s bound (which would
    // then read the log, and find the same events).
    let held = tokio::time::timeout(std::time::Duration::from_millis(500), reader)
        .await
        .map_err(|_| anyhow::anyhow!("the reader was not woken when the append ended"))???;
    assert_eq!(held.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![seq, seq + 1], "the whole chain, as appended");
    Ok(())
}

#[tokio::test]
async fn opening_a_job_assumed_new_is_safe_when_it_already_exists() -> anyhow::Result<()> {
    // What the intake does: open without reading the log first.
    let (_server, jobs) = setup().await?;
    let r = requested("assumed-new");
    let job = JobId::for_request(&r.request_source, &r.request_id);
    let open = |cause: &'static str| {
        let r = r.clone();
        let jobs = as_(&jobs, "intake");
        async move {
            jobs.execute_from(job, Some((None, 0)), cause, Utc::now(), |s| decide(s, Command::Open(r.clone()))).await
        }
    };
    assert!(matches!(open("submission-1").await?, Outcome::Appended { fresh: true, .. }));
    // The same submission again: the log holds it already, nothing new is stored.
    assert!(matches!(open("submission-1").await?, Outcome::Appended { fresh: false, .. }));
    // Another submission of the same job: refused on what the log says.
    assert_eq!(open("submission-2").await?, Outcome::Rejected(Rejection::AlreadyExists));
    assert_eq!(jobs.store().load(job).await?.events.len(), 1, "one requested event");
    Ok(())
}
