//! Memory: how fast a similar-records query answers with many records (what
//! the planner waits for, within its 250 ms budget), measured on a database of
//! its own filled with generated records.

use std::time::Instant;

use serde::Serialize;

use super::system::BenchDb;

/// Figures of the memory benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub records: u64,
    pub queries: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Queries whose best hit was the record they were written to find.
    pub found_share: f64,
}

/// Words the generated records are made of.
const WORDS: &[&str] = &[
    "deploy",
    "billing",
    "api",
    "staging",
    "cluster",
    "rotate",
    "certificates",
    "backup",
    "database",
    "postgres",
    "compile",
    "frontend",
    "assets",
    "invoice",
    "report",
    "sync",
    "mirror",
    "kafka",
    "topic",
    "schema",
    "migrate",
    "users",
    "table",
    "index",
    "vacuum",
    "analyze",
    "cache",
    "warm",
    "redis",
    "queue",
    "drain",
    "worker",
    "pool",
    "nginx",
    "restart",
    "reload",
    "config",
    "tests",
    "lint",
    "build",
    "release",
    "tag",
    "branch",
    "merge",
    "docker",
    "image",
    "volume",
    "disk",
    "memory",
    "cpu",
    "alert",
    "dashboard",
    "metrics",
    "logs",
    "trace",
    "host",
    "web",
];

pub async fn run(records: u64, queries: usize) -> anyhow::Result<MemoryReport> {
    let db = BenchDb::create().await?;
    let result = run_on(&db, records, queries).await;
    db.drop_it().await;
    result
}

async fn run_on(db: &BenchDb, records: u64, queries: usize) -> anyhow::Result<MemoryReport> {
    let pool = crate::infra::connect_db(Some(&db.url)).await?;
    skynet_memory::migrate(&pool).await?;
    // Records of six pseudo-random words and a host name each, written in one
    // statement (the setup is not what is measured).
    let words = WORDS.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(",");
    sqlx::query(&format!(
        "INSERT INTO memory_records (id, kind, text, content, success, created_at, updated_at)
         SELECT 'b' || g,
                (ARRAY['task_execution','failure_pattern','success_strategy','user_preference','environment_fact'])[1 + g % 5],
                (SELECT string_agg(w[1 + abs(hashint8(g * 31 + k)) % array_length(w, 1)], ' ')
                   FROM generate_series(1, 6) k, (SELECT ARRAY[{words}] AS w) a) || ' host' || (g % 997),
                '{{}}'::jsonb, g % 3 <> 0, now() - (g % 90) * interval '1 day', now() - (g % 90) * interval '1 day'
         FROM generate_series(1, $1) g"
    ))
    .bind(i64::try_from(records)?)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE memory_records").execute(&pool).await?;
    let sample: Vec<(String, String)> =
        sqlx::query_as("SELECT id, text FROM memory_records ORDER BY hashtext(id) LIMIT $1")
            .bind(i64::try_from(queries)?)
            .fetch_all(&pool)
            .await?;
    let mut took = Vec::with_capacity(sample.len());
    let mut found = 0usize;
    for (id, text) in &sample {
        // The query is the record's words reordered, one dropped: close, not equal.
        let mut q: Vec<&str> = text.split_whitespace().collect();
        q.rotate_left(2);
        q.pop();
        let started = Instant::now();
        let hits = skynet_memory::store::search(&pool, &q.join(" "), None, 5, chrono::Utc::now()).await?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
        if hits.iter().any(|h| &h.id == id) {
            found += 1;
        }
    }
    took.sort_by(f64::total_cmp);
    let at = |p: f64| took.get(((took.len() as f64 * p) as usize).min(took.len().saturating_sub(1))).copied();
    Ok(MemoryReport {
        records,
        queries: took.len(),
        p50_ms: at(0.50).unwrap_or(0.0),
        p99_ms: at(0.99).unwrap_or(0.0),
        found_share: found as f64 / sample.len().max(1) as f64,
    })
}
