//! The scheduler's signals, kept current from events and heartbeats:
//! executors (health, capabilities, capacity, load) from the `SKYNET_EXECUTORS`
//! KV bucket, and per-provider outcomes from finished jobs' events.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use async_nats::jetstream::{self, consumer, kv};
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use skynet_bus::codec;
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_contract::executor::{ExecutorStatus, Health};
use skynet_contract::job::JobEvent;
use tracing::{debug, warn};

use crate::scoring::ProviderView;

/// An executor whose heartbeat is older than this is offline (the KV entry
/// expires at the same age; this guards the time until it does).
pub const STALE_AFTER_SECS: i64 = 10;

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    finished: u32,
    succeeded: u32,
    duration_ms: u64,
    timed: u32,
}

#[derive(Debug, Default)]
struct Inner {
    executors: HashMap<String, ExecutorStatus>,
    stats: HashMap<String, Stats>,
}

/// Shared, cheaply cloned view of the signals.
#[derive(Clone, Default)]
pub struct Signals {
    inner: Arc<RwLock<Inner>>,
}

impl Signals {
    pub fn apply_executor(&self, status: ExecutorStatus) {
        if let Ok(mut g) = self.inner.write() {
            g.executors.insert(status.id.clone(), status);
        }
    }

    pub fn remove_executor(&self, id: &str) {
        if let Ok(mut g) = self.inner.write() {
            g.executors.remove(id);
        }
    }

    /// Counts a finished job of `provider`.
    pub fn record_finish(&self, provider: &str, succeeded: bool, duration_ms: Option<u64>) {
        if let Ok(mut g) = self.inner.write() {
            let s = g.stats.entry(provider.to_owned()).or_default();
            s.finished += 1;
            if succeeded {
                s.succeeded += 1;
            }
            if let Some(d) = duration_ms {
                s.duration_ms += d;
                s.timed += 1;
            }
        }
    }

    /// Executors that heartbeated recently.
    pub fn online(&self, now: DateTime<Utc>) -> usize {
        self.inner.read().map(|g| g.executors.values().filter(|e| fresh(e, now)).count()).unwrap_or(0)
    }

    /// One view per provider offered by an online executor.
    pub fn views(&self, now: DateTime<Utc>) -> Vec<ProviderView> {
        let Ok(g) = self.inner.read() else { return Vec::new() };
        let mut views: HashMap<String, ProviderView> = HashMap::new();
        for e in g.executors.values().filter(|e| fresh(e, now)) {
            let share = u32::try_from(e.providers.len().max(1)).unwrap_or(1);
            for (name, p) in &e.providers {
                let v = views.entry(name.clone()).or_insert_with(|| ProviderView {
                    name: name.clone(),
                    health: Health::Unhealthy,
                    health_message: p.message.clone(),
                    capabilities: BTreeSet::new(),
                    running: 0,
                    capacity: 0,
                    finished: 0,
                    succeeded: 0,
                    mean_duration_secs: 0.0,
                });
                if rank(p.health) > rank(v.health) {
                    v.health = p.health;
                    v.health_message = p.message.clone();
                }
                v.capabilities.extend(p.capabilities.iter().cloned());
                // An executor's slots serve all its providers; split them evenly.
                v.capacity += e.capacity / share;
                v.running += e.running / share;
            }
        }
        for v in views.values_mut() {
            if let Some(s) = g.stats.get(&v.name) {
                v.finished = s.finished;
                v.succeeded = s.succeeded;
                v.mean_duration_secs =
                    if s.timed == 0 { 0.0 } else { s.duration_ms as f64 / f64::from(s.timed) / 1000.0 };
            }
        }
        let mut out: Vec<_> = views.into_values().collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

fn fresh(e: &ExecutorStatus, now: DateTime<Utc>) -> bool {
    now - e.heartbeat_at < Duration::seconds(STALE_AFTER_SECS)
}

fn rank(h: Health) -> u8 {
    match h {
        Health::Unhealthy => 0,
        Health::Degraded => 1,
        Health::Healthy => 2,
    }
}

/// Follows the executors bucket until `shutdown`.
pub async fn watch_executors(store: kv::Store, signals: Signals, shutdown: impl std::future::Future<Output = ()>) {
    let mut watch = match store.watch_with_history(">").await {
        Ok(w) => w,
        Err(e) => {
            warn!(service = "scheduler", error = %e, "cannot watch executors; scheduling will wait for none");
            return;
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let entry = tokio::select! {
            () = &mut shutdown => return,
            e = watch.next() => e,
        };
        match entry {
            Some(Ok(e)) if e.operation == kv::Operation::Put => {
                match serde_json::from_slice::<ExecutorStatus>(&e.value) {
                    Ok(status) => signals.apply_executor(status),
                    Err(err) => warn!(service = "scheduler", key = %e.key, error = %err, "unreadable executor status"),
                }
            }
            Some(Ok(e)) => signals.remove_executor(&e.key),
            Some(Err(err)) => debug!(service = "scheduler", error = %err, "executor watch error"),
            None => return,
        }
    }
}

/// Follows finished jobs from `window` ago until `shutdown`.
pub async fn follow_outcomes(
    js: jetstream::Context,
    signals: Signals,
    window: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), async_nats::Error> {
    let stream = js.get_stream(EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            // Named: the scheduler's role may create consumers on the log only
            // by name, and never under a durable's name (nats/roles.json).
            name: Some(format!("scheduler-signals-{}", uuid::Uuid::new_v4().simple())),
            filter_subjects: ["succeeded", "failed", "timed_out"].iter().map(|k| format!("skynet.job.*.{k}")).collect(),
            deliver_policy: consumer::DeliverPolicy::ByStartTime { start_time: Utc::now() - window },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: std::time::Duration::from_secs(60),
            ..Default::default()
        })
        .await?;
    let mut messages = std::pin::pin!(consumer.messages().await?.take_until(shutdown));
    while let Some(msg) = messages.next().await {
        let Ok(msg) = msg else { continue };
        let Ok(env) = codec::decode(msg.headers.as_ref(), &msg.payload) else { continue };
        let owned = |k| skynet_contract::owners::is_owner(k, &env.source);
        match env.job_event().ok().filter(|(_, e)| owned(e.kind())).ok_or(()) {
            Ok((_, JobEvent::Succeeded(s))) => {
                if let Some(p) = s.provider {
                    signals.record_finish(&p, true, Some(s.duration_ms));
                }
            }
            Ok((_, JobEvent::Failed(f))) => {
                if let Some(p) = f.provider {
                    signals.record_finish(&p, false, None);
                }
            }
            Ok((_, JobEvent::TimedOut(t))) => {
                if let Some(p) = t.provider {
                    signals.record_finish(&p, false, None);
                }
            }
            _ => {}
        }
    }
    Ok(())
}
