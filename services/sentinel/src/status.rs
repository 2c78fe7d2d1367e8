//! `skynet.sentinel.status`: the sentinel's latest look at the whole system,
//! for `skynet status` and the API's health (clients may ask; it says nothing
//! the log does not).

use chrono::{DateTime, Utc};
use futures::StreamExt;
use skynet_contract::alert::SystemStatus;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::alerts::State;
use crate::config::Config;
use crate::findings::Facts;
use crate::service::SERVICE;

/// The status of one look.
pub fn snapshot(facts: &Facts, state: &State, config: &Config, now: DateTime<Utc>) -> SystemStatus {
    let fresh: Vec<_> =
        facts.executors.iter().filter(|e| !e.goodbye && now - e.last_seen < config.heartbeat_expiry).collect();
    let known = facts.executors_known;
    let mut alerts: Vec<_> = state.firing.values().cloned().collect();
    alerts.sort_by(|a, b| {
        b.severity.cmp(&a.severity).then_with(|| a.kind.cmp(&b.kind)).then_with(|| a.subject.cmp(&b.subject))
    });
    // A reply fits in one NATS message whatever fires.
    alerts.truncate(200);
    SystemStatus {
        at: now,
        dependencies: facts.dependencies.iter().cloned().collect(),
        executors_up: known.then_some(fresh.len() as u64),
        slots_free: known
            .then(|| fresh.iter().map(|e| u64::from(e.status.capacity.saturating_sub(e.status.running))).sum()),
        consumers: facts.consumers.as_ref().map(|c| c.iter().cloned().collect()),
        projector_lag: facts.projector_lag,
        jobs_not_starting: facts.jobs.as_ref().map(|j| j.not_starting),
        approvals_waiting: facts.jobs.as_ref().map(|j| j.awaiting_total),
        dead_letters_recent: facts.dead_letters.as_ref().map(|d| d.len() as u64),
        alerts,
    }
}

/// Answers status requests with the latest look until `stop`.
pub async fn serve(
    sub: async_nats::Subscriber,
    nats: async_nats::Client,
    latest: watch::Receiver<Option<SystemStatus>>,
    stop: CancellationToken,
) {
    let mut sub = std::pin::pin!(sub.take_until(stop.cancelled_owned()));
    while let Some(msg) = sub.next().await {
        let Some(reply_to) = msg.reply else { continue };
        // Before the first look: an empty answer says the sentinel is starting.
        let body = serde_json::to_vec(&*latest.borrow()).unwrap_or_default();
        if let Err(e) = nats.publish(reply_to, body.into()).await {
            warn!(service = SERVICE, error = %e, "status reply failed");
        }
    }
}
