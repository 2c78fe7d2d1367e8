//! `skynet bench`: measures SKYNET and prints a report (table, or `--json`).
//!
//! * [`log`]: the event log alone — raw publish, appends with optimistic
//!   concurrency, whole-job replays.
//! * [`system`]: `skynet up` as a process under load — the raw ceiling of the
//!   same server, end-to-end throughput, latency at a fixed offered rate,
//!   rebuild speed and memory, in both durability modes.
//! * [`scaling`]: 1, 2 and 4 executor processes.
//! * [`memory`]: similar-records queries over many records.
//! * [`dashboard`]: the jobs page's server time over many jobs.
//!
//! Every run starts its own nats-server and Postgres database, so it never
//! disturbs a live system, and fails loudly if any job is lost ([`tally`]).

pub mod cpu;
pub mod dashboard;
pub mod log;
pub mod memory;
pub mod scaling;
pub mod system;
pub mod tally;
pub mod watch;

use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;
use skynet_bus::server::{Durability, ManagedServer};
use tokio_util::sync::CancellationToken;

use crate::infra::Infra;

/// Jobs each executor runs at once in the scaling runs: small enough that the
/// executors, not the shared control plane, are what is measured.
pub const SCALE_CAPACITY: usize = 4;

/// `skynet bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// A tiny run that checks the benchmark itself (seconds, not minutes).
    #[arg(long)]
    pub quick: bool,
    /// Which durability modes to measure.
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    pub mode: ModeArg,
    /// Jobs in the throughput run.
    #[arg(long, default_value_t = 3000)]
    pub jobs: usize,
    /// Skip the executor-scaling runs.
    #[arg(long)]
    pub no_scaling: bool,
    /// Records in the memory benchmark.
    #[arg(long, default_value_t = 100_000)]
    pub memory_records: u64,
    /// Only the memory benchmark.
    #[arg(long)]
    pub memory_only: bool,
    /// Only the dashboard benchmark.
    #[arg(long)]
    pub dashboard_only: bool,
    /// Print every durable consumer's backlog each second of the throughput run.
    #[arg(long)]
    pub watch: bool,
    /// Rebuilds per mode; the median is the figure (each one's rate is printed).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub rebuilds: u32,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Durable,
    Fast,
    Both,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub date: String,
    pub log: Vec<log::LogReport>,
    pub system: Vec<system::SystemReport>,
    pub scaling: Vec<scaling::ScalePoint>,
    pub memory: Option<memory::MemoryReport>,
    pub dashboard: Option<dashboard::DashboardReport>,
}

/// Runs the benchmark and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let modes: &[Durability] = match args.mode {
        ModeArg::Durable => &[Durability::Durable],
        ModeArg::Fast => &[Durability::Fast],
        ModeArg::Both => &[Durability::Durable, Durability::Fast],
    };
    let (log_args, sys_args, scale_jobs) = if args.quick {
        (
            log::LogArgs { jobs: 50, events_per_job: 3, concurrency: 8 },
            system::SystemArgs {
                jobs: 30,
                latency_jobs: 10,
                rate: 50.0,
                raw_messages: 500,
                watch: args.watch,
                rebuilds: args.rebuilds,
            },
            20,
        )
    } else {
        (
            log::LogArgs { jobs: 2000, events_per_job: 5, concurrency: 64 },
            system::SystemArgs {
                jobs: args.jobs,
                latency_jobs: 500,
                rate: 50.0,
                raw_messages: 30_000,
                watch: args.watch,
                rebuilds: args.rebuilds,
            },
            600,
        )
    };
    let mut report = Report {
        machine: machine(),
        date: chrono::Utc::now().to_rfc3339(),
        log: vec![],
        system: vec![],
        scaling: vec![],
        memory: None,
        dashboard: None,
    };
    let only = args.memory_only || args.dashboard_only;
    for &mode in modes.iter().filter(|_| !only) {
        let dir = tempfile::tempdir()?;
        let server = ManagedServer::start(&dir.path().join("nats"), &dir.path().join("creds"), 0, mode)?;
        let client = skynet_bus::auth::connect(
            &server.url,
            &server.creds.credential(skynet_bus::auth::ADMIN),
            skynet_bus::auth::ADMIN,
            "bench",
        )
        .await?;
        report.log.push(log::log_bench(&client, mode, &log_args).await?);
        drop(server);
        eprintln!("[bench] {:?}: system run…", mode);
        report.system.push(system::run(mode, sys_args).await?);
    }
    if !args.no_scaling && !only {
        eprintln!("[bench] executor scaling…");
        let counts: &[usize] = if args.quick { &[1, 2] } else { &[1, 2, 4] };
        report.scaling = scaling::run(counts, scale_jobs, SCALE_CAPACITY, 50).await?;
    }
    if !args.dashboard_only {
        eprintln!("[bench] memory queries…");
        let (records, queries) = if args.quick { (2_000, 50) } else { (args.memory_records, 500) };
        report.memory = Some(memory::run(records, queries).await?);
    }
    if !args.memory_only {
        eprintln!("[bench] dashboard jobs page…");
        let (jobs, renders) = if args.quick { (5_000, 20) } else { (100_000, 200) };
        report.dashboard = Some(dashboard::run(jobs, renders).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", render(&report));
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().next().and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{} cores, {cpu}, {mem:.0} GiB", std::thread::available_parallelism().map_or(0, |n| n.get()))
}

fn mark(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

/// The table.
pub fn render(r: &Report) -> String {
    let mut out = format!("SKYNET benchmark — {} — {}\n\n", r.machine, r.date);
    out.push_str("Event log\n| mode | raw publish msg/s | OCC appends/s | replay events/s |\n|---|---:|---:|---:|\n");
    for l in &r.log {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} |\n",
            l.mode, l.raw_publish_per_sec, l.occ_appends_per_sec, l.replay_events_per_sec
        ));
    }
    out.push_str("\nSystem (`skynet up`, mock provider, 0 ms steps, READ_ONLY auto-approved)\n");
    out.push_str("| mode | raw pub/s | raw consume+ack/s | events/job | stored/job | ceiling jobs/s | throughput jobs/s | % of ceiling | p50 ms | p95 ms | p99 ms | projector lag | rebuild ev/s | RSS idle MiB | RSS after MiB |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in &r.system {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0}% | {:.1} | {:.1} | {:.1} | {} | {:.0} | {:.1} | {:.1} |\n",
            s.mode,
            s.raw_publish_per_sec,
            s.raw_consume_ack_per_sec,
            s.events_per_job,
            s.stored_per_job,
            s.ceiling_jobs_per_sec,
            s.throughput_jobs_per_sec,
            s.throughput_share_of_ceiling * 100.0,
            s.latency.p50_ms,
            s.latency.p95_ms,
            s.latency.p99_ms,
            s.projector_lag_events,
            s.rebuild_events_per_sec,
            s.rss_idle_mib,
            s.rss_after_mib
        ));
    }
    if !r.system.is_empty() {
        out.push_str("\nThe sentinel's cost (throughput with it, as above, and without it)\n| mode | with jobs/s | without jobs/s | with ÷ without |\n|---|---:|---:|---:|\n");
        for s in &r.system {
            out.push_str(&format!(
                "| {} | {:.0} | {:.0} | {:.2} |\n",
                s.mode,
                s.throughput_jobs_per_sec,
                s.without_sentinel_jobs_per_sec,
                s.throughput_jobs_per_sec / s.without_sentinel_jobs_per_sec.max(1e-9)
            ));
        }
    }
    if !r.system.is_empty() {
        out.push_str("\nCPU per job of the throughput run, ms (until memory learned the last job)\n| mode | skynet up | nats-server | load generator | rest (Postgres) | all |\n|---|---:|---:|---:|---:|---:|\n");
        for s in &r.system {
            let c = &s.cpu_per_job;
            out.push_str(&format!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
                s.mode,
                c.skynet_up_ms,
                c.nats_server_ms,
                c.load_generator_ms,
                c.other_ms,
                c.skynet_up_ms + c.nats_server_ms + c.load_generator_ms + c.other_ms
            ));
        }
    }
    if !r.scaling.is_empty() {
        out.push_str("\nExecutor scaling (50 ms mock steps, capacity 4 each)\n| executors | jobs/s | × one |\n|---:|---:|---:|\n");
        for p in &r.scaling {
            out.push_str(&format!("| {} | {:.0} | {:.2} |\n", p.executors, p.jobs_per_sec, p.ratio));
        }
    }
    if let Some(m) = &r.memory {
        out.push_str(&format!(
            "\nMemory (similar-records query, {} records, {} queries)\n| p50 ms | p99 ms | found in top 5 |\n|---:|---:|---:|\n| {:.1} | {:.1} | {:.0}% |\n",
            m.records,
            m.queries,
            m.p50_ms,
            m.p99_ms,
            m.found_share * 100.0
        ));
        let learned: Vec<String> =
            r.system.iter().map(|s| format!("{} {:.0}", s.mode, s.memory_events_per_sec)).collect();
        out.push_str(&format!(
            "memory consumer, finished jobs learned/s during the throughput run: {}\n",
            learned.join(", ")
        ));
    }
    out.push_str("\nTargets\n");
    if let Some(m) = &r.memory {
        out.push_str(&format!("{} memory: similar query p99 ≤ 20 ms — {:.1}\n", mark(m.p99_ms <= 20.0), m.p99_ms));
    }
    for s in &r.system {
        if s.mode == "fast" {
            out.push_str(&format!(
                "{} fast: ≥ 1000 jobs/s sustained — {:.0}\n",
                mark(s.throughput_jobs_per_sec >= 1000.0),
                s.throughput_jobs_per_sec
            ));
            out.push_str(&format!(
                "{} fast: p50 ≤ 10 ms at 50 jobs/s — {:.1}\n",
                mark(s.latency.p50_ms <= 10.0),
                s.latency.p50_ms
            ));
            out.push_str(&format!(
                "{} fast: p99 ≤ 50 ms at 50 jobs/s — {:.1}\n",
                mark(s.latency.p99_ms <= 50.0),
                s.latency.p99_ms
            ));
        } else {
            out.push_str(&format!(
                "{} durable: ≥ 80% of the ceiling — {:.0}%\n",
                mark(s.throughput_share_of_ceiling >= 0.8),
                s.throughput_share_of_ceiling * 100.0
            ));
        }
        out.push_str(&format!(
            "{} {}: rebuild ≥ 60,000 events/s — {:.0}\n",
            mark(s.rebuild_events_per_sec >= 60_000.0),
            s.mode,
            s.rebuild_events_per_sec
        ));
        out.push_str(&format!(
            "{} {}: idle ≤ 100 MiB — {:.1}\n",
            mark(s.rss_idle_mib <= 100.0),
            s.mode,
            s.rss_idle_mib
        ));
    }
    if let Some(d) = &r.dashboard {
        out.push_str(&format!(
            "{} dashboard: jobs page with {} jobs < 100 ms server time — p50 {:.1}, p99 {:.1} (filtered {:.1}, search {:.1}, search matching nothing {:.1}, page 2 {:.1})\n",
            mark(d.first_page_p99_ms < 100.0),
            d.jobs,
            d.first_page_p50_ms,
            d.first_page_p99_ms,
            d.filtered_p50_ms,
            d.search_p50_ms,
            d.search_miss_p50_ms,
            d.second_page_p50_ms
        ));
    }
    if let Some(p) = r.scaling.iter().find(|p| p.executors == 4) {
        out.push_str(&format!("{} executor scaling 1 → 4 ≥ 3.5× — {:.2}×\n", mark(p.ratio >= 3.5), p.ratio));
    }
    out
}

/// Waits until the projector has applied everything in the log at the time of
/// the call, then cancels `stop`; returns the sequence reached.
pub async fn wait_projected(infra: &Infra, stop: CancellationToken) -> anyhow::Result<u64> {
    let js = async_nats::jetstream::new(infra.connect("projector").await?);
    let target = js.get_stream(skynet_bus::definitions::EVENTS_STREAM).await?.info().await?.state.last_sequence;
    loop {
        // The projector creates the checkpoint table; it may not exist yet.
        let applied = skynet_projector::checkpoint(&infra.db).await.unwrap_or(0);
        if applied >= target {
            stop.cancel();
            return Ok(applied);
        }
        if stop.is_cancelled() {
            anyhow::bail!("projector stopped at {applied} before reaching {target}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
