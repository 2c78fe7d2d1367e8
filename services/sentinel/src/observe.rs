//! What the sentinel looks at, gathered into [`Facts`]: the executors'
//! heartbeats (followed continuously), the jobs read model, every durable
//! consumer's backlog, new dead letters, and its own dependencies. It reads
//! only; it never calls another service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use skynet_bus::definitions::{self, ARTIFACTS_BUCKET, DLQ_STREAM, EVENTS_STREAM, EXECUTORS_BUCKET, OUTPUT_BUCKET};
use skynet_contract::executor::ExecutorStatus;
use sqlx::PgPool;
use tracing::{debug, warn};

use crate::config::Config;
use crate::findings::{DeadLetterSeen, ExecutorSeen, Facts};
use crate::service::SERVICE;

/// Each check's bound: a dependency that does not answer in time is down.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The executors as their heartbeats show them, kept current by [`follow_heartbeats`].
#[derive(Clone, Default)]
pub struct Heartbeats {
    inner: Arc<Mutex<(bool, HashMap<String, ExecutorSeen>)>>,
}

impl Heartbeats {
    fn set_live(&self, live: bool) {
        if let Ok(mut g) = self.inner.lock() {
            g.0 = live;
        }
    }

    fn seen(&self, key: &str, status: Option<ExecutorStatus>, now: DateTime<Utc>) {
        let Ok(mut g) = self.inner.lock() else { return };
        match status {
            Some(status) => {
                g.1.insert(key.to_owned(), ExecutorSeen { status, last_seen: now, goodbye: false });
            }
            None => {
                if let Some(e) = g.1.get_mut(key) {
                    e.goodbye = true;
                }
            }
        }
    }

    /// (whether the picture is live, the executors), forgetting those lost past `forget`.
    pub fn snapshot(&self, now: DateTime<Utc>, forget: chrono::Duration) -> (bool, Vec<ExecutorSeen>) {
        let Ok(mut g) = self.inner.lock() else { return (false, vec![]) };
        g.1.retain(|_, e| !e.goodbye && now - e.last_seen < forget);
        (g.0, g.1.values().cloned().collect())
    }
}

/// Follows the heartbeat bucket until `stop`, re-watching after errors.
pub async fn follow_heartbeats(js: jetstream::Context, beats: Heartbeats, stop: tokio_util::sync::CancellationToken) {
    let mut delay = Duration::from_millis(200);
    while !stop.is_cancelled() {
        let watch = match js.get_key_value(EXECUTORS_BUCKET).await {
            Ok(store) => match store.status().await {
                Ok(status) => {
                    store.watch_with_history(">").await.map(|w| (w, status.values())).map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        let (mut watch, stored) = match watch {
            Ok(w) => w,
            Err(e) => {
                debug!(service = SERVICE, error = %e, "cannot watch heartbeats yet");
                tokio::select! { () = stop.cancelled() => return, () = tokio::time::sleep(delay) => {} }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        // Live once the history is in (at once when there is none): before
        // that, "no executor" would be a false critical alert.
        beats.set_live(stored == 0);
        delay = Duration::from_millis(200);
        loop {
            let entry = tokio::select! { () = stop.cancelled() => return, e = watch.next() => e };
            let Some(Ok(e)) = entry else { break };
            // The server's time of the heartbeat, not the executor's clock
            // nor when the history reached us.
            let at = DateTime::from_timestamp(e.created.timestamp(), e.created.timestamp_subsec_nanos())
                .unwrap_or_else(Utc::now);
            if e.operation == kv::Operation::Put {
                match serde_json::from_slice(&e.value) {
                    Ok(status) => beats.seen(&e.key, Some(status), at),
                    Err(err) => warn!(service = SERVICE, key = %e.key, error = %err, "unreadable heartbeat"),
                }
            } else {
                beats.seen(&e.key, None, at);
            }
            if e.delta == 0 {
                beats.set_live(true);
            }
        }
        // The picture is stale until the watch is back.
        beats.set_live(false);
    }
}

/// Dead letters seen so far: the stream position and those within the window.
#[derive(Default)]
pub struct DeadLetters {
    next: Option<u64>,
    recent: Vec<DeadLetterSeen>,
}

/// Most dead letters read per look (a burst beyond it counts as this many).
const DEAD_LETTERS_PER_LOOK: u64 = 100;

impl DeadLetters {
    /// Reads what arrived since the last look; the dead letters within `window`.
    async fn look(
        &mut self,
        js: &jetstream::Context,
        window: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<Vec<DeadLetterSeen>, String> {
        let mut stream = js.get_stream(DLQ_STREAM).await.map_err(|e| e.to_string())?;
        let state = stream.info().await.map_err(|e| e.to_string())?.state.clone();
        // From the oldest that can still be in the window (after a restart too).
        let from = self.next.unwrap_or(state.first_sequence).max(state.first_sequence);
        let from = from.max(state.last_sequence.saturating_sub(DEAD_LETTERS_PER_LOOK - 1));
        for seq in from..=state.last_sequence {
            if seq == 0 {
                continue;
            }
            match stream.direct_get(seq).await {
                Ok(m) => {
                    let header = |k: &str| m.headers.get(k).map(|v| v.as_str().to_owned()).unwrap_or_default();
                    let at =
                        DateTime::from_timestamp(m.time.timestamp(), m.time.timestamp_subsec_nanos()).unwrap_or(now);
                    // The origin from the subject (`skynet.dlq.<service>`, which
                    // only that service may publish), not from a header.
                    let origin = m.subject.strip_prefix("skynet.dlq.").unwrap_or("unknown").to_owned();
                    self.recent.push(DeadLetterSeen {
                        origin,
                        code: header("Skynet-Dlq-Code"),
                        reason: header("Skynet-Dlq-Reason"),
                        at,
                    });
                }
                Err(e) => debug!(service = SERVICE, seq, error = %e, "dead letter unreadable"),
            }
        }
        self.next = Some(state.last_sequence + 1);
        self.recent.retain(|d| now - d.at < window);
        Ok(self.recent.clone())
    }
}

/// What the sentinel needs to look.
pub struct Eyes<'a> {
    pub js: &'a jetstream::Context,
    pub db: &'a PgPool,
    pub beats: &'a Heartbeats,
    pub dead_letters: &'a mut DeadLetters,
}

/// One look at everything.
pub async fn observe(eyes: Eyes<'_>, config: &Config, now: DateTime<Utc>) -> Facts {
    let Eyes { js, db, beats, dead_letters } = eyes;
    let mut facts = Facts::default();
    let (live, executors) = beats.snapshot(now, config.forget_lost_after);
    let nats = timed(js.get_stream(EVENTS_STREAM)).await;
    let last_seq = match &nats {
        Ok(s) => Some(s.cached_info().state.last_sequence),
        Err(_) => None,
    };
    facts.dependencies.push(("nats".into(), nats.as_ref().err().cloned()));
    let pg = timed(sqlx::query("SELECT 1").execute(db)).await;
    facts.dependencies.push(("postgres".into(), pg.as_ref().err().cloned()));
    if nats.is_ok() {
        for bucket in [ARTIFACTS_BUCKET, OUTPUT_BUCKET] {
            let store = timed(js.get_object_store(bucket)).await;
            facts.dependencies.push((format!("object store {bucket}"), store.err()));
        }
        facts.executors_known = live;
        facts.executors = executors;
        facts.consumers = backlogs(js).await;
        facts.dead_letters =
            tokio::time::timeout(CHECK_TIMEOUT * 2, dead_letters.look(js, config.dead_letter_window, now))
                .await
                .ok()
                .and_then(Result::ok);
    }
    if pg.is_ok() {
        facts.jobs =
            timed(crate::store::job_facts(db, now, config.start_limit, config.approval_reminder, config.stall_limit))
                .await
                .map_err(|e| warn!(service = SERVICE, error = %e, "jobs read model unreadable"))
                .ok();
        if let Some(seq) = last_seq {
            facts.projector_lag = timed(crate::store::projector_lag(db, seq)).await.ok();
        }
    }
    facts
}

/// Pending messages per durable consumer, or none if any cannot be asked.
async fn backlogs(js: &jetstream::Context) -> Option<Vec<(String, u64)>> {
    let consumers = definitions::consumers().ok()?;
    let mut out = Vec::new();
    for (stream, config) in consumers {
        let durable = config.durable_name.clone()?;
        let pending = timed(async {
            let c: jetstream::consumer::PullConsumer = js.get_consumer_from_stream(&durable, stream).await?;
            Ok::<_, async_nats::Error>(c.cached_info().num_pending)
        })
        .await
        .map_err(|e| debug!(service = SERVICE, durable, error = %e, "consumer info"))
        .ok()?;
        out.push((durable, pending));
    }
    Some(out)
}

/// `f` within [`CHECK_TIMEOUT`], its error as text.
async fn timed<T, E: std::fmt::Display>(f: impl std::future::Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
    }
}
