//! Dashboard: how long the jobs page takes on the server (its queries and
//! its HTML) with many jobs in the read model, on a database of its own
//! filled with generated jobs: the first page, a filtered one, a search over
//! the intents, and the page after it.

use std::time::Instant;

use serde::Serialize;
use skynet_api::ui::jobs::{JobsQuery, body};

use super::system::BenchDb;

/// Figures of the dashboard benchmark (milliseconds of server time).
#[derive(Debug, Clone, Serialize)]
pub struct DashboardReport {
    pub jobs: u64,
    pub renders: usize,
    pub first_page_p50_ms: f64,
    pub first_page_p99_ms: f64,
    pub filtered_p50_ms: f64,
    pub search_p50_ms: f64,
    /// A search nothing matches: every intent read (the worst case).
    pub search_miss_p50_ms: f64,
    pub second_page_p50_ms: f64,
}

pub async fn run(jobs: u64, renders: usize) -> anyhow::Result<DashboardReport> {
    let db = BenchDb::create().await?;
    let result = run_on(&db, jobs, renders).await;
    db.drop_it().await;
    result
}

async fn run_on(db: &BenchDb, jobs: u64, renders: usize) -> anyhow::Result<DashboardReport> {
    let pool = crate::infra::connect_db(Some(&db.url)).await?;
    skynet_projector::migrate(&pool).await?;
    // Jobs over the last 30 days, in every state, from eight requesters (the
    // setup is one statement and not what is measured).
    sqlx::query(
        "INSERT INTO jobs (id, status, intent, requested_by, project, request_source, request_id, risk,
                           approvers, created_at, updated_at, duration_ms, last_seq, event_count)
         SELECT md5(g::text)::uuid,
                (ARRAY['succeeded','succeeded','succeeded','failed','running','awaiting_approval','cancelled'])[1 + g % 7],
                (ARRAY['check git status','run the tests','build the project','deploy billing to staging',
                       'rotate the certificates','vacuum the users table'])[1 + g % 6] || ' #' || g,
                'user' || (g % 8), 'proj' || (g % 5), 'bench', g::text,
                (ARRAY['READ_ONLY','WRITE','NETWORK','ADMIN'])[1 + g % 4], '[]'::jsonb,
                now() - (g * interval '26 seconds'), now(), g % 5000, g, 6
         FROM generate_series(1, $1) g",
    )
    .bind(i64::try_from(jobs)?)
    .execute(&pool)
    .await?;
    sqlx::query("ANALYZE jobs").execute(&pool).await?;
    let time = |q: JobsQuery| {
        let pool = pool.clone();
        async move {
            let mut took = Vec::with_capacity(renders);
            let mut bytes = 0;
            for _ in 0..renders {
                let started = Instant::now();
                let html = body(&pool, &q).await?.into_string();
                took.push(started.elapsed().as_secs_f64() * 1000.0);
                bytes = html.len();
            }
            took.sort_by(f64::total_cmp);
            anyhow::ensure!(bytes > 0, "an empty page");
            anyhow::Ok(took)
        }
    };
    let at = |t: &[f64], p: f64| {
        t.get(((t.len() as f64 * p) as usize).min(t.len().saturating_sub(1))).copied().unwrap_or(0.0)
    };
    let first = time(JobsQuery::default()).await?;
    let filtered = time(JobsQuery { state: "failed".into(), requester: "user3".into(), ..Default::default() }).await?;
    let search = time(JobsQuery { q: "certificates".into(), ..Default::default() }).await?;
    let miss = time(JobsQuery { q: "no intent says this".into(), ..Default::default() }).await?;
    let page = skynet_api::routes::jobs::page_of(&pool, &Default::default(), skynet_api::ui::jobs::PAGE, None).await?;
    let cursor = page.next_cursor.unwrap_or_default();
    let second = time(JobsQuery { cursor, ..Default::default() }).await?;
    Ok(DashboardReport {
        jobs,
        renders,
        first_page_p50_ms: at(&first, 0.5),
        first_page_p99_ms: at(&first, 0.99),
        filtered_p50_ms: at(&filtered, 0.5),
        search_p50_ms: at(&search, 0.5),
        search_miss_p50_ms: at(&miss, 0.5),
        second_page_p50_ms: at(&second, 0.5),
    })
}
