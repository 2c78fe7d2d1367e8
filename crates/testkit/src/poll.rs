//! Waiting for a condition without sleeping blindly.

use std::future::Future;
use std::time::Duration;

/// Polls `check` every 20 ms until it returns `Some`, or fails after `within`
/// with `what` in the message. Use it wherever a test waits for an effect.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_every(Duration::from_millis(20), within, what, check).await
}

/// [`eventually`] with a check that costs enough (reading a whole stream, say)
/// that polling it every 20 ms would load the system under test: every `every`.
pub async fn eventually_every<T, F, Fut>(
    every: Duration,
    within: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {within:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}
