//! The event log as SKYNET uses it. Figures:
//! * raw publish: pipelined JetStream publishes of the same size, no
//!   concurrency control (the ceiling for this server and disk);
//! * appends: job events appended with per-job optimistic concurrency, each
//!   append waiting for its acknowledgement, many jobs in parallel;
//! * replay: whole-job loads (the read side of every decision).

use std::future::IntoFuture;
use std::time::Instant;

use async_nats::jetstream::{self, stream};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use skynet_bus::server::Durability;
use skynet_bus::{EventStore, Jobs};
use skynet_contract::JobId;
use skynet_contract::job::{JobEvent, OutputStream, Requested, StepOutput};

/// Sizes of the log benchmark.
#[derive(Debug, Clone, Copy)]
pub struct LogArgs {
    pub jobs: usize,
    pub events_per_job: usize,
    pub concurrency: usize,
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

/// Measures one server. Fails loudly when replay does not return every event.
pub async fn log_bench(client: &async_nats::Client, mode: Durability, args: &LogArgs) -> anyhow::Result<LogReport> {
    let js = skynet_bus::bootstrap(client).await?;
    let jobs = Jobs::new(EventStore::open(js.clone()).await.map_err(|e| anyhow::anyhow!(e))?, "bench");
    let events_total = args.jobs * args.events_per_job;
    let sample_size = jobs.envelopes(JobId::for_request("bench", "size"), "s", Utc::now(), &[output_event(0)])[0]
        .to_structured_json()
        .len();
    let raw = raw_publish(&js, events_total, sample_size).await?.publish_secs;

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

/// Raw JetStream rates for `n` messages of `size` bytes on a scratch stream.
#[derive(Debug, Clone, Copy)]
pub struct RawRates {
    /// Seconds to publish them, pipelined (acks awaited in windows of 1024).
    pub publish_secs: f64,
    /// Seconds to consume and ack them with a pull consumer.
    pub consume_secs: f64,
}

/// Measures raw publish and consume+ack on the same server.
pub async fn raw_publish(js: &jetstream::Context, n: usize, size: usize) -> anyhow::Result<RawRates> {
    let name = "SKYNET_BENCH_RAW";
    let _ = js.delete_stream(name).await;
    let stream = js
        .create_stream(stream::Config { name: name.into(), subjects: vec!["bench.raw".into()], ..Default::default() })
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
    let publish_secs = started.elapsed().as_secs_f64();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            max_ack_pending: 100_000,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut messages = consumer.stream().max_messages_per_batch(1000).messages().await?;
    let mut acks = futures::stream::FuturesUnordered::new();
    for _ in 0..n {
        let msg = messages
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("raw stream ended early"))?
            .map_err(|e| anyhow::anyhow!(e))?;
        acks.push(async move { msg.double_ack().await });
        if acks.len() >= 1024 {
            acks.next().await.transpose().map_err(|e| anyhow::anyhow!(e))?;
        }
    }
    while acks.next().await.transpose().map_err(|e| anyhow::anyhow!(e))?.is_some() {}
    let consume_secs = started.elapsed().as_secs_f64();
    js.delete_stream(name).await?;
    Ok(RawRates { publish_secs, consume_secs })
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
