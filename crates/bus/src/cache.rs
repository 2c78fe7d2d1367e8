//! A cache of job states this process has computed, each tagged with the stream
//! sequence it is exact at.
//!
//! When every service runs in one process (`skynet up`), the planner's append is
//! the policy's next message, the policy's append the dispatcher's, and so on.
//! A consumer handling the event at sequence `S` whose cache holds the job at
//! exactly `S` has the state a replay would give, without the replay. Anything
//! else (another process wrote, the entry was evicted, the job moved on) is a
//! miss and the job is replayed from the log. The cache can make a service
//! faster, never wrong: an entry is only used at its exact sequence, and
//! appends still carry the expected sequence.
//!
//! The next stage's consumer can be handed an event before the stage that
//! appended it has its acknowledgement (the server stores, then answers the
//! publisher and delivers to the pull waiting on another connection, in
//! whichever order the scheduler runs them). Profiled under a burst, a fifth
//! of all handlings missed the cache that way and read the job back from the
//! log. So an append in flight is registered here ([`StateCache::appending`]),
//! and a consumer that misses waits for this process's own appends of that job
//! to settle ([`StateCache::settled`]) before it reads the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use skynet_contract::JobId;
use skynet_job::Job;

/// How long a consumer that missed what this process holds waits for this
/// process's own append of the job to be acknowledged: an acknowledgement
/// comes within milliseconds, and past this the log is read.
pub(crate) const SETTLE_WAIT: Duration = Duration::from_secs(1);

/// Entries kept before the cache sheds half (finished jobs leave at once).
const CAPACITY: usize = 50_000;

/// Job → (state, sequence it is exact at).
#[derive(Debug, Default)]
pub struct StateCache {
    entries: Mutex<HashMap<JobId, (Job, u64)>>,
    /// Job → appends of it this process has in flight, and what wakes those
    /// waiting for them once none is (one per job: no waiter of another job
    /// is woken).
    appending: Mutex<HashMap<JobId, (usize, Arc<Notify>)>>,
}

/// An append of a job in flight in this process; ends when dropped.
#[must_use = "the append is in flight only while this is held"]
pub struct Appending<'a> {
    cache: &'a StateCache,
    job: JobId,
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        let mut appending = self.cache.appending.lock().unwrap_or_else(|p| p.into_inner());
        let Some((n, _)) = appending.get_mut(&self.job) else { return };
        *n -= 1;
        if *n == 0
            && let Some((_, settled)) = appending.remove(&self.job)
        {
            drop(appending);
            settled.notify_waiters();
        }
    }
}

impl StateCache {
    /// The state of `job` if it is known exactly at `seq`.
    pub fn at(&self, job: JobId, seq: u64) -> Option<Job> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(&job).filter(|(_, s)| *s == seq).map(|(j, _)| j.clone())
    }

    /// Records `state` as exact at `seq` (newer sequences win).
    pub fn put(&self, job: JobId, state: &Job, seq: u64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if state.status.is_terminal() {
            entries.remove(&job);
            return;
        }
        if entries.get(&job).is_some_and(|(_, s)| *s > seq) {
            return;
        }
        if entries.len() >= CAPACITY {
            // Shed half; which half does not matter for correctness.
            let drop: Vec<JobId> = entries.keys().take(CAPACITY / 2).copied().collect();
            for k in drop {
                entries.remove(&k);
            }
        }
        entries.insert(job, (state.clone(), seq));
    }

    /// Registers an append of `job` in flight until the guard is dropped: hold
    /// it from before the publish until what the append computed is cached.
    pub fn appending(&self, job: JobId) -> Appending<'_> {
        self.appending.lock().unwrap_or_else(|p| p.into_inner()).entry(job).or_default().0 += 1;
        Appending { cache: self, job }
    }

    /// What wakes those waiting for `job`'s appends in flight, if any is.
    fn in_flight(&self, job: JobId) -> Option<Arc<Notify>> {
        self.appending.lock().unwrap_or_else(|p| p.into_inner()).get(&job).map(|(_, n)| n.clone())
    }

    #[cfg(test)]
    fn is_appending(&self, job: JobId) -> bool {
        self.in_flight(job).is_some()
    }

    /// Waits, at most `max`, until this process has no append of `job` in
    /// flight. Returns whether there was one to wait for.
    pub async fn settled(&self, job: JobId, max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        let mut waited = false;
        loop {
            let Some(settled) = self.in_flight(job) else { return waited };
            waited = true;
            let notified = settled.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered, then checked again: the appends may have ended
            // since (and others begun, woken by another `Notify`).
            notified.as_mut().enable();
            if !self.in_flight(job).is_some_and(|now| Arc::ptr_eq(&now, &settled)) {
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return waited;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn settled_waits_for_the_jobs_own_appends_only_and_never_past_its_bound() {
        let cache = std::sync::Arc::new(StateCache::default());
        let (job, other) = (JobId(uuid::Uuid::new_v4()), JobId(uuid::Uuid::new_v4()));
        assert!(!cache.settled(job, Duration::from_secs(1)).await, "nothing in flight: no wait");

        let started = tokio::time::Instant::now();
        let guard = cache.appending(job);
        let _unrelated = cache.appending(other);
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move { cache.settled(job, Duration::from_secs(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "still in flight");
        // Another job's append ending leaves it waiting.
        drop(cache.appending(other));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished(), "still in flight after another job's append ended");
        drop(guard);
        assert!(waiter.await.expect("joined"), "it waited for the append");
        assert!(started.elapsed() < Duration::from_secs(1), "woken by the end, not the bound");

        // An append that never ends holds a consumer for the bound, no longer.
        let started = tokio::time::Instant::now();
        assert!(cache.settled(other, Duration::from_millis(250)).await);
        assert_eq!(started.elapsed(), Duration::from_millis(250));
        // Two appends of one job in flight: settled only once both ended.
        let (a, b) = (cache.appending(job), cache.appending(job));
        drop(a);
        assert!(cache.is_appending(job));
        drop(b);
        assert!(!cache.is_appending(job));
    }
}
