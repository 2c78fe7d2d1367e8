//! The whole system under load: `skynet up` as its own process, as a user runs
//! it, on a nats-server and a Postgres database of its own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::Serialize;
use skynet_bus::server::{Durability, ManagedServer};
use skynet_contract::JobId;
use sqlx::{Connection, PgConnection};

use super::tally::Tally;

/// Terminal event kinds (a job ends with exactly one).
pub const TERMINAL: &[&str] = &["succeeded", "failed", "planning_failed", "denied", "cancelled", "timed_out"];
const SOURCE: &str = "bench";

/// Sizes of one system run.
#[derive(Debug, Clone, Copy)]
pub struct SystemArgs {
    /// Jobs for the throughput run.
    pub jobs: usize,
    /// Jobs for the latency run, offered at `rate` per second.
    pub latency_jobs: usize,
    pub rate: f64,
    /// Messages for the raw ceiling.
    pub raw_messages: usize,
    /// Print the consumers' backlogs during the throughput run.
    pub watch: bool,
    /// Rebuilds to take the median of.
    pub rebuilds: u32,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub jobs: usize,
}

/// Figures of one durability mode.
#[derive(Debug, Clone, Serialize)]
pub struct SystemReport {
    pub mode: &'static str,
    pub raw_publish_per_sec: f64,
    pub raw_consume_ack_per_sec: f64,
    pub events_per_job: f64,
    /// Messages every stream stored per job of the throughput run, the event
    /// log's included (KV puts and purges are messages too): under
    /// `sync_interval: always` each is an fsync, where the ceiling counts only
    /// the events. A work queue's removals (the intake's) are not counted.
    pub stored_per_job: f64,
    pub ceiling_jobs_per_sec: f64,
    pub throughput_jobs_per_sec: f64,
    pub throughput_share_of_ceiling: f64,
    pub jobs_submitted: usize,
    pub jobs_succeeded: usize,
    pub projector_lag_events: u64,
    pub latency: Latency,
    pub rebuild_events: u64,
    pub rebuild_events_per_sec: f64,
    /// Finished jobs the memory service learned from per second, first
    /// submission to last applied (while the throughput run was going on).
    pub memory_events_per_sec: f64,
    /// CPU each process spent per job of the throughput run, from the first
    /// submission until memory had learned from the last job.
    pub cpu_per_job: super::cpu::CpuPerJob,
    /// Throughput of the same run with `skynet up --without sentinel` (a
    /// server and database of its own): what watching costs.
    pub without_sentinel_jobs_per_sec: f64,
    pub rss_idle_mib: f64,
    pub rss_after_mib: f64,
}

/// A `skynet up` child, killed on drop.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A database of its own, dropped afterwards.
pub struct BenchDb {
    pub url: String,
    admin: String,
    name: String,
}

impl BenchDb {
    pub async fn create() -> anyhow::Result<BenchDb> {
        let admin = std::env::var("SKYNET_TEST_DATABASE_URL")
            .or_else(|_| std::env::var("DATABASE_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut admin_url = url::Url::parse(&admin)?;
        admin_url.set_path("/postgres");
        let name = format!("skynet_bench_{}", uuid::Uuid::new_v4().simple());
        let mut c =
            PgConnection::connect(admin_url.as_str()).await.context("connecting to Postgres for the benchmark")?;
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut c).await?;
        let mut url = admin_url.clone();
        url.set_path(&format!("/{name}"));
        Ok(BenchDb { url: url.to_string(), admin: admin_url.to_string(), name })
    }

    pub async fn drop_it(self) {
        if let Ok(mut c) = PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut c).await;
        }
    }
}

/// Resident set of a process, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A policy file whose rate limit does not throttle the benchmark's requester.
pub fn bench_policy(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let path = dir.join("policy.toml");
    let text = skynet_rules::policy::DEFAULT_RULES.to_owned()
        + "\n[rate_limits.requesters.bench]\nper_minute = 100000000\nper_hour = 1000000000\n";
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The token of the principal `bench` the load is submitted as (its rate
/// limit is lifted in [`bench_policy`]).
pub const BENCH_TOKEN: &str = "bench-submitter-token";

/// Submits one READ_ONLY task as the principal `bench`; returns its job id.
pub async fn submit(client: &async_nats::Client, id: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"specversion": "1.0", "id": id, "source": SOURCE, "type": "skynet.task.requested.v1",
        "data": {"intent": "check git status", "working_dir": "/tmp"}});
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Authorization", format!("Bearer {BENCH_TOKEN}").as_str());
    client
        .publish_with_headers(skynet_contract::subjects::INTAKE_TASK, headers, serde_json::to_vec(&body)?.into())
        .await?;
    Ok(JobId::for_request(SOURCE, id).to_string())
}

/// Registers the principal `bench` (admin role needed).
pub async fn register_bench_principal(js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    use skynet_contract::principal::{Principal, PrincipalRole};
    let bench = Principal { name: "bench".into(), roles: vec![PrincipalRole::Submit] };
    skynet_bus::principals::Principals::open(js).await?.put(BENCH_TOKEN, &bench).await?;
    Ok(())
}

/// Follows every job's end into `tally` until all submitted jobs ended, or no
/// job ended for `stall`.
pub async fn collect(
    sub: &mut futures::stream::SelectAll<async_nats::Subscriber>,
    tally: &mut Tally,
    expect: usize,
    stall: Duration,
) -> anyhow::Result<()> {
    while tally.ended_count() < expect {
        let msg = match tokio::time::timeout(stall, sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => anyhow::bail!("event subscription closed"),
            Err(_) => break, // stalled: `check` reports what is missing
        };
        let mut parts = msg.subject.split('.');
        let (Some(job), Some(kind)) = (parts.nth(2), parts.next()) else { continue };
        tally.ended(job, kind == "succeeded", Instant::now());
    }
    Ok(())
}

/// Every terminal event in the log, counted per subject.
pub async fn terminal_counts(
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<std::collections::HashMap<String, usize>> {
    let stream = js.get_stream(skynet_bus::definitions::EVENTS_STREAM).await?;
    let mut counts = std::collections::HashMap::new();
    for kind in TERMINAL {
        let mut subjects = stream.info_with_subjects(format!("skynet.job.*.{kind}")).await?;
        while let Some(entry) = subjects.next().await {
            let (subject, n) = entry?;
            counts.insert(subject, n);
        }
    }
    Ok(counts)
}

/// Waits (up to 10 s) until the log holds exactly one `succeeded` per job of
/// `tally`: a subscriber sees a publish before the stream has stored it, and
/// sees publishes the stream refused too.
pub async fn log_confirms(js: &async_nats::jetstream::Context, tally: &Tally) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tally.check_log(&terminal_counts(js).await?) {
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(()) => return Ok(()),
        }
    }
}

/// Subscriptions to every terminal event.
pub async fn terminal_events(
    client: &async_nats::Client,
) -> anyhow::Result<futures::stream::SelectAll<async_nats::Subscriber>> {
    let mut subs = Vec::new();
    for k in TERMINAL {
        subs.push(client.subscribe(format!("skynet.job.*.{k}")).await?);
    }
    Ok(futures::stream::select_all(subs))
}

/// A connection to the benchmark's server under `role`.
pub async fn connect_as(server: &ManagedServer, role: &str) -> anyhow::Result<async_nats::Client> {
    Ok(skynet_bus::auth::connect(&server.url, &server.creds.credential(role), role, "bench").await?)
}

/// Starts `skynet up` (this binary) against `nats` and `db`, and waits until it serves.
async fn start_up(
    server: &ManagedServer,
    db_url: &str,
    dir: &std::path::Path,
    client: &async_nats::Client,
    without: &[&str],
) -> anyhow::Result<Up> {
    let policy = bench_policy(dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("up");
    if !without.is_empty() {
        command.arg("--without").arg(without.join(","));
    }
    let child = command
        .env("SKYNET_NATS_URL", &server.url)
        .env("SKYNET_NATS_CREDS_DIR", &server.creds.dir)
        .env("DATABASE_URL", db_url)
        .env("SKYNET_POLICY_FILE", &policy)
        .env("SKYNET_EXECUTOR_PROVIDERS", "mock")
        .env("SKYNET_MOCK_LATENCY_MS", "0")
        .env("SKYNET_EXECUTOR_CAPACITY", "256")
        .env("SKYNET_API_LISTEN", format!("127.0.0.1:{port}"))
        .env("SKYNET_API_TOKEN", "bench")
        .env("SKYNET_DATA_DIR", dir)
        .env("SKYNET_LOG", "warn")
        // The system a user runs: every service, the initiative included
        // (it looks every few seconds and proposes nothing to a busy system).
        .env("SKYNET_INITIATIVE", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting `skynet up`")?;
    let up = Up(child);
    let js = async_nats::jetstream::new(client.clone());
    // The policy service answers users (and the API), not the admin role.
    let user = connect_as(server, skynet_bus::auth::CLIENT).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let policy_ok =
            user.request("skynet.policy.check", br#"{"action":"git_status"}"#.as_slice().into()).await.is_ok();
        let executor_ok = match js.get_key_value(skynet_bus::definitions::EXECUTORS_BUCKET).await {
            Ok(kv) => match kv.keys().await {
                Ok(keys) => keys.count().await > 0,
                Err(_) => false,
            },
            Err(_) => false,
        };
        if policy_ok && executor_ok {
            return Ok(up);
        }
        anyhow::ensure!(Instant::now() < deadline, "`skynet up` did not become ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Runs the system benchmark for one durability mode.
pub async fn run(mode: Durability, args: SystemArgs) -> anyhow::Result<SystemReport> {
    let dir = tempfile::tempdir()?;
    let server = ManagedServer::start(&dir.path().join("nats"), &dir.path().join("creds"), 0, mode)?;
    let db = BenchDb::create().await?;
    let client = connect_as(&server, skynet_bus::auth::ADMIN).await?;
    let js = skynet_bus::bootstrap(&client).await?;
    let result = run_on(mode, args, &server, &db, &client, &js, dir.path()).await;
    db.drop_it().await;
    let mut report = result?;
    report.without_sentinel_jobs_per_sec = throughput_without(mode, args.jobs, "sentinel").await?;
    Ok(report)
}

/// Rebuilds the read models as `skynet rebuild` does (the whole log into
/// shadow tables, swapped in); the seconds it took, everything included.
async fn rebuild_once(pool: &sqlx::PgPool, js: &async_nats::jetstream::Context, target: u64) -> anyhow::Result<f64> {
    let progress = skynet_projector::Progress::default();
    let started = Instant::now();
    let at = skynet_projector::rebuild_shadow(skynet_projector::Config::default(), js.clone(), pool, &progress).await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(at >= target, "the rebuild reached {at}, not the end of the log at {target}");
    eprintln!("[bench] rebuild phases ended at (ms): {}", skynet_projector::Progress::show(&progress.phases()));
    Ok(secs)
}

/// Each stream's last sequence: how many messages it has ever stored.
async fn stored_by_stream(
    js: &async_nats::jetstream::Context,
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let mut names = js.stream_names();
    let mut out = std::collections::BTreeMap::new();
    while let Some(name) = names.next().await {
        let name = name?;
        let last = js.get_stream(&name).await?.info().await?.state.last_sequence;
        out.insert(name, last);
    }
    Ok(out)
}

/// Jobs per second of a throughput run of `skynet up --without <service>`.
async fn throughput_without(mode: Durability, jobs: usize, service: &str) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let server = ManagedServer::start(&dir.path().join("nats"), &dir.path().join("creds"), 0, mode)?;
    let db = BenchDb::create().await?;
    let admin = connect_as(&server, skynet_bus::auth::ADMIN).await?;
    skynet_bus::bootstrap(&admin).await?;
    let measured = async {
        let _up = start_up(&server, &db.url, dir.path(), &admin, &[service]).await?;
        register_bench_principal(&async_nats::jetstream::new(admin.clone())).await?;
        let client = &connect_as(&server, skynet_bus::auth::CLIENT).await?;
        let mut ends = terminal_events(client).await?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let mut warm = Tally::default();
        for i in 0..20.min(jobs) {
            warm.submitted(submit(client, &format!("{run_id}-w{i}")).await?, Instant::now());
        }
        let expect = warm.submitted_count();
        collect(&mut ends, &mut warm, expect, Duration::from_secs(30)).await?;
        let mut tally = Tally::default();
        let started = Instant::now();
        for i in 0..jobs {
            tally.submitted(submit(client, &format!("{run_id}-t{i}")).await?, Instant::now());
        }
        client.flush().await?;
        collect(&mut ends, &mut tally, jobs, Duration::from_secs(30)).await?;
        tally.check().context("throughput run without the sentinel")?;
        log_confirms(&async_nats::jetstream::new(admin.clone()), &tally).await.context("the same, in the log")?;
        let elapsed = tally.last_success().map_or(0.0, |t| t.duration_since(started).as_secs_f64());
        Ok::<_, anyhow::Error>(jobs as f64 / elapsed.max(1e-9))
    }
    .await;
    db.drop_it().await;
    measured
}

#[allow(clippy::too_many_arguments)]
async fn run_on(
    mode: Durability,
    args: SystemArgs,
    server: &ManagedServer,
    db: &BenchDb,
    client: &async_nats::Client,
    js: &async_nats::jetstream::Context,
    dir: &std::path::Path,
) -> anyhow::Result<SystemReport> {
    // The ceiling, on the same server, with messages the size of a job event.
    let sample = serde_json::to_vec(
        &serde_json::json!({"specversion":"1.0","id":"00000000-0000-5000-8000-000000000000",
        "source":"skynet/executor","type":"skynet.job.step_succeeded.v1","subject":"00000000-0000-5000-8000-000000000000",
        "time":"2026-11-21T00:00:00Z","datacontenttype":"application/json",
        "data":{"step":0,"exit_code":0,"duration_ms":0,"output_ref":"00000000-0000-5000-8000-000000000000/0/1","lease":1}}),
    )?;
    let raw = super::log::raw_publish(js, args.raw_messages, sample.len()).await?;
    let raw_publish_per_sec = args.raw_messages as f64 / raw.publish_secs;
    let raw_consume_ack_per_sec = args.raw_messages as f64 / raw.consume_secs;

    let up = start_up(server, &db.url, dir, client, &[]).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // settle before measuring idle memory
    let rss_idle_mib = rss_mib(up.0.id());
    register_bench_principal(js).await?;
    // The load comes from a user's connection, with the `client` role's rights.
    let client = &connect_as(server, skynet_bus::auth::CLIENT).await?;
    let mut ends = terminal_events(client).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    // Warm-up, then throughput: everything offered at once.
    let mut warm = Tally::default();
    for i in 0..20.min(args.jobs) {
        warm.submitted(submit(client, &format!("{run_id}-w{i}")).await?, Instant::now());
    }
    let expect = warm.submitted_count();
    collect(&mut ends, &mut warm, expect, Duration::from_secs(30)).await?;
    warm.check().context("warm-up")?;
    let events_before = js.get_stream(skynet_bus::definitions::EVENTS_STREAM).await?.info().await?.state.messages;
    let stored_before = stored_by_stream(js).await?;

    let mut tally = Tally::default();
    eprintln!("[bench] {mode:?}: throughput run…");
    let watcher = args.watch.then(|| super::watch::start(js.clone()));
    let cpu_before = super::cpu::Sample::take(up.0.id(), server.pid());
    let started = Instant::now();
    for i in 0..args.jobs {
        tally.submitted(submit(client, &format!("{run_id}-t{i}")).await?, Instant::now());
    }
    client.flush().await?;
    collect(&mut ends, &mut tally, args.jobs, Duration::from_secs(30)).await?;
    if let Some(w) = watcher {
        w.abort();
    }
    tally.check().context("throughput run")?;
    let elapsed = tally.last_success().map_or(0.0, |t| t.duration_since(started).as_secs_f64());
    let throughput = args.jobs as f64 / elapsed.max(1e-9);
    let mut stream = js.get_stream(skynet_bus::definitions::EVENTS_STREAM).await?;
    let info = stream.info().await?.state.clone();
    let events_per_job = (info.messages - events_before) as f64 / args.jobs as f64;
    let stored = stored_by_stream(js).await?;
    let mut stored_per_job = 0.0;
    let mut by_stream = Vec::new();
    for (name, last) in &stored {
        let before = stored_before.get(name).copied().unwrap_or(0);
        let per_job = last.saturating_sub(before) as f64 / args.jobs as f64;
        stored_per_job += per_job;
        if per_job > 0.0 {
            by_stream.push(format!("{name} {per_job:.2}"));
        }
    }
    eprintln!("[bench] {mode:?}: stored per job: {stored_per_job:.2} ({})", by_stream.join(", "));
    let pool = crate::infra::connect_db(Some(&db.url)).await?;
    let checkpoint = skynet_projector::checkpoint(&pool).await.unwrap_or(0);
    let projector_lag_events = info.last_sequence.saturating_sub(checkpoint);
    let rss_after_mib = rss_mib(up.0.id());
    // The memory service learns from every finished job: how fast it keeps up
    // (from the first submission until it has applied every job's end).
    let expected = (expect + args.jobs) as i64;
    let memory_events_per_sec = loop {
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM memory_applied").fetch_one(&pool).await.unwrap_or(0);
        if applied >= expected {
            break args.jobs as f64 / started.elapsed().as_secs_f64();
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "memory applied {applied} of {expected} in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Every job's work is done once memory has learned from it (the projector
    // keeps up well before): what the jobs cost each process, per job. The
    // benchmark's own check of every job in the log comes after.
    let cpu_per_job = cpu_before.per_job(&super::cpu::Sample::take(up.0.id(), server.pid()), args.jobs);
    eprintln!("[bench] {mode:?}: CPU per job: {cpu_per_job:?}");
    log_confirms(js, &tally).await.context("throughput run, in the log")?;

    // Latency at a fixed offered rate.
    let mut lat = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let collector = async {
        // Drain ends concurrently with submission so arrival times are exact.
        let mut local = Vec::new();
        while local.len() < args.latency_jobs {
            match tokio::time::timeout(Duration::from_secs(30), ends.next()).await {
                Ok(Some(m)) => local.push((m.subject.to_string(), Instant::now())),
                _ => break,
            }
        }
        local
    };
    let submitter = async {
        let mut sent = Vec::new();
        for i in 0..args.latency_jobs {
            tick.tick().await;
            let at = Instant::now();
            sent.push((submit(client, &format!("{run_id}-l{i}")).await?, at));
        }
        anyhow::Ok(sent)
    };
    let (sent, arrived) = tokio::join!(submitter, collector);
    for (job, at) in sent? {
        lat.submitted(job, at);
    }
    for (subject, at) in arrived {
        let mut parts = subject.split('.');
        if let (Some(job), Some(kind)) = (parts.nth(2), parts.next()) {
            lat.ended(job, kind == "succeeded", at);
        }
    }
    lat.check().context("latency run")?;
    log_confirms(js, &lat).await.context("latency run, in the log")?;
    let mut l = lat.latencies_us();
    l.sort_unstable();
    let latency = Latency {
        p50_ms: percentile(&l, 0.50),
        p95_ms: percentile(&l, 0.95),
        p99_ms: percentile(&l, 0.99),
        max_ms: percentile(&l, 1.0),
        jobs: l.len(),
    };
    drop(up);

    // Rebuild as `skynet rebuild` does, five times by default: the median
    // counts (one rebuild of ~30,000 events is over in about a second, and
    // one of them often runs 20% slower than the rest on a shared machine).
    eprintln!("[bench] {mode:?}: rebuild…");
    let projector_js = async_nats::jetstream::new(connect_as(server, "projector").await?);
    let target = stream.info().await?.state.last_sequence;
    let events = stream.info().await?.state.messages;
    let mut rates = Vec::new();
    for _ in 0..args.rebuilds.max(1) {
        let secs = rebuild_once(&pool, &projector_js, target).await?;
        rates.push(events as f64 / secs);
    }
    eprintln!("[bench] {mode:?}: rebuilds, events/s: {:.0?}", rates);
    rates.sort_by(f64::total_cmp);
    pool.close().await;

    let ceiling_jobs_per_sec = raw_publish_per_sec / events_per_job.max(1.0);
    Ok(SystemReport {
        mode: match mode {
            Durability::Durable => "durable",
            Durability::Fast => "fast",
        },
        raw_publish_per_sec,
        raw_consume_ack_per_sec,
        events_per_job,
        stored_per_job,
        ceiling_jobs_per_sec,
        throughput_jobs_per_sec: throughput,
        throughput_share_of_ceiling: throughput / ceiling_jobs_per_sec,
        jobs_submitted: tally.submitted_count(),
        jobs_succeeded: tally.succeeded_count(),
        projector_lag_events,
        latency,
        rebuild_events: events,
        rebuild_events_per_sec: rates[rates.len() / 2],
        memory_events_per_sec,
        cpu_per_job,
        without_sentinel_jobs_per_sec: 0.0,
        rss_idle_mib,
        rss_after_mib,
    })
}
