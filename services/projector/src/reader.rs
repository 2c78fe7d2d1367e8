//! Reading the log for the projector: every event from a sequence on, in
//! order and without gaps, decoded once and handed to both writers.
//!
//! Two halves run side by side: a task receives the messages and checks
//! their order, and a thread of its own decodes them (about half of the
//! reader's work in a profile of rebuilds, where reading the log set the
//! pace: both writers finished within a few milliseconds of the reader).

use std::sync::Arc;

use async_nats::jetstream::{Message, consumer};
use futures::{FutureExt, StreamExt};
use skynet_bus::codec;
use tokio::sync::mpsc;
use tracing::warn;

use crate::audit::Row;
use crate::config::Config;
use crate::projector::{Entry, ProjectorError, SERVICE};
use crate::quarantine::Poison;

/// Messages handed to the decoder at once at most: fewer when no more are
/// waiting, which is also what the stream says when tokio's cooperative
/// budget (128 polls) makes it yield.
const CHUNK: usize = 256;
/// Chunks received ahead of the decoder.
const CHUNKS_AHEAD: usize = 16;

/// A decoded event with its sequence, shared by both writers.
pub(crate) type Item = (u64, Arc<Entry>);

/// The log being read from `next` on and decoded, for the two writers.
pub(crate) struct Reading {
    pub(crate) next: u64,
    /// Stops reading when dropped (the consumer waits for more otherwise).
    pub(crate) task: tokio_util::task::AbortOnDropHandle<()>,
    pub(crate) rx: [mpsc::Receiver<Result<Item, ProjectorError>>; 2],
}

impl Reading {
    /// Starts reading at `next`; up to four batches per writer are decoded
    /// ahead of what the writers take.
    pub(crate) fn start(stream: async_nats::jetstream::stream::Stream, next: u64, config: &Config) -> Reading {
        let max_batch = config.max_batch.max(1);
        let (audit_tx, audit_rx) = mpsc::channel(max_batch * 4);
        let (models_tx, models_rx) = mpsc::channel(max_batch * 4);
        let task = tokio::spawn(read_log(stream, next, max_batch, [audit_tx, models_tx]));
        Reading { next, task: tokio_util::task::AbortOnDropHandle::new(task), rx: [audit_rx, models_rx] }
    }
}

/// What the receiving half hands the decoding half.
enum Chunk {
    /// Messages in log order, each with its stream sequence.
    Messages(Vec<(u64, Message)>),
    /// Reading stopped for good: no consumer could be made.
    Failed(String),
}

/// Delivers the log from `next` on, in order and without gaps, into `txs`.
async fn read_log(
    stream: async_nats::jetstream::stream::Stream,
    next: u64,
    batch: usize,
    txs: [mpsc::Sender<Result<Item, ProjectorError>>; 2],
) {
    let (tx, rx) = mpsc::channel(CHUNKS_AHEAD);
    // A thread, not a task: decoding is CPU work that should run beside the
    // receiving task, and a task woken by it would often run on the same
    // worker thread, after it. It ends when `tx` is dropped (this task ended
    // or was aborted with the `Reading`) or no writer takes events any more.
    let writers = txs.clone();
    let decoding = tokio::task::spawn_blocking(move || decode(rx, &txs));
    receive(stream, next, batch, tx).await;
    // A decoder that panicked must not look like the end of the log to the
    // writers (they would stop as if done): they are told.
    if let Err(e) = decoding.await {
        for tx in &writers {
            let _ = tx.send(Err(ProjectorError::Nats(format!("decoding the log stopped: {e}").into()))).await;
        }
    }
}

/// The receiving half: a plain pull consumer without acks and with large,
/// pipelined pulls (an ordered consumer pulls 500 at a time and waits between
/// pulls, which capped rebuilds). Order and completeness are checked here
/// instead: the stream denies deletes, so its sequences are contiguous, and
/// any jump means a lost delivery — the consumer is made again at the first
/// missing sequence.
async fn receive(stream: async_nats::jetstream::stream::Stream, mut next: u64, batch: usize, tx: mpsc::Sender<Chunk>) {
    loop {
        let created = stream
            .create_consumer(consumer::pull::Config {
                // Named: the projector's role may create consumers on the log
                // only by name, never under a durable's name (nats/roles.json).
                name: Some(format!("projector-{}", uuid::Uuid::new_v4().simple())),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
                ack_policy: consumer::AckPolicy::None,
                // Its state (how far it delivered) is worth nothing after a
                // restart, which makes a new one: kept in memory, never
                // written (and fsynced, under `sync_interval: always`).
                memory_storage: true,
                inactive_threshold: std::time::Duration::from_secs(60),
                ..Default::default()
            })
            .await;
        let messages = match created {
            Ok(c) => c.stream().max_messages_per_batch(batch).messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send(Chunk::Failed(e)).await;
                return;
            }
        };
        // The first message of a new consumer is the first that exists at or
        // after `next`; after that, every sequence must follow the last.
        let mut first = true;
        let mut chunk = Vec::with_capacity(CHUNK);
        loop {
            // What is waiting goes to the decoder before this task waits for
            // more: a live projector's events are not held back for company.
            let msg = match messages.next().now_or_never() {
                Some(msg) => msg,
                None => {
                    if !hand_on(&tx, &mut chunk).await {
                        return;
                    }
                    messages.next().await
                }
            };
            let Some(Ok(msg)) = msg else { break }; // made again from `next`
            let Ok(seq) = msg.info().map(|i| i.stream_sequence) else { break };
            if seq < next {
                continue; // already delivered
            }
            if seq > next && !first {
                warn!(service = SERVICE, expected = next, got = seq, "gap in delivery; re-reading from the gap");
                break;
            }
            first = false;
            next = seq + 1;
            chunk.push((seq, msg));
            if chunk.len() >= CHUNK && !hand_on(&tx, &mut chunk).await {
                return;
            }
        }
        // Everything before `next` is in order: it goes before the re-reading.
        if !hand_on(&tx, &mut chunk).await || tx.is_closed() {
            return;
        }
    }
}

/// Hands `chunk`'s messages (if any) to the decoder; `false` once it is gone.
async fn hand_on(tx: &mpsc::Sender<Chunk>, chunk: &mut Vec<(u64, Message)>) -> bool {
    chunk.is_empty() || tx.send(Chunk::Messages(std::mem::take(chunk))).await.is_ok()
}

/// The decoding half: each message decoded once, shared by both writers.
/// Returns when reading ended or no writer takes more (both stopped: they
/// reached `until`).
fn decode(mut rx: mpsc::Receiver<Chunk>, txs: &[mpsc::Sender<Result<Item, ProjectorError>>; 2]) {
    while let Some(chunk) = rx.blocking_recv() {
        let messages = match chunk {
            Chunk::Messages(messages) => messages,
            Chunk::Failed(e) => {
                for tx in txs {
                    let _ = tx.blocking_send(Err(ProjectorError::Nats(async_nats::Error::from(e.clone()))));
                }
                return;
            }
        };
        for (seq, msg) in messages {
            let entry = Arc::new(entry(seq, &msg));
            let mut open = 0;
            for tx in txs {
                if tx.blocking_send(Ok((seq, Arc::clone(&entry)))).is_ok() {
                    open += 1;
                }
            }
            if open == 0 {
                return;
            }
        }
    }
}

/// The event at `seq`, or why it cannot be projected.
fn entry(seq: u64, msg: &Message) -> Entry {
    match codec::decode_raw(msg.headers.as_ref(), &msg.payload).and_then(|env| Row::storable(seq, &msg.subject, env)) {
        Ok(row) => Entry::Row(Arc::new(row)),
        // Only SKYNET's own services write this stream, through the
        // contract; an undecodable event is a bug worth shouting about,
        // but it must not stop every read model.
        Err(e) => Entry::Poison(Poison {
            seq,
            nats_subject: msg.subject.to_string(),
            reason: format!("undecodable: {e}"),
            payload: msg.payload.to_vec(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use skynet_bus::definitions::EVENTS_STREAM;
    use skynet_testkit::NatsServer;

    use super::*;

    /// Publishes `n` messages on the log that are not events (each is
    /// quarantined, which needs no envelope): the reader's order is what counts.
    async fn publish(js: &async_nats::jetstream::Context, n: usize) -> anyhow::Result<()> {
        for i in 0..n {
            let subject = format!("skynet.job.{}.requested", uuid::Uuid::new_v4());
            #[allow(clippy::disallowed_methods)] // not an event: nothing to chain
            js.publish(subject, format!("not an event {i}").into()).await?.await?;
        }
        Ok(())
    }

    async fn take(rx: &mut mpsc::Receiver<Result<Item, ProjectorError>>, n: usize) -> anyhow::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        while seqs.len() < n {
            let item = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("only {} of {n} events came", seqs.len()))?
                .ok_or_else(|| anyhow::anyhow!("the reader stopped after {} events", seqs.len()))?;
            let (seq, entry) = item.map_err(|e| anyhow::anyhow!(e))?;
            assert!(matches!(&*entry, Entry::Poison(p) if p.seq == seq && p.reason.starts_with("undecodable")));
            seqs.push(seq);
        }
        Ok(seqs)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_event_reaches_both_writers_in_order_and_a_lone_one_is_not_held() -> anyhow::Result<()> {
        let server = NatsServer::start()?;
        let js = skynet_bus::bootstrap(&server.connect().await?).await?;
        // More than a chunk, and not a multiple of one.
        publish(&js, 1_000).await?;
        let stream = js.get_stream(EVENTS_STREAM).await?;
        let Reading { task: _reading, rx: [mut audit, mut models], .. } =
            Reading::start(stream, 1, &Config { max_batch: 64, until: None });
        let want: Vec<u64> = (1..=1_000).collect();
        // Both at once: a writer that does not take its events holds the
        // other one up (bounded channels), as in the projector.
        let (a, m) = tokio::join!(take(&mut audit, 1_000), take(&mut models, 1_000));
        assert_eq!((a?, m?), (want.clone(), want));
        // Nothing more is waiting: the next event alone goes to the writers.
        publish(&js, 1).await?;
        let (a, m) = tokio::join!(take(&mut audit, 1), take(&mut models, 1));
        assert_eq!((a?, m?), (vec![1_001], vec![1_001]));
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_that_cannot_be_read_is_an_error_to_both_writers() -> anyhow::Result<()> {
        let server = NatsServer::start()?;
        let js = skynet_bus::bootstrap(&server.connect().await?).await?;
        let stream = js.get_stream(EVENTS_STREAM).await?;
        js.delete_stream(EVENTS_STREAM).await?;
        let Reading { task: _reading, rx, .. } = Reading::start(stream, 1, &Config::default());
        for mut rx in rx {
            let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await?;
            assert!(matches!(got, Some(Err(ProjectorError::Nats(_)))), "{:?}", got.map(|r| r.map(|(seq, _)| seq)));
        }
        Ok(())
    }
}
