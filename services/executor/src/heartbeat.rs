//! Heartbeats into the `SKYNET_EXECUTORS` KV bucket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_nats::jetstream::kv;
use chrono::Utc;
use skynet_contract::executor::{ExecutorStatus, ProviderStatus};
use tracing::warn;

use crate::providers::Provider;

/// What a heartbeat reports and where.
pub struct Beat {
    /// The `SKYNET_EXECUTORS` bucket.
    pub kv: kv::Store,
    pub id: String,
    pub providers: Vec<Provider>,
    pub capacity: u32,
    /// Jobs running now, shared with the consumer loop.
    pub running: Arc<AtomicU32>,
    pub period: Duration,
    /// Provider health is re-checked every this many beats.
    pub health_every: u32,
}

/// Writes this executor's status every `period` until `shutdown`, then removes
/// it so the executor is offline at once.
pub async fn run(beat_cfg: Beat, shutdown: impl std::future::Future<Output = ()>) {
    let Beat { kv, id, providers, capacity, running, period, health_every } = beat_cfg;
    let started_at = Utc::now();
    let mut statuses: BTreeMap<String, ProviderStatus> = BTreeMap::new();
    let mut beat = 0u32;
    let mut tick = tokio::time::interval(period);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if beat.is_multiple_of(health_every.max(1)) {
            for p in &providers {
                statuses.insert(p.name().to_owned(), p.status().await);
            }
        }
        beat = beat.wrapping_add(1);
        let status = ExecutorStatus {
            id: id.clone(),
            providers: statuses.clone(),
            capacity,
            running: running.load(Ordering::Relaxed),
            started_at,
            heartbeat_at: Utc::now(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let Ok(body) = serde_json::to_vec(&status) else { continue };
        if let Err(e) = kv.put(&id, body.into()).await {
            warn!(service = "executor", executor = %id, error = %e, "heartbeat failed");
        }
    }
    let _ = kv.delete(&id).await;
}
