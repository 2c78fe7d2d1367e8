//! Reading the rows a batch touches and writing the batch back, each with one
//! statement per table (jobs and steps as binary arrays, the rest as JSON).

use std::collections::HashSet;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::copy::PgTime;
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
/// Jobs and steps, written on every batch, go as binary array parameters
/// (see [`upsert_jobs`]); the rarer rows as `json` text, not `jsonb`:
/// Postgres reads `json` lazily, field by field, where `jsonb` would first
/// build and key-sort a binary document of the whole batch only to take it
/// apart again.
pub async fn write(tx: &mut Transaction<'_, Postgres>, batch: &Batch) -> Result<(), sqlx::Error> {
    if !batch.jobs.is_empty() {
        let jobs: Vec<&JobRow> = batch.jobs.values().collect();
        upsert_jobs(tx, &jobs).await?;
    }
    if !batch.steps.is_empty() {
        let steps: Vec<&StepRow> = batch.steps.values().collect();
        upsert_steps(tx, &steps).await?;
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

/// `INSERT INTO table (key…, columns…) SELECT * FROM unnest($1, $2, …)
/// ON CONFLICT (key) DO UPDATE SET` every column.
fn upsert_sql(table: &str, key: &[&str], columns: &[&str]) -> String {
    let all: Vec<&str> = key.iter().chain(columns).copied().collect();
    let params: Vec<String> = (1..=all.len()).map(|i| format!("${i}")).collect();
    let set: Vec<String> = columns.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM unnest({}) ON CONFLICT ({}) DO UPDATE SET {}",
        all.join(", "),
        params.join(", "),
        key.join(", "),
        set.join(", ")
    )
}

/// A column of `rows`, as one array parameter.
fn col<'a, R, T>(rows: &[&'a R], field: impl Fn(&'a R) -> T) -> Vec<T> {
    rows.iter().map(|r| field(r)).collect()
}

/// A `jsonb` value as bound: JSON `null` is SQL NULL, as
/// `json_populate_recordset` made it (and `copy::Binary::jsonb` makes it).
fn jsonb(v: Option<&serde_json::Value>) -> Option<Json<&serde_json::Value>> {
    v.filter(|v| !v.is_null()).map(Json)
}

fn time(t: Option<&DateTime<Utc>>) -> Option<PgTime> {
    t.map(PgTime::from)
}

/// Upserts job rows, each column one binary array parameter unnested into
/// rows. Before, the rows went as one JSON text that Postgres lexed and
/// looked up field by field (`json_populate_recordset`), and that upsert was
/// the largest item of Postgres's time in a burst of jobs.
async fn upsert_jobs(tx: &mut Transaction<'_, Postgres>, jobs: &[&JobRow]) -> Result<(), sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| upsert_sql("jobs", &["id"], JOB_COLUMNS));
    // In the order of `id` and `JOB_COLUMNS`; a slip is caught by
    // `tests::rows_written_read_back_the_same_inserted_updated_and_nulled`
    // (a careful rebuild writes through here too, so comparing it with the
    // live tables would not see one).
    sqlx::query(SQL.as_str())
        .bind(col(jobs, |j| j.id))
        .bind(col(jobs, |j| j.status.as_str()))
        .bind(col(jobs, |j| j.intent.as_str()))
        .bind(col(jobs, |j| j.requested_by.as_deref()))
        .bind(col(jobs, |j| j.project.as_deref()))
        .bind(col(jobs, |j| j.working_dir.as_deref()))
        .bind(col(jobs, |j| j.request_source.as_str()))
        .bind(col(jobs, |j| j.request_id.as_str()))
        .bind(col(jobs, |j| j.planner.as_deref()))
        .bind(col(jobs, |j| j.plan_summary.as_deref()))
        .bind(col(jobs, |j| j.fallback_reason.as_deref()))
        .bind(col(jobs, |j| jsonb(j.artifacts_expected.as_ref())))
        .bind(col(jobs, |j| j.risk.as_deref()))
        .bind(col(jobs, |j| j.requires_approval))
        .bind(col(jobs, |j| j.approvals_required))
        .bind(col(jobs, |j| jsonb(Some(&j.approvers))))
        .bind(col(jobs, |j| jsonb(j.policy_reasons.as_ref())))
        .bind(col(jobs, |j| j.provider.as_deref()))
        .bind(col(jobs, |j| j.executor.as_deref()))
        .bind(col(jobs, |j| j.lease))
        .bind(col(jobs, |j| j.error.as_deref()))
        .bind(col(jobs, |j| PgTime::from(&j.created_at)))
        .bind(col(jobs, |j| PgTime::from(&j.updated_at)))
        .bind(col(jobs, |j| time(j.planned_at.as_ref())))
        .bind(col(jobs, |j| time(j.decided_at.as_ref())))
        .bind(col(jobs, |j| time(j.approved_at.as_ref())))
        .bind(col(jobs, |j| time(j.dispatched_at.as_ref())))
        .bind(col(jobs, |j| time(j.scheduled_at.as_ref())))
        .bind(col(jobs, |j| time(j.started_at.as_ref())))
        .bind(col(jobs, |j| time(j.finished_at.as_ref())))
        .bind(col(jobs, |j| j.duration_ms))
        .bind(col(jobs, |j| j.last_seq))
        .bind(col(jobs, |j| j.event_count))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Upserts step rows, as [`upsert_jobs`] does jobs.
async fn upsert_steps(tx: &mut Transaction<'_, Postgres>, steps: &[&StepRow]) -> Result<(), sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| upsert_sql("steps", &["job_id", "idx"], STEP_COLUMNS));
    sqlx::query(SQL.as_str())
        .bind(col(steps, |s| s.job_id))
        .bind(col(steps, |s| s.idx))
        .bind(col(steps, |s| s.title.as_str()))
        .bind(col(steps, |s| s.action.as_deref()))
        .bind(col(steps, |s| jsonb(s.params.as_ref())))
        .bind(col(steps, |s| s.risk.as_deref()))
        .bind(col(steps, |s| s.status.as_str()))
        .bind(col(steps, |s| s.exit_code))
        .bind(col(steps, |s| s.duration_ms))
        .bind(col(steps, |s| s.error.as_deref()))
        .bind(col(steps, |s| s.output_ref.as_deref()))
        .bind(col(steps, |s| s.output_chunks))
        .bind(col(steps, |s| time(s.started_at.as_ref())))
        .bind(col(steps, |s| time(s.finished_at.as_ref())))
        .bind(col(steps, |s| s.stdout.as_deref()))
        .bind(col(steps, |s| s.stderr.as_deref()))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Every read-model table, for `rebuild`.
pub const TABLES: &[&str] =
    &["audit_events", "jobs", "steps", "approvals", "artifacts", "executors", "rejections", "projection_quarantine"];

#[cfg(test)]
mod tests {
    use super::*;

    /// A job and a step with a different value in every column (times whole
    /// microseconds, so they read back exactly), from `n`.
    fn rows(n: i64) -> (JobRow, StepRow) {
        let id = Uuid::from_u128(7);
        let t = |k: i64| DateTime::<Utc>::from_timestamp(1_796_000_000 + 10 * n + k, 123_456_000).unwrap_or_default();
        let s = |name: &str| format!("{name}-{n}");
        let job = JobRow {
            id,
            status: s("status"),
            intent: s("intent"),
            requested_by: Some(s("requested_by")),
            project: Some(s("project")),
            working_dir: Some(s("working_dir")),
            request_source: s("request_source"),
            request_id: s("request_id"),
            planner: Some(s("planner")),
            plan_summary: Some(s("plan_summary")),
            fallback_reason: Some(s("fallback_reason")),
            artifacts_expected: Some(serde_json::json!([s("artifact")])),
            risk: Some(s("risk")),
            requires_approval: Some(n % 2 == 0),
            approvals_required: Some(i16::try_from(n).unwrap_or(0) + 2),
            approvers: serde_json::json!([s("approver")]),
            policy_reasons: Some(serde_json::json!({"why": s("reason")})),
            provider: Some(s("provider")),
            executor: Some(s("executor")),
            lease: Some(n + 11),
            error: Some(s("error")),
            created_at: t(1),
            updated_at: t(2),
            planned_at: Some(t(3)),
            decided_at: Some(t(4)),
            approved_at: Some(t(5)),
            dispatched_at: Some(t(6)),
            scheduled_at: Some(t(7)),
            started_at: Some(t(8)),
            finished_at: Some(t(9)),
            duration_ms: Some(n + 12),
            last_seq: n + 13,
            event_count: i32::try_from(n).unwrap_or(0) + 14,
        };
        let step = StepRow {
            job_id: id,
            idx: 3,
            title: s("title"),
            action: Some(s("action")),
            params: Some(serde_json::json!({"p": s("param")})),
            risk: Some(s("step_risk")),
            status: s("step_status"),
            exit_code: Some(i32::try_from(n).unwrap_or(0) + 15),
            duration_ms: Some(n + 16),
            error: Some(s("step_error")),
            output_ref: Some(s("output_ref")),
            output_chunks: i32::try_from(n).unwrap_or(0) + 17,
            started_at: Some(t(10)),
            finished_at: Some(t(11)),
            stdout: Some(s("stdout")),
            stderr: Some(s("stderr")),
        };
        (job, step)
    }

    async fn round_trip(pool: &sqlx::PgPool, job: &JobRow, step: &StepRow) -> anyhow::Result<()> {
        let mut batch = Batch::default();
        batch.jobs.insert(job.id, job.clone());
        batch.steps.insert((step.job_id, step.idx), step.clone());
        let mut tx = pool.begin().await?;
        write(&mut tx, &batch).await?;
        tx.commit().await?;
        let mut tx = pool.begin().await?;
        let read = load(&mut tx, &[job.id].into_iter().collect()).await?;
        assert_eq!(read.jobs.get(&job.id), Some(job), "every job column where it belongs");
        assert_eq!(read.steps.get(&(step.job_id, step.idx)), Some(step), "every step column where it belongs");
        Ok(())
    }

    /// Each column's array lands in its own column, both when a row is new
    /// and when it is updated (two columns of one type swapped would pass
    /// Postgres's type checks), and nulls stay nulls.
    #[tokio::test]
    async fn rows_written_read_back_the_same_inserted_updated_and_nulled() -> anyhow::Result<()> {
        let db = skynet_testkit::TestDb::create().await?;
        let pool = db.pool().await?;
        crate::migrate(&pool).await?;
        let (job, step) = rows(1);
        round_trip(&pool, &job, &step).await?;
        let (job, step) = rows(2);
        round_trip(&pool, &job, &step).await?;
        // Every optional column back to NULL; JSON null in a jsonb column is SQL NULL.
        let (mut job, mut step) = rows(3);
        (job.requested_by, job.project, job.working_dir, job.planner, job.plan_summary) =
            (None, None, None, None, None);
        (job.fallback_reason, job.artifacts_expected, job.risk, job.requires_approval) = (None, None, None, None);
        (job.approvals_required, job.policy_reasons, job.provider, job.executor, job.lease) =
            (None, None, None, None, None);
        (job.error, job.planned_at, job.decided_at, job.approved_at, job.dispatched_at) =
            (None, None, None, None, None);
        (job.scheduled_at, job.started_at, job.finished_at, job.duration_ms) = (None, None, None, None);
        (step.action, step.params, step.risk, step.exit_code, step.duration_ms, step.error) =
            (None, None, None, None, None, None);
        (step.output_ref, step.started_at, step.finished_at, step.stdout, step.stderr) = (None, None, None, None, None);
        round_trip(&pool, &job, &step).await?;
        let mut with_json_null = job.clone();
        with_json_null.policy_reasons = Some(serde_json::Value::Null);
        let mut batch = Batch::default();
        batch.jobs.insert(job.id, with_json_null);
        let mut tx = pool.begin().await?;
        write(&mut tx, &batch).await?;
        let null: bool = sqlx::query_scalar("SELECT policy_reasons IS NULL FROM jobs WHERE id = $1")
            .bind(job.id)
            .fetch_one(&mut *tx)
            .await?;
        assert!(null, "JSON null stored as SQL NULL");
        Ok(())
    }
}
