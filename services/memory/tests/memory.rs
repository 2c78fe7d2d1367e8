//! The memory service against a real nats-server and a real Postgres: its
//! consumer under real redelivery, similarity among many records, and
//! importance that follows retrievals.

use std::sync::Arc;

use async_nats::jetstream::AckKind;
use chrono::Utc;
use skynet_bus::consumer::Disposition;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::memory::{self, MemoryKind, MemoryRecorded};
use skynet_contract::{Envelope, JobId};
use skynet_job::Command;
use skynet_memory::{Deps, handle, store};
use skynet_testkit::{Log, TestDb, fetch_one, requested};

async fn deps(log: &Log, db: &TestDb) -> anyhow::Result<Deps> {
    let pool = db.pool().await?;
    skynet_memory::migrate(&pool).await?;
    let principals = Arc::new(skynet_bus::principals::Principals::open(&log.js).await?);
    // A store of its own: it holds no chains, so every job is read from the log.
    let store = skynet_bus::EventStore::open(log.js.clone()).await.map_err(|e| anyhow::anyhow!(e))?;
    let (js, nats) = (log.js.clone(), log.client.clone());
    Ok(Deps::new(js, nats, store, pool, principals))
}

async fn rows(db: &sqlx::PgPool) -> anyhow::Result<Vec<(String, String, String)>> {
    Ok(sqlx::query_as("SELECT id, kind, text FROM memory_records ORDER BY id").fetch_all(db).await?)
}

#[tokio::test]
async fn a_redelivered_event_changes_nothing_and_a_finished_job_is_remembered() -> anyhow::Result<()> {
    let log = Log::start("memory").await?;
    let db = TestDb::create().await?;
    let deps = deps(&log, &db).await?;

    // A record a person added (as the memory service records it), and a job
    // that ended in planning_failed.
    let rec = MemoryRecorded {
        id: "mem-1".into(),
        kind: MemoryKind::EnvironmentFact,
        text: "web1 runs nginx behind haproxy".into(),
        labels: Default::default(),
        recorded_by: "alice".into(),
    };
    let env = Envelope::new(memory::RECORDED, "ev-1".into(), "skynet/memory", Some("mem-1".into()), Utc::now(), &rec)?;
    skynet_bus::publish(&log.js, &memory::subject("mem-1", "recorded"), &env).await?;
    let job = JobId::for_request("t", "1");
    skynet_testkit::record(&log.admin, job, "0", Command::Open(requested("t", "1", "bake a cake"))).await?;
    let fail = Command::FailPlanning { reason: "the rule planner understands no action".into() };
    skynet_testkit::record(&log.admin, job, "1", fail).await?;

    for expected in ["mem-1", &job.to_string()] {
        // The server delivers the message, we handle it and nak it: the
        // server delivers it again, and handling it again changes nothing.
        let first = fetch_one(&log.js, EVENTS_STREAM, "memory").await?;
        assert!(matches!(handle(&deps, first.clone()).await, Disposition::Ack));
        let after_first = rows(&deps.db).await?;
        first.ack_with(AckKind::Nak(None)).await.map_err(|e| anyhow::anyhow!(e))?;
        let again = fetch_one(&log.js, EVENTS_STREAM, "memory").await?;
        assert_eq!(again.info().map(|i| i.delivered).ok(), Some(2), "a real redelivery");
        assert_eq!(again.subject, first.subject);
        assert!(matches!(handle(&deps, again.clone()).await, Disposition::Ack));
        again.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        assert_eq!(rows(&deps.db).await?, after_first, "the redelivery changed nothing");
        assert!(after_first.iter().any(|(id, _, _)| id == expected), "{after_first:?}");
    }
    let all = rows(&deps.db).await?;
    assert_eq!(all.len(), 2, "{all:?}");
    let task = all.iter().find(|(id, _, _)| *id == job.to_string()).expect("the job");
    assert_eq!((task.1.as_str(), task.2.starts_with("bake a cake")), ("task_execution", true));
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_applied").fetch_one(&deps.db).await?;
    assert_eq!(applied, 2);

    // A memory event from anyone but the memory service is dead-lettered.
    let forged = Envelope::new(memory::RECORDED, "ev-2".into(), "skynet/api", Some("mem-2".into()), Utc::now(), &rec)?;
    skynet_bus::publish(&log.js, &memory::subject("mem-2", "recorded"), &forged).await?;
    let msg = fetch_one(&log.js, EVENTS_STREAM, "memory").await?;
    assert!(matches!(handle(&deps, msg).await, Disposition::DeadLetter { code: "wrong_source", .. }));
    Ok(())
}

/// Words for records that have nothing to do with nginx.
const WORDS: &[&str] = &[
    "deploy",
    "billing",
    "api",
    "staging",
    "cluster",
    "rotate",
    "certificates",
    "backup",
    "database",
    "postgres",
    "compile",
    "frontend",
    "assets",
    "invoice",
    "report",
    "sync",
    "mirror",
    "kafka",
    "topic",
    "schema",
    "migrate",
    "users",
    "table",
    "index",
    "vacuum",
    "analyze",
    "cache",
    "warm",
    "redis",
    "queue",
    "drain",
    "worker",
    "pool",
];

#[tokio::test]
async fn similarity_finds_the_right_record_among_a_thousand_and_importance_follows_retrievals() -> anyhow::Result<()> {
    let db = TestDb::create().await?;
    let pool = db.pool().await?;
    skynet_memory::migrate(&pool).await?;
    let at = Utc::now();
    let mut tx = pool.begin().await?;
    for i in 0..1000usize {
        let text = (0..6).map(|k| WORDS[(i * 7 + k * 13 + i / 5) % WORDS.len()]).collect::<Vec<_>>().join(" ");
        let r = MemoryRecorded {
            id: format!("r{i:04}"),
            kind: if i % 2 == 0 { MemoryKind::EnvironmentFact } else { MemoryKind::UserPreference },
            text: format!("{text} {i}"),
            labels: Default::default(),
            recorded_by: "t".into(),
        };
        store::apply_recorded(&mut tx, &r, at).await?;
    }
    let target = MemoryRecorded {
        id: "target".into(),
        kind: MemoryKind::EnvironmentFact,
        text: "restart the nginx service on web1".into(),
        labels: Default::default(),
        recorded_by: "t".into(),
    };
    store::apply_recorded(&mut tx, &target, at).await?;
    tx.commit().await?;

    let hits = store::search(&pool, "restart nginx on web-1", None, 5, Utc::now()).await?;
    assert_eq!(hits.first().map(|h| h.id.as_str()), Some("target"), "{hits:#?}");
    assert!(hits[0].relevance > hits.get(1).map_or(0.0, |h| h.relevance), "{hits:#?}");
    // Words as people write them: another inflection, another order, stop
    // words the record lacks.
    let phrased = store::search(&pool, "nginx restarted on the web1", None, 3, Utc::now()).await?;
    assert_eq!(phrased.first().map(|h| h.id.as_str()), Some("target"), "{phrased:#?}");
    // Type filters: preferences only, so not the target.
    let prefs = store::search(&pool, "restart nginx on web-1", Some(MemoryKind::UserPreference), 5, Utc::now()).await?;
    assert!(prefs.iter().all(|h| h.kind == MemoryKind::UserPreference && h.id != "target"), "{prefs:#?}");
    // Each retrieval is persisted and raises importance (the frequency term).
    let again = store::search(&pool, "restart nginx on web-1", None, 1, Utc::now()).await?;
    assert_eq!((again[0].id.as_str(), again[0].retrieval_count), ("target", 3));
    assert!(again[0].importance > hits[0].importance, "{} then {}", hits[0].importance, again[0].importance);
    let stored: i64 =
        sqlx::query_scalar("SELECT retrieval_count FROM memory_usage WHERE id = 'target'").fetch_one(&pool).await?;
    assert_eq!(stored, 3);
    Ok(())
}

#[tokio::test]
async fn retention_forgets_old_records_as_events_but_keeps_failure_patterns() -> anyhow::Result<()> {
    let log = Log::start("memory").await?;
    let db = TestDb::create().await?;
    let deps = deps(&log, &db).await?;
    let long_ago = Utc::now() - chrono::Duration::days(120);
    let mut tx = deps.db.begin().await?;
    for (id, at) in [("old-fact", long_ago), ("new-fact", Utc::now())] {
        let r = MemoryRecorded {
            id: id.into(),
            kind: MemoryKind::EnvironmentFact,
            text: format!("{id} about the build host"),
            labels: Default::default(),
            recorded_by: "t".into(),
        };
        store::apply_recorded(&mut tx, &r, at).await?;
    }
    let execution = skynet_memory::learn::Execution {
        job: JobId::for_request("t", "old"),
        intent: "run the tests".into(),
        working_dir: Some("/srv/app".into()),
        summary: "Run the tests".into(),
        actions: vec!["run_tests".into()],
        outcome: "failed".into(),
        risk: None,
        duration_ms: None,
        provider: None,
        error: Some("exit code 2".into()),
        artifacts: vec![],
        finished_at: long_ago,
    };
    let failure = skynet_memory::learn::StepFailure {
        step: 0,
        action: "run_tests".into(),
        class: "exit_2".into(),
        message: "exit code #".into(),
    };
    store::apply_lesson(&mut tx, &skynet_memory::learn::Lesson { execution, failures: vec![failure] }).await?;
    tx.commit().await?;

    // The old fact, the old job and its plan shape go; the failure pattern and
    // the new fact stay.
    let forgotten = skynet_memory::sweep(&deps, &skynet_memory::Config::default(), Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(forgotten, 3);
    for _ in 0..3 {
        let msg = fetch_one(&log.js, EVENTS_STREAM, "memory").await?;
        assert!(msg.subject.ends_with(".forgotten"), "{}", msg.subject);
        assert!(matches!(handle(&deps, msg.clone()).await, Disposition::Ack));
        msg.ack().await.map_err(|e| anyhow::anyhow!(e))?;
    }
    let left: Vec<String> =
        rows(&deps.db).await?.into_iter().map(|(_, kind, text)| format!("{kind}: {text}")).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.iter().any(|l| l.starts_with("failure_pattern: run_tests failed")), "{left:?}");
    assert!(left.iter().any(|l| l == "environment_fact: new-fact about the build host"), "{left:?}");
    Ok(())
}

fn lesson(n: u32, outcome: &str, intent: &str) -> skynet_memory::learn::Lesson {
    let failed = outcome == "failed";
    let execution = skynet_memory::learn::Execution {
        job: JobId::for_request("t", &format!("burst-{n}")),
        intent: intent.into(),
        working_dir: Some("/srv/app".into()),
        summary: "Run the tests".into(),
        actions: vec!["git_status".into(), "run_tests".into()],
        outcome: outcome.into(),
        risk: None,
        duration_ms: Some(u64::from(n)),
        provider: None,
        error: failed.then(|| "exit code 2".into()),
        artifacts: vec![],
        finished_at: Utc::now(),
    };
    let failure = skynet_memory::learn::StepFailure {
        step: 1,
        action: "run_tests".into(),
        class: "exit_2".into(),
        message: "exit code #".into(),
    };
    skynet_memory::learn::Lesson { execution, failures: if failed { vec![failure] } else { vec![] } }
}

async fn content(db: &sqlx::PgPool, id: &str) -> anyhow::Result<serde_json::Value> {
    Ok(sqlx::query_scalar("SELECT content FROM memory_records WHERE id = $1").bind(id).fetch_one(db).await?)
}

#[tokio::test]
async fn a_burst_of_same_shaped_jobs_is_learned_in_few_transactions_and_a_refused_one_fails_alone() -> anyhow::Result<()>
{
    use skynet_memory::group::{Change, Writer};
    let db = TestDb::create().await?;
    let pool = db.pool().await?;
    skynet_memory::migrate(&pool).await?;
    let writer = Writer::new(pool.clone());

    // Forty jobs of one plan shape end at once, every fourth failing the same
    // way: each counts once towards the shape and the pattern, however they
    // were grouped.
    let outcome = |n: u32| if n.is_multiple_of(4) { "failed" } else { "succeeded" };
    let burst = (0..40u32).map(|n| {
        let writer = writer.clone();
        async move { writer.apply(&format!("ev-{n}"), Change::Lesson(lesson(n, outcome(n), "run the tests"))).await }
    });
    let results = futures::future::join_all(burst).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The test's runtime has one thread: all forty wait before the writer runs.
    assert_eq!(writer.transactions(), 1, "forty changes waiting together, one transaction");
    let shape = store::lesson_locks(&lesson(1, "succeeded", "x")).pop().expect("the shape's record");
    let strategy = content(&pool, &shape).await?;
    assert_eq!((strategy["times_used"].as_u64(), strategy["successes"].as_u64()), (Some(40), Some(30)), "{strategy}");
    let pattern = store::lesson_locks(&lesson(0, "failed", "x")).remove(0);
    assert_eq!(content(&pool, &pattern).await?["count"].as_u64(), Some(10));

    // Delivered again (the same events) with a change Postgres refuses among
    // them (a NUL in the text): the refused one fails alone, the others are
    // applied once — that is, not again — and a new one beside them counts.
    let again = (0..40u32).map(|n| {
        let writer = writer.clone();
        async move { writer.apply(&format!("ev-{n}"), Change::Lesson(lesson(n, outcome(n), "run the tests"))).await }
    });
    let poisoned = writer.apply("ev-poison", Change::Lesson(lesson(100, "succeeded", "run the\0tests")));
    let fresh = writer.apply("ev-41", Change::Lesson(lesson(41, "succeeded", "run the tests")));
    let (again, poisoned, fresh) = tokio::join!(futures::future::join_all(again), poisoned, fresh);
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    let refused = poisoned.expect_err("a NUL is refused");
    assert!(refused.starts_with("memory database:"), "{refused}");
    fresh.map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(writer.transactions(), 1 + 1 + 42, "the refused batch, then each of its 42 changes alone");
    let strategy = content(&pool, &shape).await?;
    assert_eq!((strategy["times_used"].as_u64(), strategy["successes"].as_u64()), (Some(41), Some(31)), "{strategy}");
    assert_eq!(content(&pool, &pattern).await?["count"].as_u64(), Some(10));
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM memory_applied").fetch_one(&pool).await?;
    assert_eq!(applied, 41, "the refused change left nothing behind");

    // The same event twice in one batch that commits counts once.
    let twice = |writer: Writer, n: u32| async move {
        writer.apply(&format!("ev-{n}"), Change::Lesson(lesson(n, "succeeded", "run the tests"))).await
    };
    let (a, b) = tokio::join!(twice(writer.clone(), 50), twice(writer.clone(), 50));
    a.and(b).map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(writer.transactions(), 45);
    assert_eq!(content(&pool, &shape).await?["times_used"].as_u64(), Some(42));

    // Two writers — two memory processes — counting the same plan shape at
    // once: their transactions overlap, and the record's lock keeps either
    // from writing over the other's count.
    let other = Writer::new(db.pool().await?);
    let both = (60..100u32).map(|n| {
        let writer = if n % 2 == 0 { writer.clone() } else { other.clone() };
        async move {
            for k in 0..5 {
                let n = n * 10 + k;
                writer.apply(&format!("ev-{n}"), Change::Lesson(lesson(n, "succeeded", "run the tests"))).await?;
            }
            Ok::<_, String>(())
        }
    });
    let results = futures::future::join_all(both).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(other.transactions() >= 5, "the second writer ran {} transactions", other.transactions());
    assert_eq!(content(&pool, &shape).await?["times_used"].as_u64(), Some(42 + 200));

    // One batch: a job learned under two events counts once; the shape
    // forgotten between two runs counts only the run after it, as when the
    // three are applied one by one.
    let before = writer.transactions();
    let forget =
        skynet_contract::memory::MemoryForgotten { id: shape.clone(), reason: "test".into(), forgotten_by: "t".into() };
    let run =
        |event: &'static str, n: u32| writer.apply(event, Change::Lesson(lesson(n, "succeeded", "run the tests")));
    let (a, b, c, d) = tokio::join!(
        run("ev-twice-1", 2000),
        run("ev-twice-2", 2000),
        writer.apply("ev-forget", Change::Forgotten(forget)),
        run("ev-after", 2001)
    );
    a.and(b).and(c).and(d).map_err(|e| anyhow::anyhow!(e))?;
    assert_eq!(writer.transactions(), before + 1);
    assert_eq!(content(&pool, &shape).await?["times_used"].as_u64(), Some(1));
    let job = |n: u32| JobId::for_request("t", &format!("burst-{n}")).to_string();
    assert!(rows(&pool).await?.iter().any(|(id, _, _)| *id == job(2000)), "the job's own record stays");
    Ok(())
}
