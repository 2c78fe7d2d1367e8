//! Upkeep: retrieval counts written in batches, and retention (records older
//! than the configured age forgotten as events).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use skynet_contract::memory::{self, MemoryForgotten};
use tracing::{info, warn};

use crate::answers::record;
use crate::config::Config;
use crate::service::{Deps, SERVICE};
use crate::store;

/// Retrieval counts not yet written.
#[derive(Clone, Default)]
pub struct Retrievals(Arc<std::sync::Mutex<std::collections::HashMap<String, i64>>>);

impl Retrievals {
    pub(crate) fn add(&self, ids: impl IntoIterator<Item = String>) {
        if let Ok(mut m) = self.0.lock() {
            for id in ids {
                *m.entry(id).or_default() += 1;
            }
        }
    }

    pub(crate) fn take(&self) -> Vec<(String, i64)> {
        self.0.lock().map(|mut m| m.drain().collect()).unwrap_or_default()
    }
}

/// Writes the planner's retrievals once a second (and at the end).
pub(crate) async fn flush_usage(deps: Deps, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            () = stop.cancelled() => true,
        };
        let counts = deps.retrievals.take();
        if !counts.is_empty()
            && let Err(e) = store::count_retrievals(&deps.db, &counts, Utc::now()).await
        {
            warn!(service = SERVICE, error = %e, "retrieval counts not written; keeping them for the next try");
            deps.retrievals.add(counts.into_iter().flat_map(|(id, n)| std::iter::repeat_n(id, n.max(0) as usize)));
        }
        if stopping {
            return;
        }
    }
}

/// Forgets, as events, records older than the configured age — except failure
/// patterns and records whose importance is at least 0.7 (the predecessor's rule).
pub(crate) async fn retention(deps: Deps, config: Arc<Config>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(config.retention_every_secs.max(1)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        match sweep(&deps, &config, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => info!(service = SERVICE, forgotten = n, "retention forgot old records"),
            Err(e) => warn!(service = SERVICE, error = %e, "retention sweep failed; trying again later"),
        }
    }
}

/// One retention pass; returns how many records it forgot.
pub async fn sweep(deps: &Deps, config: &Config, now: DateTime<Utc>) -> Result<usize, String> {
    let cutoff = now - chrono::Duration::days(i64::from(config.retention_days));
    let old = store::expired(&deps.db, cutoff).await.map_err(|e| e.to_string())?;
    let mut n = 0;
    for (id, success, updated, retrievals) in old {
        let age = (now - updated).num_seconds() as f64 / 86_400.0;
        // No query: relevance is neutral.
        if store::importance(age, success, 0.5, u64::try_from(retrievals).unwrap_or(0)) >= 0.7 {
            continue;
        }
        let data = MemoryForgotten {
            id: id.clone(),
            reason: format!("older than {} days", config.retention_days),
            forgotten_by: "retention".into(),
        };
        record(deps, &id, memory::FORGOTTEN, "forgotten", &data).await?;
        n += 1;
    }
    Ok(n)
}
