//! Approval deadlines. When the policy records a decision that waits for
//! people, it first stores the job's deadline in the `SKYNET_APPROVALS` KV
//! bucket. A sweeper checks the bucket every interval and cancels jobs still
//! awaiting approval past their deadline, with reason "approval timed out".
//!
//! Because the deadlines are in JetStream, a restarted (or second) policy
//! service sweeps them just the same; there is no sleeping task per job. Two
//! sweepers racing on one job are harmless: the cancel is decided against the
//! job's state under optimistic concurrency, and the loser sees a finished job.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use skynet_bus::Jobs;
use skynet_bus::definitions::APPROVALS_BUCKET;
use skynet_job::{Command, Rejection, Status, decide};
use tracing::{info, warn};

/// The reason recorded on jobs whose approval timed out.
pub const TIMED_OUT_REASON: &str = "approval timed out";

/// The approval deadlines' bucket.
pub type Deadlines = skynet_bus::deadlines::Deadlines;

/// Opens the approval deadlines (`SKYNET_APPROVALS`).
pub async fn open(js: &jetstream::Context) -> Result<Deadlines, async_nats::Error> {
    Deadlines::open(js, APPROVALS_BUCKET).await
}

/// Cancels every job whose approval deadline has passed and that is still
/// awaiting approval; clears the deadlines of jobs that moved on. Returns how
/// many jobs it cancelled.
pub async fn sweep(deadlines: &Deadlines, jobs: &Jobs, now: DateTime<Utc>) -> Result<usize, async_nats::Error> {
    let cancelled = deadlines
        .sweep(jobs, "approval-timeout", now, |s| match s {
            Some(j) if j.status == Status::AwaitingApproval => {
                decide(s, Command::Cancel { by: "policy".into(), reason: TIMED_OUT_REASON.into() })
            }
            Some(j) => Err(Rejection::NotAwaitingApproval(j.status)),
            None => Err(Rejection::NoSuchJob),
        })
        .await?;
    for job in &cancelled {
        info!(service = "policy", job_id = %job, "approval timed out; job cancelled");
    }
    Ok(cancelled.len())
}

/// Sweeps every `interval` until `shutdown` resolves.
pub async fn run_sweeper(deadlines: Deadlines, jobs: Jobs, interval: Duration, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {
                if let Err(e) = sweep(&deadlines, &jobs, Utc::now()).await {
                    warn!(service = "policy", error = %e, "approval sweep failed; retrying next interval");
                }
            }
        }
    }
}
