//! `skynet chaos`: the fault suite. Jobs are submitted over plain NATS (as any
//! client would, retrying until the server acknowledges) while every service
//! runs as its own process (`skynet run <service>`, executors several times)
//! and faults are injected: a random process `kill -9`ed and restarted every
//! interval, the nats-server killed and restarted on the same store, and
//! Postgres cut off (a proxy in front of it) for a while. At the end every job
//! must be terminal exactly once, no step result recorded twice, and the read
//! models equal to a rebuild from the log.
//!
//! Each run has a nats-server and a Postgres database of its own. `./dev test`
//! runs it small (`services/cli/tests/chaos.rs`); the full size is the default.

pub mod check;
pub mod proxy;

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use clap::Args;
use serde::Serialize;
use skynet_bus::server::{Durability, ManagedServer};
use skynet_contract::{Envelope, JobId, subjects};

use crate::bench::system::{BENCH_TOKEN, BenchDb, bench_policy, connect_as, register_bench_principal};
use crate::infra::Infra;
use crate::settings::Settings;
use proxy::Proxy;

const SOURCE: &str = "chaos";

/// `skynet chaos` options.
#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Jobs submitted.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Jobs submitted per second.
    #[arg(long, default_value_t = 25.0)]
    pub rate: f64,
    /// Executor processes.
    #[arg(long, default_value_t = 3)]
    pub executors: usize,
    /// A random service process is killed with SIGKILL (and restarted) this often.
    #[arg(long, default_value_t = 2000)]
    pub kill_every_ms: u64,
    /// How long Postgres is unreachable.
    #[arg(long, default_value_t = 30)]
    pub pg_outage_secs: u64,
    /// How long each job's one (mock) step takes.
    #[arg(long, default_value_t = 300)]
    pub step_ms: u64,
    /// Seed of the fault schedule (printed; random when unset).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What a run did and found.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub jobs: usize,
    pub succeeded: usize,
    /// Jobs that ended otherwise, by terminal kind.
    pub ended_otherwise: BTreeMap<String, usize>,
    pub lost: usize,
    pub doubled_terminal: usize,
    pub steps_recorded_twice: usize,
    /// `kill -9`s per service.
    pub kills: BTreeMap<String, usize>,
    pub nats_restarts: usize,
    pub pg_outage_secs: u64,
    /// From the end of the last fault to the last job's end.
    pub drain_secs_after_last_fault: f64,
    pub total_secs: f64,
    pub events: usize,
    /// Events the projector could not store (there should be none).
    pub quarantined: i64,
    pub read_models_equal_rebuild: bool,
}

impl ChaosReport {
    /// Whether the run found nothing wrong.
    /// Every job's one step always succeeds: a job that ended otherwise ended
    /// so because of a fault, which is what this suite says must not happen.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.doubled_terminal == 0
            && self.steps_recorded_twice == 0
            && self.ended_otherwise.is_empty()
            && self.quarantined == 0
            && self.read_models_equal_rebuild
    }
}

/// One service process, restartable.
struct Proc {
    name: String,
    service: &'static str,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(std::env::current_exe()?)
            .args(["run", self.service])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        self.child = Some(child);
        Ok(())
    }

    /// `kill -9` (std's `Child::kill` is SIGKILL).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs the suite and prints the report; the exit code is 1 if it found a fault.
pub async fn run(args: ChaosArgs) -> anyhow::Result<i32> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let dir = tempfile::tempdir()?;
    let db = BenchDb::create().await?;
    let result = chaos(&args, seed, dir.path(), &db.url).await;
    db.drop_it().await;
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render(&report));
    }
    if !report.passed() {
        let kept = dir.keep();
        eprintln!("chaos found faults; service logs kept in {}", kept.join("logs").display());
        return Ok(1);
    }
    Ok(0)
}

async fn chaos(args: &ChaosArgs, seed: u64, dir: &Path, db_url: &str) -> anyhow::Result<ChaosReport> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let (store, creds) = (dir.join("nats"), dir.join("creds"));
    let mut server = ManagedServer::start(&store, &creds, 0, Durability::Durable)?;
    let port = server.port;
    let upstream = url::Url::parse(db_url)?;
    let proxy =
        Proxy::start(format!("{}:{}", upstream.host_str().unwrap_or("127.0.0.1"), upstream.port().unwrap_or(5432)))
            .await?;
    let proxied = proxy.url_for(db_url)?;
    let policy = bench_policy(dir)?;
    let mut settings = Settings::new(Some(server.url.clone()), Some(proxied.clone()));
    settings.nats_creds_dir = Some(server.creds.dir.clone());
    settings.data_dir = dir.to_owned();
    settings.policy_file = Some(policy.clone());
    let infra = Infra::up(&settings).await?;
    let admin = infra.connect(skynet_bus::auth::ADMIN).await?;
    register_bench_principal(&async_nats::jetstream::new(admin.clone())).await?;

    std::fs::create_dir_all(dir.join("logs"))?;
    let common = |extra: &[(&str, String)]| {
        let mut env: Vec<(String, String)> = vec![
            ("SKYNET_NATS_URL".into(), server.url.clone()),
            ("SKYNET_NATS_CREDS_DIR".into(), server.creds.dir.display().to_string()),
            ("DATABASE_URL".into(), proxied.clone()),
            ("SKYNET_POLICY_FILE".into(), policy.display().to_string()),
            ("SKYNET_DATA_DIR".into(), dir.display().to_string()),
            ("SKYNET_LOG".into(), "warn".into()),
        ];
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        env
    };
    let mut procs = Vec::new();
    for service in ["intake", "planner", "policy", "dispatcher", "scheduler", "projector"] {
        procs.push(Proc {
            name: service.into(),
            service,
            env: common(&[]),
            log: dir.join("logs").join(format!("{service}.log")),
            child: None,
        });
    }
    for i in 0..args.executors {
        let name = format!("executor-{i}");
        procs.push(Proc {
            env: common(&[
                ("SKYNET_EXECUTOR_ID", format!("chaos-{name}")),
                ("SKYNET_EXECUTOR_PROVIDERS", "mock".into()),
                ("SKYNET_MOCK_LATENCY_MS", args.step_ms.to_string()),
                ("SKYNET_EXECUTOR_CAPACITY", "8".into()),
            ]),
            log: dir.join("logs").join(format!("{name}.log")),
            name,
            service: "executor",
            child: None,
        });
    }
    for p in &mut procs {
        p.spawn()?;
    }

    let started = Instant::now();
    let client = connect_as(&server, skynet_bus::auth::CLIENT).await?;
    let submitter = tokio::spawn(submit_all(client.clone(), args.jobs, args.rate));
    let submit_secs = args.jobs as f64 / args.rate.max(0.001);
    let (nats_at, pg_at) = (submit_secs * 0.3, submit_secs * 0.5);
    let outage = Duration::from_secs(args.pg_outage_secs);
    let mut kills: BTreeMap<String, usize> = BTreeMap::new();
    let (mut nats_restarts, mut pg_cut_at, mut pg_done) = (0usize, None::<Instant>, false);
    // Every tick ends with a kill: the last fault is the last kill's restart.
    let mut last_fault;
    let mut tick = tokio::time::interval(Duration::from_millis(args.kill_every_ms.max(100)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let t = started.elapsed().as_secs_f64();
        if nats_restarts == 0 && t >= nats_at {
            server.kill();
            tokio::time::sleep(Duration::from_secs(1)).await;
            server = ManagedServer::start(&store, &creds, port, Durability::Durable)?;
            nats_restarts += 1;
        }
        match pg_cut_at {
            None if t >= pg_at => {
                proxy.cut();
                pg_cut_at = Some(Instant::now());
            }
            Some(at) if !pg_done && at.elapsed() >= outage => {
                proxy.restore();
                pg_done = true;
            }
            _ => {}
        }
        let victim = rng.usize(..procs.len());
        let p = &mut procs[victim];
        p.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.spawn()?;
        *kills.entry(p.service.to_owned()).or_default() += 1;
        last_fault = Instant::now();
        if submitter.is_finished() && nats_restarts > 0 && pg_done {
            break;
        }
    }
    let jobs: HashSet<String> = submitter.await??.into_iter().collect();

    // Drain: every job terminal.
    let deadline = Instant::now() + Duration::from_secs(600);
    let drained = loop {
        if check::ended(&admin, &jobs).await? >= jobs.len() {
            break Instant::now();
        }
        if Instant::now() > deadline {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let outcome = check::outcome(&admin, &jobs).await?;

    // Read models: every writer but the projector stopped, the projector caught
    // up, compared with a rebuild into a database of its own.
    for p in procs.iter_mut().filter(|p| p.service != "projector") {
        p.kill();
    }
    let (equal, quarantined) = compare_with_rebuild(&admin, &server, db_url).await?;
    drop(procs);
    Ok(ChaosReport {
        seed,
        jobs: jobs.len(),
        succeeded: outcome.succeeded,
        ended_otherwise: outcome.other,
        lost: outcome.lost.len(),
        doubled_terminal: outcome.doubled.len(),
        steps_recorded_twice: outcome.steps_twice.len(),
        kills,
        nats_restarts,
        pg_outage_secs: args.pg_outage_secs,
        drain_secs_after_last_fault: drained.duration_since(last_fault).as_secs_f64(),
        total_secs: started.elapsed().as_secs_f64(),
        events: outcome.events,
        quarantined,
        read_models_equal_rebuild: equal,
    })
}

/// Submits `n` READ_ONLY tasks at `rate` per second, each retried until the
/// server acknowledges it (the message id makes a retry a duplicate, not a
/// second job). Returns their job ids.
pub async fn submit_all(client: async_nats::Client, n: usize, rate: f64) -> anyhow::Result<Vec<String>> {
    let js = async_nats::jetstream::new(client);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tick = tokio::time::interval(every);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        tick.tick().await;
        let id = format!("{run}-{i}");
        let data = serde_json::json!({"intent": "check git status", "working_dir": "/tmp"});
        let env = Envelope::new(skynet_contract::task::TASK_REQUESTED, id.clone(), SOURCE, None, Utc::now(), &data)?;
        let (mut headers, payload) = skynet_bus::codec::encode(&env);
        headers.insert("Authorization", format!("Bearer {BENCH_TOKEN}").as_str());
        let give_up = Instant::now() + Duration::from_secs(300);
        loop {
            anyhow::ensure!(Instant::now() < give_up, "submission {id} not acknowledged within 300 s");
            let msg = async_nats::jetstream::message::PublishMessage::build()
                .headers(headers.clone())
                .payload(payload.clone());
            if let Ok(ack) = js.send_publish(subjects::INTAKE_TASK, msg).await
                && ack.await.is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        ids.push(JobId::for_request(SOURCE, &id).to_string());
    }
    Ok(ids)
}

/// Waits for the live projector to reach the end of the log, then rebuilds
/// the log into a fresh database and compares every table; also returns the
/// number of quarantined events.
async fn compare_with_rebuild(
    admin: &async_nats::Client,
    server: &ManagedServer,
    db_url: &str,
) -> anyhow::Result<(bool, i64)> {
    let js = async_nats::jetstream::new(admin.clone());
    let last = js.get_stream(skynet_bus::definitions::EVENTS_STREAM).await?.info().await?.state.last_sequence;
    let live = sqlx::PgPool::connect(db_url).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while skynet_projector::checkpoint(&live).await.unwrap_or(0) < last {
        anyhow::ensure!(Instant::now() < deadline, "the projector did not reach sequence {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let live_rows = check::snapshot(&live).await?;
    let quarantined: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_quarantine").fetch_one(&live).await?;
    let fresh = BenchDb::create().await?;
    let result = async {
        let db = sqlx::PgPool::connect(&fresh.url).await?;
        let nats = connect_as(server, "projector").await?;
        let deps = skynet_projector::Deps { js: async_nats::jetstream::new(nats), db: db.clone() };
        let config = skynet_projector::Config { until: Some(last), ..skynet_projector::Config::default() };
        skynet_projector::run(config, deps, std::future::pending()).await?;
        let rebuilt = check::snapshot(&db).await?;
        db.close().await;
        anyhow::Ok(rebuilt == live_rows)
    }
    .await;
    live.close().await;
    fresh.drop_it().await;
    Ok((result?, quarantined))
}

fn render(r: &ChaosReport) -> String {
    let kills: Vec<String> = r.kills.iter().map(|(s, n)| format!("{s} {n}")).collect();
    let others: Vec<String> = r.ended_otherwise.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "SKYNET chaos (seed {seed})\n\
         jobs           {jobs} submitted, {ok} succeeded{others}\n\
         faults         kill -9: {kills} ({total} in all); nats-server restarts: {nats}; Postgres outage: {pg} s\n\
         lost           {lost}\n\
         doubled        {doubled} jobs with two terminal events, {steps} step results recorded twice\n\
         drain          {drain} ({all:.1} s in all, {events} events)\n\
         quarantined    {quarantined}\n\
         read models    {rm}\n\
         verdict        {verdict}",
        seed = r.seed,
        jobs = r.jobs,
        ok = r.succeeded,
        others = if others.is_empty() { String::new() } else { format!(", {}", others.join(", ")) },
        kills = kills.join(", "),
        total = r.kills.values().sum::<usize>(),
        nats = r.nats_restarts,
        pg = r.pg_outage_secs,
        lost = r.lost,
        doubled = r.doubled_terminal,
        steps = r.steps_recorded_twice,
        drain = if r.drain_secs_after_last_fault > 0.0 {
            format!("{:.1} s after the last fault", r.drain_secs_after_last_fault)
        } else {
            "every job had ended before the last fault".into()
        },
        all = r.total_secs,
        events = r.events,
        quarantined = r.quarantined,
        rm = if r.read_models_equal_rebuild { "equal to a rebuild from the log" } else { "DIFFER from a rebuild" },
        verdict = if r.passed() { "PASS" } else { "FAIL" },
    )
}
