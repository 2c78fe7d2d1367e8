//! The scheduler against a real nats-server: the same `dispatched` event
//! delivered twice by the server schedules the job once, and the watchdog
//! fails jobs stuck past the limits their own events define (and only those).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::AckKind;
use chrono::Utc;
use skynet_bus::consumer::Disposition;
use skynet_bus::deadlines::Deadlines;
use skynet_bus::definitions::{EVENTS_STREAM, WATCHDOG_BUCKET};
use skynet_bus::{EventStore, Jobs};
use skynet_contract::executor::{ExecutorStatus, Health, ProviderStatus};
use skynet_contract::job::Planned;
use skynet_contract::{ExecSpec, ExecStep, JobId, Plan, PlanStep, Risk};
use skynet_job::Command;
use skynet_scheduler::signals::Signals;
use skynet_scheduler::{Config, Ctx, Deps, handle, watchdog};
use skynet_testkit::{Log, auto_approved, fetch_one, record, requested};

/// Records a job up to `dispatched`, with a total timeout of `total_secs`.
async fn dispatched(admin: &EventStore, id: &str, total_secs: u64) -> anyhow::Result<JobId> {
    let job = JobId::for_request("t", id);
    let step = PlanStep {
        title: "Check git status".into(),
        description: String::new(),
        action: Some("git_status".into()),
        params: BTreeMap::new(),
        risk: Risk::ReadOnly,
        estimated_minutes: 1,
        continue_on_error: false,
    };
    let plan = Plan { summary: "s".into(), steps: vec![step], artifacts: vec![] };
    let decision = auto_approved(1);
    let spec = ExecSpec {
        steps: vec![ExecStep {
            index: 0,
            action: "git_status".into(),
            params: BTreeMap::new(),
            timeout_secs: 1,
            risk: Risk::ReadOnly,
            continue_on_error: false,
            description: String::new(),
        }],
        working_dir: "/tmp".into(),
        total_timeout_secs: total_secs,
        approved_risk: Risk::ReadOnly,
    };
    for (i, c) in [
        Command::Open(requested("t", id, "check git status")),
        Command::RecordPlan(Planned {
            plan,
            planner: "rules".into(),
            fallback_reason: None,
            memories: vec![],
            warnings: vec![],
        }),
        Command::DecidePolicy(decision),
        Command::Dispatch(spec),
    ]
    .into_iter()
    .enumerate()
    {
        record(admin, job, &format!("setup{i}"), c).await?;
    }
    Ok(job)
}

/// A scheduler context whose signals know one healthy executor offering `mock`.
async fn ctx(log: &Log, config: Config) -> anyhow::Result<Ctx> {
    let signals = Signals::default();
    let mut providers = BTreeMap::new();
    providers.insert(
        "mock".to_owned(),
        ProviderStatus {
            health: Health::Healthy,
            message: String::new(),
            capabilities: vec!["*".into()],
            latency_ms: 1,
        },
    );
    signals.apply_executor(ExecutorStatus {
        id: "x-1".into(),
        providers,
        capacity: 4,
        running: 0,
        started_at: Utc::now(),
        heartbeat_at: Utc::now(),
        version: String::new(),
    });
    Ok(Ctx {
        deps: Deps { js: log.js.clone(), nats: log.client.clone(), jobs: log.jobs.clone() },
        signals,
        config: Arc::new(config),
        watchdog: Deadlines::open(&log.js, WATCHDOG_BUCKET).await.map_err(|e| anyhow::anyhow!(e))?,
    })
}

async fn types(jobs: &Jobs, job: JobId) -> anyhow::Result<Vec<String>> {
    Ok(jobs.store().load(job).await?.events.into_iter().map(|(_, e)| e.ty).collect())
}

#[tokio::test]
async fn the_same_dispatched_event_delivered_twice_by_the_server_schedules_once() -> anyhow::Result<()> {
    let log = Log::start("scheduler").await?;
    let ctx = ctx(&log, Config::default()).await?;
    let job = dispatched(&log.admin, "twice", 60).await?;
    let first = fetch_one(&log.js, EVENTS_STREAM, "scheduler").await?;
    assert!(matches!(handle(&ctx, first.clone()).await, Disposition::Ack));
    // As if the scheduler died before its ack reached the server: the server
    // delivers the same message again.
    first.ack_with(AckKind::Nak(None)).await.map_err(|e| anyhow::anyhow!(e))?;
    let again = fetch_one(&log.js, EVENTS_STREAM, "scheduler").await?;
    let (a, b) = (first.info().map_err(|e| anyhow::anyhow!(e))?, again.info().map_err(|e| anyhow::anyhow!(e))?);
    assert_eq!((a.stream_sequence, b.delivered), (b.stream_sequence, 2), "a real redelivery");
    assert!(matches!(handle(&ctx, again).await, Disposition::Ack));
    let scheduled = types(&log.jobs, job).await?.iter().filter(|t| t.ends_with(".scheduled.v1")).count();
    assert_eq!(scheduled, 1);
    Ok(())
}

#[tokio::test]
async fn the_watchdog_fails_jobs_stuck_past_their_own_limits_and_only_those() -> anyhow::Result<()> {
    let log = Log::start("scheduler").await?;
    let config = Config { start_within_secs: 5, watchdog_grace_secs: 5, ..Config::default() };
    let ctx = ctx(&log, config.clone()).await?;
    // Three jobs scheduled through the handler (which stores their deadlines),
    // each allowed 10 s in all: deadline = now + 5 + 10 + 5.
    let mut jobs = Vec::new();
    for id in ["never-started", "executor-gone", "cancelled"] {
        let job = dispatched(&log.admin, id, 10).await?;
        let msg = fetch_one(&log.js, EVENTS_STREAM, "scheduler").await?;
        assert!(matches!(handle(&ctx, msg.clone()).await, Disposition::Ack));
        msg.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        jobs.push(job);
    }
    let (never, gone, cancelled) = (jobs[0], jobs[1], jobs[2]);
    // One was started by an executor that then vanished; one was cancelled.
    record(&log.admin, gone, "start", Command::Start { executor: "gone".into(), lease: 1 }).await?;
    record(&log.admin, cancelled, "cancel", Command::Cancel { by: "alice".into(), reason: "no".into() }).await?;

    // Before the deadline nothing happens.
    let now = Utc::now();
    let early = now + chrono::Duration::seconds(15);
    assert_eq!(watchdog::sweep(&ctx.watchdog, &log.jobs, &config, early).await.map_err(|e| anyhow::anyhow!(e))?, 0);
    // Past it, the two stuck ones fail, each naming its stage; the ended one is left alone.
    let later = now + chrono::Duration::seconds(25);
    assert_eq!(watchdog::sweep(&ctx.watchdog, &log.jobs, &config, later).await.map_err(|e| anyhow::anyhow!(e))?, 2);
    let failed = |job: JobId| {
        let store = log.jobs.store().clone();
        async move {
            let events = store.load(job).await?.events;
            anyhow::Ok(events.into_iter().map(|(_, e)| e).find(|e| e.ty == "skynet.job.failed.v1").map(|e| e.data))
        }
    };
    let a = failed(never).await?.ok_or_else(|| anyhow::anyhow!("never-started not failed"))?;
    assert_eq!(a["stage"], "scheduling", "{a}");
    assert!(a["reason"].as_str().unwrap_or("").contains("no executor started"), "{a}");
    let b = failed(gone).await?.ok_or_else(|| anyhow::anyhow!("executor-gone not failed"))?;
    assert_eq!(b["stage"], "execution", "{b}");
    assert!(b["reason"].as_str().unwrap_or("").contains("did not end"), "{b}");
    assert_eq!(failed(cancelled).await?, None);
    assert_eq!(types(&log.jobs, cancelled).await?.last().map(String::as_str), Some("skynet.job.cancelled.v1"));
    // Every deadline is cleared: a second sweep does nothing.
    for job in [never, gone, cancelled] {
        assert_eq!(ctx.watchdog.get(job).await.map_err(|e| anyhow::anyhow!(e))?, None);
    }
    assert_eq!(watchdog::sweep(&ctx.watchdog, &log.jobs, &config, later).await.map_err(|e| anyhow::anyhow!(e))?, 0);
    Ok(())
}
