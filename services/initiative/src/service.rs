//! The initiative service: the evaluation loop and the command/status
//! listener. It has no durable consumer: its state is its ledger in the log,
//! read by direct get at each evaluation, and the read models.

use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream;
use chrono::{DateTime, Utc};
use skynet_bus::consumer;
use skynet_bus::principals::Principals;
use skynet_contract::initiative;
use sqlx::PgPool;
use tracing::{info, warn};

use crate::config::Config;

pub(crate) const SERVICE: &str = "initiative";

/// The time an evaluation is made at: `Utc::now` in production, a hand-moved
/// clock in tests (the triggers and the limits count by it).
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(Utc::now)
}

/// What the initiative needs.
#[derive(Clone)]
pub struct Deps {
    /// Its ledger (append and direct get) and the intake's front door.
    pub js: jetstream::Context,
    /// Core NATS: commands, status, direct gets.
    pub nats: async_nats::Client,
    /// The read models it looks at (jobs, memory, alerts); it writes none.
    pub db: PgPool,
    /// Who may pause and resume.
    pub principals: Arc<Principals>,
    pub clock: Clock,
}

/// Why the initiative stopped.
#[derive(Debug, thiserror::Error)]
pub enum InitiativeError {
    #[error("applying migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("NATS: {0}")]
    Nats(async_nats::Error),
}

/// Applies the schema of the read models it reads (the shared migrations;
/// idempotent), so that it can run on its own before the projector ever did.
pub async fn migrate(db: &PgPool) -> Result<(), InitiativeError> {
    sqlx::migrate!("../../migrations").run(db).await?;
    Ok(())
}

/// Runs the initiative until `shutdown` resolves: the first evaluation one
/// interval after the start, then one each interval; a failed evaluation is
/// logged and the next one comes as usual.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), InitiativeError> {
    migrate(&deps.db).await?;
    let config = Arc::new(config);
    let stop = consumer::stop_token(shutdown);
    let started = (deps.clock)();
    let mut subs = Vec::new();
    for subject in [initiative::PAUSE, initiative::RESUME, initiative::STATUS] {
        let sub = deps.nats.queue_subscribe(subject, "skynet-initiative".into()).await;
        subs.push(sub.map_err(|e| InitiativeError::Nats(e.into()))?);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for sub in subs {
        tasks.spawn(crate::commands::serve(sub, deps.clone(), config.clone(), started, stop.clone()));
    }
    info!(service = SERVICE, interval_secs = config.interval_secs, "initiative running");
    let interval = std::time::Duration::from_secs(config.interval_secs);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
        match crate::evaluate::evaluate_once(&deps, &config, started).await {
            Ok(decided) if !decided.is_empty() => info!(service = SERVICE, decisions = decided.len(), "evaluated"),
            Ok(_) => {}
            Err(e) => warn!(service = SERVICE, error = %e, "evaluation skipped"),
        }
    }
    tasks.shutdown().await;
    Ok(())
}
