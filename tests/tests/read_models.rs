//! The Postgres read models: built incrementally while a mixed workload runs,
//! then dropped and rebuilt from the log — row for row the same; and a
//! projector stopped between batches and restarted gives the same rows too.

use std::time::Duration;

use serde_json::json;
use skynet_system_tests::System;
use skynet_testkit::{NatsServer, TestDb, eventually};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const TABLES: &[(&str, &str)] = &[
    ("jobs", "id"),
    ("steps", "job_id, idx"),
    ("approvals", "seq"),
    ("artifacts", "job_id, name"),
    ("executors", "id"),
    ("rejections", "seq"),
    ("audit_events", "seq"),
];

async fn snapshot(db: &PgPool) -> anyhow::Result<Vec<(String, Vec<serde_json::Value>)>> {
    let mut out = Vec::new();
    for (table, order) in TABLES {
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar(&format!("SELECT to_jsonb(t) FROM {table} t ORDER BY {order}")).fetch_all(db).await?;
        out.push(((*table).to_owned(), rows));
    }
    Ok(out)
}

/// The live tables' shape: every column (type, nullability, default), every
/// constraint and every index, as the migrations made them; a rebuild's shadow
/// must swap in the same.
async fn shape(db: &PgPool) -> anyhow::Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT format('column %s.%s %s %s %s %s', table_name, column_name, data_type, collation_name, is_nullable,
                       column_default)
         FROM information_schema.columns WHERE table_schema = 'public'
         UNION ALL
         SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace
         UNION ALL
         SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = 'public'
         ORDER BY 1",
    )
    .fetch_all(db)
    .await?)
}

async fn last_seq(js: &async_nats::jetstream::Context) -> anyhow::Result<u64> {
    Ok(js.get_stream("SKYNET_EVENTS").await?.info().await?.state.last_sequence)
}

async fn checkpoint(db: &PgPool) -> u64 {
    skynet_projector::checkpoint(db).await.unwrap_or(0)
}

/// Runs a projector with `max_batch` until it reaches `stop_at` (or the end).
async fn project(
    js: &async_nats::jetstream::Context,
    db: &PgPool,
    max_batch: usize,
    until: Option<u64>,
) -> anyhow::Result<u64> {
    let deps = skynet_projector::Deps { js: js.clone(), db: db.clone() };
    let config = skynet_projector::Config { max_batch, until };
    match until {
        // Stops by itself at the first batch boundary at or after `until`.
        Some(_) => skynet_projector::run(config, deps, std::future::pending()).await?,
        None => {
            let target = last_seq(js).await?;
            let token = CancellationToken::new();
            let stop = token.clone().cancelled_owned();
            let task = tokio::spawn(async move { skynet_projector::run(config, deps, stop).await });
            eventually(Duration::from_secs(30), "the projector to reach the end of the log", || async {
                (checkpoint(db).await >= target).then_some(())
            })
            .await?;
            token.cancel();
            task.await??;
        }
    }
    Ok(checkpoint(db).await)
}

#[tokio::test]
async fn rebuilt_read_models_equal_the_incremental_ones_also_after_a_stop_between_batches() -> anyhow::Result<()> {
    let sys = System::start_with(NatsServer::start()?, TestDb::create().await?, |s| {
        s.executor.providers = vec!["mock".into()];
        s.executor.mock_latency_ms = 5;
        s.executor.mock_failure_rate = 0.3;
    })
    .await?;
    // A mixed workload: successes and mock failures, an approval, a denial, a
    // cancel, a planning failure and a rejected submission.
    let mut ends = Vec::new();
    for i in 0..12 {
        ends.push(
            sys.submit(
                &format!("rm-{i}"),
                json!({"intent": "check git status and list files", "working_dir": sys.project()}),
            )
            .await?,
        );
    }
    let approve = sys
        .submit(
            "rm-approve",
            // A project too: no other row sets one, and a bulk `COPY` writing
            // it into another text column would go unnoticed without it.
            json!({"intent": "build the project", "working_dir": sys.project(), "requested_by": "ann", "project": "billing"}),
        )
        .await?;
    let deny = sys.submit("rm-deny", json!({"intent": "install dependencies", "working_dir": sys.project()})).await?;
    let cancel = sys.submit("rm-cancel", json!({"intent": "deploy", "working_dir": sys.project()})).await?;
    // Never approved: unfinished at the end of the log.
    let pending =
        sys.submit("rm-pending", json!({"intent": "build the project", "working_dir": sys.project()})).await?;
    let nonsense = sys.submit("rm-nonsense", json!({"intent": "paint the fence"})).await?;
    sys.client.publish("skynet.intake.task", "not even json".into()).await?;
    for job in [approve, deny, cancel, pending] {
        sys.wait_for(job, "skynet.job.policy_decided.v1").await?;
    }
    sys.request("skynet.cmd.job.approve", json!({"job_id": approve, "token": "token-bob", "comment": "ok"})).await?;
    sys.request("skynet.cmd.job.deny", json!({"job_id": deny, "token": "token-bob", "reason": "no"})).await?;
    sys.request("skynet.cmd.job.cancel", json!({"job_id": cancel, "token": "token-ann"})).await?;
    ends.extend([approve]);
    for job in &ends {
        eventually(Duration::from_secs(30), "the job to end", || async {
            let t = sys.types(*job).await.ok()?;
            t.iter().any(|t| t == "skynet.job.succeeded.v1" || t == "skynet.job.failed.v1").then_some(())
        })
        .await?;
    }
    sys.wait_for(nonsense, "skynet.job.planning_failed.v1").await?;
    // The intake dead-letters the bad submission before it records the rejection.
    eventually(Duration::from_secs(30), "the rejection in the log", || async {
        (!sys.read_all("SKYNET_EVENTS", "skynet.task.rejected").await.ok()?.is_empty()).then_some(())
    })
    .await?;
    let pool = sys.db.pool().await?;
    let target = last_seq(&async_nats::jetstream::new(sys.nats.connect_as("projector").await?)).await?;
    eventually(Duration::from_secs(30), "the projector to catch up", || async {
        (checkpoint(&pool).await >= target).then_some(())
    })
    .await?;
    let (nats, db) = sys.stop_services().await?;
    let js = async_nats::jetstream::new(nats.connect_as("projector").await?);
    // What was recorded while the services stopped (the sentinel's alerts as
    // executors say goodbye) is projected incrementally too.
    project(&js, &pool, 1000, None).await?;
    let incremental = snapshot(&pool).await?;
    let jobs = &incremental[0].1;
    assert!(jobs.len() >= 16, "{} jobs", jobs.len());
    for status in ["succeeded", "failed", "denied", "cancelled"] {
        assert!(jobs.iter().any(|j| j["status"] == status), "a {status} job in {jobs:?}");
    }
    assert!(
        !incremental[2].1.is_empty() && !incremental[4].1.is_empty() && !incremental[5].1.is_empty(),
        "approvals, executors, rejections"
    );

    // Drop everything and replay the whole log.
    skynet_projector::rebuild(&pool).await?;
    assert_eq!(checkpoint(&pool).await, 0);
    project(&js, &pool, 1000, None).await?;
    assert_eq!(snapshot(&pool).await?, incremental, "rebuild equals incremental, row for row");

    // Again, stopping between small batches half way and restarting.
    skynet_projector::rebuild(&pool).await?;
    let half = project(&js, &pool, 7, Some(target / 2)).await?;
    assert!(half >= target / 2 && half < target, "stopped part way ({half} of {target})");
    assert_ne!(snapshot(&pool).await?, incremental, "half way is not the whole");
    project(&js, &pool, 7, None).await?;
    assert_eq!(snapshot(&pool).await?, incremental, "stop and restart between batches changes nothing");

    // `skynet rebuild`'s bulk path (rows held until their job ends or the log
    // does, then copied in; indexes built after), in batches small enough that
    // most jobs span several: the same rows, and the same indexes.
    let before = shape(&pool).await?;
    assert!(before.iter().any(|s| s.starts_with("index CREATE INDEX jobs_status")), "{before:?}");
    let config = skynet_projector::Config { max_batch: 7, until: None };
    let progress = skynet_projector::Progress::default();
    let at = skynet_projector::rebuild_shadow(config, js.clone(), &pool, &progress).await?;
    assert!(at >= target, "rebuilt up to {at} of {target}");
    assert!(!progress.restarted(), "the bulk path went through without starting over");
    assert_eq!(snapshot(&pool).await?, incremental, "the bulk rebuild equals incremental, row for row");
    assert_eq!(shape(&pool).await?, before, "every column, constraint and index is back, under its name");
    // Rebuilds back to back, as `skynet bench` runs them: each finds the
    // rebuild lock free (it was once still held by the last one's closing session).
    for _ in 0..3 {
        skynet_projector::rebuild_shadow(skynet_projector::Config::default(), js.clone(), &pool, &progress).await?;
    }
    assert_eq!(snapshot(&pool).await?, incremental, "and again, the same");
    let held = jobs.iter().find(|j| j["id"] == pending.to_string()).map(|j| j["status"].clone());
    assert_eq!(held, Some(json!("awaiting_approval")), "an unfinished job is written at the end");

    drop((nats, db));
    Ok(())
}

#[tokio::test]
async fn a_projector_refuses_a_log_behind_its_checkpoint() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let db = TestDb::create().await?;
    skynet_bus::bootstrap(&nats.connect().await?).await?;
    let js = async_nats::jetstream::new(nats.connect_as("projector").await?);
    let pool = db.pool().await?;
    skynet_projector::migrate(&pool).await?;
    // The read models claim more than the (fresh, empty) log holds: a lost stream.
    sqlx::query("INSERT INTO projection_checkpoint (projection, last_seq) VALUES ('read_models', 42)")
        .execute(&pool)
        .await?;
    let deps = skynet_projector::Deps { js, db: pool };
    let err = skynet_projector::run(skynet_projector::Config::default(), deps, std::future::pending())
        .await
        .expect_err("refuses");
    assert!(matches!(err, skynet_projector::ProjectorError::LogBehind { log_last: 0, checkpoint: 42 }), "{err}");
    assert!(err.to_string().contains("skynet rebuild"), "{err}");
    Ok(())
}

/// Holders of the projector's writer lock now (its 64-bit key split in two
/// 32-bit halves by pg_locks; the sentinel holds an advisory lock of its own).
async fn writer_locks(db: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
         WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database()
           AND l.classid = 1397446990 AND l.objid = 1347571530",
    )
    .fetch_one(db)
    .await?)
}

#[tokio::test]
async fn two_projectors_never_both_write_and_the_second_takes_over() -> anyhow::Result<()> {
    // The system's own projector is A; B is started beside it, as a second
    // `skynet up` or `skynet run projector` would be.
    let sys = System::start().await?;
    let pool = sys.db.pool().await?;
    let first = sys.submit("two-1", json!({"intent": "list files", "working_dir": sys.project()})).await?;
    sys.wait_for(first, "skynet.job.succeeded.v1").await?;
    let js = async_nats::jetstream::new(sys.nats.connect_as("projector").await?);
    let b_stop = CancellationToken::new();
    let deps = skynet_projector::Deps { js, db: pool.clone() };
    let stop = b_stop.clone().cancelled_owned();
    let b = tokio::spawn(async move { skynet_projector::run(skynet_projector::Config::default(), deps, stop).await });
    // B waits: one writer lock, and a rebuild (which empties the tables) is refused.
    eventually(Duration::from_secs(10), "A holding the writer lock", || async {
        (writer_locks(&pool).await.ok()? == 1).then_some(())
    })
    .await?;
    let refused = skynet_projector::rebuild(&pool).await.expect_err("a rebuild under a live projector");
    assert!(matches!(refused, skynet_projector::ProjectorError::Busy), "{refused}");
    assert!(!b.is_finished(), "B waits rather than writing or giving up");
    // A goes away with the system; B takes over and projects what comes next.
    let (nats, db) = sys.stop_services().await?;
    let admin = async_nats::jetstream::new(nats.connect().await?);
    let rejected = serde_json::to_vec(&json!({"specversion": "1.0", "id": "takeover-1", "source": "skynet/intake",
        "type": "skynet.task.rejected.v1", "datacontenttype": "application/json",
        "data": {"code": "not_json", "reason": "marker for the takeover"}}))?;
    #[allow(clippy::disallowed_methods)] // a marker event, as the intake would write it
    admin.publish("skynet.task.rejected", rejected.into()).await?.await?;
    eventually(Duration::from_secs(20), "B to project the marker", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM rejections WHERE reason = 'marker for the takeover'")
            .fetch_one(&pool)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await?;
    assert_eq!(writer_locks(&pool).await?, 1, "B alone holds the lock");
    b_stop.cancel();
    b.await??;
    drop((nats, db));
    Ok(())
}

#[tokio::test]
async fn a_rebuild_under_a_live_projector_builds_beside_it_and_swaps_in() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let pool = sys.db.pool().await?;
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(
            sys.submit(&format!("shadow-{i}"), json!({"intent": "list files", "working_dir": sys.project()})).await?,
        );
    }
    for job in &jobs {
        sys.wait_for(*job, "skynet.job.succeeded.v1").await?;
    }
    // Jobs keep arriving while the rebuild runs beside the live projector.
    let js = async_nats::jetstream::new(sys.nats.connect_as("projector").await?);
    let progress = skynet_projector::Progress::default();
    let rebuild = skynet_projector::rebuild_shadow(skynet_projector::Config::default(), js.clone(), &pool, &progress);
    let more = async {
        let mut more = Vec::new();
        for i in 3..8 {
            let intent = json!({"intent": "list files", "working_dir": sys.project()});
            more.push(sys.submit(&format!("shadow-{i}"), intent).await?);
        }
        anyhow::Ok(more)
    };
    let (rebuilt, more) = tokio::join!(rebuild, more);
    jobs.extend(more?);
    let at = rebuilt?;
    assert!(at > 0);
    assert!(progress.applied() >= at && progress.target() >= at, "progress followed the rebuild to {at}");
    // The live projector carries on in the swapped-in tables: every job lands.
    for job in &jobs {
        sys.wait_for(*job, "skynet.job.succeeded.v1").await?;
    }
    let admin = async_nats::jetstream::new(sys.nats.connect().await?);
    let last = last_seq(&admin).await?;
    eventually(Duration::from_secs(30), "the live projector at the end of the log", || async {
        (checkpoint(&pool).await >= last).then_some(())
    })
    .await?;
    let live = snapshot(&pool).await?;
    let jobs_rows = live.iter().find(|(t, _)| t == "jobs").map_or(0, |(_, rows)| rows.len());
    assert_eq!(jobs_rows, jobs.len(), "every job in the swapped-in read models");
    // Row for row what a projection from scratch gives.
    let fresh = TestDb::create().await?;
    let fresh_pool = fresh.pool().await?;
    project(&js, &fresh_pool, 1000, Some(last)).await?;
    assert_eq!(snapshot(&fresh_pool).await?, live);
    // Nothing is left beside the live tables.
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname IN ('skynet_shadow', 'skynet_replaced')")
            .fetch_one(&pool)
            .await?;
    assert_eq!(leftovers, 0);
    sys.shutdown().await
}

/// A job opened a second time while the bulk rebuild holds its rows (only a
/// forged log holds that: the event store refuses it) makes the rebuild start
/// over event by event rather than drop what it holds of the job.
#[tokio::test]
async fn a_bulk_rebuild_meeting_a_job_opened_twice_starts_over_carefully() -> anyhow::Result<()> {
    let sys = System::start().await?;
    let pool = sys.db.pool().await?;
    let held = sys.submit("reopened", json!({"intent": "build the project", "working_dir": sys.project()})).await?;
    sys.wait_for(held, "skynet.job.policy_decided.v1").await?;
    let forged = skynet_contract::Envelope {
        id: uuid::Uuid::new_v4().to_string(),
        source: "skynet/intake".into(),
        ty: "skynet.job.requested.v1".into(),
        subject: Some(held.to_string()),
        time: chrono::Utc::now(),
        data: json!({"intent": "opened again", "request_source": "forger", "request_id": "again"}),
        traceparent: None,
    };
    let (headers, payload) = skynet_bus::codec::encode(&forged);
    #[allow(clippy::disallowed_methods)] // written around the event store on purpose
    async_nats::jetstream::new(sys.nats.connect().await?)
        .publish_with_headers(format!("skynet.job.{held}.requested"), headers, payload)
        .await?
        .await?;
    let js = async_nats::jetstream::new(sys.nats.connect_as("projector").await?);
    let progress = skynet_projector::Progress::default();
    // One event per batch: the second opening comes while the job is held.
    let config = skynet_projector::Config { max_batch: 1, until: None };
    let before = shape(&pool).await?;
    skynet_projector::rebuild_shadow(config, js, &pool, &progress).await?;
    assert!(progress.restarted(), "the bulk path gave up on the second opening");
    assert_eq!(shape(&pool).await?, before, "the careful path swaps in the same tables");
    let steps: i64 = sqlx::query_scalar("SELECT count(*) FROM steps WHERE job_id = $1")
        .bind(uuid::Uuid::parse_str(&held.to_string())?)
        .fetch_one(&pool)
        .await?;
    assert!(steps > 0, "the job's steps are kept, as the live projector keeps them");
    sys.shutdown().await
}
