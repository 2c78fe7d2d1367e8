//! What a chaos run must end with, read from the log and the read models:
//! every job terminal exactly once, no step result recorded twice, and read
//! models equal to a rebuild from the log.

use std::collections::{BTreeMap, HashMap, HashSet};

use skynet_bus::definitions::EVENTS_STREAM;
use sqlx::PgPool;

use crate::bench::system::TERMINAL;

/// What the log says of the run's jobs.
#[derive(Debug, Default)]
pub struct Outcome {
    pub succeeded: usize,
    /// Ended otherwise, by kind.
    pub other: BTreeMap<String, usize>,
    /// Why they ended otherwise ("failed: <stage>: <reason>", capped), by count:
    /// what a failing run shows first.
    pub reasons: BTreeMap<String, usize>,
    /// Jobs without a terminal event.
    pub lost: Vec<String>,
    /// Jobs with more than one.
    pub doubled: Vec<String>,
    /// (job, step) with more than one `step_succeeded`/`step_failed`.
    pub steps_twice: Vec<String>,
    pub events: usize,
}

/// Jobs (of `jobs`) that have a terminal event.
pub async fn ended(admin: &async_nats::Client, jobs: &HashSet<String>) -> anyhow::Result<usize> {
    let mut done = HashSet::new();
    for kind in TERMINAL {
        for m in skynet_bus::read::read_all(admin, EVENTS_STREAM, &format!("skynet.job.*.{kind}"), 1)
            .await
            .map_err(|e| anyhow::anyhow!("reading the log: {e}"))?
        {
            if let Some(job) = m.subject.split('.').nth(2).filter(|j| jobs.contains(*j)) {
                done.insert(job.to_owned());
            }
        }
    }
    Ok(done.len())
}

/// Reads the whole log and checks every job of the run.
pub async fn outcome(admin: &async_nats::Client, jobs: &HashSet<String>) -> anyhow::Result<Outcome> {
    let all = skynet_bus::read::read_all(admin, EVENTS_STREAM, "skynet.job.>", 1)
        .await
        .map_err(|e| anyhow::anyhow!("reading the log: {e}"))?;
    let mut ends: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut results: HashMap<(String, u64), usize> = HashMap::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for m in &all {
        let mut parts = m.subject.split('.');
        let (Some(job), Some(kind)) = (parts.nth(2), parts.next()) else { continue };
        if !jobs.contains(job) {
            continue;
        }
        if TERMINAL.contains(&kind) {
            ends.entry(job).or_default().push(kind);
            if kind != "succeeded" {
                *reasons.entry(why(kind, m)).or_default() += 1;
            }
        }
        if kind == "step_succeeded" || kind == "step_failed" {
            let step = skynet_bus::codec::decode(m.headers.as_ref(), &m.payload)
                .ok()
                .and_then(|e| e.data.get("step").and_then(serde_json::Value::as_u64))
                .unwrap_or(u64::MAX);
            *results.entry((job.to_owned(), step)).or_default() += 1;
        }
    }
    let mut out = Outcome { events: all.len(), reasons, ..Outcome::default() };
    for job in jobs {
        match ends.get(job.as_str()).map(Vec::as_slice) {
            None | Some([]) => out.lost.push(job.clone()),
            Some([one]) if *one == "succeeded" => out.succeeded += 1,
            Some([one]) => *out.other.entry((*one).to_owned()).or_default() += 1,
            Some(_) => out.doubled.push(job.clone()),
        }
    }
    out.steps_twice = results.into_iter().filter(|(_, n)| *n > 1).map(|((j, s), _)| format!("{j}/{s}")).collect();
    Ok(out)
}

/// Why a job ended with `kind`, from its terminal event, in one capped line.
fn why(kind: &str, m: &skynet_bus::read::Stored) -> String {
    let data = skynet_bus::codec::decode(m.headers.as_ref(), &m.payload).map(|e| e.data).unwrap_or_default();
    let text = |k: &str| data.get(k).and_then(serde_json::Value::as_str).unwrap_or("").to_owned();
    let line = format!("{kind}: {}: {}", text("stage"), text("reason"));
    line.chars().take(160).collect()
}

/// Every read-model table with its order, and the columns that say when a row
/// was written rather than what happened (left out of comparisons).
const TABLES: &[(&str, &str, &str)] = &[
    ("jobs", "id", ""),
    ("steps", "job_id, idx", ""),
    ("approvals", "seq", ""),
    ("artifacts", "job_id, name", ""),
    ("executors", "id", ""),
    ("rejections", "seq", ""),
    ("audit_events", "seq", ""),
    ("projection_quarantine", "seq", " - 'quarantined_at'"),
];

/// Every read model's rows, in a stable order.
pub async fn snapshot(db: &PgPool) -> anyhow::Result<Vec<(String, Vec<serde_json::Value>)>> {
    let mut out = Vec::new();
    for (table, order, minus) in TABLES {
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar(&format!("SELECT to_jsonb(t){minus} FROM {table} t ORDER BY {order}"))
                .fetch_all(db)
                .await?;
        out.push(((*table).to_owned(), rows));
    }
    Ok(out)
}
