//! Reading the rows a batch touches and writing the batch back, each with one
//! statement per table (rows travel as JSON arrays).

use std::collections::HashSet;

use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::rows::{Batch, JobRow, StepRow};

pub(crate) const JOB_COLUMNS: &[&str] = &[
    "status",
    "intent",
    "requested_by",
    "project",
    "working_dir",
    "request_source",
    "request_id",
    "planner",
    "plan_summary",
    "fallback_reason",
    "artifacts_expected",
    "risk",
    "requires_approval",
    "approvals_required",
    "approvers",
    "policy_reasons",
    "provider",
    "executor",
    "lease",
    "error",
    "created_at",
    "updated_at",
    "planned_at",
    "decided_at",
    "approved_at",
    "dispatched_at",
    "scheduled_at",
    "started_at",
    "finished_at",
    "duration_ms",
    "last_seq",
    "event_count",
];
pub(crate) const STEP_COLUMNS: &[&str] = &[
    "title",
    "action",
    "params",
    "risk",
    "status",
    "exit_code",
    "duration_ms",
    "error",
    "output_ref",
    "output_chunks",
    "started_at",
    "finished_at",
    "stdout",
    "stderr",
];

/// Loads the stored rows of `jobs` (and their steps) into a fresh batch.
pub async fn load(tx: &mut Transaction<'_, Postgres>, jobs: &HashSet<Uuid>) -> Result<Batch, sqlx::Error> {
    let mut batch = Batch::default();
    if jobs.is_empty() {
        return Ok(batch);
    }
    let ids: Vec<Uuid> = jobs.iter().copied().collect();
    let rows: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT to_jsonb(j) FROM jobs j WHERE id = ANY($1)").bind(&ids).fetch_all(&mut **tx).await?;
    for v in rows {
        let row: JobRow = serde_json::from_value(v).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        batch.jobs.insert(row.id, row);
    }
    let rows: Vec<serde_json::Value> = sqlx::query_scalar("SELECT to_jsonb(s) FROM steps s WHERE job_id = ANY($1)")
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    for v in rows {
        let row: StepRow = serde_json::from_value(v).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        batch.steps.insert((row.job_id, row.idx), row);
    }
    Ok(batch)
}

/// Writes every row the batch changed.
///
/// Rows go as `json` text, not `jsonb`: Postgres reads `json` lazily, field by
/// field, where `jsonb` would first build and key-sort a binary document of the
/// whole batch only to take it apart again (a third of Postgres's time in a
/// rebuild's profile).
pub async fn write(tx: &mut Transaction<'_, Postgres>, batch: &Batch) -> Result<(), sqlx::Error> {
    if !batch.jobs.is_empty() {
        upsert(tx, "jobs", "id", JOB_COLUMNS, json_array(batch.jobs.values())?).await?;
    }
    if !batch.steps.is_empty() {
        upsert(tx, "steps", "job_id, idx", STEP_COLUMNS, json_array(batch.steps.values())?).await?;
    }
    for (table, rows) in [
        ("approvals", json_array(&batch.approvals)?),
        ("artifacts", json_array(&batch.artifacts)?),
        ("rejections", json_array(&batch.rejections)?),
    ] {
        if rows != "[]" {
            let sql = format!(
                "INSERT INTO {table} SELECT * FROM json_populate_recordset(NULL::{table}, $1::json) ON CONFLICT DO NOTHING"
            );
            sqlx::query(&sql).bind(rows).execute(&mut **tx).await?;
        }
    }
    if !batch.executors.is_empty() {
        sqlx::query(
            "INSERT INTO executors SELECT * FROM json_populate_recordset(NULL::executors, $1::json)
             ON CONFLICT (id) DO UPDATE SET jobs_started = executors.jobs_started + EXCLUDED.jobs_started,
                 last_job = EXCLUDED.last_job, last_seen = GREATEST(executors.last_seen, EXCLUDED.last_seen)",
        )
        .bind(json_array(batch.executors.values())?)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Rows as one JSON array, serialized straight from the rows (no
/// intermediate `serde_json::Value`).
fn json_array<T: serde::Serialize>(rows: impl IntoIterator<Item = T>) -> Result<String, sqlx::Error> {
    let rows: Vec<T> = rows.into_iter().collect();
    serde_json::to_string(&rows).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

async fn upsert(
    tx: &mut Transaction<'_, Postgres>,
    table: &str,
    key: &str,
    columns: &[&str],
    rows: String,
) -> Result<(), sqlx::Error> {
    let set: Vec<String> = columns.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    let sql = format!(
        "INSERT INTO {table} SELECT * FROM json_populate_recordset(NULL::{table}, $1::json) ON CONFLICT ({key}) DO UPDATE SET {}",
        set.join(", ")
    );
    sqlx::query(&sql).bind(rows).execute(&mut **tx).await?;
    Ok(())
}

/// Every read-model table, for `rebuild`.
pub const TABLES: &[&str] =
    &["audit_events", "jobs", "steps", "approvals", "artifacts", "executors", "rejections", "projection_quarantine"];
