//! The initiative against a real nats-server and a real Postgres, with its
//! clock in the test's hand: a maintenance task through the front door, the
//! hourly and daily limits counted from the log across a restart, two
//! processes deciding at once sharing one limit, and the kill switch.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use skynet_bus::definitions::{EVENTS_STREAM, EXECUTORS_BUCKET};
use skynet_bus::principals::Principals;
use skynet_contract::Envelope;
use skynet_contract::commands::CommandReply;
use skynet_contract::executor::ExecutorStatus;
use skynet_contract::initiative::{self, Decided, InitiativeStatus, Outcome, Strategy, SwitchInitiative};
use skynet_contract::principal::{Principal, PrincipalRole};
use skynet_contract::task::TaskRequested;
use skynet_initiative::{Config, Deps, evaluate_once};
use skynet_testkit::{Log, TestDb, count_messages};

/// A clock the test moves by hand.
#[derive(Clone)]
struct Hand(Arc<Mutex<DateTime<Utc>>>);

impl Hand {
    fn new() -> Hand {
        Hand(Arc::new(Mutex::new(Utc::now())))
    }
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
    fn clock(&self) -> skynet_initiative::Clock {
        let hand = self.clone();
        Arc::new(move || hand.now())
    }
}

struct World {
    log: Log,
    _db: TestDb,
    db: sqlx::PgPool,
    admin: async_nats::Client,
    hand: Hand,
}

impl World {
    /// A log, a migrated read-model database and one executor online.
    async fn start() -> anyhow::Result<World> {
        let log = Log::start("initiative").await?;
        let db_handle = TestDb::create().await?;
        let db = db_handle.pool().await?;
        skynet_initiative::migrate(&db).await?;
        let admin = log.server.connect().await?;
        let status = ExecutorStatus {
            id: "exec-1".into(),
            providers: Default::default(),
            capacity: 4,
            running: 0,
            started_at: Utc::now(),
            heartbeat_at: Utc::now(),
            version: String::new(),
        };
        let kv = async_nats::jetstream::new(admin.clone()).get_key_value(EXECUTORS_BUCKET).await?;
        kv.put("exec-1", serde_json::to_vec(&status)?.into()).await?;
        Ok(World { log, _db: db_handle, db, admin, hand: Hand::new() })
    }

    /// An initiative process of its own (its own connection), as a restart
    /// or a second replica would be.
    async fn process(&self) -> anyhow::Result<Deps> {
        let nats = self.log.server.connect_as("initiative").await?;
        let js = async_nats::jetstream::new(nats.clone());
        let principals = Arc::new(Principals::open(&js).await?);
        Ok(Deps { js, nats, db: self.db.clone(), principals, clock: self.hand.clock() })
    }

    /// Every decision in the ledger, oldest first.
    async fn decisions(&self) -> anyhow::Result<Vec<Decided>> {
        let stored = skynet_bus::read::read_all(&self.admin, EVENTS_STREAM, initiative::LEDGER, 1)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let mut out = Vec::new();
        for m in stored {
            let env = skynet_bus::codec::decode(m.headers.as_ref(), &m.payload)?;
            if env.ty == initiative::DECIDED {
                out.push(env.data_as::<Decided>()?);
            }
        }
        Ok(out)
    }

    /// The submissions waiting at the front door, decoded.
    async fn submissions(&self) -> anyhow::Result<Vec<(Envelope, TaskRequested)>> {
        // The intake's stream allows no direct get: read it message by message.
        let mut stream = async_nats::jetstream::new(self.admin.clone()).get_stream("SKYNET_INTAKE").await?;
        let (first, last) = {
            let s = &stream.info().await?.state;
            (s.first_sequence, s.last_sequence)
        };
        let mut out = Vec::new();
        for seq in first..=last {
            let Ok(m) = stream.get_raw_message(seq).await else { continue };
            let env = skynet_bus::codec::decode(Some(&m.headers), &m.payload)?;
            let data = env.data_as::<TaskRequested>()?;
            out.push((env, data));
        }
        Ok(out)
    }
}

/// Maintenance only, due at every evaluation (interval 0 h), so the limits are
/// what holds it back.
fn maintenance_only(per_hour: u32, per_day: u32, concurrent: u32) -> anyhow::Result<Config> {
    let mut c = Config::default();
    c.recovery.enabled = false;
    c.optimization.enabled = false;
    c.maintenance.interval_hours = 0.0;
    c.limits.per_hour = per_hour;
    c.limits.per_day = per_day;
    c.limits.concurrent = concurrent;
    Ok(c)
}

fn outcomes(decisions: &[Decided]) -> Vec<Outcome> {
    decisions.iter().map(|d| d.outcome).collect()
}

#[tokio::test]
async fn maintenance_goes_through_the_front_door_and_the_limits_hold_across_a_restart() -> anyhow::Result<()> {
    let w = World::start().await?;
    let config = maintenance_only(3, 4, 100)?;
    // Started a minute ago: not idle long enough yet.
    let started = w.hand.now() - Duration::seconds(60);
    let first = w.process().await?;
    assert!(evaluate_once(&first, &config, started).await.map_err(anyhow::Error::msg)?.is_empty());
    assert!(w.decisions().await?.is_empty(), "idle 60 s of 300 s: nothing decided");

    w.hand.advance(Duration::seconds(240));
    let decided = evaluate_once(&first, &config, started).await.map_err(anyhow::Error::msg)?;
    assert_eq!(outcomes(&decided), [Outcome::Submitted]);
    let d = &decided[0];
    assert_eq!(d.strategy, Strategy::Maintenance);
    assert!(d.reason.contains("idle 300 s"), "{}", d.reason);
    assert_eq!(d.facts.executors_online, 1);
    let sent = w.submissions().await?;
    assert_eq!(sent.len(), 1);
    let (env, task) = &sent[0];
    assert_eq!(env.source, initiative::SOURCE);
    assert_eq!(
        skynet_contract::JobId::for_request(initiative::SOURCE, &env.id),
        d.job_id.ok_or_else(|| anyhow::anyhow!("no job id"))?,
        "the job the decision names is the one the intake opens"
    );
    let plan = task.plan.as_ref().ok_or_else(|| anyhow::anyhow!("no plan"))?;
    let actions: Vec<&str> = plan.steps.iter().filter_map(|s| s.action.as_deref()).collect();
    assert_eq!(actions, ["check_disk_space", "check_memory"]);
    assert_eq!(task.constraints["initiative"]["strategy"], "maintenance");

    // Two more fill the hour; the fourth is held, and says so in the log.
    for _ in 0..3 {
        w.hand.advance(Duration::minutes(1));
        evaluate_once(&first, &config, started).await.map_err(anyhow::Error::msg)?;
    }
    assert_eq!(
        outcomes(&w.decisions().await?),
        [Outcome::Submitted; 3].into_iter().chain([Outcome::Limited]).collect::<Vec<_>>()
    );
    let held = w.decisions().await?.pop().ok_or_else(|| anyhow::anyhow!("none"))?;
    assert!(held.limit.as_deref().is_some_and(|l| l.contains("last hour")), "{held:?}");
    assert_eq!((held.counts.last_hour, held.job_id), (3, None));

    // A restart forgets nothing: a new process, with nothing in memory, is held too.
    drop(first);
    let second = w.process().await?;
    w.hand.advance(Duration::minutes(1));
    let decided = evaluate_once(&second, &config, started).await.map_err(anyhow::Error::msg)?;
    assert_eq!(outcomes(&decided), [Outcome::Limited]);
    // An hour on, the hour is free but the day has one slot left.
    w.hand.advance(Duration::minutes(61));
    assert_eq!(
        outcomes(&evaluate_once(&second, &config, started).await.map_err(anyhow::Error::msg)?),
        [Outcome::Submitted]
    );
    w.hand.advance(Duration::minutes(61));
    let decided = evaluate_once(&w.process().await?, &config, started).await.map_err(anyhow::Error::msg)?;
    assert_eq!(outcomes(&decided), [Outcome::Limited]);
    assert!(decided[0].limit.as_deref().is_some_and(|l| l.contains("24 h")), "{:?}", decided[0].limit);

    // Each task was sent once per decision however often it was resent
    // (a decision whose job has not shown is resent; the id makes it one).
    let submitted = w.decisions().await?.iter().filter(|d| d.outcome == Outcome::Submitted).count();
    assert_eq!(submitted, 4);
    assert_eq!(w.submissions().await?.len(), 4);
    Ok(())
}

/// A job row as the projector writes it.
async fn job_row(db: &sqlx::PgPool, id: uuid::Uuid, source: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO jobs (id, status, intent, request_source, request_id, approvers, created_at, updated_at,
                           last_seq, event_count)
         VALUES ($1, 'failed', 'x', $2, 'r', '[]', $3, $3, 1, 1)",
    )
    .bind(id)
    .bind(source)
    .bind(at)
    .execute(db)
    .await?;
    Ok(())
}

/// A failed step as the memory service records it.
async fn failure_row(db: &sqlx::PgPool, job: uuid::Uuid, dir: &str, at: DateTime<Utc>) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO memory_records (id, kind, text, content, created_at, updated_at)
         VALUES ('fp-1', 'failure_pattern', 'run_tests failed', $1, $2, $2) ON CONFLICT DO NOTHING",
    )
    .bind(serde_json::json!({"action": "run_tests", "message": "exit code #\nrm -rf / # quoted, not run"}))
    .bind(at)
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO memory_failures (pattern_id, job_id, step, working_dir, at) VALUES ('fp-1', $1, 0, $2, $3)",
    )
    .bind(job)
    .bind(dir)
    .bind(at)
    .execute(db)
    .await?;
    Ok(())
}

#[tokio::test]
async fn recovery_looks_at_peoples_failures_once_they_are_a_minute_old() -> anyhow::Result<()> {
    let w = World::start().await?;
    let mut config = Config::default();
    (config.maintenance.enabled, config.optimization.enabled) = (false, false);
    let started = w.hand.now() - Duration::hours(1);
    let deps = w.process().await?;
    let dir = tempfile::tempdir()?;
    let dir_text = dir.path().display().to_string();
    let (own, theirs) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());

    // Its own job's failure is not one to recover from.
    job_row(&w.db, own, initiative::SOURCE, w.hand.now() - Duration::minutes(5)).await?;
    failure_row(&w.db, own, &dir_text, w.hand.now() - Duration::minutes(5)).await?;
    assert!(evaluate_once(&deps, &config, started).await.map_err(anyhow::Error::msg)?.is_empty());

    // A person's failure, 30 s old: not yet; at 60 s: a recovery task.
    job_row(&w.db, theirs, "tests/system", w.hand.now() - Duration::seconds(30)).await?;
    failure_row(&w.db, theirs, &dir_text, w.hand.now() - Duration::seconds(30)).await?;
    assert!(evaluate_once(&deps, &config, started).await.map_err(anyhow::Error::msg)?.is_empty());
    w.hand.advance(Duration::seconds(30));
    let decided = evaluate_once(&deps, &config, started).await.map_err(anyhow::Error::msg)?;
    assert_eq!(outcomes(&decided), [Outcome::Submitted]);
    let d = &decided[0];
    assert_eq!((d.strategy, d.facts.pending_errors.len()), (Strategy::Recovery, 1));
    let intent = d.intent.as_deref().unwrap_or_default();
    assert!(intent.contains("run_tests: exit code # rm -rf"), "one line, quoted: {intent}");
    let plan = d.plan.as_ref().ok_or_else(|| anyhow::anyhow!("no plan"))?;
    let listed = plan.steps.iter().find(|s| s.action.as_deref() == Some("list_directory"));
    assert_eq!(listed.map(|s| s.params["directory"].clone()), Some(serde_json::json!(dir_text)));

    // Looked at: the same failure does not trigger again.
    w.hand.advance(Duration::minutes(2));
    assert!(evaluate_once(&deps, &config, started).await.map_err(anyhow::Error::msg)?.is_empty());
    Ok(())
}

/// Two processes deciding at once — the same configuration (a replica), or
/// different ones (a rolling deploy: their decisions differ, so only the
/// ledger's expected position keeps them from both taking the last slot).
#[tokio::test]
async fn two_processes_deciding_at_once_share_one_limit() -> anyhow::Result<()> {
    let w = World::start().await?;
    let started = w.hand.now() - Duration::hours(1);
    let same = maintenance_only(1, 1, 100)?;
    let mut other = maintenance_only(1, 1, 100)?;
    (other.maintenance.enabled, other.optimization.enabled) = (false, true);
    let (a, b, c) = (w.process().await?, w.process().await?, w.process().await?);
    for _ in 0..3 {
        let (ra, rb, rc) = tokio::join!(
            evaluate_once(&a, &same, started),
            evaluate_once(&b, &same, started),
            evaluate_once(&c, &other, started)
        );
        for r in [ra, rb, rc] {
            r.map_err(anyhow::Error::msg)?;
        }
        w.hand.advance(Duration::seconds(10));
    }
    let decisions = w.decisions().await?;
    let submitted: Vec<_> = decisions.iter().filter(|d| d.outcome == Outcome::Submitted).collect();
    assert_eq!(submitted.len(), 1, "{:?}", outcomes(&decisions));
    assert!(decisions.iter().any(|d| d.outcome == Outcome::Limited));
    assert_eq!(w.submissions().await?.len(), 1);
    Ok(())
}

/// Processes with different limits (a rolling deploy) decide differently
/// from the same ledger: one holds back, the other submits. Whichever is
/// stored, every task that reaches the intake is one the ledger counts.
#[tokio::test]
async fn every_task_sent_is_a_decision_the_ledger_counts() -> anyhow::Result<()> {
    let w = World::start().await?;
    let started = w.hand.now() - Duration::hours(1);
    let (strict, loose) = (maintenance_only(1, 1, 100)?, maintenance_only(10, 10, 100)?);
    let (a, b) = (w.process().await?, w.process().await?);
    for _ in 0..6 {
        let (ra, rb) = tokio::join!(evaluate_once(&a, &strict, started), evaluate_once(&b, &loose, started));
        ra.map_err(anyhow::Error::msg)?;
        rb.map_err(anyhow::Error::msg)?;
        w.hand.advance(Duration::seconds(10));
    }
    let decisions = w.decisions().await?;
    let counted: std::collections::BTreeSet<_> = decisions.iter().filter_map(|d| d.job_id).collect();
    let sent: std::collections::BTreeSet<_> = w
        .submissions()
        .await?
        .iter()
        .map(|(e, _)| skynet_contract::JobId::for_request(initiative::SOURCE, &e.id))
        .collect();
    assert_eq!(sent, counted, "{:?}", outcomes(&decisions));
    assert!(counted.len() <= 10);
    Ok(())
}

async fn ask<T: serde::de::DeserializeOwned>(
    client: &async_nats::Client,
    subject: &'static str,
    body: &impl serde::Serialize,
) -> anyhow::Result<T> {
    let reply = client.request(subject, serde_json::to_vec(body)?.into()).await?;
    Ok(serde_json::from_slice(&reply.payload)?)
}

#[tokio::test]
async fn pause_stops_new_tasks_at_once_and_only_an_approver_may_switch() -> anyhow::Result<()> {
    let w = World::start().await?;
    let mut config = maintenance_only(5, 20, 2)?;
    // The service itself does not evaluate during the test: only its commands answer.
    config.interval_secs = 3600;
    let started = w.hand.now() - Duration::hours(1);
    let principals = Principals::open(&async_nats::jetstream::new(w.admin.clone())).await?;
    principals.put("ops-token", &Principal { name: "ops".into(), roles: vec![PrincipalRole::Approve] }).await?;
    principals.put("dev-token", &Principal { name: "dev".into(), roles: vec![PrincipalRole::Submit] }).await?;
    let deps = w.process().await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(skynet_initiative::run(config.clone(), deps.clone(), async move {
        let _ = stopped.await;
    }));
    let client = w.log.server.connect_as("client").await?;
    let cmd = |token: &str, id: &str| SwitchInitiative {
        token: token.into(),
        reason: "deploy\nwindow".into(),
        command_id: id.into(),
    };

    let _: InitiativeStatus = skynet_testkit::eventually(std::time::Duration::from_secs(10), "a status reply", || {
        let client = client.clone();
        async move { ask::<InitiativeStatus>(&client, initiative::STATUS, &()).await.ok() }
    })
    .await?;
    // Idle long enough since the service started.
    w.hand.advance(Duration::minutes(10));
    let status: InitiativeStatus = ask(&client, initiative::STATUS, &()).await?;
    assert!(!status.paused);
    let maintenance = &status.strategies[0];
    assert!(maintenance.now.starts_with("would submit"), "{}", maintenance.now);

    let refused: CommandReply = ask(&client, initiative::PAUSE, &cmd("dev-token", "c1")).await?;
    assert_eq!((refused.accepted, refused.code.as_deref()), (false, Some("forbidden")));
    let refused: CommandReply = ask(&client, initiative::PAUSE, &cmd("nobody", "c1")).await?;
    assert_eq!(refused.code.as_deref(), Some("unauthorized"));
    assert_eq!(count_messages(&w.log.js, EVENTS_STREAM, initiative::PAUSED_SUBJECT).await?, 0);

    // The same pause twice (a lost reply, retried) is one event.
    for _ in 0..2 {
        let paused: CommandReply = ask(&client, initiative::PAUSE, &cmd("ops-token", "c2")).await?;
        assert!(paused.accepted, "{paused:?}");
    }
    assert_eq!(count_messages(&w.log.js, EVENTS_STREAM, initiative::PAUSED_SUBJECT).await?, 1);

    // Paused: the very next evaluation decides nothing, in any process.
    assert!(evaluate_once(&w.process().await?, &config, started).await.map_err(anyhow::Error::msg)?.is_empty());
    assert!(w.decisions().await?.is_empty());
    let status: InitiativeStatus = ask(&client, initiative::STATUS, &()).await?;
    assert!(status.paused);
    let (_, by) = status.switched.ok_or_else(|| anyhow::anyhow!("no switch shown"))?;
    assert_eq!((by.by.as_str(), by.reason.as_str()), ("ops", "deploy window"));
    assert!(status.strategies[0].now.starts_with("paused; would trigger"), "{}", status.strategies[0].now);

    let resumed: CommandReply = ask(&client, initiative::RESUME, &cmd("ops-token", "c3")).await?;
    assert!(resumed.accepted);
    let decided = evaluate_once(&deps, &config, started).await.map_err(anyhow::Error::msg)?;
    assert_eq!(outcomes(&decided), [Outcome::Submitted]);
    let status: InitiativeStatus = ask(&client, initiative::STATUS, &()).await?;
    assert_eq!((status.paused, status.counts.last_hour, status.counts.running), (false, 1, 1));

    let _ = stop.send(());
    service.await??;
    Ok(())
}
