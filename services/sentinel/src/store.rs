//! The sentinel's SQL: alert events into `alerts` and `alert_silences` (each
//! once), the state a restart resumes from, and what it reads of the jobs read
//! model.

use chrono::{DateTime, Duration, Utc};
use skynet_contract::alert::{AlertKind, AlertRaised, AlertResolved, AlertUndelivered, Severity, Silenced};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::alerts::State;
use crate::findings::{JobFacts, JobWaiting};

/// Whether `event_id` is applied for the first time (marks it applied).
pub async fn first_time(tx: &mut Transaction<'_, Postgres>, event_id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("INSERT INTO alerts_applied (event_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(event_id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn raised(tx: &mut Transaction<'_, Postgres>, r: &AlertRaised, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alerts (fingerprint, kind, subject, severity, summary, labels, status, notified, muted,
                             raised_at, last_notified_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, 'firing', $7, $8, $9, CASE WHEN $7 THEN $9 END, $9)
         ON CONFLICT (fingerprint) DO UPDATE SET
           severity = EXCLUDED.severity, summary = EXCLUDED.summary, labels = EXCLUDED.labels,
           -- While firing: whether people heard of this episode at all.
           notified = CASE WHEN alerts.status = 'firing' THEN alerts.notified OR EXCLUDED.notified ELSE EXCLUDED.notified END,
           muted = EXCLUDED.muted,
           -- An escalation keeps the episode's start; a new episode starts now.
           raised_at = CASE WHEN alerts.status = 'firing' THEN alerts.raised_at ELSE EXCLUDED.raised_at END,
           status = 'firing', resolved_at = NULL,
           last_notified_at = CASE WHEN EXCLUDED.notified THEN EXCLUDED.raised_at ELSE alerts.last_notified_at END,
           times_raised = alerts.times_raised + CASE WHEN alerts.status = 'firing' THEN 0 ELSE 1 END,
           updated_at = EXCLUDED.updated_at
         -- An event older than the row (a redelivery after a retry) changes nothing.
         WHERE alerts.updated_at <= EXCLUDED.updated_at",
    )
    .bind(&r.fingerprint)
    .bind(r.kind.as_str())
    .bind(&r.subject)
    .bind(r.severity.as_str())
    .bind(&r.summary)
    .bind(serde_json::to_value(&r.labels).unwrap_or_default())
    .bind(r.notified)
    .bind(&r.muted)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn resolved(
    tx: &mut Transaction<'_, Postgres>,
    r: &AlertResolved,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE alerts SET status = 'resolved', resolved_at = $2, updated_at = $2 WHERE fingerprint = $1 AND updated_at <= $2",
    )
        .bind(&r.fingerprint)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn undelivered(
    tx: &mut Transaction<'_, Postgres>,
    u: &AlertUndelivered,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE alerts SET undelivered = $2, updated_at = $3 WHERE fingerprint = $1")
        .bind(&u.fingerprint)
        .bind(format!("{} ({}): {} after {} attempts", u.sink, u.event, u.error, u.attempts))
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn silenced(tx: &mut Transaction<'_, Postgres>, s: &Silenced, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alert_silences (id, matchers, until, reason, silenced_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&s.id)
    .bind(serde_json::to_value(&s.matchers).unwrap_or_default())
    .bind(s.until)
    .bind(&s.reason)
    .bind(&s.silenced_by)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The decision state the tables hold: what fires, last notifications, silences in force.
pub async fn load_state(db: &PgPool, now: DateTime<Utc>) -> Result<State, sqlx::Error> {
    let mut state = State::default();
    let rows = sqlx::query(
        "SELECT fingerprint, kind, subject, severity, summary, labels, status, notified, muted, last_notified_at FROM alerts",
    )
    .fetch_all(db)
    .await?;
    for row in rows {
        let fp: String = row.get("fingerprint");
        if let Some(at) = row.get::<Option<DateTime<Utc>>, _>("last_notified_at") {
            state.last_notified.insert(fp.clone(), at);
        }
        let (Some(kind), Some(severity)) = (AlertKind::parse(row.get("kind")), Severity::parse(row.get("severity")))
        else {
            continue;
        };
        if row.get::<&str, _>("status") == "firing" {
            let raised = AlertRaised {
                fingerprint: fp.clone(),
                kind,
                subject: row.get("subject"),
                severity,
                summary: row.get("summary"),
                labels: serde_json::from_value(row.get("labels")).unwrap_or_default(),
                notified: row.get("notified"),
                muted: row.get("muted"),
            };
            state.firing.insert(fp, raised);
        }
    }
    state.silences = active_silences(db, now).await?;
    Ok(state)
}

/// The silences in force at `now`.
pub async fn active_silences(db: &PgPool, now: DateTime<Utc>) -> Result<Vec<Silenced>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, matchers, until, reason, silenced_by FROM alert_silences WHERE until > $1")
        .bind(now)
        .fetch_all(db)
        .await?;
    Ok(rows
        .iter()
        .map(|r| Silenced {
            id: r.get("id"),
            matchers: serde_json::from_value(r.get("matchers")).unwrap_or_default(),
            until: r.get("until"),
            reason: r.get("reason"),
            silenced_by: r.get("silenced_by"),
        })
        .collect())
}

/// Jobs that wait to start, for approval, or on a step, from the read model.
pub async fn job_facts(
    db: &PgPool,
    now: DateTime<Utc>,
    start_limit: Duration,
    reminder: Duration,
    stall: Duration,
) -> Result<JobFacts, sqlx::Error> {
    let waiting = |r: &sqlx::postgres::PgRow| JobWaiting {
        id: r.get::<uuid::Uuid, _>("id").to_string(),
        intent: r.get("intent"),
        since: r.get("since"),
    };
    let not_starting = sqlx::query(
        "SELECT id, intent, COALESCE(scheduled_at, dispatched_at, updated_at) AS since, count(*) OVER () AS n
         FROM jobs WHERE status IN ('dispatched', 'scheduled') AND COALESCE(scheduled_at, dispatched_at, updated_at) < $1
         ORDER BY since LIMIT 1",
    )
    .bind(now - start_limit)
    .fetch_optional(db)
    .await?;
    let approvals = sqlx::query(
        "SELECT id, intent, COALESCE(decided_at, updated_at) AS since FROM jobs
         WHERE status = 'awaiting_approval' AND COALESCE(decided_at, updated_at) < $1 ORDER BY since LIMIT 50",
    )
    .bind(now - reminder)
    .fetch_all(db)
    .await?;
    let awaiting_total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'awaiting_approval'").fetch_one(db).await?;
    let stalled = sqlx::query(
        "SELECT id, intent, updated_at AS since FROM jobs WHERE status = 'running' AND updated_at < $1 ORDER BY since LIMIT 50",
    )
    .bind(now - stall)
    .fetch_all(db)
    .await?;
    Ok(JobFacts {
        not_starting: not_starting.as_ref().map_or(0, |r| u64::try_from(r.get::<i64, _>("n")).unwrap_or(0)),
        oldest_not_starting: not_starting.as_ref().map(waiting),
        awaiting_approval: approvals.iter().map(waiting).collect(),
        awaiting_total: u64::try_from(awaiting_total).unwrap_or(0),
        stalled: stalled.iter().map(waiting).collect(),
    })
}

/// How far the read models are behind `last_seq` of the log: the projection
/// further behind (jobs and steps, or the audit table) counts.
pub async fn projector_lag(db: &PgPool, last_seq: u64) -> Result<u64, sqlx::Error> {
    let at: Option<i64> = sqlx::query_scalar(
        "SELECT min(coalesce(c.last_seq, 0)) FROM (VALUES ('read_models'), ('audit')) p(name)
         LEFT JOIN projection_checkpoint c ON c.projection = p.name",
    )
    .fetch_one(db)
    .await?;
    Ok(last_seq.saturating_sub(at.map_or(0, |s| u64::try_from(s).unwrap_or(0))))
}
