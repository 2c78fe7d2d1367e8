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
use futures::StreamExt;
use skynet_contract::job::JobEventKind;
use skynet_contract::{DecodeError, Envelope, JobId, subjects};

use crate::codec;
use crate::definitions::EVENTS_STREAM;

/// Header naming the subject filter the expected sequence applies to (NATS 2.11).
const EXPECTED_SUBJECT_HEADER: &str = "Nats-Expected-Last-Subject-Sequence-Subject";
const EXPECTED_SEQ_HEADER: &str = "Nats-Expected-Last-Subject-Sequence";
/// Events fetched per direct-get request when replaying a job.
const LOAD_BATCH: usize = 512;
/// How long a replay waits for the server to answer.
const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A job's history as stored.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// (stream sequence, event), oldest first.
    pub events: Vec<(u64, Envelope)>,
    /// Sequence of the last event; 0 when the job has none. Pass it to `append`.
    pub last_seq: u64,
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
    #[error("event at sequence {seq} of job {job} cannot be decoded")]
    Decode {
        job: JobId,
        seq: u64,
        #[source]
        source: DecodeError,
    },
}

/// Handle on the event log. Cheap to clone; clones share the state cache.
#[derive(Clone)]
pub struct EventStore {
    /// JetStream context: publishes go through it, acks come back on it.
    js: jetstream::Context,
    /// The events stream, for replay consumers.
    stream: stream::Stream,
    /// Job states this process computed, keyed by the sequence they are at.
    cache: std::sync::Arc<crate::cache::StateCache>,
}

impl EventStore {
    /// Opens the store on a bootstrapped server.
    pub async fn open(js: jetstream::Context) -> Result<EventStore, async_nats::Error> {
        let stream = js.get_stream(EVENTS_STREAM).await?;
        Ok(EventStore { js, stream, cache: std::sync::Arc::default() })
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
        let filter = subjects::job_stream(job);
        let mut expected = expected;
        for env in events {
            let kind = JobEventKind::from_cloud_type(&env.ty)
                .ok_or_else(|| AppendError::NotAJobEvent { ty: env.ty.clone() })?;
            let subject = subjects::job_event(job, kind.token());
            let (mut headers, payload) = codec::encode(env);
            headers.insert(EXPECTED_SEQ_HEADER, expected.to_string());
            headers.insert(EXPECTED_SUBJECT_HEADER, filter.as_str());
            expected = match self.publish(job, expected, subject.clone(), headers, payload).await {
                // The server checks the expected sequence before the duplicate
                // window, so retrying an append whose ack was lost reports a
                // conflict. If the event there is our own, the append happened.
                Err(e @ AppendError::Conflict { .. }) => self.stored_seq(&subject, &env.id).await.ok_or(e)?,
                other => other?,
            };
        }
        Ok(expected)
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
    ) -> Result<u64, AppendError> {
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
        Ok(ack.sequence)
    }

    /// Replays every event of `job`, oldest first.
    ///
    /// Uses JetStream's batched direct get (`next_by_subj` over the job's
    /// wildcard subject): one request per `LOAD_BATCH` events, no consumer
    /// created on the server. (An ordered consumer per load leaks server-side
    /// consumers until their inactivity timeout and hits the account's limit
    /// under load.)
    pub async fn load(&self, job: JobId) -> Result<History, LoadError> {
        let nats = |e: async_nats::Error| LoadError::Nats { job, source: e };
        let client = self.js.client();
        let filter = subjects::job_stream(job);
        let api = format!("$JS.API.DIRECT.GET.{EVENTS_STREAM}");
        let mut history = History::default();
        let mut from = 1u64;
        loop {
            let inbox = client.new_inbox();
            let mut sub = client.subscribe(inbox.clone()).await.map_err(|e| nats(e.into()))?;
            let req = serde_json::json!({ "seq": from, "next_by_subj": filter, "batch": LOAD_BATCH });
            client.publish_with_reply(api.clone(), inbox, req.to_string().into()).await.map_err(|e| nats(e.into()))?;
            let mut got = 0usize;
            loop {
                let msg = tokio::time::timeout(LOAD_TIMEOUT, sub.next())
                    .await
                    .map_err(|_| nats(format!("no answer to direct get within {LOAD_TIMEOUT:?}").into()))?
                    .ok_or_else(|| nats("direct get subscription closed".into()))?;
                if let Some(status) = msg.status {
                    match status.as_u16() {
                        // 204: end of this batch; 404: nothing (more) for this subject.
                        204 | 404 => break,
                        code => {
                            let detail = msg.description.unwrap_or_default();
                            return Err(nats(format!("direct get failed: {code} {detail}").into()));
                        }
                    }
                }
                let seq = codec::header(msg.headers.as_ref(), "Nats-Sequence")
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| nats("direct get reply without Nats-Sequence".into()))?;
                let env = codec::decode(msg.headers.as_ref(), &msg.payload).map_err(|source| LoadError::Decode {
                    job,
                    seq,
                    source,
                })?;
                history.events.push((seq, env));
                history.last_seq = seq;
                got += 1;
            }
            let _ = sub.unsubscribe().await;
            if got < LOAD_BATCH {
                return Ok(history);
            }
            from = history.last_seq + 1;
        }
    }
}
