//! What the sentinel sees, as Prometheus metrics (through the `metrics`
//! facade: whoever runs the process installs the exporter). Gauges come from
//! each evaluation's facts; job counters and stage-latency histograms from the
//! log itself, followed from the moment the sentinel starts (a restart resets
//! the counters, as Prometheus expects of a process).

use std::collections::HashMap;

use async_nats::jetstream::{self, consumer};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use skynet_bus::codec;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::JobEvent;
use skynet_contract::alert::Severity;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::alerts::State;
use crate::config::Config;
use crate::findings::Facts;
use crate::service::SERVICE;

/// Sets the gauges from one evaluation.
pub fn gauges(facts: &Facts, state: &State, config: &Config, now: DateTime<Utc>) {
    let fresh: Vec<_> =
        facts.executors.iter().filter(|e| !e.goodbye && now - e.last_seen < config.heartbeat_expiry).collect();
    if facts.executors_known {
        metrics::gauge!("skynet_executors_up").set(fresh.len() as f64);
        // Summed wide: heartbeats are executors' word, and a huge capacity must not overflow.
        let total: u64 = fresh.iter().map(|e| u64::from(e.status.capacity)).sum();
        let busy: u64 = fresh.iter().map(|e| u64::from(e.status.running.min(e.status.capacity))).sum();
        metrics::gauge!("skynet_executor_slots").set(total as f64);
        metrics::gauge!("skynet_executor_slots_free").set(total.saturating_sub(busy) as f64);
    }
    for (dependency, error) in &facts.dependencies {
        metrics::gauge!("skynet_dependency_up", "dependency" => dependency.clone()).set(if error.is_none() {
            1.0
        } else {
            0.0
        });
    }
    if let Some(jobs) = &facts.jobs {
        metrics::gauge!("skynet_approvals_waiting").set(jobs.awaiting_total as f64);
        metrics::gauge!("skynet_jobs_not_starting").set(jobs.not_starting as f64);
    }
    for (durable, pending) in facts.consumers.iter().flatten() {
        metrics::gauge!("skynet_consumer_pending", "consumer" => durable.clone()).set(*pending as f64);
    }
    if let Some(letters) = &facts.dead_letters {
        metrics::gauge!("skynet_dead_letters_recent").set(letters.len() as f64);
    }
    if let Some(lag) = facts.projector_lag {
        metrics::gauge!("skynet_projector_lag_events").set(lag as f64);
    }
    for severity in [Severity::Info, Severity::Warning, Severity::Critical] {
        let n = state.firing.values().filter(|a| a.severity == severity).count();
        metrics::gauge!("skynet_alerts_firing", "severity" => severity.as_str()).set(n as f64);
    }
}

/// When each stage of a job in flight happened.
#[derive(Default)]
struct Times {
    requested: Option<DateTime<Utc>>,
    planned: Option<DateTime<Utc>>,
    approved: Option<DateTime<Utc>>,
}

/// Jobs in flight followed at most (the oldest are forgotten beyond it).
const MAX_IN_FLIGHT: usize = 50_000;

/// The job event kinds the counters and histograms need (not step output).
const KINDS: &[&str] = &[
    "requested",
    "planned",
    "planning_failed",
    "policy_decided",
    "approved",
    "denied",
    "started",
    "step_succeeded",
    "step_failed",
    "succeeded",
    "failed",
    "cancelled",
    "timed_out",
];

/// Counts jobs and times their stages from the log until `stop`, re-following after errors.
pub async fn follow_jobs(js: jetstream::Context, stop: CancellationToken) {
    let mut jobs: HashMap<skynet_contract::JobId, Times> = HashMap::new();
    let mut from = consumer::DeliverPolicy::ByStartTime { start_time: Utc::now() };
    while !stop.is_cancelled() {
        let followed = follow(&js, &mut jobs, &mut from, &stop).await;
        if let Err(e) = followed {
            debug!(service = SERVICE, error = %e, "following jobs for metrics");
        }
        tokio::select! { () = stop.cancelled() => return, () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {} }
    }
}

async fn follow(
    js: &jetstream::Context,
    jobs: &mut HashMap<skynet_contract::JobId, Times>,
    from: &mut consumer::DeliverPolicy,
    stop: &CancellationToken,
) -> Result<(), async_nats::Error> {
    let stream = js.get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            // Named, never a durable's name (the role may create only such).
            name: Some(format!("sentinel-metrics-{}", uuid::Uuid::new_v4().simple())),
            filter_subjects: KINDS.iter().map(|k| format!("skynet.job.*.{k}")).collect(),
            deliver_policy: *from,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: std::time::Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    let mut messages = std::pin::pin!(consumer.messages().await?.take_until(stop.clone().cancelled_owned()));
    while let Some(msg) = messages.next().await {
        let msg = msg?;
        if let Ok(info) = msg.info() {
            // Resumed after an error from the next event, none counted twice.
            *from = consumer::DeliverPolicy::ByStartSequence { start_sequence: info.stream_sequence + 1 };
        }
        let Ok(env) = codec::decode(msg.headers.as_ref(), &msg.payload) else { continue };
        let Ok((job, event)) = env.job_event() else { continue };
        if !skynet_contract::owners::is_owner(event.kind(), &env.source) {
            continue;
        }
        observe(jobs, job, &event, env.time);
    }
    Ok(())
}

fn seconds(from: Option<DateTime<Utc>>, to: DateTime<Utc>) -> Option<f64> {
    from.map(|f| (to - f).num_milliseconds().max(0) as f64 / 1000.0)
}

fn stage(name: &'static str, from: Option<DateTime<Utc>>, to: DateTime<Utc>) {
    if let Some(s) = seconds(from, to) {
        metrics::histogram!("skynet_stage_duration_seconds", "stage" => name).record(s);
    }
}

fn observe(
    jobs: &mut HashMap<skynet_contract::JobId, Times>,
    job: skynet_contract::JobId,
    event: &JobEvent,
    at: DateTime<Utc>,
) {
    if jobs.len() >= MAX_IN_FLIGHT && !jobs.contains_key(&job) {
        // Full (jobs that never finish, or a backlog): forget those older than
        // an hour, all at once — and everything if that is not enough.
        let cutoff = at - chrono::Duration::hours(1);
        jobs.retain(|_, t| t.requested.is_some_and(|r| r > cutoff));
        if jobs.len() >= MAX_IN_FLIGHT {
            jobs.clear();
        }
    }
    let t = jobs.entry(job).or_default();
    let finished = |outcome: &'static str, reason: &str| {
        metrics::counter!("skynet_jobs_finished_total", "outcome" => outcome, "reason" => reason.to_owned())
            .increment(1);
    };
    match event {
        JobEvent::Requested(_) => {
            metrics::counter!("skynet_jobs_submitted_total").increment(1);
            t.requested = Some(at);
        }
        JobEvent::Planned(_) => {
            stage("requested_to_planned", t.requested, at);
            t.planned = Some(at);
        }
        JobEvent::PolicyDecided(d) => {
            stage("planned_to_decided", t.planned, at);
            if !d.requires_approval {
                t.approved = Some(at);
            }
        }
        JobEvent::Approved(_) => t.approved = Some(at),
        JobEvent::Started(_) => stage("approved_to_started", t.approved, at),
        // A step's result says how long it ran (quick steps have no start event).
        JobEvent::StepSucceeded(s) => step("succeeded", s.duration_ms),
        JobEvent::StepFailed(s) => step("failed", s.duration_ms),
        _ => {}
    }
    let outcome = match event {
        JobEvent::Succeeded(_) => Some(("succeeded", String::new())),
        JobEvent::Failed(f) => Some((
            "failed",
            serde_json::to_value(f.stage).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        )),
        JobEvent::PlanningFailed(_) => Some(("planning_failed", String::new())),
        JobEvent::Denied(_) => Some(("denied", String::new())),
        JobEvent::Cancelled(_) => Some(("cancelled", String::new())),
        JobEvent::TimedOut(_) => Some(("timed_out", String::new())),
        _ => None,
    };
    if let Some((outcome, reason)) = outcome {
        finished(outcome, &reason);
        if let Some(s) = seconds(t.requested, at) {
            metrics::histogram!("skynet_job_duration_seconds", "outcome" => outcome).record(s);
        }
        jobs.remove(&job);
    }
}

fn step(outcome: &'static str, duration_ms: u64) {
    metrics::histogram!("skynet_step_duration_seconds", "outcome" => outcome).record(duration_ms as f64 / 1000.0);
}
