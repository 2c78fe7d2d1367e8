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
use crate::copy::{self, escape_into};
use crate::db::{JOB_COLUMNS, STEP_COLUMNS};
use crate::rows::{Batch, JobRow, RowCache, StepRow, is_terminal};

/// More unfinished jobs held than this and they are all written.
const HELD_LIMIT: usize = 200_000;
/// Columns of `jsonb` type: their values go as JSON text, strings included.
const JSON_COLUMNS: &[&str] = &["artifacts_expected", "approvers", "policy_reasons", "params"];

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

/// Inserts jobs never written before, and their steps, by `COPY`.
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
    copy(tx, "jobs", &job_columns, &job_rows).await?;
    copy(tx, "steps", &step_columns, &step_rows).await
}

/// `COPY table (columns) FROM STDIN` of serializable rows, each column taken
/// from the row's field of the same name.
async fn copy<T: serde::Serialize + Sync>(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    columns: &[&str],
    rows: &[&T],
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = tx.copy_in_raw(&format!("COPY {table} ({}) FROM STDIN", columns.join(", "))).await?;
    let mut text = Vec::with_capacity(2 * copy::CHUNK);
    for row in rows {
        let value = serde_json::to_value(row).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                text.push(b'\t');
            }
            copy_value(&mut text, value.get(column), JSON_COLUMNS.contains(column));
        }
        text.push(b'\n');
        copy::send_from(&mut copy, &mut text, copy::CHUNK).await?;
    }
    copy::send_from(&mut copy, &mut text, 1).await?;
    copy.finish().await?;
    Ok(())
}

/// One value in COPY's text format: SQL NULL for a missing or null field.
fn copy_value(out: &mut Vec<u8>, value: Option<&serde_json::Value>, json: bool) {
    use serde_json::Value;
    match value {
        None | Some(Value::Null) => out.extend_from_slice(b"\\N"),
        Some(Value::String(s)) if !json => escape_into(out, s),
        Some(Value::Bool(b)) if !json => out.push(if *b { b't' } else { b'f' }),
        Some(Value::Number(n)) if !json => out.extend_from_slice(n.to_string().as_bytes()),
        Some(v) => escape_into(out, &v.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn text(v: serde_json::Value, json: bool) -> String {
        let mut out = Vec::new();
        super::copy_value(&mut out, Some(&v), json);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn values_take_their_columns_form() {
        assert_eq!(text(json!(null), false), "\\N");
        assert_eq!(text(json!("a\tb"), false), "a\\tb");
        assert_eq!(text(json!(true), false), "t");
        assert_eq!(text(json!(42), false), "42");
        // A jsonb column holding a string holds it quoted, as JSON.
        assert_eq!(text(json!("x"), true), "\"x\"");
        assert_eq!(text(json!({"k": "a\\b"}), true), "{\"k\":\"a\\\\\\\\b\"}");
        assert_eq!(text(json!(null), true), "\\N");
    }
}
