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

    /// Jobs whose deadline is at or before `now`.
    pub async fn due(&self, now: DateTime<Utc>) -> Result<Vec<JobId>, async_nats::Error> {
        let mut keys = self.kv.keys().await?;
        let mut due = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key?;
            let Ok(job) = key.parse::<JobId>() else { continue };
            if self.get(job).await?.is_some_and(|at| at <= now) {
                due.push(job);
            }
        }
        Ok(due)
    }
}
