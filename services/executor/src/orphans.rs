//! Removing what dead executors left behind on a Docker engine: containers
//! whose job has ended or whose lease is no longer the job's current one.
//!
//! A container keeps running when the executor that started it dies (its
//! `docker run` CLI is only a client). The job's log says whether anyone still
//! owns it: the lease a container was labelled with is current until another
//! executor takes the job over (a newer `started`) or the job ends. Containers
//! of unknown jobs are left alone: they may belong to another installation.

use std::time::Duration;

use skynet_bus::Jobs;
use skynet_contract::JobId;
use tracing::{info, warn};

use crate::providers::docker::{Container, Docker};

/// Whether the log says nobody owns this container any more.
async fn is_orphan(jobs: &Jobs, c: &Container) -> bool {
    let Ok(job) = c.job.parse::<JobId>() else { return false };
    match jobs.load(job).await {
        Ok((Some(state), _)) => state.status.is_terminal() || state.lease_token().is_some_and(|l| l > c.lease),
        Ok((None, _)) => false,
        Err(e) => {
            warn!(job_id = %c.job, error = %e, "cannot load the job of a container; leaving it");
            false
        }
    }
}

/// One pass: removes every orphan; returns how many.
pub async fn sweep(docker: &Docker, jobs: &Jobs) -> usize {
    let containers = match docker.containers().await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot list containers; orphans are looked for again later");
            return 0;
        }
    };
    let mut removed = 0;
    for c in containers {
        if is_orphan(jobs, &c).await {
            info!(container = %c.name, job_id = %c.job, lease = c.lease, "removing a container its lease no longer owns");
            docker.remove(&c.name).await;
            removed += 1;
        }
    }
    removed
}

/// Sweeps at start-up and then every `period` until `stop` resolves.
pub async fn run(docker: Docker, jobs: Jobs, period: Duration, stop: impl std::future::Future<Output = ()>) {
    let mut stop = std::pin::pin!(stop);
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => { sweep(&docker, &jobs).await; }
            () = &mut stop => return,
        }
    }
}
