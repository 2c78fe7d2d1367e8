//! The event store: appends to and replays job aggregates in the `SKYNET_EVENTS`
//! stream.
//!
//! Appends use per-aggregate optimistic concurrency: each event carries
//! `Nats-Expected-Last-Subject-Sequence` (the stream sequence of the job's last
//! event as the writer saw it, 0 for a new job) and
//! `Nats-Expected-Last-Subject-Sequence-Subject: skynet.job.<id>.>`, so the server
//! stores it only if no other event of that job was stored in between. A refusal
//! becomes [`AppendError::Conflict`].

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, stream};
use skynet_contract::job::JobEventKind;
use skynet_contract::{Envelope, JobId, subjects};
use tracing::warn;

use crate::codec;
use crate::definitions::EVENTS_STREAM;
use crate::read::Stored;

/// Header naming the subject filter the expected sequence applies to (NATS 2.11).
pub(crate) const EXPECTED_SUBJECT_HEADER: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
pub(crate) const EXPECTED_SEQ_HEADER: &str = "Nats-Expected-Last-Subject-Sequence";

/// A job's history as stored.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (stream sequence, event), oldest first.
    pub events: Vec<(u64, Envelope)>,
    /// Sequence of the last event; 0 when the job has none. Pass it to `append`.
    pub last_seq: u64,
    /// Messages stored under the job that are not events SKYNET can read
    /// (sequence, why). They are skipped, never folded; see [`crate::repo`].
    pub unreadable: Vec<(u64, String)>,
}

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Sequence of the last event: the job's new last sequence.
    pub seq: u64,
    /// Whether this call stored every event (none was already there).
    pub fresh: bool,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// Another writer appended to the job since `expected`: reload and decide again.
    #[error("job {job}: another event was appended after sequence {expected}")]
    Conflict { job: JobId, expected: u64 },
    /// An envelope whose type is not a job event.
    #[error("{ty} is not a job event type")]
    NotAJobEvent { ty: String },
    #[error("publishing {subject}")]
    Publish {
        subject: String,
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

impl AppendError {
    /// Whether reloading and deciding again can help.
    pub fn is_conflict(&self) -> bool {
        matches!(self, AppendError::Conflict { .. })
    }
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading the events of job {job}")]
    Nats {
        job: JobId,
        #[source]
        source: async_nats::Error,
    },
}

/// Handle on the event log. Cheap to clone (consumers clone it for every
/// message they handle); clones share the state cache.
#[derive(Clone)]
pub struct EventStore {
    /// JetStream context: publishes go through it, acks come back on it.
    /// Shared: a context's clone is a client's (a handful of counted handles).
    js: std::sync::Arc<jetstream::Context>,
    /// The events stream, for replay consumers. Shared: its clone copies the
    /// whole stream info (configuration, state, cluster), allocation by allocation.
    stream: std::sync::Arc<stream::Stream>,
    /// Job states this process computed, keyed by the sequence they are at.
    cache: std::sync::Arc<crate::cache::StateCache>,
    /// The recent jobs' messages this process appended or read.
    histories: std::sync::Arc<crate::history::HistoryCache>,
}

impl EventStore {
    /// Opens the store on a bootstrapped server.
    pub async fn open(js: jetstream::Context) -> Result<EventStore, async_nats::Error> {
        let stream = js.get_stream(EVENTS_STREAM).await?;
        Ok(EventStore {
            js: std::sync::Arc::new(js),
            stream: std::sync::Arc::new(stream),
            cache: std::sync::Arc::default(),
            histories: std::sync::Arc::default(),
        })
    }

    /// This store keeping no job histories when `keep` is false: for a
    /// process where nothing would read them (see [`crate::history::HistoryCache::off`]).
    pub fn keeping_histories(mut self, keep: bool) -> EventStore {
        if !keep {
            self.histories = std::sync::Arc::new(crate::history::HistoryCache::off());
        }
        self
    }

    /// This store with `other`'s state cache: services in one process each
    /// connect under their own role but share what they computed, so the next
    /// stage finds the job at the sequence the previous one appended.
    pub fn sharing_cache_of(mut self, other: &EventStore) -> EventStore {
        self.cache = other.cache.clone();
        self.histories = other.histories.clone();
        self
    }

    /// The process-wide cache of job states.
    pub fn cache(&self) -> &crate::cache::StateCache {
        &self.cache
    }

    /// The JetStream context the store publishes with.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Appends `events` to `job`, which must have `expected` as its last sequence
    /// (0: no events yet). Returns the sequence of the last appended event.
    ///
    /// Events after the first are chained on the previous one's sequence, so a
    /// concurrent writer can never interleave. A re-published event id (same
    /// `Nats-Msg-Id` inside the duplicate window) is acknowledged as a duplicate
    /// without being stored twice.
    pub async fn append(&self, job: JobId, expected: u64, events: &[Envelope]) -> Result<u64, AppendError> {
        Ok(self.append_checked(job, expected, events).await?.seq)
    }

    /// [`append`](Self::append), also telling whether every event was stored
    /// by this call. One that was already stored (a retry of an append whose
    /// ack was lost) keeps the first copy, which may differ from ours in its
    /// time or durations: what this process computed from ours is then not
    /// the log's, and must not be cached.
    pub async fn append_checked(
        &self,
        job: JobId,
        expected: u64,
        events: &[Envelope],
    ) -> Result<Appended, AppendError> {
        let filter = subjects::job_stream(job);
        let mut expected = expected;
        let mut fresh = true;
        for env in events {
            let kind = JobEventKind::from_cloud_type(&env.ty)
                .ok_or_else(|| AppendError::NotAJobEvent { ty: env.ty.clone() })?;
            let subject = subjects::job_event(job, kind.token());
            let (mut headers, payload) = codec::encode(env);
            headers.insert(EXPECTED_SEQ_HEADER, expected.to_string());
            headers.insert(EXPECTED_SUBJECT_HEADER, filter.as_str());
            let kept = (headers.clone(), payload.clone());
            let (seq, stored_now) = match self.publish(job, expected, subject.clone(), headers, payload).await {
                // Retrying an append whose ack was lost is either refused on
                // the expected sequence (a conflict) or answered as a
                // duplicate, depending on which check the server makes first.
                // If the event there is our own, the append happened.
                Err(e @ AppendError::Conflict { .. }) => (self.stored_seq(&subject, &env.id).await.ok_or(e)?, false),
                other => other?,
            };
            if stored_now && fresh {
                let (headers, payload) = kept;
                self.histories.appended(job, expected, Stored { seq, subject, headers: Some(headers), payload });
            } else {
                // Not ours at that sequence, or not checked against `expected`.
                fresh = false;
                self.histories.drop_chain(job, "not_stored_now");
            }
            expected = seq;
        }
        Ok(Appended { seq: expected, fresh })
    }

    /// Drops what this process holds of `job`'s messages (see [`crate::history`]).
    pub fn forget_history(&self, job: JobId) {
        self.histories.forget(job);
    }

    /// The sequence of the last message on `subject` if it is the event `id`.
    async fn stored_seq(&self, subject: &str, id: &str) -> Option<u64> {
        let m = self.stream.direct_get_last_for_subject(subject).await.ok()?;
        (codec::header(Some(&m.headers), "Nats-Msg-Id") == Some(id)).then_some(m.sequence)
    }

    async fn publish(
        &self,
        job: JobId,
        expected: u64,
        subject: String,
        headers: HeaderMap,
        payload: bytes::Bytes,
    ) -> Result<(u64, bool), AppendError> {
        let map = |source: async_nats::jetstream::context::PublishError, subject: &str| {
            if source.kind() == PublishErrorKind::WrongLastSequence {
                AppendError::Conflict { job, expected }
            } else {
                AppendError::Publish { subject: subject.to_owned(), source }
            }
        };
        let ack = self
            .js
            .send_publish(subject.clone(), PublishMessage::build().headers(headers).payload(payload))
            .await
            .map_err(|e| map(e, &subject))?
            .await
            .map_err(|e| map(e, &subject))?;
        Ok((ack.sequence, !ack.duplicate))
    }

    /// Every message of `job`, read from the log.
    async fn read(&self, job: JobId) -> Result<Vec<Stored>, LoadError> {
        crate::read::read_all(&self.js.client(), EVENTS_STREAM, &subjects::job_stream(job), 1)
            .await
            .map_err(|source| LoadError::Nats { job, source })
    }

    /// Every message of `job` up to and including stream sequence `seq`, as
    /// stored: from the histories this process keeps when they reach `seq`,
    /// else read from the log (see [`crate::history`] for why that matters).
    /// `reader` (`skynet/<service>`) labels the read in `skynet_job_log_reads_total`.
    pub async fn messages_through(&self, job: JobId, seq: u64, reader: &str) -> Result<Vec<Stored>, LoadError> {
        if let Some(held) = self.histories.through(job, seq) {
            return Ok(held);
        }
        // The event at `seq` may have reached this consumer before the
        // append that stored it was acknowledged to this process (the server
        // answers the appender and delivers to the consumer on two
        // connections): wait for that, then look again. Measured, one learned
        // job in fifteen took this path in a fast burst, each a walk of the log.
        // A job without a chain will not have one (a chain never starts
        // mid-job): nothing to wait for.
        if self.histories.holds(job) {
            self.cache.settled(job, crate::cache::SETTLE_WAIT).await;
            if let Some(held) = self.histories.through(job, seq) {
                return Ok(held);
            }
        }
        metrics::counter!("skynet_job_log_reads_total", "source" => reader.to_owned(), "why" => "messages_not_held")
            .increment(1);
        Ok(self.read(job).await?.into_iter().filter(|m| m.seq <= seq).collect())
    }

    /// Replays every event of `job`, oldest first.
    ///
    /// Uses JetStream's batched direct get (`next_by_subj` over the job's
    /// wildcard subject): one request per 512 events, no consumer
    /// created on the server. (An ordered consumer per load leaks server-side
    /// consumers until their inactivity timeout and hits the account's limit
    /// under load.)
    pub async fn load(&self, job: JobId) -> Result<History, LoadError> {
        Ok(history_of(job, self.read(job).await?))
    }

    /// The job's history as this process holds it (no read of the log), when
    /// that reaches stream sequence `seq`: complete up to its last message,
    /// which is the latest this process knows of (another process may have
    /// appended since; an append after it then conflicts).
    pub fn held_reaching(&self, job: JobId, seq: u64) -> Option<History> {
        Some(history_of(job, self.histories.reaching(job, seq)?))
    }
}

/// Decodes a job's stored messages, oldest first.
fn history_of(job: JobId, stored: Vec<Stored>) -> History {
    {
        let mut history = History::default();
        for m in stored {
            // One unreadable message must not make the job unloadable forever
            // (the log refuses deletes): it is skipped and reported.
            match codec::decode(m.headers.as_ref(), &m.payload) {
                Ok(env) => history.events.push((m.seq, env)),
                Err(e) => {
                    warn!(job = %job, seq = m.seq, error = %e, "skipping an unreadable message in the job's log");
                    history.unreadable.push((m.seq, e.to_string()));
                }
            }
            history.last_seq = m.seq;
        }
        history
    }
}
