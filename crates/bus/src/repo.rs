//! Load, decide, append, retry: the one way services change a job.
//!
//! [`Jobs::execute`] replays the job, lets the caller's `decide` closure choose
//! the events, and appends them under optimistic concurrency. On `Conflict` it
//! reloads and decides again, a bounded number of times with jittered backoff
//! (`backon`). Event ids are derived from the job, the event kind and the
//! caller's *cause* (the id of the message being handled), so handling the same
//! message twice publishes the same ids and the log stores each event once.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use skynet_contract::ids::event_id;
use skynet_contract::job::{Failed, JobEvent, JobEventKind, Stage};
use skynet_contract::{Envelope, JobId, owners};
use skynet_job::{Job, Rejection, Status};
use tracing::warn;

use crate::store::{AppendError, EventStore, History, LoadError};

/// How many times a conflicting append is retried before giving up.
pub const MAX_CONFLICT_RETRIES: usize = 8;

/// What came of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The events were stored; `seq` is the last one's sequence and `state`
    /// the job after them. `fresh`: this command stored them; if not, the log
    /// already held them (a retried append, a repeated submission) and `state`
    /// is folded from ours, not read from the log.
    Appended { seq: u64, events: Vec<JobEvent>, state: Box<Job>, fresh: bool },
    /// The job refused the command (the state was already past it, or a rule said no).
    Rejected(Rejection),
}

/// Why a command could not be carried out (as opposed to being refused).
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("job {job}: stored events do not replay")]
    Corrupt {
        job: JobId,
        #[source]
        source: skynet_job::IllegalTransition,
    },
    /// The log was read from a replica that has not yet stored the event
    /// being handled (see [`Jobs::load_at`]).
    #[error("job {job}: the log read ends at sequence {read}, before the event being handled at {handling}")]
    Behind { job: JobId, handling: u64, read: u64 },
}

/// A job as replayed from its log.
#[derive(Debug, Clone, Default)]
pub struct Replayed {
    /// The state folded from every acceptable event (`None`: no job).
    pub state: Option<Job>,
    /// Sequence of the job's last stored message: append after it.
    pub last_seq: u64,
    /// Messages of the job's log that were not folded: (sequence, why). Not
    /// decodable, written under a `source` that does not own the event's kind,
    /// or not a legal continuation of the state.
    pub skipped: Vec<(u64, String)>,
    /// The trace context of the job's last event that carries one: what
    /// events recorded outside any traced handling (a person's approval, a
    /// deadline sweep) continue, so the job stays one trace.
    pub traceparent: Option<String>,
}

impl Replayed {
    /// Why the job cannot be trusted to go on, if it cannot.
    pub fn integrity_problem(&self) -> Option<String> {
        let (seq, why) = self.skipped.first()?;
        let more = self.skipped.len() - 1;
        let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
        Some(format!("the job's log holds a message that was skipped at sequence {seq}: {why}{more}"))
    }
}

impl ExecuteError {
    fn is_conflict(&self) -> bool {
        matches!(self, ExecuteError::Append(e) if e.is_conflict())
    }
}

/// The job repository of one service.
#[derive(Clone)]
pub struct Jobs {
    store: EventStore,
    /// CloudEvent `source` of everything this service records (`skynet/<service>`).
    source: String,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Jobs {
    pub fn new(store: EventStore, service: &str) -> Jobs {
        Jobs { store, source: format!("skynet/{service}") }
    }

    /// The underlying store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// Replays `job` into its state and the sequence to append after.
    pub async fn load(&self, job: JobId) -> Result<(Option<Job>, u64), ExecuteError> {
        let r = self.replay_for(job, "load").await?;
        Ok((r.state, r.last_seq))
    }

    /// Replays `job`, skipping (and reporting) every message that must not be
    /// folded: undecodable, from a `source` that does not own its kind, or
    /// illegal after the events before it. A job with skipped messages is
    /// never cached, so every service that meets it sees the problem.
    pub async fn replay(&self, job: JobId) -> Result<Replayed, ExecuteError> {
        self.replay_for(job, "replay").await
    }

    /// Replays `job` from the log, counted by `why` (see
    /// `skynet_job_log_reads_total`): a read walks the stream (see
    /// [`crate::history`]), so an operator should see how often each path
    /// misses what this process holds.
    async fn replay_for(&self, job: JobId, why: &'static str) -> Result<Replayed, ExecuteError> {
        metrics::counter!("skynet_job_log_reads_total", "source" => self.source.clone(), "why" => why).increment(1);
        let history = self.store.load(job).await?;
        self.fold(job, history)
    }

    /// Folds a job's history (see [`replay`](Self::replay)).
    fn fold(&self, job: JobId, history: History) -> Result<Replayed, ExecuteError> {
        let History { events, last_seq, unreadable } = history;
        let mut skipped = unreadable;
        let mut folded: Vec<JobEvent> = Vec::with_capacity(events.len());
        let mut state = None;
        for (seq, env) in &events {
            let event = match env.job_event() {
                Ok((j, e)) if j == job => e,
                Ok((j, _)) => {
                    skipped.push((*seq, format!("event {} names job {j}, not this one", env.id)));
                    continue;
                }
                Err(e) => {
                    skipped.push((*seq, e.to_string()));
                    continue;
                }
            };
            if let Some(why) = owners::wrong_source(event.kind(), &env.source) {
                skipped.push((*seq, why));
                continue;
            }
            match skynet_job::evolve(state.take(), &event) {
                Ok(next) => {
                    state = Some(next);
                    folded.push(event);
                }
                Err(e) => {
                    skipped.push((*seq, format!("{} cannot be applied: {e}", event.kind().token())));
                    // evolve consumed the state; rebuild it from what was folded (rare).
                    state = skynet_job::replay(&folded).map_err(|source| ExecuteError::Corrupt { job, source })?;
                }
            }
        }
        skipped.sort_by_key(|(seq, _)| *seq);
        for (seq, why) in &skipped {
            warn!(job = %job, seq, reason = %why, "skipped a message of the job's log");
        }
        if let (Some(s), true) = (&state, skipped.is_empty()) {
            self.store.cache().put(job, s, last_seq);
        }
        let traceparent = events.iter().rev().find_map(|(_, env)| env.traceparent.clone());
        Ok(Replayed { state, last_seq, skipped, traceparent })
    }

    /// The job as of the event at `seq` that a consumer is handling (or
    /// later): from the cache when it holds the job at exactly `seq`, from the
    /// messages this process holds when they reach `seq`, else replayed from
    /// the log.
    pub async fn load_at(&self, job: JobId, seq: u64) -> Result<(Option<Job>, u64), ExecuteError> {
        if let Some(loaded) = self.held_at(job, seq)? {
            return Ok(loaded);
        }
        // The event may have come before the append that made it was
        // acknowledged to this process: wait for that, then look again.
        // (Looked at again even when there was nothing to wait for: the
        // append may have ended since the first look.)
        self.store.cache().settled(job, crate::cache::SETTLE_WAIT).await;
        if let Some(loaded) = self.held_at(job, seq)? {
            return Ok(loaded);
        }
        // Every replica of a clustered stream answers direct gets, so a read can
        // come from one still behind the leader (right after a leader change
        // above all). A history that stops before the event being handled is
        // that replica's lag, not the job's state: taken for the state, it
        // would show the job as not yet at this step, and the handler would
        // ack an event nobody handled (the job then never ends). Read again
        // briefly; then hand the message back to be delivered again.
        let read = || async {
            let r = self.replay_for(job, "not_held").await?;
            let (state, last) = (r.state, r.last_seq);
            if last < seq {
                return Err(ExecuteError::Behind { job, handling: seq, read: last });
            }
            Ok((state, last))
        };
        read.retry(ExponentialBuilder::default().with_min_delay(Duration::from_millis(20)).with_max_times(6))
            .when(|e| matches!(e, ExecuteError::Behind { .. }))
            .notify(|e, after| warn!(job = %job, error = %e, ?after, "stale read of the job's log; reading again"))
            .await
    }

    /// The job at `seq` or later as this process knows it, without reading
    /// the log: the cache's state at exactly `seq`, else folded from the
    /// job's messages this process appended, when they reach `seq` — the
    /// latest state it knows. (The dispatcher meets the second on every
    /// auto-approved job: the policy appends two events, so its first
    /// message is behind the cache.) As with the cache, an event another
    /// process appended since makes the next append conflict, and the retry
    /// replays the log.
    fn held_at(&self, job: JobId, seq: u64) -> Result<Option<(Option<Job>, u64)>, ExecuteError> {
        if let Some(state) = self.store.cache().at(job, seq) {
            return Ok(Some((Some(state), seq)));
        }
        if let Some(history) = self.store.held_reaching(job, seq) {
            let r = self.fold(job, history)?;
            if r.skipped.is_empty() {
                return Ok(Some((r.state, r.last_seq)));
            }
        }
        Ok(None)
    }

    /// Runs `decide` against the current state of `job` and stores its events.
    /// `cause` identifies what triggered the command (for deterministic event ids);
    /// `now` is the events' time.
    pub async fn execute<F>(
        &self,
        job: JobId,
        cause: &str,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<Outcome, ExecuteError>
    where
        F: Fn(Option<&Job>) -> Result<Vec<JobEvent>, Rejection>,
    {
        self.execute_from(job, None, cause, now, decide).await
    }

    /// Like [`execute`](Self::execute), but the first attempt decides on
    /// `known` (state and last sequence) instead of replaying — for a service
    /// that can tell the state from the event it consumed. If `known` is stale
    /// the append conflicts, and the retries replay as usual.
    pub async fn execute_from<F>(
        &self,
        job: JobId,
        known: Option<(Option<Job>, u64)>,
        cause: &str,
        now: DateTime<Utc>,
        decide: F,
    ) -> Result<Outcome, ExecuteError>
    where
        F: Fn(Option<&Job>) -> Result<Vec<JobEvent>, Rejection>,
    {
        // A replay after the first attempt (or after a known state) follows a conflict.
        let conflicted = std::sync::atomic::AtomicBool::new(known.is_some());
        let known = std::sync::Mutex::new(known);
        let attempt = || async {
            let first = known.lock().map(|mut k| k.take()).unwrap_or(None);
            let (state, last_seq, traceparent) = match first {
                Some((state, seq)) => (state, seq, None),
                None => {
                    let why = if conflicted.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        "conflict"
                    } else {
                        "execute"
                    };
                    let replayed = self.replay_for(job, why).await?;
                    if let Some(outcome) = self.fail_untrustworthy(job, &replayed, cause, now).await? {
                        return Ok(outcome);
                    }
                    (replayed.state, replayed.last_seq, replayed.traceparent)
                }
            };
            let events = match decide(state.as_ref()) {
                Ok(events) => events,
                Err(rejection) => return Ok(Outcome::Rejected(rejection)),
            };
            let mut envelopes = self.envelopes(job, cause, now, &events);
            // The job's trace: the current handling's; else (a person's
            // approval, a deadline sweep) the job's own from its log; a job's
            // first event without one starts a new trace.
            let traceparent =
                crate::trace::current().or(traceparent).or_else(|| state.is_none().then(crate::trace::new_root));
            for env in &mut envelopes {
                env.traceparent.clone_from(&traceparent);
            }
            // Until what it computed is cached (see `crate::cache`).
            let _appending = self.store.cache().appending(job);
            let appended = self.store.append_checked(job, last_seq, &envelopes).await?;
            let seq = appended.seq;
            let mut after = state;
            for e in &events {
                after = Some(skynet_job::evolve(after, e).map_err(|source| ExecuteError::Corrupt { job, source })?);
            }
            let Some(after) = after else { return Ok(Outcome::Rejected(Rejection::NoSuchJob)) };
            // Events already stored (a retry) may differ from ours in their
            // times: the state folded from ours is not the log's.
            if appended.fresh {
                self.store.cache().put(job, &after, seq);
            }
            Ok(Outcome::Appended { seq, events, state: Box::new(after), fresh: appended.fresh })
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(2))
                    .with_max_delay(Duration::from_millis(100))
                    .with_max_times(MAX_CONFLICT_RETRIES)
                    .with_jitter(),
            )
            .when(ExecuteError::is_conflict)
            .await
    }

    /// A job whose log had to be skipped in part does not go on: a service that
    /// may fail jobs records `failed` (stage `integrity`, with the reason) and
    /// the command is refused as for any finished job. Other services decide
    /// on what could be folded.
    async fn fail_untrustworthy(
        &self,
        job: JobId,
        replayed: &Replayed,
        cause: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Outcome>, ExecuteError> {
        let (Some(state), Some(reason)) = (&replayed.state, replayed.integrity_problem()) else { return Ok(None) };
        if state.status.is_terminal() || !owners::is_owner(JobEventKind::Failed, &self.source) {
            return Ok(None);
        }
        warn!(job = %job, %reason, "failing a job whose log cannot be trusted");
        let failed = JobEvent::Failed(Failed { stage: Stage::Integrity, reason, step: None, provider: None });
        let envelopes = self.envelopes(job, &format!("integrity:{cause}"), now, std::slice::from_ref(&failed));
        self.store.append(job, replayed.last_seq, &envelopes).await?;
        Ok(Some(Outcome::Rejected(Rejection::AlreadyFinished(Status::Failed))))
    }

    /// Envelopes with deterministic ids for `events` caused by `cause`.
    pub fn envelopes(&self, job: JobId, cause: &str, now: DateTime<Utc>, events: &[JobEvent]) -> Vec<Envelope> {
        let job_s = job.to_string();
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let id = event_id(&[&job_s, e.kind().token(), cause, &i.to_string()]);
                Envelope::job(job, e, id, &self.source, now)
            })
            .collect()
    }
}
