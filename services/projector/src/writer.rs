//! The two projections the log is written into, each a writer with its own
//! checkpoint: `audit` (every event, one row each, by `COPY`) and
//! `read_models` (jobs, steps, approvals, artifacts, executors, rejections).
//! They share nothing but the quarantine, so they write in parallel on two
//! connections; before they were split, one transaction did both in series and
//! the audit `COPY` and the job upserts each took about half of every batch.
//!
//! A writer applies a batch and its checkpoint in one transaction: a crash
//! never applies an event twice nor skips one, for each projection alone.

use std::sync::Arc;

use sqlx::PgPool;
use tracing::warn;

use crate::audit::{self, Row};
use crate::quarantine::{self, Poison};
use crate::rows::RowCache;

use crate::projector::SERVICE;

/// One of the projections, named as in `projection_checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    Audit,
    ReadModels,
}

impl Projection {
    pub const ALL: [Projection; 2] = [Projection::Audit, Projection::ReadModels];

    pub fn name(self) -> &'static str {
        match self {
            Projection::Audit => "audit",
            Projection::ReadModels => "read_models",
        }
    }

    /// A rebuild's phase of this writer having written its round.
    pub fn phase_written(self) -> &'static str {
        match self {
            Projection::Audit => "audit written",
            Projection::ReadModels => "read_models written",
        }
    }
}

/// A projection's writer and what it keeps between batches.
pub struct Writer {
    pub projection: Projection,
    db: PgPool,
    js: async_nats::jetstream::Context,
    /// Rows of unfinished jobs (read models only): as committed, or in bulk
    /// mode not yet written (see `crate::bulk`).
    cache: RowCache,
    /// Writing into empty tables nobody reads yet (a shadow rebuild).
    pub bulk: bool,
}

impl Writer {
    pub fn new(projection: Projection, db: PgPool, js: async_nats::jetstream::Context, bulk: bool) -> Writer {
        Writer { projection, db, js, cache: RowCache::default(), bulk }
    }

    /// Whether rows are held unwritten (bulk mode only).
    pub fn holds_rows(&self) -> bool {
        self.bulk && !self.cache.is_empty()
    }

    /// Writes a batch. If Postgres refuses it for its data, the batch's events
    /// are written one at a time and each one refused is quarantined instead;
    /// the others, and every batch after, project as usual.
    ///
    /// Undecodable events are quarantined by the read models' writer only;
    /// an event Postgres refuses is quarantined by whichever writer it failed
    /// (the same row, by its sequence, if both).
    ///
    /// In bulk mode a refused batch is returned as the error (see `crate::bulk`);
    /// `flush` writes every row held.
    pub async fn apply(
        &mut self,
        rows: &[Arc<Row>],
        poisons: &[Poison],
        last_seq: u64,
        flush: bool,
    ) -> Result<(), sqlx::Error> {
        let mut poisons: Vec<Poison> =
            if self.projection == Projection::ReadModels { poisons.to_vec() } else { Vec::new() };
        match self.write_batch(rows, &poisons, last_seq, flush).await {
            Ok(()) => {}
            Err(e) if self.bulk => return Err(e),
            Err(e) if quarantine::is_refusal(&e) => {
                warn!(service = SERVICE, projection = self.projection.name(), error = %e, events = rows.len(),
                    "batch refused; writing its events one by one");
                // The undecodable ones first, with the checkpoint where it was:
                // the checkpoint must never pass an event that is neither
                // written nor quarantined.
                self.write_batch(&[], &poisons, 0, false).await?;
                for row in rows {
                    match self.write_batch(std::slice::from_ref(row), &[], row.seq, false).await {
                        Ok(()) => {}
                        Err(e) if quarantine::is_refusal(&e) => {
                            let p = Poison::refused(row, &e);
                            self.write_batch(&[], std::slice::from_ref(&p), row.seq, false).await?;
                            poisons.push(p);
                        }
                        Err(e) => return Err(e),
                    }
                }
                self.write_batch(&[], &[], last_seq, false).await?;
            }
            Err(e) => return Err(e),
        }
        quarantine::report(&self.js, &poisons).await;
        Ok(())
    }

    async fn write_batch(
        &mut self,
        rows: &[Arc<Row>],
        poisons: &[Poison],
        last_seq: u64,
        flush: bool,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.db.begin().await?;
        // Durability of read models comes from the log, not from Postgres: if a
        // crash loses the last commits, rows and checkpoint roll back together
        // and the events are applied again. So no waiting for the WAL flush.
        sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
        // The checkpoint row, locked first: it orders this transaction against
        // any other writer and against a rebuild's swap (which locks it first
        // too). Events at or below it were applied by someone else — a rebuild
        // swapped in while this batch was read — so they are skipped, and rows
        // cached from before are stale.
        let current: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM projection_checkpoint WHERE projection = $1 FOR UPDATE")
                .bind(self.projection.name())
                .fetch_optional(&mut *tx)
                .await?;
        let current = current.map_or(0, |c| u64::try_from(c).unwrap_or(0));
        let fresh = rows.partition_point(|r| r.seq <= current);
        if fresh > 0 {
            warn!(
                service = SERVICE,
                projection = self.projection.name(),
                skipped = fresh,
                checkpoint = current,
                "events already applied by a rebuild skipped"
            );
            self.cache = RowCache::default();
        }
        let rows = &rows[fresh..];
        let poisons: Vec<Poison> = poisons.iter().filter(|p| p.seq > current).cloned().collect();
        quarantine::insert(&mut tx, &poisons).await?;
        let mut written = None;
        match self.projection {
            Projection::Audit if !rows.is_empty() => audit::insert(&mut tx, rows).await?,
            Projection::ReadModels if self.bulk && (!rows.is_empty() || flush) => {
                crate::bulk::read_models(&mut tx, rows, &mut self.cache, flush).await?;
            }
            Projection::ReadModels if !rows.is_empty() => {
                written = Some(read_models(&mut tx, rows, &self.cache).await?);
            }
            _ => {}
        }
        finish(tx, self.projection, last_seq).await?;
        // Only what is committed is remembered.
        if let Some(batch) = written {
            self.cache.keep(&batch);
        }
        Ok(())
    }
}

/// Applies events to the job, step and related rows they touch.
async fn read_models(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[Arc<Row>],
    cache: &RowCache,
) -> Result<crate::rows::Batch, sqlx::Error> {
    let touched = touched_jobs(rows, &opened_jobs(rows));
    // Rows this projector wrote are in its cache; only the rest are read.
    let mut cached = crate::rows::Batch::default();
    let missing = cache.fill(&mut cached, &touched);
    let mut batch = crate::db::load(tx, &missing).await?;
    batch.jobs.extend(cached.jobs);
    batch.steps.extend(cached.steps);
    for r in rows {
        batch.apply(r.seq, &r.env);
    }
    crate::db::write(tx, &batch).await?;
    Ok(batch)
}

/// The jobs a batch's events change that it does not open (those opened in
/// it have no stored rows to load).
pub(crate) fn touched_jobs(
    rows: &[Arc<Row>],
    opened: &std::collections::HashSet<uuid::Uuid>,
) -> std::collections::HashSet<uuid::Uuid> {
    rows.iter()
        .filter_map(|r| r.env.subject.as_deref()?.parse::<uuid::Uuid>().ok())
        .filter(|j| !opened.contains(j))
        .collect()
}

/// The jobs a batch opens: by their owner only, as `rows::Batch::apply` folds
/// them (an opening under another source is not folded, so it opens nothing
/// and the job's stored rows must still be loaded).
pub(crate) fn opened_jobs(rows: &[Arc<Row>]) -> std::collections::HashSet<uuid::Uuid> {
    use skynet_contract::JobEventKind;
    rows.iter()
        .filter(|r| r.env.ty == "skynet.job.requested.v1")
        .filter(|r| skynet_contract::owners::wrong_source(JobEventKind::Requested, &r.env.source).is_none())
        .filter_map(|r| r.env.subject.as_deref()?.parse().ok())
        .collect()
}

/// Records the checkpoint and commits.
async fn finish(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    projection: Projection,
    last_seq: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO projection_checkpoint (projection, last_seq, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (projection) DO UPDATE
         SET last_seq = GREATEST(projection_checkpoint.last_seq, EXCLUDED.last_seq), updated_at = now()",
    )
    .bind(projection.name())
    .bind(i64::try_from(last_seq).unwrap_or(i64::MAX))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
