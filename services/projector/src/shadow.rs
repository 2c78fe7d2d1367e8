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
use tracing::info;

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
    let result = build_and_swap(config, js, db, progress).await;
    let _ = lock.close().await;
    result
}

async fn build_and_swap(
    config: Config,
    js: jetstream::Context,
    db: &PgPool,
    progress: &Progress,
) -> Result<u64, ProjectorError> {
    for stmt in [format!("DROP SCHEMA IF EXISTS {SHADOW} CASCADE"), format!("CREATE SCHEMA {SHADOW}")] {
        sqlx::query(&stmt).execute(db).await?;
    }
    // Connections that see only the shadow schema, under the live names.
    let options: PgConnectOptions = (*db.connect_options()).clone().options([("search_path", SHADOW)]);
    let shadow = PgPoolOptions::new().max_connections(4).connect_with(options).await?;
    migrate(&shadow).await?;
    let deps = Deps { js: js.clone(), db: shadow.clone() };
    let result = async {
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
            let at = project(&Config { until: Some(last), ..config.clone() }, &deps, &mut never, progress).await?;
            if let Some(at) = swap(db, at).await? {
                info!(service = "projector", at, round, "read models rebuilt and swapped in");
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
