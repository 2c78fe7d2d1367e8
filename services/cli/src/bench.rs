//! `skynet bench`: measures the event log as SKYNET uses it and prints a report.
//!
//! Each mode (durable: fsync per write; fast: server default) gets its own
//! nats-server in a temporary directory, so runs never disturb a live system.
//! Figures measured:
//! * raw publish: pipelined JetStream publishes of the same size, no
//!   concurrency control (the ceiling for this server and disk);
//! * appends: job events appended with per-job optimistic concurrency, each
//!   append waiting for its acknowledgement, many jobs in parallel;
//! * replay: whole-job loads (the read side of every decision).

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use chrono::Utc;
use clap::{Args, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use skynet_bus::server::{Durability, ManagedServer};
use skynet_bus::{EventStore, Jobs};
use skynet_contract::JobId;
use skynet_contract::job::{JobEvent, OutputStream, Requested, StepOutput};
use tokio_util::sync::CancellationToken;

use crate::infra::Infra;

/// `skynet bench` options.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Jobs per measurement.
    #[arg(long, default_value_t = 2000)]
    pub jobs: usize,
    /// Events per job (the first is `requested`).
    #[arg(long, default_value_t = 5)]
    pub events_per_job: usize,
    /// Jobs worked on at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Which durability modes to measure.
    #[arg(long, value_enum, default_value_t = ModeArg::Both)]
    pub mode: ModeArg,
}

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Durable,
    Fast,
    Both,
}

/// Figures for one durability mode.
#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub mode: &'static str,
    pub raw_publish_per_sec: f64,
    pub occ_appends_per_sec: f64,
    pub replay_events_per_sec: f64,
    pub jobs: usize,
    pub events: usize,
    /// Events counted back by replay; must equal `events`.
    pub events_replayed: usize,
}

/// Runs the benchmark and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let modes: &[Durability] = match args.mode {
        ModeArg::Durable => &[Durability::Durable],
        ModeArg::Fast => &[Durability::Fast],
        ModeArg::Both => &[Durability::Durable, Durability::Fast],
    };
    let mut reports = Vec::new();
    for &mode in modes {
        let dir = tempfile::tempdir().context("temp dir for the benchmark's nats-server")?;
        let server = ManagedServer::start(dir.path(), 0, mode)?;
        let client = async_nats::connect(&server.url).await?;
        reports.push(log_bench(&client, mode, &args).await?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "log": reports }))?);
    } else {
        println!("{}", render(&reports));
    }
    Ok(())
}

/// Measures one server. Fails loudly when replay does not return every event.
pub async fn log_bench(client: &async_nats::Client, mode: Durability, args: &BenchArgs) -> anyhow::Result<LogReport> {
    let js = skynet_bus::bootstrap(client).await?;
    let jobs = Jobs::new(EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?, "bench");
    let events_total = args.jobs * args.events_per_job;
    let sample_size = jobs.envelopes(JobId::for_request("bench", "size"), "s", Utc::now(), &[output_event(0)])[0]
        .to_structured_json()
        .len();
    let raw = raw_publish(&js, events_total, sample_size).await?;

    let run_id = uuid::Uuid::new_v4().to_string();
    let ids: Vec<JobId> = (0..args.jobs).map(|i| JobId::for_request(&run_id, &i.to_string())).collect();
    let started = Instant::now();
    futures::stream::iter(ids.iter().enumerate().map(|(i, &job)| {
        let (jobs, run_id) = (jobs.clone(), run_id.clone());
        let n = args.events_per_job;
        async move {
            let open = jobs.envelopes(job, "open", Utc::now(), &[requested(&run_id, i)]);
            let mut seq = jobs.store().append(job, 0, &open).await?;
            for k in 1..n {
                let env = jobs.envelopes(job, &k.to_string(), Utc::now(), &[output_event(k as u32)]);
                seq = jobs.store().append(job, seq, &env).await?;
            }
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(args.concurrency.max(1))
    .try_collect::<Vec<_>>()
    .await?;
    let append_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let counts: Vec<usize> = futures::stream::iter(ids.iter().map(|&job| {
        let jobs = jobs.clone();
        async move { anyhow::Ok(jobs.store().load(job).await?.events.len()) }
    }))
    .buffer_unordered(args.concurrency.max(1))
    .try_collect()
    .await?;
    let replay_secs = started.elapsed().as_secs_f64();
    let replayed: usize = counts.iter().sum();
    anyhow::ensure!(
        replayed == events_total,
        "replay returned {replayed} events, {events_total} were appended: events lost"
    );
    Ok(LogReport {
        mode: match mode {
            Durability::Durable => "durable",
            Durability::Fast => "fast",
        },
        raw_publish_per_sec: events_total as f64 / raw,
        occ_appends_per_sec: events_total as f64 / append_secs,
        replay_events_per_sec: replayed as f64 / replay_secs,
        jobs: args.jobs,
        events: events_total,
        events_replayed: replayed,
    })
}

/// Seconds to publish `n` messages of `size` bytes, pipelined (acks awaited in
/// windows), on a scratch stream of the same server.
async fn raw_publish(js: &jetstream::Context, n: usize, size: usize) -> anyhow::Result<f64> {
    let name = "SKYNET_BENCH_RAW";
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config { name: name.into(), subjects: vec!["bench.raw".into()], ..Default::default() })
        .await?;
    let payload = bytes::Bytes::from(vec![b'x'; size]);
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    for _ in 0..n {
        // The ceiling is measured with plain publishes on purpose.
        #[allow(clippy::disallowed_methods)]
        pending.push(js.publish("bench.raw", payload.clone()).await?.into_future());
        if pending.len() >= 1024 {
            pending.next().await.transpose()?;
        }
    }
    while pending.next().await.transpose()?.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    js.delete_stream(name).await?;
    Ok(secs)
}

fn requested(run: &str, i: usize) -> JobEvent {
    JobEvent::Requested(Requested {
        intent: "check git status and run the tests".into(),
        working_dir: None,
        project: Some("bench".into()),
        requested_by: Some("bench".into()),
        constraints: Default::default(),
        plan: None,
        request_source: run.into(),
        request_id: i.to_string(),
    })
}

fn output_event(seq: u32) -> JobEvent {
    JobEvent::StepOutput(StepOutput {
        step: 0,
        stream: OutputStream::Stdout,
        seq,
        chunk: "ok: 24 passed in 0.31s".into(),
    })
}

fn render(reports: &[LogReport]) -> String {
    let mut out = String::from("SKYNET benchmark — event log\n\n");
    out.push_str("| mode    | raw publish msg/s | OCC appends/s | replay events/s | events |\n");
    out.push_str("|---------|------------------:|--------------:|----------------:|-------:|\n");
    for r in reports {
        out.push_str(&format!(
            "| {:<7} | {:>17.0} | {:>13.0} | {:>15.0} | {:>6} |\n",
            r.mode, r.raw_publish_per_sec, r.occ_appends_per_sec, r.replay_events_per_sec, r.events
        ));
    }
    out
}

/// Waits until the projector has applied everything in the log at the time of
/// the call, then cancels `stop`; returns the sequence reached.
pub async fn wait_projected(infra: &Infra, stop: CancellationToken) -> anyhow::Result<u64> {
    let target = infra.js.get_stream(skynet_bus::definitions::EVENTS_STREAM).await?.info().await?.state.last_sequence;
    let db = Arc::new(infra.db.clone());
    loop {
        // The projector creates the checkpoint table; it may not exist yet.
        let applied = skynet_projector::checkpoint(&db).await.unwrap_or(0);
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
