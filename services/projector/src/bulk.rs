//! The bulk path of a rebuild into empty shadow tables (`crate::shadow`).
//!
//! Live, the read-model writer upserts every job a batch touches, so a job
//! whose eight events span three batches is written three times, each time by
//! `INSERT … ON CONFLICT DO UPDATE` of thirty-odd columns. Into empty tables
//! nobody reads yet, that is wasted: here an unfinished job's rows stay in
//! memory until the job finishes or the run ends, and then go in once, by
//! `COPY`. Only a job already written (an event after its end) is upserted.
//!
//! What the checkpoint says is therefore not on disk until the run's last
//! batch — harmless for tables that are dropped unless the whole run
//! completes. A batch Postgres refuses is not taken apart here (the rows in
//! memory no longer map to events): the writer reports it, and the rebuild
//! starts over in the careful mode that quarantines event by event.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::audit::Row;
use crate::copy::{self, Binary};
use crate::db::{JOB_COLUMNS, STEP_COLUMNS};
use crate::rows::{Batch, JobRow, RowCache, StepRow, is_terminal};

/// More unfinished jobs held than this and they are all written.
const HELD_LIMIT: usize = 200_000;

/// Whether the bulk path cannot go on past `e`: Postgres refused the data,
/// a row it copies exists already — which only a log holding a job's opening
/// twice gives (the event store refuses that, a forged log need not) — or a
/// batch opens a job it holds.
fn gives_up(e: &sqlx::Error) -> bool {
    let unique = matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"));
    let reopened = matches!(e, sqlx::Error::Decode(inner) if inner.is::<Reopened>());
    unique || reopened || crate::quarantine::is_refusal(e)
}

/// `e` met on the bulk path, as the rebuild is to see it.
pub(crate) fn error(e: sqlx::Error) -> crate::ProjectorError {
    if gives_up(&e) { crate::ProjectorError::BulkRefused(e) } else { e.into() }
}

/// A batch opens a job this path holds already (see [`gives_up`]).
#[derive(Debug, thiserror::Error)]
#[error("job {0} is opened a second time")]
struct Reopened(Uuid);

/// Applies a batch; writes the jobs it finished (and, when `flush`, every job
/// held) by `COPY`, upserts the jobs already written, holds the others.
pub async fn read_models(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[Arc<Row>],
    held: &mut RowCache,
    flush: bool,
) -> Result<(), sqlx::Error> {
    let opened = crate::writer::opened_jobs(rows);
    // The live writer upserts over such a job and keeps its steps; holding
    // it here would replace them. Not worth a path of its own: give up.
    if let Some(id) = opened.iter().find(|id| held.holds(id)) {
        return Err(sqlx::Error::Decode(Box::new(Reopened(*id))));
    }
    let touched = crate::writer::touched_jobs(rows, &opened);
    let mut batch = Batch::default();
    let missing = held.fill(&mut batch, &touched);
    // Not held: written already (or unknown, and then nothing is loaded).
    let stored = crate::db::load(tx, &missing).await?;
    let written: HashSet<Uuid> = stored.jobs.keys().copied().collect();
    batch.jobs.extend(stored.jobs);
    batch.steps.extend(stored.steps);
    for r in rows {
        batch.apply(r.seq, &r.env);
    }

    let flush = flush || held.len() > HELD_LIMIT;
    let mut steps: HashMap<Uuid, Vec<StepRow>> = HashMap::new();
    for ((job, _), step) in std::mem::take(&mut batch.steps) {
        steps.entry(job).or_default().push(step);
    }
    let mut new: Vec<(JobRow, Vec<StepRow>)> = Vec::new();
    for (id, job) in std::mem::take(&mut batch.jobs) {
        let job_steps = steps.remove(&id).unwrap_or_default();
        if written.contains(&id) {
            held.remove(&id);
            batch.steps.extend(job_steps.into_iter().map(|s| ((s.job_id, s.idx), s)));
            batch.jobs.insert(id, job);
        } else if flush || is_terminal(&job.status) {
            held.remove(&id);
            new.push((job, job_steps));
        } else {
            held.put(job, job_steps);
        }
    }
    // Steps of a job with no row: upserted as the live writer would.
    batch.steps.extend(steps.into_values().flatten().map(|s| ((s.job_id, s.idx), s)));
    if flush {
        new.extend(held.drain());
    }
    copy_jobs(tx, &new).await?;
    crate::db::write(tx, &batch).await
}

/// Inserts jobs never written before, and their steps, by binary `COPY`.
async fn copy_jobs(tx: &mut Transaction<'_, Postgres>, jobs: &[(JobRow, Vec<StepRow>)]) -> Result<(), sqlx::Error> {
    if jobs.is_empty() {
        return Ok(());
    }
    let job_columns: Vec<&str> = std::iter::once("id").chain(JOB_COLUMNS.iter().copied()).collect();
    let step_columns: Vec<&str> = ["job_id", "idx"].into_iter().chain(STEP_COLUMNS.iter().copied()).collect();
    // Collected, not passed as iterators: a closure's iterator held across
    // an await keeps the future from being provably `Send` (rust#110338),
    // and the writer runs as a task of its own.
    let job_rows: Vec<&JobRow> = jobs.iter().map(|(job, _)| job).collect();
    let step_rows: Vec<&StepRow> = jobs.iter().flat_map(|(_, steps)| steps).collect();
    copy::rows(tx, "jobs", &job_columns, &job_rows, |b, j| job_fields(b, j)).await?;
    copy::rows(tx, "steps", &step_columns, &step_rows, |b, s| step_fields(b, s)).await
}

/// A job's fields in the order of `id` and [`JOB_COLUMNS`]. A mistake in the
/// order is caught by the rebuild's row-for-row comparison with the live
/// tables (`tests/tests/read_models.rs`), not always by the `COPY`: two
/// columns of the same width swap silently.
fn job_fields(b: &mut Binary, j: &JobRow) {
    b.uuid(&j.id);
    b.text(&j.status);
    b.text(&j.intent);
    b.opt(j.requested_by.as_deref(), Binary::text);
    b.opt(j.project.as_deref(), Binary::text);
    b.opt(j.working_dir.as_deref(), Binary::text);
    b.text(&j.request_source);
    b.text(&j.request_id);
    b.opt(j.planner.as_deref(), Binary::text);
    b.opt(j.plan_summary.as_deref(), Binary::text);
    b.opt(j.fallback_reason.as_deref(), Binary::text);
    b.opt(j.artifacts_expected.as_ref(), Binary::jsonb);
    b.opt(j.risk.as_deref(), Binary::text);
    b.opt(j.requires_approval, Binary::boolean);
    b.opt(j.approvals_required, Binary::smallint);
    b.jsonb(&j.approvers);
    b.opt(j.policy_reasons.as_ref(), Binary::jsonb);
    b.opt(j.provider.as_deref(), Binary::text);
    b.opt(j.executor.as_deref(), Binary::text);
    b.opt(j.lease, Binary::bigint);
    b.opt(j.error.as_deref(), Binary::text);
    b.timestamptz(&j.created_at);
    b.timestamptz(&j.updated_at);
    for t in [j.planned_at, j.decided_at, j.approved_at, j.dispatched_at, j.scheduled_at, j.started_at, j.finished_at] {
        b.opt(t.as_ref(), Binary::timestamptz);
    }
    b.opt(j.duration_ms, Binary::bigint);
    b.bigint(j.last_seq);
    b.int(j.event_count);
}

/// A step's fields in the order of `job_id, idx` and [`STEP_COLUMNS`].
fn step_fields(b: &mut Binary, s: &StepRow) {
    b.uuid(&s.job_id);
    b.int(s.idx);
    b.text(&s.title);
    b.opt(s.action.as_deref(), Binary::text);
    b.opt(s.params.as_ref(), Binary::jsonb);
    b.opt(s.risk.as_deref(), Binary::text);
    b.text(&s.status);
    b.opt(s.exit_code, Binary::int);
    b.opt(s.duration_ms, Binary::bigint);
    b.opt(s.error.as_deref(), Binary::text);
    b.opt(s.output_ref.as_deref(), Binary::text);
    b.int(s.output_chunks);
    b.opt(s.started_at.as_ref(), Binary::timestamptz);
    b.opt(s.finished_at.as_ref(), Binary::timestamptz);
    b.opt(s.stdout.as_deref(), Binary::text);
    b.opt(s.stderr.as_deref(), Binary::text);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many framed fields `buf` holds.
    fn fields(mut buf: &[u8]) -> usize {
        let mut n = 0;
        while let Some((len, rest)) = buf.split_first_chunk::<4>() {
            let len = usize::try_from(i32::from_be_bytes(*len)).unwrap_or(0);
            buf = rest.get(len..).unwrap_or_default();
            n += 1;
        }
        n
    }

    #[test]
    fn rows_write_a_field_per_column() {
        let at = "2026-12-06T00:00:00Z";
        let job: JobRow = serde_json::from_value(serde_json::json!({
            "id": Uuid::nil(), "status": "requested", "intent": "i", "request_source": "s", "request_id": "r",
            "approvers": [], "created_at": at, "updated_at": at, "last_seq": 1, "event_count": 1,
            "policy_reasons": ["x"], "lease": 3,
        }))
        .expect("job");
        let step: StepRow = serde_json::from_value(serde_json::json!({
            "job_id": Uuid::nil(), "idx": 0, "title": "t", "status": "pending", "output_chunks": 0, "params": {},
        }))
        .expect("step");
        let mut b = Binary { buf: Vec::new() };
        job_fields(&mut b, &job);
        assert_eq!(fields(&b.buf), JOB_COLUMNS.len() + 1);
        let mut b = Binary { buf: Vec::new() };
        step_fields(&mut b, &step);
        assert_eq!(fields(&b.buf), STEP_COLUMNS.len() + 2);
    }
}
