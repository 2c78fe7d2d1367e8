//! Per-requester task rate limits, enforced by every intake instance against
//! counts shared through the `SKYNET_RATE` KV bucket.
//!
//! Admission is decided in memory — the shared count of the current minute and
//! hour as last synchronised, plus what this instance admitted since — so a
//! submission costs no round trip. A background task folds the local counts
//! into the shared counters every [`SYNC_EVERY`] with compare-and-set, and reads
//! back what the other instances added. With one intake the limit is exact;
//! with N it can be exceeded by at most what the others admitted within one sync
//! period. (Incrementing a shared KV key per submission serialised every intake
//! on one key's compare-and-set, which capped throughput and failed under
//! contention.) Limits come from the policy rules file (`[rate_limits]`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use skynet_bus::definitions::RATE_BUCKET;
use skynet_rules::policy::Limit;
use tracing::warn;

/// How often local counts are folded into the shared ones.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);

/// One window's counts for one requester.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    /// Which window (minute or hour number since the epoch).
    id: i64,
    /// The shared count as last read.
    shared: u64,
    /// Admitted here and not yet added to the shared count.
    local: u64,
}

impl Window {
    fn roll(&mut self, id: i64) {
        if self.id != id {
            *self = Window { id, shared: 0, local: 0 };
        }
    }
    fn total(&self) -> u64 {
        self.shared + self.local
    }
}

#[derive(Debug, Default)]
struct Counts {
    minute: Window,
    hour: Window,
}

/// Requester → its windows. Pure: admission and forgetting, no I/O.
#[derive(Debug, Default)]
struct Ledger(HashMap<String, Counts>);

impl Ledger {
    /// Counts one task for `requester` if both windows have room; otherwise
    /// says which limit it is over.
    fn admit(&mut self, requester: &str, limit: Limit, now: DateTime<Utc>) -> Result<(), String> {
        let (m, h) = (now.timestamp() / 60, now.timestamp() / 3600);
        let c = self.0.entry(requester.to_owned()).or_default();
        c.minute.roll(m);
        c.hour.roll(h);
        if c.minute.total() >= u64::from(limit.per_minute) {
            return Err(format!("requester {requester:?} is over its limit of {} tasks per minute", limit.per_minute));
        }
        if c.hour.total() >= u64::from(limit.per_hour) {
            return Err(format!("requester {requester:?} is over its limit of {} tasks per hour", limit.per_hour));
        }
        c.minute.local += 1;
        c.hour.local += 1;
        Ok(())
    }

    /// Forgets requesters that cannot matter any more: nothing unsynced, and
    /// not seen in the current hour (their windows would roll over anyway).
    /// Without this the map — and every sync — grew with every name ever seen.
    fn prune(&mut self, now: DateTime<Utc>) {
        let hour = now.timestamp() / 3600;
        self.0.retain(|_, c| c.hour.id == hour || c.minute.local > 0 || c.hour.local > 0);
    }
}

/// The limiter of one intake instance.
#[derive(Clone)]
pub struct RateLimiter {
    kv: kv::Store,
    /// Shared by the handlers and the sync task.
    counts: Arc<Mutex<Ledger>>,
}

impl RateLimiter {
    pub async fn open(js: &jetstream::Context) -> Result<RateLimiter, async_nats::Error> {
        Ok(RateLimiter { kv: js.get_key_value(RATE_BUCKET).await?, counts: Arc::default() })
    }

    /// Counts one task for `requester` if both windows have room; otherwise
    /// says which limit it is over. No I/O.
    pub fn admit(&self, requester: &str, limit: Limit, now: DateTime<Utc>) -> Result<(), String> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).admit(requester, limit, now)
    }

    /// Forgets requesters whose windows are over (see `Ledger::prune`).
    pub fn prune(&self, now: DateTime<Utc>) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).prune(now);
    }

    /// Requesters tracked now.
    pub fn tracked(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Folds local counts into the shared counters and reads the others' back,
    /// for the requesters active this minute (the rest are not being admitted).
    pub async fn sync(&self) {
        let now = Utc::now();
        self.prune(now);
        let minute = now.timestamp() / 60;
        let snapshot: Vec<(String, Window, Window)> = {
            let all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
            all.0
                .iter()
                .filter(|(_, c)| c.minute.id == minute || c.minute.local > 0 || c.hour.local > 0)
                .map(|(r, c)| (r.clone(), c.minute, c.hour))
                .collect()
        };
        for (requester, minute, hour) in snapshot {
            let who: String = requester.bytes().map(|b| format!("{b:02x}")).collect();
            for (kind, w) in [("m", minute), ("h", hour)] {
                let key = format!("{who}.{kind}.{}", w.id);
                match self.add(&key, w.local).await {
                    Ok(shared) => {
                        let mut all = self.counts.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(c) = all.0.get_mut(&requester) {
                            let win = if kind == "m" { &mut c.minute } else { &mut c.hour };
                            if win.id == w.id {
                                // What was added is now part of `shared`.
                                win.local = win.local.saturating_sub(w.local);
                                win.shared = shared;
                            }
                        }
                    }
                    Err(e) => warn!(service = "intake", error = %e, "rate-limit sync failed; retrying next period"),
                }
            }
        }
    }

    /// Adds `n` to the shared counter `key`; returns its new value.
    async fn add(&self, key: &str, n: u64) -> Result<u64, async_nats::Error> {
        loop {
            let entry = self.kv.entry(key).await?;
            let current = entry.as_ref().filter(|e| e.operation == kv::Operation::Put);
            let value = current.and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<u64>().ok()).unwrap_or(0);
            if n == 0 {
                return Ok(value);
            }
            let next = (value + n).to_string();
            let done = match current {
                None => self.kv.create(key, next.into()).await.is_ok(),
                Some(e) => self.kv.update(key, next.into(), e.revision).await.is_ok(),
            };
            if done {
                return Ok(value + n);
            }
        }
    }

    /// Syncs every [`SYNC_EVERY`] until `shutdown`, and once more at the end.
    pub async fn run_sync(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(SYNC_EVERY);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = tick.tick() => self.sync().await,
            }
        }
        self.sync().await;
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn limits_hold_and_ten_thousand_requesters_are_forgotten_after_their_window() {
        let mut ledger = Ledger::default();
        let t = Utc.timestamp_opt(1_800_000_000, 0).single().unwrap_or_default();
        let limit = Limit { per_minute: 2, per_hour: 100 };
        assert!(ledger.admit("a", limit, t).is_ok() && ledger.admit("a", limit, t).is_ok());
        assert!(ledger.admit("a", limit, t).is_err_and(|e| e.contains("per minute")));
        for i in 0..10_000 {
            assert!(ledger.admit(&format!("requester-{i}"), limit, t).is_ok());
        }
        // Synced (as the sync task does), they still count within the hour...
        for c in ledger.0.values_mut() {
            c.minute.local = 0;
            c.hour.local = 0;
        }
        ledger.prune(t + chrono::Duration::minutes(5));
        assert_eq!(ledger.0.len(), 10_001);
        // ...and are forgotten once it is over.
        ledger.prune(t + chrono::Duration::hours(2));
        assert_eq!(ledger.0.len(), 0);
    }
}
