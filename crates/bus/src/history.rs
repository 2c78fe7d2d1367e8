//! The recent jobs' messages as this process appended or read them, so a
//! consumer that needs a job's whole history (the memory service learning
//! from a finished job) need not read it back from the log.
//!
//! Why: reading a job back is a batched direct get over `skynet.job.<id>.>`,
//! and the server finds each next message of the job by walking the stream's
//! messages one by one from the previous one (a job's events each have their
//! own subject, so the per-block subject index does not narrow the walk).
//! Under load a job's events are spread over thousands of other jobs'
//! events; profiled at 3,000 queued jobs, these walks were a third of the
//! machine's CPU, more than everything else nats-server did.
//!
//! A history is kept only as a *chain*: it starts at a job's first event (an
//! append expecting sequence 0) and grows only by an append that expected
//! exactly its last sequence and was stored by that call — the server stored
//! it only if nothing else of the job came in between, so the chain is every
//! message of the job through its last sequence, byte for byte. Anything else
//! (another process appended, two appends recorded out of order, an event
//! already stored — a retry, whose stored copy may differ from ours —,
//! eviction) breaks or drops the chain and the reader falls back to the log:
//! never wrong, at worst slower. Chains are never started from reads: a
//! reader (the API showing an old job) must not push out the live ones.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use skynet_contract::JobId;

use crate::read::Stored;

/// Jobs whose histories are kept; the oldest chain started goes first.
///
/// Sized for bursts: a chain is dropped before its reader comes only when
/// more jobs than this are in flight at once, and each one dropped is a walk
/// of the log later (at 4,096, a burst of 6,000 jobs dropped 767 chains and
/// the memory service read 705 jobs back, nats-server's CPU per job rising
/// from 0.43 to 0.77 ms). What a chain costs is bounded by [`MAX_BYTES`].
const CAPACITY: usize = 16_384;
/// Bytes held at most, counted by [`size`], whatever the number of jobs (a
/// job's output can make its events large). A finished bench job's chain
/// counts 7–11 KB, so this holds about 9,000 finished jobs or more partial
/// ones; the 6,000-job burst peaked at 4,220 chains and 8.8 MB.
const MAX_BYTES: usize = 96 << 20;

/// What holding `m` costs, roughly: its payload and subject, each header's
/// name and values, and a little for each allocation of its own. An
/// estimate from below: the process's memory for a chain (hash-table slots,
/// the message's own struct) is likely 1.5–2× this.
fn size(m: &Stored) -> usize {
    const ENTRY: usize = 48;
    let headers = m.headers.as_ref().map_or(0, |h| {
        h.iter()
            .map(|(name, values)| {
                let name: &str = name.as_ref();
                ENTRY + name.len() + values.iter().map(|v| ENTRY + v.as_str().len()).sum::<usize>()
            })
            .sum()
    });
    ENTRY + m.payload.len() + m.subject.len() + headers
}

#[derive(Debug, Default)]
struct Chains {
    jobs: HashMap<JobId, Vec<Stored>>,
    /// Jobs in the order their chains started, for eviction (may name jobs
    /// whose chain was since dropped).
    order: VecDeque<JobId>,
    /// Bytes held, counted by [`size`].
    bytes: usize,
    /// Chains dropped before their reader came, by why, not yet counted
    /// (metrics are recorded once the lock is released).
    dropped: Vec<&'static str>,
}

/// Job → its messages, complete from its first through the last one held.
#[derive(Debug, Default)]
pub struct HistoryCache {
    chains: Mutex<Chains>,
    /// Keeps nothing: no reader in this process would use a chain (see
    /// [`HistoryCache::off`]).
    off: bool,
}

impl Drop for HistoryCache {
    fn drop(&mut self) {
        // The gauges add up every cache of the process.
        let chains = self.lock();
        metrics::gauge!("skynet_job_histories_held_jobs").decrement(chains.jobs.len() as f64);
        metrics::gauge!("skynet_job_histories_held_bytes").decrement(chains.bytes as f64);
    }
}

impl HistoryCache {
    /// A cache that keeps nothing, for a process where no chain would ever be
    /// read: chains start only where jobs are opened (the intake), and only
    /// a stage or the memory service in the same process reads them. An
    /// intake alone would hold every new job's first event until evicted.
    pub fn off() -> HistoryCache {
        HistoryCache { chains: Mutex::default(), off: true }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chains> {
        self.chains.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the chains, then records what changed in the metrics,
    /// outside the lock every stage and the memory service share.
    fn change<R>(&self, f: impl FnOnce(&mut Chains) -> R) -> R {
        let (result, jobs, bytes, dropped) = {
            let mut chains = self.lock();
            let (jobs, bytes) = (chains.jobs.len(), chains.bytes);
            let result = f(&mut chains);
            let dropped = std::mem::take(&mut chains.dropped);
            (result, chains.jobs.len() as f64 - jobs as f64, chains.bytes as f64 - bytes as f64, dropped)
        };
        if jobs != 0.0 {
            metrics::gauge!("skynet_job_histories_held_jobs").increment(jobs);
        }
        if bytes != 0.0 {
            metrics::gauge!("skynet_job_histories_held_bytes").increment(bytes);
        }
        for why in dropped {
            metrics::counter!("skynet_job_histories_dropped_total", "why" => why).increment(1);
        }
        result
    }

    /// Records `msg`, appended to `job` by an append that expected `expected`
    /// (0: the job's first event).
    /// The caller must have seen the server store `msg` on this append (not
    /// answer it as a duplicate).
    pub fn appended(&self, job: JobId, expected: u64, msg: Stored) {
        if self.off {
            return;
        }
        self.change(|chains| {
            if msg.seq <= expected {
                chains.drop_chain(job, "out_of_order");
                return;
            }
            if expected == 0 {
                chains.remove(job);
                chains.start(job, msg);
                return;
            }
            match chains.jobs.get(&job).and_then(|c| c.last()).map(|m| m.seq) {
                Some(last) if last == expected => {
                    chains.bytes += size(&msg);
                    if let Some(chain) = chains.jobs.get_mut(&job) {
                        chain.push(msg);
                    }
                    chains.shed();
                }
                // A gap: another writer, or two appends recorded out of order.
                Some(_) => chains.drop_chain(job, "gap"),
                None => {}
            }
        });
    }

    /// Drops `job`'s chain before its reader came, counted by `why` in
    /// `skynet_job_histories_dropped_total`.
    pub fn drop_chain(&self, job: JobId, why: &'static str) {
        self.change(|chains| chains.drop_chain(job, why));
    }

    /// Drops `job`'s chain.
    pub fn forget(&self, job: JobId) {
        self.change(|chains| chains.remove(job));
    }

    /// Whether a chain of `job` is held (however far it reaches).
    pub fn holds(&self, job: JobId) -> bool {
        self.lock().jobs.contains_key(&job)
    }

    /// Every message of `job` up to and including `seq`, if the chain held
    /// reaches `seq`.
    pub fn through(&self, job: JobId, seq: u64) -> Option<Vec<Stored>> {
        let mut held = self.reaching(job, seq)?;
        held.retain(|m| m.seq <= seq);
        Some(held)
    }

    /// Every message held of `job`, when the chain reaches `seq`.
    pub fn reaching(&self, job: JobId, seq: u64) -> Option<Vec<Stored>> {
        let chains = self.lock();
        let chain = chains.jobs.get(&job)?;
        (chain.last()?.seq >= seq).then(|| chain.clone())
    }

    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Chains {
    fn start(&mut self, job: JobId, first: Stored) {
        // Entries of chains dropped since would otherwise pile up.
        if self.order.len() >= 2 * CAPACITY {
            let jobs = &self.jobs;
            self.order.retain(|j| jobs.contains_key(j));
        }
        self.bytes += size(&first);
        self.jobs.insert(job, vec![first]);
        self.order.push_back(job);
        self.shed();
    }

    /// Drops `job`'s chain before its reader is done with it, counted by
    /// `why` in `skynet_job_histories_dropped_total`: each one is a job its
    /// reader (a stage, the memory service) will read back from the log.
    fn drop_chain(&mut self, job: JobId, why: &'static str) {
        if self.jobs.contains_key(&job) {
            self.dropped.push(why);
            self.remove(job);
        }
    }

    fn remove(&mut self, job: JobId) {
        if let Some(chain) = self.jobs.remove(&job) {
            self.bytes -= chain.iter().map(size).sum::<usize>();
        }
    }

    /// Evicts the oldest chains while over either bound.
    fn shed(&mut self) {
        while self.jobs.len() > CAPACITY || self.bytes > MAX_BYTES {
            let Some(oldest) = self.order.pop_front() else { break };
            let why = if self.jobs.len() > CAPACITY { "jobs_bound" } else { "bytes_bound" };
            self.drop_chain(oldest, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Stored {
        Stored { seq, subject: format!("skynet.job.x.{seq}"), headers: None, payload: bytes::Bytes::new() }
    }

    fn seqs(v: Option<Vec<Stored>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|m| m.seq).collect())
    }

    #[test]
    fn a_chain_grows_only_by_appends_that_expected_its_last_message() {
        let (cache, job) = (HistoryCache::default(), JobId(uuid::Uuid::new_v4()));
        cache.appended(job, 0, msg(3));
        cache.appended(job, 3, msg(7));
        assert_eq!(seqs(cache.through(job, 7)), Some(vec![3, 7]));
        assert_eq!(seqs(cache.through(job, 5)), Some(vec![3]), "a prefix is complete too");
        assert_eq!(cache.through(job, 8).map(|v| v.len()), None, "not known that far");
        // An append recorded out of order (expected 9, the chain ends at 7):
        // something in between is missing, so the chain is gone.
        cache.appended(job, 9, msg(12));
        assert!(cache.through(job, 7).is_none());
        cache.appended(job, 12, msg(15));
        assert!(cache.through(job, 15).is_none(), "a broken chain does not restart mid-job");
    }

    #[test]
    fn nothing_that_cannot_follow_is_kept() {
        let (cache, job) = (HistoryCache::default(), JobId(uuid::Uuid::new_v4()));
        cache.appended(job, 0, msg(3));
        cache.appended(job, 3, msg(3));
        assert!(cache.through(job, 3).is_none(), "a sequence not after the expected one");
        cache.appended(job, 0, msg(4));
        cache.appended(job, 4, msg(9));
        cache.forget(job);
        assert!(cache.through(job, 9).is_none());
        assert_eq!(cache.lock().bytes, 0, "bytes of dropped chains are released");
    }

    #[test]
    fn bytes_are_bounded_as_well_as_jobs() {
        let cache = HistoryCache::default();
        let big = |seq| Stored { payload: bytes::Bytes::from(vec![b'x'; MAX_BYTES / 3]), ..msg(seq) };
        let jobs: Vec<JobId> = (0..4).map(|_| JobId(uuid::Uuid::new_v4())).collect();
        for (i, job) in jobs.iter().enumerate() {
            cache.appended(*job, 0, big(i as u64 + 1));
        }
        assert!(cache.lock().bytes <= MAX_BYTES);
        assert!(cache.through(jobs[0], 1).is_none(), "the oldest went");
        assert!(cache.through(jobs[3], 4).is_some());
    }

    #[test]
    fn a_cache_that_is_off_keeps_nothing() {
        let (cache, job) = (HistoryCache::off(), JobId(uuid::Uuid::new_v4()));
        cache.appended(job, 0, msg(3));
        assert!(!cache.holds(job) && cache.through(job, 3).is_none());
        let on = HistoryCache::default();
        on.appended(job, 0, msg(3));
        assert!(on.holds(job) && on.through(job, 3).is_some());
    }

    #[test]
    fn headers_and_subjects_count_as_well_as_payloads() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("traceparent", "t".repeat(1_000).as_str());
        let with = Stored { headers: Some(headers), subject: "s".repeat(500), ..msg(1) };
        assert!(size(&with) >= 1_500 && size(&with) < 1_700, "{}", size(&with));
        let cache = HistoryCache::default();
        let job = JobId(uuid::Uuid::new_v4());
        cache.appended(job, 0, with);
        let held = size(&cache.through(job, 1).expect("held")[0]);
        assert_eq!(cache.lock().bytes, held);
        cache.forget(job);
        assert_eq!(cache.lock().bytes, 0);
    }

    #[test]
    fn the_oldest_chains_go_first_when_full() {
        let cache = HistoryCache::default();
        let jobs: Vec<JobId> = (0..CAPACITY + 10).map(|_| JobId(uuid::Uuid::new_v4())).collect();
        for (i, job) in jobs.iter().enumerate() {
            cache.appended(*job, 0, msg(i as u64 + 1));
        }
        assert_eq!(cache.len(), CAPACITY);
        assert!(cache.through(jobs[0], 1).is_none());
        assert!(cache.through(jobs[CAPACITY + 9], CAPACITY as u64 + 10).is_some());
    }
}
