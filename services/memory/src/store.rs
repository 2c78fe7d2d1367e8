//! The memory tables: writing what the log teaches (in the transaction that
//! marks the event applied), and ranking records for a query.
//!
//! Ranking works offline: candidates are the best 50 by full-text search
//! (`websearch_to_tsquery` over the query's words, ranked by `ts_rank_cd`) and
//! the best 50 by trigram word similarity (`pg_trgm`'s `<%` at 0.5, answered
//! by a GIN index), fused by reciprocal rank (k = 60). Each candidate's *relevance* is half its
//! trigram similarity and half its fused rank against the best possible; its
//! *importance* is the predecessor's blend: 0.25 recency (e^(−days/7)) + 0.30
//! success (1.0, or 0.3 for a failure) + 0.35 relevance + 0.10 frequency
//! (retrievals / 10, at most 1). Every record returned is counted as retrieved.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use skynet_contract::memory::{KnownFailure, MemoryForgotten, MemoryHit, MemoryKind, MemoryRecorded};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::learn::{Execution, Lesson};

type Tx<'a> = Transaction<'a, Postgres>;

/// Tables rebuilt from the log (`memory_usage` is operational and kept).
pub const LOG_TABLES: &[&str] = &["memory_records", "memory_failures", "memory_strategy_runs", "memory_applied"];

/// Marks `event_id` applied; `false` if it already was (a redelivery).
pub async fn first_time(tx: &mut Tx<'_>, event_id: &str) -> Result<bool, sqlx::Error> {
    let r = sqlx::query("INSERT INTO memory_applied (event_id) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(event_id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// Record id of the failure pattern with this signature.
pub fn pattern_id(signature: &str) -> String {
    format!("fp-{}", short_hash(signature))
}

/// Record id of the plan shape with these actions.
pub fn strategy_id(actions: &[String]) -> String {
    format!("ss-{}", short_hash(&actions.join(">")))
}

#[allow(clippy::too_many_arguments)]
async fn upsert(
    tx: &mut Tx<'_>,
    id: &str,
    kind: MemoryKind,
    text: &str,
    content: &serde_json::Value,
    success: Option<bool>,
    working_dir: Option<&str>,
    created: DateTime<Utc>,
    updated: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO memory_records (id, kind, text, content, success, working_dir, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (id) DO UPDATE SET text = $3, content = $4, success = $5, working_dir = $6,
             created_at = LEAST(memory_records.created_at, $7), updated_at = GREATEST(memory_records.updated_at, $8)",
    )
    .bind(id)
    .bind(kind.as_str())
    .bind(text)
    .bind(content)
    .bind(success)
    .bind(working_dir)
    .bind(created)
    .bind(updated)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes what a finished job taught: its execution, its failures (each
/// counted once per job and step), its plan shape's run. The transaction
/// must hold the locks of [`lesson_locks`]. Aggregates are
/// updated in place, each occurrence once (constant work per job, however many
/// came before), and only with what is commutative — counts, extremes, the
/// latest jobs by time — so any order of application, a rebuild's included,
/// gives the same records.
pub async fn apply_lesson(tx: &mut Tx<'_>, lesson: &Lesson) -> Result<(), sqlx::Error> {
    apply_execution(tx, lesson).await?;
    apply_runs(tx, &[&lesson.execution]).await
}

/// [`apply_lesson`] but for its plan shape's run, which is left to
/// [`apply_runs`] (a batch counts all its runs of one shape at once).
pub async fn apply_execution(tx: &mut Tx<'_>, lesson: &Lesson) -> Result<(), sqlx::Error> {
    let x = &lesson.execution;
    let (id, at) = (x.job.to_string(), x.finished_at);
    let dir = x.working_dir.as_deref();
    upsert(tx, &id, MemoryKind::TaskExecution, &x.text(), &x.content(), Some(x.succeeded()), dir, at, at).await?;
    for f in &lesson.failures {
        let pid = pattern_id(&f.signature());
        let new = sqlx::query(
            "INSERT INTO memory_failures (pattern_id, job_id, step, working_dir, at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
        )
        .bind(&pid)
        .bind(x.job.0)
        .bind(i32::try_from(f.step).unwrap_or(i32::MAX))
        .bind(dir.unwrap_or(""))
        .bind(at)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if new == 0 {
            continue;
        }
        let old = current(tx, &pid).await?;
        let count = old["count"].as_u64().unwrap_or(0) + 1;
        let first = old["first_seen"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).map_or(at, |t| t.min(at));
        let last = old["last_seen"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).map_or(at, |t| t.max(at));
        let mut jobs: Vec<(String, String)> = old["recent"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
            .collect();
        jobs.push((at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), id.clone()));
        jobs.sort_by(|a, b| b.cmp(a));
        jobs.dedup();
        jobs.truncate(20);
        let mut dirs: Vec<String> = old["working_dirs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect();
        dirs.extend(dir.map(str::to_owned));
        dirs.sort();
        dirs.dedup();
        let content = json!({
            "action": f.action, "error_class": f.class, "message": f.message, "signature": f.signature(),
            "count": count, "first_seen": first, "last_seen": last,
            "recent": jobs, "working_dirs": dirs,
        });
        let text = format!("{} failed ({}): {}", f.action, f.class, f.message);
        upsert(tx, &pid, MemoryKind::FailurePattern, &text, &content, Some(false), None, first, last).await?;
    }
    Ok(())
}

/// Counts the runs of these finished jobs towards their plan shapes: each
/// shape's runs inserted in one statement and its record updated once, with
/// every run not counted before. The transaction must hold the shapes' locks
/// ([`lesson_locks`]).
pub async fn apply_runs(tx: &mut Tx<'_>, runs: &[&Execution]) -> Result<(), sqlx::Error> {
    let mut shapes: BTreeMap<String, Vec<&Execution>> = BTreeMap::new();
    for x in runs {
        if let Some(sid) = strategy_of(x) {
            shapes.entry(sid).or_default().push(x);
        }
    }
    for (sid, xs) in shapes {
        let new: HashSet<uuid::Uuid> = sqlx::query_scalar(
            "INSERT INTO memory_strategy_runs (strategy_id, job_id, succeeded, duration_ms, at)
             SELECT $1, * FROM unnest($2::uuid[], $3::bool[], $4::int8[], $5::timestamptz[])
             ON CONFLICT DO NOTHING RETURNING job_id",
        )
        .bind(&sid)
        .bind(xs.iter().map(|x| x.job.0).collect::<Vec<_>>())
        .bind(xs.iter().map(|x| x.succeeded()).collect::<Vec<_>>())
        .bind(xs.iter().map(|x| x.duration_ms.and_then(|d| i64::try_from(d).ok())).collect::<Vec<_>>())
        .bind(xs.iter().map(|x| x.finished_at).collect::<Vec<_>>())
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
        // A job twice in `runs` was inserted once: count its first.
        let mut seen = HashSet::new();
        let xs: Vec<&Execution> = xs.into_iter().filter(|x| new.contains(&x.job.0) && seen.insert(x.job.0)).collect();
        let Some(shape) = xs.first() else { continue };
        let old = current(tx, &sid).await?;
        let succeeded = || xs.iter().filter(|x| x.succeeded());
        let n = old["times_used"].as_u64().unwrap_or(0) + xs.len() as u64;
        let ok = old["successes"].as_u64().unwrap_or(0) + succeeded().count() as u64;
        let timed = old["timed_successes"].as_u64().unwrap_or(0)
            + succeeded().filter(|x| x.duration_ms.is_some()).count() as u64;
        let total_ms =
            old["total_success_ms"].as_u64().unwrap_or(0) + succeeded().filter_map(|x| x.duration_ms).sum::<u64>();
        let at = |key: &str| old[key].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok());
        let first = xs.iter().map(|x| x.finished_at).chain(at("first_run")).min().unwrap_or(shape.finished_at);
        let last = xs.iter().map(|x| x.finished_at).chain(at("last_run")).max().unwrap_or(shape.finished_at);
        let content = json!({
            "actions": shape.actions, "times_used": n, "successes": ok, "success_rate": ok as f64 / n as f64,
            "timed_successes": timed, "total_success_ms": total_ms,
            "mean_duration_secs": (timed > 0).then(|| total_ms as f64 / timed as f64 / 1000.0),
            "first_run": first, "last_run": last,
        });
        // A shape that never succeeded is kept too, with its rate of 0.
        let text = format!("plan {}", shape.actions.join(" then "));
        upsert(tx, &sid, MemoryKind::SuccessStrategy, &text, &content, Some(ok > 0), None, first, last).await?;
    }
    Ok(())
}

/// The current content of a record (`null` when there is none).
async fn current(tx: &mut Tx<'_>, id: &str) -> Result<serde_json::Value, sqlx::Error> {
    let v: Option<serde_json::Value> = sqlx::query_scalar("SELECT content FROM memory_records WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(v.unwrap_or(serde_json::Value::Null))
}

/// The plan shape's record a finished job counts towards: a plan that ran
/// (not one denied or never planned).
fn strategy_of(x: &Execution) -> Option<String> {
    let ran = !x.actions.is_empty() && matches!(x.outcome.as_str(), "succeeded" | "failed" | "timed_out");
    ran.then(|| strategy_id(&x.actions))
}

/// The aggregate records `lesson` updates in place, whose locks
/// [`apply_lesson`]'s transaction must hold ([`lock_all`]).
pub fn lesson_locks(lesson: &Lesson) -> Vec<String> {
    let patterns = lesson.failures.iter().map(|f| pattern_id(&f.signature()));
    patterns.chain(strategy_of(&lesson.execution)).collect()
}

/// Serialises writers of these aggregate records until the transaction ends:
/// jobs ending the same way are applied concurrently (and by several memory
/// processes), and each must see the others' counts. Taken in the order
/// given: callers sort, so that two transactions never take two of them in
/// opposite orders.
pub async fn lock_all(tx: &mut Tx<'_>, ids: &[String]) -> Result<(), sqlx::Error> {
    for id in ids {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// A record people added.
pub async fn apply_recorded(tx: &mut Tx<'_>, r: &MemoryRecorded, at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let content = json!({"labels": r.labels, "recorded_by": r.recorded_by});
    upsert(tx, &r.id, r.kind, &r.text, &content, None, None, at, at).await
}

/// A record forgotten: gone, with what counted towards it.
pub async fn apply_forgotten(tx: &mut Tx<'_>, f: &MemoryForgotten) -> Result<(), sqlx::Error> {
    for table in ["DELETE FROM memory_failures WHERE pattern_id = $1", "DELETE FROM memory_records WHERE id = $1"] {
        sqlx::query(table).bind(&f.id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Whether a record exists.
pub async fn exists(db: &PgPool, id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM memory_records WHERE id = $1)").bind(id).fetch_one(db).await
}

/// The predecessor's importance of a record.
pub fn importance(age_days: f64, success: Option<bool>, relevance: f64, retrievals: u64) -> f64 {
    let recency = (-age_days.max(0.0).floor() / 7.0).exp();
    let success = if success == Some(false) { 0.3 } else { 1.0 };
    let frequency = (retrievals as f64 / 10.0).min(1.0);
    0.25 * recency + 0.30 * success + 0.35 * relevance.clamp(0.0, 1.0) + 0.10 * frequency
}

/// The query's words as `websearch_to_tsquery` input (all of them; quotes and
/// operators stripped, so the text is words, never query syntax).
fn words_of(text: &str) -> String {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("or"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `limit` most important records similar to `text` (of `kind`, if
/// given), each counted as retrieved.
pub async fn search(
    db: &PgPool,
    text: &str,
    kind: Option<MemoryKind>,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Vec<MemoryHit>, sqlx::Error> {
    search_in(db, text, kind, None, limit, now, true).await
}

/// [`search`] among the `window` most recently updated records of `kind`
/// only: bounded work whatever the table holds, for the planner, which asks
/// once per job within a tight budget — and a thousand runs of the same intent
/// would otherwise all be candidates of the next one. Retrievals are not
/// written here (every job would update the same hot rows): the caller counts
/// them with [`count_retrievals`], batched.
pub async fn search_recent(
    db: &PgPool,
    text: &str,
    kind: MemoryKind,
    window: i64,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Vec<MemoryHit>, sqlx::Error> {
    search_in(db, text, Some(kind), Some(window), limit, now, false).await
}

/// Adds retrievals counted elsewhere (id, times) in one statement.
pub async fn count_retrievals(db: &PgPool, counts: &[(String, i64)], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let (ids, ns): (Vec<&str>, Vec<i64>) = counts.iter().map(|(i, n)| (i.as_str(), *n)).unzip();
    sqlx::query(
        "INSERT INTO memory_usage (id, retrieval_count, last_retrieved) SELECT id, n, $3 FROM unnest($1::text[], $2::bigint[]) AS t(id, n)
         ON CONFLICT (id) DO UPDATE SET retrieval_count = memory_usage.retrieval_count + EXCLUDED.retrieval_count, last_retrieved = $3",
    )
    .bind(&ids)
    .bind(&ns)
    .bind(now)
    .execute(db)
    .await?;
    Ok(())
}

async fn search_in(
    db: &PgPool,
    text: &str,
    kind: Option<MemoryKind>,
    window: Option<i64>,
    limit: u32,
    now: DateTime<Utc>,
    count: bool,
) -> Result<Vec<MemoryHit>, sqlx::Error> {
    // The records searched: all (through the indexes), or the latest `window`
    // of a kind (by the (kind, updated_at) index, then scanned).
    let from = match window {
        Some(_) => "(SELECT * FROM memory_records WHERE kind = $3 ORDER BY updated_at DESC LIMIT $4) AS memory_records",
        None => "memory_records",
    };
    let mut tx = db.begin().await?;
    // Trigram candidates share at least half the query's trigrams in some
    // stretch of the record (`<%`, answered by the GIN index): looser, and
    // common words make nearly every record a candidate (measured: ~1 s per
    // query at 100,000 records with 0.3); the full-text list and the fused
    // rank order what passes.
    sqlx::query("SET LOCAL pg_trgm.word_similarity_threshold = 0.5").execute(&mut *tx).await?;
    // The planner prices the trigram operator like a cheap one and scans every
    // row below ~50,000 records (measured: 120 ms at 10,000 against 14 ms
    // through the indexes); this transaction runs only this query.
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await?;
    let sql = format!(
        "WITH q AS (SELECT websearch_to_tsquery('english', $2) AS tsq),
         fts AS (SELECT id, row_number() OVER (ORDER BY ts_rank_cd(tsv, q.tsq) DESC, id) AS r
                 FROM {from}, q WHERE tsv @@ q.tsq AND ($3::text IS NULL OR kind = $3)
                 ORDER BY ts_rank_cd(tsv, q.tsq) DESC, id LIMIT 50),
         tri AS (SELECT id, row_number() OVER (ORDER BY $1 <<-> text, id) AS r
                 FROM {from} WHERE $1 <% text AND ($3::text IS NULL OR kind = $3)
                 ORDER BY $1 <<-> text, id LIMIT 50),
         fused AS (SELECT id, sum(1.0 / (60 + r))::float8 AS rrf FROM (SELECT * FROM fts UNION ALL SELECT * FROM tri) x
                   GROUP BY id)
         SELECT m.id, m.kind, m.text, m.content, m.success, m.created_at, m.updated_at, f.rrf,
                word_similarity($1, m.text)::float8 AS sim, COALESCE(u.retrieval_count, 0) AS retrievals
         FROM fused f JOIN memory_records m USING (id) LEFT JOIN memory_usage u USING (id)"
    );
    let rows = sqlx::query(&sql)
        .bind(text)
        .bind(words_of(text))
        .bind(kind.map(MemoryKind::as_str))
        .bind(window.unwrap_or(0))
        .fetch_all(&mut *tx)
        .await?;
    let best_rrf = 2.0 / 61.0;
    let mut hits: Vec<MemoryHit> = rows
        .iter()
        .filter_map(|row| {
            let kind = MemoryKind::parse(row.get::<&str, _>("kind"))?;
            let (rrf, sim): (f64, f64) = (row.get("rrf"), row.get("sim"));
            let relevance = 0.5 * sim + 0.5 * (rrf / best_rrf).min(1.0);
            let updated: DateTime<Utc> = row.get("updated_at");
            let retrievals = u64::try_from(row.get::<i64, _>("retrievals")).unwrap_or(0);
            let age = (now - updated).num_seconds() as f64 / 86_400.0;
            Some(MemoryHit {
                id: row.get("id"),
                kind,
                text: row.get("text"),
                content: row.get("content"),
                created_at: row.get("created_at"),
                updated_at: updated,
                retrieval_count: retrievals,
                relevance,
                importance: importance(age, row.get("success"), relevance, retrievals),
            })
        })
        .collect();
    hits.sort_by(|a, b| b.importance.total_cmp(&a.importance).then_with(|| a.id.cmp(&b.id)));
    hits.truncate(limit.clamp(1, 100) as usize);
    if !count {
        tx.commit().await?;
        return Ok(hits);
    }
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    sqlx::query(
        "INSERT INTO memory_usage (id, retrieval_count, last_retrieved) SELECT unnest($1::text[]), 1, $2
         ON CONFLICT (id) DO UPDATE SET retrieval_count = memory_usage.retrieval_count + 1, last_retrieved = $2",
    )
    .bind(&ids)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    for h in &mut hits {
        h.retrieval_count += 1;
    }
    Ok(hits)
}

/// Failure patterns seen in `dir`, most frequent first, with their count there.
pub async fn failures_in(db: &PgPool, dir: &str, limit: i64) -> Result<Vec<KnownFailure>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT f.pattern_id, count(*) AS n, max(f.at) AS last, m.content
         FROM memory_failures f JOIN memory_records m ON m.id = f.pattern_id
         WHERE f.working_dir = $1 GROUP BY f.pattern_id, m.content ORDER BY n DESC, last DESC LIMIT $2",
    )
    .bind(dir)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let content: serde_json::Value = r.get("content");
            KnownFailure {
                id: r.get("pattern_id"),
                action: content["action"].as_str().unwrap_or_default().to_owned(),
                message: content["message"].as_str().unwrap_or_default().to_owned(),
                count: u64::try_from(r.get::<i64, _>("n")).unwrap_or(0),
                last_seen: r.get("last"),
            }
        })
        .collect())
}

/// Records per kind.
pub async fn counts(db: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT kind, count(*) FROM memory_records GROUP BY kind ORDER BY kind").fetch_all(db).await
}

/// Records retention may forget: older than `cutoff`, not failure patterns.
pub async fn expired(
    db: &PgPool,
    cutoff: DateTime<Utc>,
) -> Result<Vec<(String, Option<bool>, DateTime<Utc>, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.id, m.success, m.updated_at, COALESCE(u.retrieval_count, 0)
         FROM memory_records m LEFT JOIN memory_usage u USING (id)
         WHERE m.updated_at < $1 AND m.kind <> 'failure_pattern' ORDER BY m.updated_at LIMIT 5000",
    )
    .bind(cutoff)
    .fetch_all(db)
    .await
}
