//! Per-requester task rate limits, shared by every intake instance through the
//! `SKYNET_RATE` KV bucket: one counter per requester per minute and per hour,
//! incremented with compare-and-set so concurrent intakes never lose a count.
//! Limits come from the policy rules file (`[rate_limits]`).

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use skynet_bus::definitions::RATE_BUCKET;
use skynet_rules::policy::Limit;

/// Attempts at a compare-and-set increment before giving up (contention).
const CAS_ATTEMPTS: usize = 16;

/// The shared limiter.
#[derive(Clone)]
pub struct RateLimiter {
    kv: kv::Store,
}

/// Why the limiter could not answer.
#[derive(Debug, thiserror::Error)]
#[error("rate-limit store: {0}")]
pub struct LimiterError(String);

impl RateLimiter {
    pub async fn open(js: &jetstream::Context) -> Result<RateLimiter, async_nats::Error> {
        Ok(RateLimiter { kv: js.get_key_value(RATE_BUCKET).await? })
    }

    /// Counts one task for `requester` if both windows have room; otherwise
    /// says which limit it is over.
    pub async fn admit(
        &self,
        requester: &str,
        limit: Limit,
        now: DateTime<Utc>,
    ) -> Result<Result<(), String>, LimiterError> {
        let who: String = requester.bytes().map(|b| format!("{b:02x}")).collect();
        let minute = format!("{who}.m.{}", now.timestamp() / 60);
        let hour = format!("{who}.h.{}", now.timestamp() / 3600);
        let (in_minute, in_hour) = (self.count(&minute).await?, self.count(&hour).await?);
        if in_minute >= u64::from(limit.per_minute) {
            return Ok(Err(format!(
                "requester {requester:?} is over its limit of {} tasks per minute",
                limit.per_minute
            )));
        }
        if in_hour >= u64::from(limit.per_hour) {
            return Ok(Err(format!("requester {requester:?} is over its limit of {} tasks per hour", limit.per_hour)));
        }
        self.increment(&minute).await?;
        self.increment(&hour).await?;
        Ok(Ok(()))
    }

    async fn count(&self, key: &str) -> Result<u64, LimiterError> {
        let entry = self.kv.entry(key).await.map_err(|e| LimiterError(e.to_string()))?;
        Ok(entry.and_then(|e| std::str::from_utf8(&e.value).ok()?.parse().ok()).unwrap_or(0))
    }

    async fn increment(&self, key: &str) -> Result<(), LimiterError> {
        for _ in 0..CAS_ATTEMPTS {
            let entry = self.kv.entry(key).await.map_err(|e| LimiterError(e.to_string()))?;
            let done = match entry.filter(|e| e.operation == kv::Operation::Put) {
                None => self.kv.create(key, "1".into()).await.is_ok(),
                Some(e) => {
                    let n: u64 = std::str::from_utf8(&e.value).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                    self.kv.update(key, (n + 1).to_string().into(), e.revision).await.is_ok()
                }
            };
            if done {
                return Ok(());
            }
        }
        Err(LimiterError(format!("could not increment {key}: too much contention")))
    }
}
