//! Deadlines kept in a JetStream key-value bucket: job id → unix milliseconds.
//! A service stores a job's deadline before it records the event that starts
//! the clock (so a crash in between leaves a deadline, never a job without
//! one), and a sweeper acts on the ones due. Because they live in JetStream, a
//! restarted (or second) instance sweeps them just the same; there is no
//! sleeping task per job. The policy service keeps approval deadlines
//! (`SKYNET_APPROVALS`), the scheduler the watchdog's (`SKYNET_WATCHDOG`).

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use skynet_contract::JobId;
use skynet_contract::job::JobEvent;
use skynet_job::{Job, Rejection};
use tracing::warn;

use crate::{Jobs, Outcome};

/// Handle on one deadlines bucket.
#[derive(Clone)]
pub struct Deadlines {
    kv: kv::Store,
}

impl Deadlines {
    /// Opens `bucket` (created by bootstrap from `nats/streams/KV_<bucket>.json`).
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Deadlines, async_nats::Error> {
        Ok(Deadlines { kv: js.get_key_value(bucket).await? })
    }

    /// Records that `job` is due at `at`.
    pub async fn set(&self, job: JobId, at: DateTime<Utc>) -> Result<(), async_nats::Error> {
        self.kv.put(job.to_string(), at.timestamp_millis().to_string().into()).await?;
        Ok(())
    }

    /// Forgets `job`'s deadline.
    pub async fn clear(&self, job: JobId) -> Result<(), async_nats::Error> {
        self.kv.purge(job.to_string()).await?;
        Ok(())
    }

    /// The deadline of `job`, if one is stored.
    pub async fn get(&self, job: JobId) -> Result<Option<DateTime<Utc>>, async_nats::Error> {
        let Some(v) = self.kv.get(job.to_string()).await? else { return Ok(None) };
        Ok(std::str::from_utf8(&v).ok().and_then(|s| s.parse::<i64>().ok()).and_then(DateTime::from_timestamp_millis))
    }

    /// Jobs whose deadline is at or before `now`. One pass over the bucket's
    /// latest values (a watch with history, read until nothing is pending),
    /// not a request per key: a sweep costs the same whatever the bucket holds.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<JobId>, async_nats::Error> {
        // Fresh (`Store::status` answers from what was read at open).
        let mut stream = self.kv.stream.clone();
        if stream.info().await?.state.messages == 0 {
            return Ok(Vec::new());
        }
        let mut watch = self.kv.watch_with_history(">").await?;
        let mut due = Vec::new();
        loop {
            // A bucket with only expired entries delivers nothing: stop waiting.
            let next = tokio::time::timeout(std::time::Duration::from_secs(2), watch.next()).await;
            let Ok(Some(entry)) = next else { break };
            let entry = entry?;
            if entry.operation == kv::Operation::Put
                && let Ok(job) = entry.key.parse::<JobId>()
                && std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .and_then(DateTime::from_timestamp_millis)
                    .is_some_and(|at| at <= now)
            {
                due.push(job);
            }
            if entry.delta == 0 {
                break;
            }
        }
        Ok(due)
    }

    /// Acts on every due job: `act` decides what to record (a rejection means
    /// nothing is due any more: the job moved on). The deadline is cleared
    /// once the job's log answered either way, and kept when writing failed,
    /// so the next sweep tries again. Returns the jobs acted on.
    pub async fn sweep<F>(
        &self,
        jobs: &Jobs,
        cause: &str,
        now: DateTime<Utc>,
        act: F,
    ) -> Result<Vec<JobId>, async_nats::Error>
    where
        F: Fn(Option<&Job>) -> Result<Vec<JobEvent>, Rejection>,
    {
        let mut acted = Vec::new();
        for job in self.due(now).await? {
            match jobs.execute(job, cause, now, &act).await {
                Ok(Outcome::Appended { .. }) => {
                    acted.push(job);
                    self.clear(job).await?;
                }
                Ok(Outcome::Rejected(_)) => self.clear(job).await?,
                Err(e) => {
                    warn!(job_id = %job, cause, error = %e, "a due deadline could not be acted on; retrying next sweep")
                }
            }
        }
        Ok(acted)
    }
}
