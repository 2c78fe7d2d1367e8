//! Rebuilding the read models while the live projector keeps serving them:
//! the whole log is projected into shadow tables (the schema
//! `skynet_shadow`, each table made in the shape of its live twin, which the
//! migrations have just brought up to date: every column, default, check,
//! constraint and index under its live name), and once the shadow has
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
use crate::reader::Reading;

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
    progress.phases_begun();
    migrate(db).await?;
    let mut lock = db.acquire().await?.detach();
    let got: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(REBUILD_LOCK).fetch_one(&mut lock).await?;
    if !got {
        return Err(ProjectorError::Busy);
    }
    progress.phase_ended("locked");
    let result = match build_and_swap(&config, &js, db, progress, true).await {
        // Something in the log Postgres refuses (an event, or an index entry
        // built from one): start over in the careful mode, which quarantines
        // it event by event as the live projector does.
        Err(ProjectorError::BulkRefused(e)) => {
            warn!(service = "projector", error = %e, "bulk rebuild refused; rebuilding event by event");
            progress.set_restarted();
            progress.phase_ended("refused");
            build_and_swap(&config, &js, db, progress, false).await
        }
        other => other,
    };
    // Unlocked explicitly: closing the connection frees the lock only once
    // its backend has exited, after `close` returns, and a rebuild started
    // right after this one (the bench runs three) found it still held.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)").bind(REBUILD_LOCK).execute(&mut lock).await;
    let _ = lock.close().await;
    progress.phase_ended("unlocked");
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
    let step = |name| progress.phase_ended(name);
    // The shadow starts empty, so its first round reads the log from the
    // start: begun now, the reader decodes the log's head while Postgres
    // makes the tables.
    let stream =
        js.get_stream(skynet_bus::definitions::EVENTS_STREAM).await.map_err(|e| ProjectorError::Nats(e.into()))?;
    let mut early = Some(Reading::start(stream, 1, config));
    let indexes = create_shadow(db).await?;
    step("created");
    // Connections that see only the shadow schema, under the live names.
    let options: PgConnectOptions = (*db.connect_options()).clone().options([("search_path", SHADOW)]);
    let shadow = PgPoolOptions::new().max_connections(4).connect_with(options).await?;
    let result = async {
        // Bulk load: the shadow's secondary indexes are built once, after the
        // first round has loaded the log (one sort instead of a B-tree insert
        // per row and index); primary keys are there from the start, the
        // upserts need them.
        let mut indexes = Some(indexes);
        if !bulk {
            build_indexes(db, indexes.take().unwrap_or_default()).await?;
        }
        step("connected");
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
            let at = project(&until, &deps, &mut never, progress, bulk && round == 0, early.take()).await?;
            step("projected");
            if let Some(indexes) = indexes.take() {
                build_indexes(db, indexes).await?;
                step("indexed");
            }
            if let Some(at) = swap(db, at).await? {
                step("swapped");
                return Ok((at, round));
            }
        }
        Err(ProjectorError::RebuildBehind { rounds: ROUNDS })
    }
    .await;
    shadow.close().await;
    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {SHADOW}, {OLD} CASCADE")).execute(db).await;
    step("dropped");
    match result {
        Ok((at, rounds)) => {
            info!(service = "projector", at, rounds = rounds + 1, bulk, ms = ?progress.phases(), "read models rebuilt and swapped in");
            Ok(at)
        }
        Err(e) => {
            warn!(service = "projector", bulk, ms = ?progress.phases(), error = %e, "rebuild failed; shadow tables dropped");
            Err(e)
        }
    }
}

/// Makes the shadow schema afresh, in one round trip: each live table's
/// columns, defaults and checks (`LIKE … INCLUDING ALL EXCLUDING INDEXES`) and
/// the constraints that own an index (primary keys, unique and exclusion
/// constraints), under their live names. Returns the secondary indexes'
/// definitions, aimed at the shadow, to build now or after a bulk load.
///
/// Copying the live tables (which `migrate` has just brought up to date)
/// instead of running every migration again in the shadow takes a few
/// milliseconds instead of ~50, and makes only the tables the projector owns.
async fn create_shadow(db: &PgPool) -> Result<Vec<String>, ProjectorError> {
    let tables = tables();
    let constraints: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT t.relname::text, c.conname::text, pg_get_constraintdef(c.oid)
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
         WHERE c.connamespace = 'public'::regnamespace AND t.relname = ANY($1) AND c.contype IN ('p', 'u', 'x')
         ORDER BY 1, 2",
    )
    .bind(&tables)
    .fetch_all(db)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexname::text, i.indexdef FROM pg_indexes i
         WHERE i.schemaname = 'public' AND i.tablename = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                           WHERE c.conname = i.indexname AND c.connamespace = 'public'::regnamespace)
         ORDER BY 1",
    )
    .bind(&tables)
    .fetch_all(db)
    .await?;
    let mut ddl = format!("DROP SCHEMA IF EXISTS {SHADOW} CASCADE; CREATE SCHEMA {SHADOW};");
    for t in &tables {
        ddl += &format!("CREATE TABLE {SHADOW}.{t} (LIKE public.{t} INCLUDING ALL EXCLUDING INDEXES);");
    }
    for (table, name, definition) in &constraints {
        ddl += &format!("ALTER TABLE {SHADOW}.{table} ADD CONSTRAINT \"{name}\" {definition};");
    }
    sqlx::raw_sql(&ddl).execute(db).await?;
    // `pg_indexes` names the table with its schema: the same index, on the
    // shadow's table (where Postgres puts the index too).
    let on_live = " ON public.";
    let on_shadow = format!(" ON {SHADOW}.");
    indexes
        .into_iter()
        .map(|(name, definition)| match definition.matches(on_live).count() {
            1 => Ok(definition.replace(on_live, &on_shadow)),
            _ => Err(ProjectorError::ShadowIndex { name, definition }),
        })
        .collect()
}

/// Builds the shadow's secondary indexes, each on a connection of its own, so
/// they build side by side. An entry Postgres refuses ends a bulk load.
///
/// Without parallel workers: Postgres would start up to two more processes
/// per index of the larger tables, and with every index already building at
/// once on two cores they add only their start-up and exit (about 3% of a
/// rebuild's CPU in a profile).
///
/// Every build is awaited, failed or not, before the first error is returned:
/// one dropped mid-statement would leave its `CREATE INDEX` running on the
/// server, holding its table, while the caller drops the shadow schema and
/// makes it again.
async fn build_indexes(db: &PgPool, definitions: Vec<String>) -> Result<(), ProjectorError> {
    let built = futures::future::join_all(definitions.iter().map(|definition| async move {
        let mut tx = db.begin().await?;
        sqlx::query("SET LOCAL max_parallel_maintenance_workers = 0").execute(&mut *tx).await?;
        sqlx::query(definition).execute(&mut *tx).await?;
        tx.commit().await
    }))
    .await;
    built.into_iter().collect::<Result<Vec<()>, _>>().map_err(crate::bulk::error)?;
    Ok(())
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
    // One round trip: the tables are locked until the commit.
    let mut ddl = format!("DROP SCHEMA IF EXISTS {OLD} CASCADE; CREATE SCHEMA {OLD};");
    for t in tables() {
        ddl += &format!("ALTER TABLE public.{t} SET SCHEMA {OLD}; ALTER TABLE {SHADOW}.{t} SET SCHEMA public;");
    }
    sqlx::raw_sql(&ddl).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(Some(shadow_at))
}
