//! The evaluation loop: look ([`crate::observe`]), judge
//! ([`crate::findings`], [`crate::alerts::decide`]), record each transition in
//! the log, and tell the sinks. An event the log cannot take now (NATS down)
//! is kept and recorded when it can, with its original time; the sinks are
//! told at once, since "NATS is unreachable" is exactly what people must hear.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use skynet_contract::Envelope;
use skynet_contract::alert::{self, AlertUndelivered, Severity};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::alerts::{self, Event, State, Transition};
use crate::config::Config;
use crate::observe::{self, DeadLetters, Eyes, Heartbeats};
use crate::service::{DURABLE, Deps, SERVICE, SOURCE};
use crate::sinks::{self, Notice};

/// Evaluates every `config.interval` until `stop`.
pub async fn run(deps: Deps, config: Arc<Config>, beats: Heartbeats, stop: CancellationToken) {
    let Some(mut state) = resume(&deps, &stop).await else { return };
    let (mut dead_letters, mut unrecorded) = (DeadLetters::default(), Vec::<(String, Envelope)>::new());
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! { () = stop.cancelled() => return, _ = tick.tick() => {} }
        let span = info_span!("evaluate", service = SERVICE);
        async {
            unrecorded = record_pending(&deps, std::mem::take(&mut unrecorded)).await;
            let now = Utc::now();
            if let Ok(s) = crate::store::load_state(&deps.db, now).await {
                state.silences = s.silences; // set by the command, applied by the consumer
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
                if let Err(e) = skynet_bus::publish(&deps.js, &subject, &env).await {
                    warn!(service = SERVICE, error = %e, "alert kept until the log takes it");
                    unrecorded.push((subject, env.clone()));
                }
                if notified {
                    notify(&deps, &config, &env, severity, &stop);
                }
                alerts::evolve(&mut state, event, now);
            }
            crate::metrics::gauges(&facts, &state, &config, now);
        }
        .instrument(span)
        .await;
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
            match crate::store::load_state(&deps.db, Utc::now()).await {
                Ok(s) => return Some(s),
                Err(e) => warn!(service = SERVICE, error = %e, "cannot read the alert tables yet"),
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

/// Publishes what the log could not take before; what it still cannot take.
async fn record_pending(deps: &Deps, pending: Vec<(String, Envelope)>) -> Vec<(String, Envelope)> {
    let mut left = Vec::new();
    for (subject, env) in pending {
        if !left.is_empty() || skynet_bus::publish(&deps.js, &subject, &env).await.is_err() {
            left.push((subject, env)); // in order: nothing overtakes what waits
        }
    }
    left
}

/// Sends `env` to every sink that wants its severity, in the background; a
/// delivery that fails for good is recorded as an `undelivered` event.
fn notify(deps: &Deps, config: &Arc<Config>, env: &Envelope, severity: Severity, stop: &CancellationToken) {
    let text = env.data["summary"].as_str().unwrap_or_default();
    let (label, verb) =
        if env.ty == alert::RESOLVED { ("RESOLVED", "resolved") } else { (severity.as_str(), "raised") };
    let notice = Notice {
        id: env.id.clone(),
        ty: format!("alert.{verb}"),
        timestamp: env.time,
        data: env.data.clone(),
        severity,
        text: format!("[{}] {text}", label.to_uppercase()),
    };
    let fingerprint = env.subject.clone().unwrap_or_default();
    for sink in config.sinks.iter().filter(|s| severity >= s.min_severity).cloned() {
        let (deps, config, notice, fp, stop) =
            (deps.clone(), config.clone(), notice.clone(), fingerprint.clone(), stop.clone());
        tokio::spawn(async move {
            let sent = sinks::deliver(&deps.http, &sink, &notice, config.delivery_attempts, config.delivery_backoff);
            let outcome = tokio::select! { () = stop.cancelled() => return, r = sent => r };
            let Err(failed) = outcome else { return };
            warn!(service = SERVICE, sink = %sink.name, attempts = failed.attempts, error = %failed.error, "alert undelivered");
            let data = AlertUndelivered {
                fingerprint: fp.clone(),
                sink: sink.name.clone(),
                event: verb.to_owned(),
                attempts: failed.attempts,
                error: failed.error,
            };
            let id = uuid::Uuid::new_v4().to_string();
            if let Ok(env) = Envelope::new(alert::UNDELIVERED, id, SOURCE, Some(fp.clone()), Utc::now(), &data)
                && let Err(e) = skynet_bus::publish(&deps.js, &alert::subject(&fp, "undelivered"), &env).await
            {
                warn!(service = SERVICE, error = %e, "undelivered alert not recorded");
            }
        });
    }
}
