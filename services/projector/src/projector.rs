//! The projection loop: ordered replay from the checkpoint, batched transactions.

use std::future::Future;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use skynet_bus::codec;
use skynet_bus::definitions::EVENTS_STREAM;
use sqlx::PgPool;
use tracing::{error, info, warn};

use crate::audit::{self, Row};
use crate::config::Config;
use crate::quarantine::{self, Poison};
use crate::rows::RowCache;

/// One event read from the log: a row to project, or one that cannot be.
enum Entry {
    Row(Row),
    Poison(Poison),
}

/// Name of this projection in `projection_checkpoint`.
const PROJECTION: &str = "read_models";
const SERVICE: &str = "projector";

/// What the projector needs.
#[derive(Clone)]
pub struct Deps {
    pub js: jetstream::Context,
    /// The read-model database; this service is the only writer of its tables.
    pub db: PgPool,
}

/// Why the projector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    #[error("applying migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("read-model database")]
    Db(#[from] sqlx::Error),
    #[error("reading the event log")]
    Nats(#[source] async_nats::Error),
    #[error("a projector is writing the read models (or another rebuild runs); stop it before rebuilding in place")]
    Busy,
    #[error("the log grew faster than the rebuild could catch up in {rounds} rounds; try again under less load")]
    RebuildBehind { rounds: usize },
    #[error(
        "the event log ends at sequence {log_last} but the read models have applied up to {checkpoint}: \
         the log was lost or replaced. Refusing to serve a wrong view; run `skynet rebuild` once the log is right"
    )]
    LogBehind { log_last: u64, checkpoint: u64 },
}

/// Applies the migrations in `migrations/` (idempotent).
pub async fn migrate(db: &PgPool) -> Result<(), ProjectorError> {
    sqlx::migrate!("../../migrations").run(db).await?;
    Ok(())
}

/// The last applied stream sequence (0 when nothing was applied).
pub async fn checkpoint(db: &PgPool) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM projection_checkpoint WHERE projection = $1")
        .bind(PROJECTION)
        .fetch_optional(db)
        .await?;
    Ok(seq.map_or(0, |s| u64::try_from(s).unwrap_or(0)))
}

/// Drops every read model's rows and the checkpoint, so the next `run` replays
/// the whole log.
pub async fn rebuild(db: &PgPool) -> Result<(), ProjectorError> {
    migrate(db).await?;
    // Never under a live projector: it would write into what is being emptied.
    let mut lock = db.acquire().await?.detach();
    let got: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(WRITER_LOCK).fetch_one(&mut lock).await?;
    if !got {
        return Err(ProjectorError::Busy);
    }
    let mut tx = db.begin().await?;
    sqlx::query(&format!("TRUNCATE {}", crate::db::TABLES.join(", "))).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM projection_checkpoint WHERE projection = $1").bind(PROJECTION).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Advisory-lock key of the read models' single writer.
const WRITER_LOCK: i64 = 0x534b_594e_5052_4f4a;

/// Takes the writer lock on a connection of its own, which holds it for as
/// long as it lives: a second projector waits (saying so) and takes over when
/// the first one's session ends — a crash included. `None` if `shutdown` came first.
async fn writer_lock(
    db: &PgPool,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<Option<sqlx::PgConnection>, ProjectorError> {
    // Detached: returned to the pool, the session (and the lock) would live on.
    let mut conn = db.acquire().await?.detach();
    let mut told = false;
    loop {
        let got: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(WRITER_LOCK).fetch_one(&mut conn).await?;
        if got {
            return Ok(Some(conn));
        }
        if !told {
            warn!(service = SERVICE, "another projector is writing the read models; waiting to take over");
            told = true;
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            () = &mut *shutdown => return Ok(None),
        }
    }
}

/// Projects the log into the read models until `shutdown` resolves. Only one
/// projector writes at a time (see `writer_lock`).
pub async fn run(config: Config, deps: Deps, shutdown: impl Future<Output = ()> + Send) -> Result<(), ProjectorError> {
    migrate(&deps.db).await?;
    let mut shutdown = std::pin::pin!(shutdown);
    let Some(_writer) = writer_lock(&deps.db, &mut shutdown).await? else { return Ok(()) };
    project(&config, &deps, &mut shutdown).await.map(|_| ())
}

/// The projection loop over `deps.db` (whatever schema its connections see),
/// from its checkpoint until `shutdown` or `config.until`; returns the last
/// sequence applied.
pub(crate) async fn project(
    config: &Config,
    deps: &Deps,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> Result<u64, ProjectorError> {
    let from = checkpoint(&deps.db).await?;
    if config.until.is_some_and(|until| from >= until) {
        return Ok(from);
    }
    let nats = |e: async_nats::Error| ProjectorError::Nats(e);
    let mut stream = deps.js.get_stream(EVENTS_STREAM).await.map_err(|e| nats(e.into()))?;
    let log_last = stream.info().await.map_err(|e| nats(e.into()))?.state.last_sequence;
    if log_last < from {
        error!(service = SERVICE, log_last, checkpoint = from, "event log is behind the read models");
        return Err(ProjectorError::LogBehind { log_last, checkpoint: from });
    }
    info!(service = SERVICE, from, log_last, "projector running");
    // A reader task receives and decodes while the writer is busy with the
    // previous batch; the writer then takes everything decoded so far (up to
    // max_batch), so batches grow under load and latency stays low when idle.
    // The channel is bounded: a slow database slows the reader, nothing piles up.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(u64, Entry), ProjectorError>>(config.max_batch.max(1) * 4);
    let reader = tokio::spawn(read_log(stream, from + 1, config.max_batch.max(1), tx));
    let mut applied = from;
    let mut cache = RowCache::default();
    let mut buf = Vec::with_capacity(config.max_batch.max(1));
    loop {
        let got = tokio::select! {
            () = &mut *shutdown => 0,
            n = rx.recv_many(&mut buf, config.max_batch.max(1)) => n,
        };
        if got == 0 {
            break;
        }
        let (mut rows, mut poisons) = (Vec::with_capacity(buf.len()), Vec::new());
        for item in buf.drain(..) {
            let (seq, entry) = match item {
                Ok(x) => x,
                Err(e) => {
                    reader.abort();
                    return Err(e);
                }
            };
            match entry {
                Entry::Row(r) => rows.push(r),
                Entry::Poison(p) => poisons.push(p),
            }
            applied = applied.max(seq);
        }
        if let Err(e) = apply(deps, &rows, poisons, applied, &mut cache).await {
            reader.abort();
            return Err(e);
        }
        if config.until.is_some_and(|until| applied >= until) {
            break;
        }
    }
    reader.abort();
    info!(service = SERVICE, applied, "projector stopped");
    Ok(applied)
}

/// Delivers the log from `next` on, in order and without gaps, into `tx`.
///
/// A plain pull consumer without acks and with large, pipelined pulls (an
/// ordered consumer pulls 500 at a time and waits between pulls, which capped
/// rebuilds). Order and completeness are checked here instead: the stream denies
/// deletes, so its sequences are contiguous, and any jump means a lost delivery —
/// the consumer is recreated at the first missing sequence.
async fn read_log(
    stream: async_nats::jetstream::stream::Stream,
    mut next: u64,
    batch: usize,
    tx: tokio::sync::mpsc::Sender<Result<(u64, Entry), ProjectorError>>,
) {
    loop {
        let created = stream
            .create_consumer(consumer::pull::Config {
                // Named: the projector's role may create consumers on the log
                // only by name, never under a durable's name (nats/roles.json).
                name: Some(format!("projector-{}", uuid::Uuid::new_v4().simple())),
                deliver_policy: consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: std::time::Duration::from_secs(60),
                ..Default::default()
            })
            .await;
        let consumer = match created {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(ProjectorError::Nats(e.into()))).await;
                return;
            }
        };
        let mut messages = match consumer.stream().max_messages_per_batch(batch).messages().await {
            Ok(m) => m,
            Err(e) => {
                let _ = tx.send(Err(ProjectorError::Nats(e.into()))).await;
                return;
            }
        };
        // The first message of a new consumer is the first that exists at or
        // after `next`; after that, every sequence must follow the last.
        let mut first = true;
        while let Some(msg) = messages.next().await {
            let Ok(msg) = msg else { break }; // recreate from `next`
            let Ok(seq) = msg.info().map(|i| i.stream_sequence) else { break };
            if seq < next {
                continue; // already delivered
            }
            if seq > next && !first {
                warn!(service = SERVICE, expected = next, got = seq, "gap in delivery; re-reading from the gap");
                break;
            }
            first = false;
            let row = match codec::decode(msg.headers.as_ref(), &msg.payload) {
                Ok(env) => Entry::Row(Row::storable(seq, &msg.subject, env)),
                // Only SKYNET's own services write this stream, through the
                // contract; an undecodable event is a bug worth shouting about,
                // but it must not stop every read model.
                Err(e) => Entry::Poison(Poison {
                    seq,
                    nats_subject: msg.subject.to_string(),
                    reason: format!("undecodable: {e}"),
                    payload: msg.payload.to_vec(),
                }),
            };
            next = seq + 1;
            if tx.send(Ok((seq, row))).await.is_err() {
                return; // the writer stopped
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// Writes a batch. If Postgres refuses it for its data, the batch's events are
/// written one at a time and each one refused is quarantined instead; the
/// others, and every batch after, project as usual.
async fn apply(
    deps: &Deps,
    rows: &[Row],
    mut poisons: Vec<Poison>,
    last_seq: u64,
    cache: &mut RowCache,
) -> Result<(), ProjectorError> {
    match write_batch(&deps.db, rows, &poisons, last_seq, cache).await {
        Ok(()) => {}
        Err(e) if quarantine::is_refusal(&e) => {
            warn!(service = SERVICE, error = %e, events = rows.len(), "batch refused; writing its events one by one");
            // The undecodable ones first, with the checkpoint where it was: the
            // checkpoint must never pass an event that is neither written nor
            // quarantined.
            write_batch(&deps.db, &[], &poisons, 0, cache).await?;
            for row in rows {
                match write_batch(&deps.db, std::slice::from_ref(row), &[], row.seq, cache).await {
                    Ok(()) => {}
                    Err(e) if quarantine::is_refusal(&e) => {
                        let p = Poison::refused(row, &e);
                        write_batch(&deps.db, &[], std::slice::from_ref(&p), row.seq, cache).await?;
                        poisons.push(p);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            write_batch(&deps.db, &[], &[], last_seq, cache).await?;
        }
        Err(e) => return Err(e.into()),
    }
    quarantine::report(&deps.js, &poisons).await;
    Ok(())
}

async fn write_batch(
    db: &PgPool,
    rows: &[Row],
    poisons: &[Poison],
    last_seq: u64,
    cache: &mut RowCache,
) -> Result<(), sqlx::Error> {
    let started = std::time::Instant::now();
    let mut tx = db.begin().await?;
    // Durability of read models comes from the log, not from Postgres: if a crash
    // loses the last commits, rows and checkpoint roll back together and the
    // events are applied again. So the projector does not wait for the WAL flush.
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
    // The checkpoint row, locked first: it orders this transaction against any
    // other writer and against a rebuild's swap (which locks it first too).
    // Events at or below it were applied by someone else — a rebuild swapped
    // in while this batch was read — so they are skipped, and rows cached from
    // before are stale.
    let current: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM projection_checkpoint WHERE projection = $1 FOR UPDATE")
            .bind(PROJECTION)
            .fetch_optional(&mut *tx)
            .await?;
    let current = current.map_or(0, |c| u64::try_from(c).unwrap_or(0));
    let fresh = rows.partition_point(|r| r.seq <= current);
    if fresh > 0 {
        warn!(service = SERVICE, skipped = fresh, checkpoint = current, "events already applied by a rebuild skipped");
        *cache = RowCache::default();
    }
    let rows = &rows[fresh..];
    let poisons: Vec<Poison> = poisons.iter().filter(|p| p.seq > current).cloned().collect();
    quarantine::insert(&mut tx, &poisons).await?;
    if !rows.is_empty() {
        audit::insert(&mut tx, rows).await?;
        let audit_done = started.elapsed();
        // Jobs opened in this batch have no stored rows to load.
        let opened: std::collections::HashSet<uuid::Uuid> = rows
            .iter()
            .filter(|r| r.env.ty == "skynet.job.requested.v1")
            .filter_map(|r| r.env.subject.as_deref()?.parse().ok())
            .collect();
        let touched = rows
            .iter()
            .filter_map(|r| r.env.subject.as_deref()?.parse::<uuid::Uuid>().ok())
            .filter(|j| !opened.contains(j))
            .collect();
        // Rows this projector wrote are in its cache; only the rest are read.
        let mut cached = crate::rows::Batch::default();
        let missing = cache.fill(&mut cached, &touched);
        let mut batch = crate::db::load(&mut tx, &missing).await?;
        batch.jobs.extend(cached.jobs);
        batch.steps.extend(cached.steps);
        let loaded = started.elapsed();
        for r in rows {
            batch.apply(r.seq, &r.env);
        }
        crate::db::write(&mut tx, &batch).await?;
        tracing::debug!(service = SERVICE, events = rows.len(), jobs = batch.jobs.len(), ?audit_done, ?loaded, written = ?started.elapsed(), "batch");
        finish(tx, last_seq).await?;
        // Only what is committed is remembered.
        cache.keep(&batch);
        return Ok(());
    }
    finish(tx, last_seq).await
}

/// Records the checkpoint and commits.
async fn finish(mut tx: sqlx::Transaction<'_, sqlx::Postgres>, last_seq: u64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoint (projection, last_seq, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (projection) DO UPDATE
         SET last_seq = GREATEST(projection_checkpoint.last_seq, EXCLUDED.last_seq), updated_at = now()",
    )
    .bind(PROJECTION)
    .bind(i64::try_from(last_seq).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
