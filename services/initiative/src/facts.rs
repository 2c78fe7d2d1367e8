//! What the initiative knows about the system, from facts others recorded:
//! the jobs read model (active, pending, the last activity, its own jobs'
//! statuses), the memory tables (failures, the 24 h failure rate, reusable
//! strategies), the sentinel's alerts table and the executors' heartbeats. It
//! never asks a service; when a source cannot be read it does not guess —
//! the evaluation is skipped and says why.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use skynet_contract::JobId;
use skynet_contract::initiative::{Facts, SeenFailure};
use sqlx::{PgPool, Row};

/// Statuses of a job that is over.
const TERMINAL: &[&str] = &["succeeded", "failed", "denied", "cancelled", "timed_out"];
/// Failures of the initiative's own jobs are not errors for it to recover
/// from: that would feed on itself.
const OWN_SOURCE: &str = skynet_contract::initiative::SOURCE;

/// Everything one evaluation reads besides the ledger.
pub struct Observed {
    pub facts: Facts,
    /// Status of each of the initiative's jobs asked about that the read
    /// model has (absent: not projected yet, or never opened).
    pub own_jobs: HashMap<JobId, String>,
    /// Those of its submissions the intake refused (no job will open).
    pub refused: HashSet<JobId>,
}

impl Observed {
    /// Whether `job` is still to be counted as running: until the read model
    /// shows it over, or the intake refused it. A job the read model does
    /// not show yet counts (a projector behind, or down, makes the limit
    /// stricter, never looser).
    pub fn running(&self, job: JobId) -> bool {
        match self.own_jobs.get(&job) {
            Some(status) => !TERMINAL.contains(&status.as_str()),
            None => !self.refused.contains(&job),
        }
    }

    /// Whether `job`'s submission may have been lost: no job, no refusal.
    pub fn unopened(&self, job: JobId) -> bool {
        !self.own_jobs.contains_key(&job) && !self.refused.contains(&job)
    }
}

/// Reads the facts at `now`. `errors_since`: failures before it were already
/// looked at (the last recovery task) or are older than 24 h; `idle_floor`:
/// when nothing ever ran, idle counts from here (the service's start).
pub async fn observe(
    db: &PgPool,
    nats: &async_nats::Client,
    now: DateTime<Utc>,
    errors_since: DateTime<Utc>,
    idle_floor: DateTime<Utc>,
    own_jobs: &[JobId],
) -> Result<Observed, String> {
    let sql = |what: &'static str| move |e: sqlx::Error| format!("reading {what}: {e}");
    let jobs = sqlx::query(
        "SELECT count(*) FILTER (WHERE status IN ('running', 'cancelling')) AS active,
                count(*) FILTER (WHERE status IN ('requested', 'planned', 'awaiting_approval', 'approved', 'dispatched', 'scheduled')) AS pending,
                max(updated_at) AS last
         FROM jobs",
    )
    .fetch_one(db)
    .await
    .map_err(sql("the jobs read model"))?;
    let last: Option<DateTime<Utc>> = jobs.get("last");
    let since_activity = now - last.map_or(idle_floor, |l| l.max(idle_floor)).min(now);
    let failures = sqlx::query(
        "SELECT f.job_id, f.at, NULLIF(f.working_dir, '') AS dir, r.content
         FROM memory_failures f JOIN memory_records r ON r.id = f.pattern_id
         LEFT JOIN jobs j ON j.id = f.job_id
         WHERE f.at > $1 AND f.at <= $2 AND j.request_source IS DISTINCT FROM $3
         ORDER BY f.at DESC LIMIT 10",
    )
    .bind(errors_since.max(now - Duration::hours(24)))
    .bind(now)
    .bind(OWN_SOURCE)
    .fetch_all(db)
    .await
    .map_err(sql("the memory's failures"))?;
    let runs = sqlx::query(
        "SELECT count(*) FILTER (WHERE success = false) AS failed, count(*) AS all_runs,
                (SELECT count(*) FROM memory_records WHERE kind = 'success_strategy' AND success) AS strategies
         FROM memory_records WHERE kind = 'task_execution' AND created_at > $1 AND created_at <= $2",
    )
    .bind(now - Duration::hours(24))
    .bind(now)
    .fetch_one(db)
    .await
    .map_err(sql("the memory's task executions"))?;
    let alerts = sqlx::query("SELECT summary FROM alerts WHERE status = 'firing' ORDER BY raised_at LIMIT 20")
        .fetch_all(db)
        .await
        .map_err(sql("the sentinel's alerts"))?;
    let ids: Vec<uuid::Uuid> = own_jobs.iter().map(|j| j.0).collect();
    let own = sqlx::query("SELECT id, status FROM jobs WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_all(db)
        .await
        .map_err(sql("the initiative's jobs"))?;
    let refused: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT job_id FROM rejections WHERE job_id = ANY($1)")
        .bind(&ids)
        .fetch_all(db)
        .await
        .map_err(sql("the intake's rejections"))?;
    let executors =
        skynet_bus::read::executors(nats).await.map_err(|e| format!("reading the executors' heartbeats: {e}"))?;

    let count = |row: &sqlx::postgres::PgRow, col: &str| u64::try_from(row.get::<i64, _>(col)).unwrap_or(0);
    let (failed, all_runs) = (count(&runs, "failed"), count(&runs, "all_runs"));
    let facts = Facts {
        active_jobs: count(&jobs, "active"),
        pending_jobs: count(&jobs, "pending"),
        idle_secs: u64::try_from(since_activity.num_seconds()).unwrap_or(0),
        pending_errors: failures
            .iter()
            .map(|r| {
                let content: serde_json::Value = r.get("content");
                let text = |k: &str| content[k].as_str().unwrap_or_default().to_owned();
                SeenFailure {
                    job_id: JobId(r.get("job_id")),
                    action: text("action"),
                    message: text("message"),
                    at: r.get("at"),
                    // Only a directory that is still there can be looked at.
                    working_dir: r.get::<Option<String>, _>("dir").filter(|d| std::path::Path::new(d).is_dir()),
                }
            })
            .collect(),
        failure_rate_24h: if all_runs == 0 { 0.0 } else { (failed as f64 / all_runs as f64).min(1.0) },
        executors_online: executors.len() as u64,
        executors_busy: executors.iter().filter(|e| e.running >= e.capacity).count() as u64,
        success_strategies: count(&runs, "strategies"),
        alerts_firing: alerts.iter().map(|r| r.get("summary")).collect(),
        hours_since_last: Default::default(),
    };
    let own_jobs = own.iter().map(|r| (JobId(r.get("id")), r.get("status"))).collect();
    Ok(Observed { facts, own_jobs, refused: refused.into_iter().map(JobId).collect() })
}
