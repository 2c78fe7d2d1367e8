//! The evaluation loop: look ([`crate::observe`]), judge
//! ([`crate::findings`], [`crate::alerts::decide`]), record each transition in
//! the log, and tell the sinks. An event the log cannot take now (NATS down)
//! is kept, in order, and recorded when it can, with its original time; the
//! sinks are told at once, since "NATS is unreachable" is exactly what people
//! must hear. Each sink has one worker: notices reach it in the order decided.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use skynet_contract::Envelope;
use skynet_contract::alert::{self, AlertUndelivered, Severity};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::alerts::{self, Event, State, Transition};
use crate::config::Config;
use crate::observe::{self, DeadLetters, Eyes, Heartbeats};
use crate::service::{DURABLE, Deps, SERVICE, SOURCE};
use crate::sinks::{self, Notice, Sink};

/// Bound of a database read inside the loop (the loop must keep looking).
const DB_TIMEOUT: Duration = Duration::from_secs(3);
/// Alert events kept while the log cannot take them (the oldest go first beyond it).
const MAX_UNRECORDED: usize = 10_000;
/// Notices waiting per sink (beyond it: recorded as undelivered).
const SINK_QUEUE: usize = 1_000;

/// Evaluates every `config.interval` until `stop`.
pub async fn run(deps: Deps, config: Arc<Config>, beats: Heartbeats, stop: CancellationToken) {
    let sinks = workers(&deps, &config, &stop);
    let (mut dead_letters, mut unrecorded) = (DeadLetters::default(), VecDeque::<(String, Envelope)>::new());
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // One sentinel evaluates at a time: the holder of a Postgres advisory lock
    // (a second one stands by, silent, and takes over when the lock is free).
    let Some(lock) = leadership(&deps, &stop).await else { return };
    let mut lock = Some(lock);
    let Some(mut state) = resume(&deps, &stop).await else { return };
    // Only the evaluating sentinel answers status requests (a standby has no look).
    let (latest, looks) = tokio::sync::watch::channel(None);
    let mut answering = answer_status(&deps, looks.clone(), &stop).await;
    loop {
        tokio::select! { () = stop.cancelled() => return, _ = tick.tick() => {} }
        if !holds(&mut lock).await {
            match try_lock(&deps).await {
                Ok(Some(l)) => lock = Some(l),
                // Another sentinel took over: stand by, then resume from the tables.
                Ok(None) => {
                    warn!(service = SERVICE, "another sentinel holds the evaluation lock; standing by");
                    answering.cancel();
                    let Some(l) = leadership(&deps, &stop).await else { return };
                    answering = answer_status(&deps, looks.clone(), &stop).await;
                    lock = Some(l);
                    let Some(s) = resume(&deps, &stop).await else { return };
                    state = s;
                }
                // Postgres is unreachable: keep watching — that is what people must hear.
                Err(_) => lock = None,
            }
        }
        let span = info_span!("evaluate", service = SERVICE);
        async {
            record_pending(&deps, &mut unrecorded).await;
            let now = Utc::now();
            // Silences are set by the command and applied by the consumer.
            if let Ok(Ok(s)) = tokio::time::timeout(DB_TIMEOUT, crate::store::active_silences(&deps.db, now)).await {
                state.silences = s;
            }
            let eyes = Eyes { js: &deps.js, db: &deps.db, beats: &beats, dead_letters: &mut dead_letters };
            let facts = observe::observe(eyes, &config, now).await;
            let (findings, observed) = crate::findings::findings(&facts, &config, now);
            for t in alerts::decide(&state, &findings, &observed, now, config.cooldown) {
                let severity = match &t {
                    Transition::Raise(r) => r.severity,
                    Transition::Resolve(r) => state.firing.get(&r.fingerprint).map_or(Severity::Info, |f| f.severity),
                };
                let (env, subject, event, notified) = match transition_event(&t, now) {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(service = SERVICE, error = %e, "alert event not encodable");
                        continue;
                    }
                };
                info!(service = SERVICE, event_id = %env.id, %subject, notified, "alert");
                if notified {
                    notify(&sinks, &env, severity);
                }
                // Behind what waits, never before it: the log keeps the order.
                unrecorded.push_back((subject, env));
                if unrecorded.len() > MAX_UNRECORDED
                    && let Some((s, e)) = unrecorded.pop_front()
                {
                    error!(service = SERVICE, subject = %s, event_id = %e.id, "alert event dropped: the log has been unreachable too long");
                }
                alerts::evolve(&mut state, event, now);
            }
            record_pending(&deps, &mut unrecorded).await;
            crate::metrics::gauges(&facts, &state, &config, now);
            latest.send_replace(Some(crate::status::snapshot(&facts, &state, &config, now)));
        }
        .instrument(span)
        .await;
    }
}

/// The advisory lock only one evaluating sentinel holds.
const EVALUATOR_LOCK: i64 = 0x534b_594e_5345_4e54;

/// Answers `skynet.sentinel.status` with the latest look until the returned
/// token (a child of `stop`) is cancelled.
async fn answer_status(
    deps: &Deps,
    looks: tokio::sync::watch::Receiver<Option<skynet_contract::alert::SystemStatus>>,
    stop: &CancellationToken,
) -> CancellationToken {
    let token = stop.child_token();
    match deps.nats.queue_subscribe(alert::STATUS, "skynet-sentinel".into()).await {
        Ok(sub) => {
            tokio::spawn(crate::status::serve(sub, deps.nats.clone(), looks, token.clone()));
        }
        Err(e) => warn!(service = SERVICE, error = %e, "cannot answer status requests"),
    }
    token
}

/// Whether the evaluation lock's connection is still there (the lock with it).
async fn holds(lock: &mut Option<sqlx::PgConnection>) -> bool {
    let Some(conn) = lock.as_mut() else { return false };
    matches!(tokio::time::timeout(DB_TIMEOUT, sqlx::query("SELECT 1").execute(conn)).await, Ok(Ok(_)))
}

/// The evaluation lock on a connection of its own, out of the pool (the lock
/// lives as long as the connection: closed, never returned to the pool with
/// it held); `None` while another sentinel holds it.
async fn try_lock(deps: &Deps) -> Result<Option<sqlx::PgConnection>, sqlx::Error> {
    let mut conn =
        tokio::time::timeout(DB_TIMEOUT, deps.db.acquire()).await.map_err(|_| sqlx::Error::PoolTimedOut)??.detach();
    let got: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(EVALUATOR_LOCK).fetch_one(&mut conn).await?;
    Ok(got.then_some(conn))
}

/// Waits for the evaluation lock (standing by while another sentinel holds it).
async fn leadership(deps: &Deps, stop: &CancellationToken) -> Option<sqlx::PgConnection> {
    let mut said = false;
    loop {
        match try_lock(deps).await {
            Ok(Some(conn)) => return Some(conn),
            Ok(None) if !said => {
                info!(service = SERVICE, "another sentinel evaluates; standing by");
                said = true;
            }
            _ => {}
        }
        tokio::select! { () = stop.cancelled() => return None, () = tokio::time::sleep(Duration::from_secs(1)) => {} }
    }
}

/// The state the tables hold, once the consumer has applied what the log has
/// (so a restart neither re-raises nor forgets); waits out a Postgres outage.
async fn resume(deps: &Deps, stop: &CancellationToken) -> Option<State> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut delay = Duration::from_millis(100);
    loop {
        let caught_up = async {
            let c: async_nats::jetstream::consumer::PullConsumer =
                deps.js.get_consumer_from_stream(DURABLE, skynet_bus::definitions::EVENTS_STREAM).await.ok()?;
            let i = c.cached_info();
            Some(i.num_pending == 0 && i.num_ack_pending == 0)
        };
        if caught_up.await == Some(true) || tokio::time::Instant::now() > deadline {
            match tokio::time::timeout(DB_TIMEOUT, crate::store::load_state(&deps.db, Utc::now())).await {
                Ok(Ok(s)) => return Some(s),
                Ok(Err(e)) => warn!(service = SERVICE, error = %e, "cannot read the alert tables yet"),
                Err(_) => warn!(service = SERVICE, "the alert tables did not answer in time"),
            }
        }
        tokio::select! { () = stop.cancelled() => return None, () = tokio::time::sleep(delay) => {} }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The event of a transition: (envelope, subject, for evolve, whether to notify).
fn transition_event(t: &Transition, now: DateTime<Utc>) -> Result<(Envelope, String, Event, bool), String> {
    let id = uuid::Uuid::new_v4().to_string();
    let (ty, fp, verb, notified) = match t {
        Transition::Raise(r) => (alert::RAISED, &r.fingerprint, "raised", r.notified),
        Transition::Resolve(r) => (alert::RESOLVED, &r.fingerprint, "resolved", r.notified),
    };
    let env = match t {
        Transition::Raise(r) => Envelope::new(ty, id, SOURCE, Some(fp.clone()), now, r),
        Transition::Resolve(r) => Envelope::new(ty, id, SOURCE, Some(fp.clone()), now, r),
    }
    .map_err(|e| e.to_string())?;
    let event = match t {
        Transition::Raise(r) => Event::Raised(r.clone()),
        Transition::Resolve(r) => Event::Resolved(r.clone()),
    };
    Ok((env, alert::subject(fp, verb), event, notified))
}

/// Publishes what waits for the log, in order, stopping at the first it
/// cannot take (the event id de-duplicates a publish that did land).
async fn record_pending(deps: &Deps, pending: &mut VecDeque<(String, Envelope)>) {
    while let Some((subject, env)) = pending.front() {
        if let Err(e) = skynet_bus::publish(&deps.js, subject, env).await {
            warn!(service = SERVICE, error = %e, waiting = pending.len(), "alert events kept until the log takes them");
            return;
        }
        pending.pop_front();
    }
}

/// One queue and one worker per sink.
fn workers(deps: &Deps, config: &Arc<Config>, stop: &CancellationToken) -> Vec<(Sink, mpsc::Sender<Notice>)> {
    config
        .sinks
        .iter()
        .map(|sink| {
            let (tx, rx) = mpsc::channel(SINK_QUEUE);
            tokio::spawn(deliver_in_order(deps.clone(), config.clone(), sink.clone(), rx, stop.clone()));
            (sink.clone(), tx)
        })
        .collect()
}

/// Hands `env` to every sink that wants its severity.
fn notify(sinks: &[(Sink, mpsc::Sender<Notice>)], env: &Envelope, severity: Severity) {
    let text = env.data["summary"].as_str().unwrap_or_default();
    let resolved = env.ty == alert::RESOLVED;
    let label = if resolved { "RESOLVED".to_owned() } else { severity.as_str().to_uppercase() };
    let notice = Notice {
        id: env.id.clone(),
        ty: if resolved { "alert.resolved" } else { "alert.raised" }.to_owned(),
        timestamp: env.time,
        data: env.data.clone(),
        severity,
        text: format!("[{label}] {text}"),
    };
    for (sink, tx) in sinks.iter().filter(|(s, _)| severity >= s.min_severity) {
        if tx.try_send(notice.clone()).is_err() {
            error!(service = SERVICE, sink = %sink.name, event_id = %env.id, "sink queue full; notice dropped");
        }
    }
}

/// Delivers a sink's notices one after another; what fails for good is
/// recorded as an `undelivered` event.
async fn deliver_in_order(
    deps: Deps,
    config: Arc<Config>,
    sink: Sink,
    mut rx: mpsc::Receiver<Notice>,
    stop: CancellationToken,
) {
    loop {
        let notice = tokio::select! { () = stop.cancelled() => return, n = rx.recv() => n };
        let Some(notice) = notice else { return };
        let sent = sinks::deliver(&deps.http, &sink, &notice, config.delivery_attempts, config.delivery_backoff);
        let outcome = tokio::select! { () = stop.cancelled() => return, r = sent => r };
        let Err(failed) = outcome else { continue };
        warn!(service = SERVICE, sink = %sink.name, attempts = failed.attempts, error = %failed.error, "alert undelivered");
        let fp = notice.data["fingerprint"].as_str().unwrap_or_default().to_owned();
        let data = AlertUndelivered {
            fingerprint: fp.clone(),
            sink: sink.name.clone(),
            event: notice.ty.trim_start_matches("alert.").to_owned(),
            attempts: failed.attempts,
            error: failed.error,
        };
        let id = uuid::Uuid::new_v4().to_string();
        if let Ok(env) = Envelope::new(alert::UNDELIVERED, id, SOURCE, Some(fp.clone()), Utc::now(), &data)
            && let Err(e) = skynet_bus::publish(&deps.js, &alert::subject(&fp, "undelivered"), &env).await
        {
            warn!(service = SERVICE, error = %e, "undelivered alert not recorded");
        }
    }
}
