//! The projection loop: ordered replay from the checkpoint, batched transactions.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream;
use skynet_bus::definitions::EVENTS_STREAM;
use sqlx::PgPool;
use tracing::{error, info, warn};

use crate::audit::Row;
use crate::config::Config;
use crate::quarantine::Poison;
use crate::reader::{Item, Reading};
use crate::writer::{Projection, Writer};

/// One event read from the log: a row to project, or one that cannot be.
pub(crate) enum Entry {
    Row(Arc<Row>),
    Poison(Poison),
}

pub(crate) const SERVICE: &str = "projector";

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
    /// Postgres refused a batch of a bulk rebuild (it starts over carefully).
    #[error("Postgres refused a batch of the bulk rebuild")]
    BulkRefused(#[source] sqlx::Error),
    /// An index the rebuild's shadow cannot copy (a definition not on one `public` table).
    #[error("the rebuild cannot make index {name} on the shadow table: {definition}")]
    ShadowIndex { name: String, definition: String },
    /// A writer task panicked or was cancelled.
    #[error("a projection writer stopped")]
    Task(#[source] tokio::task::JoinError),
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

/// The stream sequence every read model has applied (0 when nothing was):
/// the lesser of the projections' checkpoints.
pub async fn checkpoint(db: &PgPool) -> Result<u64, sqlx::Error> {
    let mut at = u64::MAX;
    for p in Projection::ALL {
        at = at.min(checkpoint_of(db, p).await?);
    }
    Ok(at)
}

/// One projection's checkpoint (0 when it applied nothing).
pub(crate) async fn checkpoint_of(db: &PgPool, projection: Projection) -> Result<u64, sqlx::Error> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM projection_checkpoint WHERE projection = $1")
        .bind(projection.name())
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
    sqlx::query("DELETE FROM projection_checkpoint WHERE projection = ANY($1)")
        .bind(Projection::ALL.map(Projection::name).to_vec())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    // Now, not when the session ends after `lock` is dropped (see `shadow`).
    sqlx::query("SELECT pg_advisory_unlock($1)").bind(WRITER_LOCK).execute(&mut lock).await?;
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
    project(&config, &deps, &mut shutdown, &Progress::default(), false, None).await.map(|_| ())
}

/// The projection loop over `deps.db` (whatever schema its connections see),
/// from its checkpoints until `shutdown` or `config.until`; returns the last
/// sequence both projections have applied. `bulk`: into empty tables nobody
/// reads yet (`crate::bulk`).
///
/// One reader follows the log from the checkpoint further behind and hands
/// every decoded event to both writers (see `writer`), each on its own
/// connection; each skips what its own checkpoint already holds. A slower
/// writer slows the reader (bounded channels), never the other way round.
pub(crate) async fn project(
    config: &Config,
    deps: &Deps,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
    progress: &Progress,
    bulk: bool,
    early: Option<Reading>,
) -> Result<u64, ProjectorError> {
    let mut at = [0u64; 2];
    for (i, p) in Projection::ALL.into_iter().enumerate() {
        at[i] = checkpoint_of(&deps.db, p).await?;
        progress.set(p, at[i]);
    }
    let (from, ahead) = (at[0].min(at[1]), at[0].max(at[1]));
    if config.until.is_some_and(|until| from >= until) {
        return Ok(from);
    }
    let nats = |e: async_nats::Error| ProjectorError::Nats(e);
    let mut stream = deps.js.get_stream(EVENTS_STREAM).await.map_err(|e| nats(e.into()))?;
    let log_last = stream.info().await.map_err(|e| nats(e.into()))?.state.last_sequence;
    if log_last < ahead {
        error!(service = SERVICE, log_last, checkpoint = ahead, "event log is behind the read models");
        return Err(ProjectorError::LogBehind { log_last, checkpoint: ahead });
    }
    progress.0.target.fetch_max(log_last, Ordering::Relaxed);
    info!(service = SERVICE, audit = at[0], read_models = at[1], log_last, "projector running");
    // A reader started before the checkpoints were known is used only if it
    // starts where they say (a rebuild starts it while it makes the shadow).
    let reading = match early.filter(|r| r.next == from + 1) {
        Some(r) => r,
        None => Reading::start(stream, from + 1, config),
    };
    let Reading { task: reader, rx: [audit_rx, models_rx], .. } = reading;
    // Writers stop between batches, never inside one.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Each writer is a task of its own, so their CPU work (folding batches,
    // writing COPY text) runs on both cores. The set aborts the other
    // writer when one fails (or this future is dropped), as joining the two
    // futures in place did.
    let mut writers = tokio::task::JoinSet::new();
    for (i, (projection, rx)) in
        [(Projection::Audit, audit_rx), (Projection::ReadModels, models_rx)].into_iter().enumerate()
    {
        let writer = Writer::new(projection, deps.db.clone(), deps.js.clone(), bulk);
        let run = write_loop(writer, at[i], rx, config.clone(), stop_rx.clone(), progress.clone());
        writers.spawn(async move { (i, run.await) });
    }
    let started = std::time::Instant::now();
    let joined = async move {
        // Each writer's last sequence, and when it was done (ms from the start).
        let (mut applied, mut done_ms) = ([0u64; 2], [0u128; 2]);
        while let Some(done) = writers.join_next().await {
            let (i, result) = done.map_err(ProjectorError::Task)?;
            applied[i] = result?;
            done_ms[i] = started.elapsed().as_millis();
        }
        Ok::<_, ProjectorError>((applied, done_ms))
    };
    let mut joined = std::pin::pin!(joined);
    let result = tokio::select! {
        r = &mut joined => r,
        () = &mut *shutdown => {
            let _ = stop_tx.send(true);
            joined.await
        }
    };
    drop(reader);
    let (applied, [audit_ms, read_models_ms]) = result?;
    let applied = applied[0].min(applied[1]);
    info!(service = SERVICE, applied, audit_ms, read_models_ms, "projector stopped");
    Ok(applied)
}

/// One projection's writer loop: takes everything decoded so far (up to
/// `max_batch`), so batches grow under load and latency stays low when idle.
/// Returns the last sequence it applied.
async fn write_loop(
    mut writer: Writer,
    mut applied: u64,
    mut rx: tokio::sync::mpsc::Receiver<Result<Item, ProjectorError>>,
    config: Config,
    mut stop: tokio::sync::watch::Receiver<bool>,
    progress: Progress,
) -> Result<u64, ProjectorError> {
    let max_batch = config.max_batch.max(1);
    let mut buf = Vec::with_capacity(max_batch);
    loop {
        if config.until.is_some_and(|until| applied >= until) || *stop.borrow() {
            return finish(writer, applied, &progress).await;
        }
        let got = tokio::select! {
            _ = stop.changed() => 0,
            n = rx.recv_many(&mut buf, max_batch) => n,
        };
        if got == 0 {
            return finish(writer, applied, &progress).await;
        }
        let (mut rows, mut poisons, mut last) = (Vec::with_capacity(buf.len()), Vec::new(), applied);
        for item in buf.drain(..) {
            let (seq, entry) = item?;
            if seq <= applied {
                continue; // this projection has it already (the other was behind)
            }
            match &*entry {
                Entry::Row(r) => rows.push(Arc::clone(r)),
                Entry::Poison(p) => poisons.push(p.clone()),
            }
            last = last.max(seq);
        }
        if last > applied {
            let flush = config.until.is_some_and(|until| last >= until);
            writer.apply(&rows, &poisons, last, flush).await.map_err(|e| refused(&writer, e))?;
            applied = last;
            progress.set(writer.projection, applied);
        }
    }
}

/// Writes what a bulk writer still holds before it stops (see `crate::bulk`).
async fn finish(mut writer: Writer, applied: u64, progress: &Progress) -> Result<u64, ProjectorError> {
    if writer.holds_rows() {
        writer.apply(&[], &[], applied, true).await.map_err(|e| refused(&writer, e))?;
    }
    progress.phase_ended(writer.projection.phase_written());
    Ok(applied)
}

/// A batch Postgres refused in bulk mode is the rebuild's to handle.
fn refused(writer: &Writer, e: sqlx::Error) -> ProjectorError {
    if writer.bulk { crate::bulk::error(e) } else { e.into() }
}

/// How far a projection run has got: what each writer applied and the end of
/// the log when it started. Shared, so a caller can report a rebuild's rate.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<ProgressInner>);

#[derive(Debug, Default)]
struct ProgressInner {
    audit: AtomicU64,
    read_models: AtomicU64,
    target: AtomicU64,
    /// A bulk rebuild gave up and started over event by event.
    restarted: std::sync::atomic::AtomicBool,
    /// When each phase of a rebuild ended, in ms from its start.
    phases: std::sync::Mutex<Vec<(&'static str, u64)>>,
    /// When the phases began (a rebuild's start); none for a live projector.
    began: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Progress {
    fn set(&self, projection: Projection, seq: u64) {
        match projection {
            Projection::Audit => self.0.audit.store(seq, Ordering::Relaxed),
            Projection::ReadModels => self.0.read_models.store(seq, Ordering::Relaxed),
        }
    }

    /// The sequence both projections have applied.
    pub fn applied(&self) -> u64 {
        self.0.audit.load(Ordering::Relaxed).min(self.0.read_models.load(Ordering::Relaxed))
    }

    /// The end of the log when the run (or its latest catch-up round) began.
    pub fn target(&self) -> u64 {
        self.0.target.load(Ordering::Relaxed)
    }

    /// Whether the rebuild left its bulk path and started over event by event.
    pub fn restarted(&self) -> bool {
        self.0.restarted.load(Ordering::Relaxed)
    }

    pub(crate) fn set_restarted(&self) {
        self.0.restarted.store(true, Ordering::Relaxed);
    }

    /// When each phase of the latest rebuild ended, in ms from its start:
    /// `locked` (migrated, the rebuild lock taken), `created` (shadow tables
    /// made), `connected`, `projected` (the log read and written),
    /// `indexed`, `swapped`, `dropped` (the old tables) and `unlocked`; in
    /// each round, `audit written` and `read_models written` (each writer
    /// done: which of the two was last). A bulk pass Postgres refused ends
    /// with `refused`, and the careful pass's phases follow it. Where a
    /// rebuild's time goes besides projecting.
    pub fn phases(&self) -> Vec<(&'static str, u64)> {
        self.phases_mut().clone()
    }

    /// `phases` as one line: `locked 4, created 15, …`.
    pub fn show(phases: &[(&str, u64)]) -> String {
        phases.iter().map(|(name, ms)| format!("{name} {ms}")).collect::<Vec<_>>().join(", ")
    }

    /// Starts following a rebuild's phases afresh, from now.
    pub(crate) fn phases_begun(&self) {
        self.phases_mut().clear();
        *self.0.began.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
    }

    /// Records that `name` ended now, if phases are followed (a rebuild).
    pub(crate) fn phase_ended(&self, name: &'static str) {
        let began = *self.0.began.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(began) = began {
            let ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.phases_mut().push((name, ms));
        }
    }

    fn phases_mut(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, u64)>> {
        // A panic while pushing leaves a usable list.
        self.0.phases.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
