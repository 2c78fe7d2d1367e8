//! The job watchdog: no scheduled job stays non-terminal past the limits its
//! own events define. When the scheduler schedules a job it first stores a
//! deadline in `SKYNET_WATCHDOG`: the time to start (`start_within_secs`) plus
//! the job's own total timeout (from its `dispatched` spec) plus a grace. The
//! executor ends a job at its total timeout; a job still scheduled, running or
//! cancelling past the deadline has lost its executor for good (redeliveries
//! exhausted, a bug, an operator's deleted consumer). The sweeper fails it,
//! naming the stage and why, so nothing waits forever. Failing is the one safe
//! direction: an executor that somehow still runs it records nothing more (a
//! terminal job accepts no event).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use skynet_bus::Jobs;
use skynet_bus::deadlines::Deadlines;
use skynet_contract::job::Stage;
use skynet_job::{Command, Rejection, Status, decide};
use tracing::warn;

use crate::config::Config;

/// The deadline of a job scheduled at `now` whose spec allows `total_secs`.
pub fn deadline(config: &Config, now: DateTime<Utc>, total_secs: u64) -> DateTime<Utc> {
    let secs = config.start_within_secs.saturating_add(total_secs).saturating_add(config.watchdog_grace_secs);
    now + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// The stage and reason a job still at `status` (not terminal) is failed with.
fn verdict(status: Status, config: &Config) -> (Stage, String) {
    let limits = format!(
        "{} s to start plus its total timeout plus {} s of grace",
        config.start_within_secs, config.watchdog_grace_secs
    );
    if status == Status::Scheduled {
        (Stage::Scheduling, format!("watchdog: no executor started the job within {limits}"))
    } else {
        (Stage::Execution, format!("watchdog: the job did not end within {limits}; its executor is gone or stuck"))
    }
}

/// Fails every job past its deadline that has not ended; clears the deadlines
/// of jobs that ended. Returns how many it failed.
pub async fn sweep(
    deadlines: &Deadlines,
    jobs: &Jobs,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<usize, async_nats::Error> {
    let failed = deadlines
        .sweep(jobs, "watchdog", now, |s| match s {
            Some(j) if j.status.is_terminal() => Err(Rejection::AlreadyFinished(j.status)),
            Some(j) => {
                let (stage, reason) = verdict(j.status, config);
                decide(s, Command::Fail { stage, reason, step: None })
            }
            None => Err(Rejection::NoSuchJob),
        })
        .await?;
    for job in &failed {
        warn!(service = "scheduler", job_id = %job, "watchdog failed a stuck job");
    }
    Ok(failed.len())
}

/// Sweeps every `config.watchdog_every_ms` until `shutdown` resolves.
pub async fn run(deadlines: Deadlines, jobs: Jobs, config: std::sync::Arc<Config>, shutdown: impl Future<Output = ()>) {
    let mut tick = tokio::time::interval(Duration::from_millis(config.watchdog_every_ms.max(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = tick.tick() => {
                if let Err(e) = sweep(&deadlines, &jobs, &config, Utc::now()).await {
                    warn!(service = "scheduler", error = %e, "watchdog sweep failed; retrying next interval");
                }
            }
        }
    }
}
