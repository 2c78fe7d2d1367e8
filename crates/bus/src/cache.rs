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

use std::collections::HashMap;
use std::sync::Mutex;

use skynet_contract::JobId;
use skynet_job::Job;

/// Entries kept before the cache sheds half (finished jobs leave at once).
const CAPACITY: usize = 50_000;

/// Job → (state, sequence it is exact at).
#[derive(Debug, Default)]
pub struct StateCache {
    entries: Mutex<HashMap<JobId, (Job, u64)>>,
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

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
