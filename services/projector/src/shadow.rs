//! Rebuilding the read models while the live projector keeps serving them:
//! the whole log is projected into shadow tables (the schema
//! `skynet_shadow`, made by the same migrations, so every table, index and
//! constraint has its live name and shape), and once the shadow has
//! caught up with the live checkpoint the two sets of tables are swapped in
//! one transaction. Readers see the old tables until the commit and the new
//! ones after it; nothing is ever empty.
//!
//! The swap locks the checkpoint table first, as every projector transaction
//! does, so it waits for a batch in flight and the live projector's next batch
//! waits for it. That batch then finds the swapped-in checkpoint at or past
//! events it holds, skips them and drops its cached rows (see `write_batch`).

use async_nats::jetstream;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tracing::{info, warn};

use crate::config::Config;
use crate::db::TABLES;
use crate::projector::{Deps, Progress, ProjectorError, migrate, project};

const SHADOW: &str = "skynet_shadow";
const OLD: &str = "skynet_replaced";
/// Advisory-lock key of the one rebuild at a time.
const REBUILD_LOCK: i64 = 0x534b_594e_5245_4255;
/// Catch-up rounds before giving up on a log that grows faster than the shadow.
const ROUNDS: usize = 50;

/// Every table the projector writes, the checkpoint first (lock order).
fn tables() -> Vec<&'static str> {
    std::iter::once("projection_checkpoint").chain(TABLES.iter().copied()).collect()
}

/// Rebuilds every read model from the log beside the live ones and swaps them
/// in; returns the sequence the new tables are at. Safe under a live
/// projector; one rebuild at a time. `progress` follows it as it goes.
pub async fn rebuild_shadow(
    config: Config,
    js: jetstream::Context,
    db: &PgPool,
    progress: &Progress,
) -> Result<u64, ProjectorError> {
    migrate(db).await?;
    let mut lock = db.acquire().await?.detach();
    let got: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(REBUILD_LOCK).fetch_one(&mut lock).await?;
    if !got {
        return Err(ProjectorError::Busy);
    }
    let result = match build_and_swap(&config, &js, db, progress, true).await {
        // Something in the log Postgres refuses (an event, or an index entry
        // built from one): start over in the careful mode, which quarantines
        // it event by event as the live projector does.
        Err(ProjectorError::BulkRefused(e)) => {
            warn!(service = "projector", error = %e, "bulk rebuild refused; rebuilding event by event");
            progress.set_restarted();
            build_and_swap(&config, &js, db, progress, false).await
        }
        other => other,
    };
    let _ = lock.close().await;
    result
}

/// Projects the log into a fresh shadow schema and swaps it in. `bulk`: the
/// first round writes into tables without their secondary indexes, through
/// `crate::bulk`, and builds the indexes after it.
async fn build_and_swap(
    config: &Config,
    js: &jetstream::Context,
    db: &PgPool,
    progress: &Progress,
    bulk: bool,
) -> Result<u64, ProjectorError> {
    let started = std::time::Instant::now();
    for stmt in [format!("DROP SCHEMA IF EXISTS {SHADOW} CASCADE"), format!("CREATE SCHEMA {SHADOW}")] {
        sqlx::query(&stmt).execute(db).await?;
    }
    // Connections that see only the shadow schema, under the live names.
    let options: PgConnectOptions = (*db.connect_options()).clone().options([("search_path", SHADOW)]);
    let shadow = PgPoolOptions::new().max_connections(4).connect_with(options).await?;
    migrate(&shadow).await?;
    let result = async {
        // Bulk load: the shadow's secondary indexes are built once, after the
        // first round has loaded the log (one sort instead of a B-tree insert
        // per row and index); primary keys stay, the upserts need them.
        let mut indexes = if bulk { Some(drop_secondary_indexes(db).await?) } else { None };
        info!(
            service = "projector",
            bulk,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "shadow tables ready; projecting the log into them"
        );
        let deps = Deps { js: js.clone(), db: shadow.clone() };
        for round in 0..ROUNDS {
            // Up to the end of the log as it is now (at or past the live checkpoint).
            let last = js
                .get_stream(skynet_bus::definitions::EVENTS_STREAM)
                .await
                .map_err(|e| ProjectorError::Nats(e.into()))?
                .info()
                .await
                .map_err(|e| ProjectorError::Nats(e.into()))?
                .state
                .last_sequence;
            let mut never = std::future::pending::<()>();
            let mut never = std::pin::Pin::new(&mut never);
            let until = Config { until: Some(last), ..config.clone() };
            let at = project(&until, &deps, &mut never, progress, bulk && round == 0).await?;
            if let Some(indexes) = indexes.take() {
                info!(
                    service = "projector",
                    at,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "log projected; building the indexes"
                );
                // Each on a connection of its own: they build side by side.
                futures::future::try_join_all(indexes.iter().map(|(_, definition)| async move {
                    sqlx::query(definition).execute(db).await.map_err(crate::bulk::error)
                }))
                .await?;
            }
            if let Some(at) = swap(db, at).await? {
                info!(
                    service = "projector",
                    at,
                    round,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "read models rebuilt and swapped in"
                );
                return Ok(at);
            }
        }
        Err(ProjectorError::RebuildBehind { rounds: ROUNDS })
    }
    .await;
    shadow.close().await;
    for schema in [SHADOW, OLD] {
        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).execute(db).await;
    }
    result
}

/// Drops the indexes of the shadow's tables that back no constraint; returns
/// each one's name and definition (as `pg_indexes` gives it: it creates the
/// same index, under the same name, on the same shadow table).
async fn drop_secondary_indexes(db: &PgPool) -> Result<Vec<(String, String)>, ProjectorError> {
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexname::text, i.indexdef FROM pg_indexes i
         WHERE i.schemaname = $1 AND i.tablename = ANY($2)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                           WHERE c.conname = i.indexname AND c.connamespace = $1::regnamespace)
         ORDER BY 1",
    )
    .bind(SHADOW)
    .bind(tables())
    .fetch_all(db)
    .await?;
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {SHADOW}.\"{name}\"")).execute(db).await?;
    }
    Ok(indexes)
}

/// Swaps the shadow tables in if they are at or past the live checkpoint
/// (`Some(at)`); `None` if the live projector moved past them meanwhile.
async fn swap(db: &PgPool, shadow_at: u64) -> Result<Option<u64>, ProjectorError> {
    let mut tx = db.begin().await?;
    let live: Vec<String> = tables().iter().map(|t| format!("public.{t}")).collect();
    sqlx::query(&format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", live.join(", "))).execute(&mut *tx).await?;
    // Both projections' live checkpoints: the shadow replaces both.
    let live_at: Option<i64> =
        sqlx::query_scalar("SELECT max(last_seq) FROM public.projection_checkpoint").fetch_one(&mut *tx).await?;
    if live_at.and_then(|s| u64::try_from(s).ok()).unwrap_or(0) > shadow_at {
        tx.rollback().await?;
        return Ok(None);
    }
    let mut ddl = vec![format!("DROP SCHEMA IF EXISTS {OLD} CASCADE"), format!("CREATE SCHEMA {OLD}")];
    for t in tables() {
        ddl.push(format!("ALTER TABLE public.{t} SET SCHEMA {OLD}"));
        ddl.push(format!("ALTER TABLE {SHADOW}.{t} SET SCHEMA public"));
    }
    for stmt in &ddl {
        sqlx::query(stmt).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Some(shadow_at))
}
