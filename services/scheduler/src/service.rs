//! The scheduler process: the `dispatched` consumer, the diagnose responder and
//! the signal followers.

use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream::{self, Message};
use chrono::Utc;
use futures::StreamExt;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition, Received};
use skynet_bus::deadlines::Deadlines;
use skynet_bus::definitions::{EVENTS_STREAM, EXECUTORS_BUCKET, WATCHDOG_BUCKET};
use skynet_bus::{Jobs, Outcome};
use skynet_contract::executor::{DIAGNOSE_SUBJECT, DiagnoseRequest, Diagnosis};
use skynet_contract::job::{Scheduled, Stage};
use skynet_job::{Command, Status, decide};
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::scoring::{required, score, select};
use crate::signals::{self, Signals};

const SERVICE: &str = "scheduler";

/// What the scheduler needs.
#[derive(Clone)]
pub struct Deps {
    pub js: jetstream::Context,
    pub nats: async_nats::Client,
    pub jobs: Jobs,
}

/// What handling a `dispatched` event needs.
#[derive(Clone)]
pub struct Ctx {
    pub deps: Deps,
    pub signals: Signals,
    pub config: Arc<Config>,
    pub watchdog: Deadlines,
}

/// Runs the scheduler until `shutdown` resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), async_nats::Error> {
    let (stop, ended) = consumer::service_stop(shutdown);
    let signals = Signals::default();
    let kv = deps.js.get_key_value(EXECUTORS_BUCKET).await?;
    let watch = signals::watch_executors(kv, signals.clone(), stop.clone());
    let outcomes = signals::follow_outcomes(
        deps.js.clone(),
        signals.clone(),
        chrono::Duration::hours(config.stats_window_hours),
        stop.clone(),
    );
    let config = Arc::new(config);
    let watchdog = Deadlines::open(&deps.js, WATCHDOG_BUCKET).await?;
    let sweep = crate::watchdog::run(watchdog.clone(), deps.jobs.clone(), config.clone(), stop.clone());
    let diagnose = serve_diagnose(deps.nats.clone(), signals.clone(), config.clone(), stop.clone());
    let spec = ConsumerSpec::new(EVENTS_STREAM, "scheduler", SERVICE, config.concurrency)
        .failing_jobs(deps.jobs.clone(), skynet_contract::job::Stage::Scheduling);
    info!(service = SERVICE, weights = ?config.weights, "scheduler running");
    // Shared by every message's handling, not cloned for each.
    let ctx =
        std::sync::Arc::new(Ctx { deps: deps.clone(), signals: signals.clone(), config: config.clone(), watchdog });
    let consume = consumer::run(
        deps.js.clone(),
        spec,
        move |msg| {
            let ctx = ctx.clone();
            async move { handle(&ctx, msg).await }
        },
        stop,
    );
    let (consumed, (), followed, served, ()) =
        tokio::join!(consumer::ending(consume, &ended), watch, outcomes, diagnose, sweep);
    consumed.and(followed).and(served)
}

/// Schedules the job of one `dispatched` event.
pub async fn handle(ctx: &Ctx, msg: Message) -> Disposition {
    let (deps, signals, config) = (&ctx.deps, &ctx.signals, &*ctx.config);
    let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
    let Received { env, job, seq: at, .. } = match consumer::receive(&msg, None) {
        Ok(r) => r,
        Err(d) => return d,
    };
    let span = info_span!("schedule", service = SERVICE, job_id = %job, event_id = %env.id);
    async {
        let (state, seq) = match deps.jobs.load_at(job, at).await {
            Ok(l) => l,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let Some(spec) = state.as_ref().filter(|j| j.status == Status::Dispatched).and_then(|j| j.spec.clone()) else {
            return Disposition::Ack;
        };
        let now = Utc::now();
        if signals.online(now) == 0 && delivered < config.no_executor_attempts {
            // Executors may still be starting: wait (with backoff) before failing.
            return Disposition::Retry("no executor online yet".into());
        }
        let scores = score(&spec, &signals.views(now), &config.weights);
        let command = match select(&scores, &required(&spec)) {
            Ok(provider) => {
                // The watchdog's deadline first: if we crash after appending,
                // it is already there.
                let at = crate::watchdog::deadline(config, now, spec.total_timeout_secs);
                if let Err(e) = ctx.watchdog.set(job, at).await {
                    return Disposition::Retry(format!("storing the watchdog deadline: {e}"));
                }
                info!(%provider, "scheduled");
                Command::Schedule(Scheduled { provider, scores })
            }
            Err(reason) => {
                warn!(%reason, "cannot schedule");
                Command::Fail { stage: Stage::Scheduling, reason, step: None }
            }
        };
        match deps.jobs.execute_from(job, Some((state, seq)), &env.id, Utc::now(), |s| decide(s, command.clone())).await
        {
            Ok(Outcome::Appended { .. } | Outcome::Rejected(_)) => Disposition::Ack,
            Err(e) => Disposition::Retry(e.to_string()),
        }
    }
    .instrument(span)
    .await
}

/// Answers diagnose requests with the breakdown, scheduling nothing.
async fn serve_diagnose(
    nats: async_nats::Client,
    signals: Signals,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), async_nats::Error> {
    let mut sub =
        std::pin::pin!(nats.queue_subscribe(DIAGNOSE_SUBJECT, "skynet-scheduler".into()).await?.take_until(shutdown));
    while let Some(msg) = sub.next().await {
        let diagnosis = match serde_json::from_slice::<DiagnoseRequest>(&msg.payload) {
            Ok(req) => {
                let scores = score(&req.spec, &signals.views(Utc::now()), &config.weights);
                let need = required(&req.spec);
                let (selected, reason) = match select(&scores, &need) {
                    Ok(p) => (Some(p), None),
                    Err(r) => (None, Some(r)),
                };
                Diagnosis { selected_provider: selected, required_capabilities: need, scores, reason }
            }
            Err(e) => Diagnosis {
                selected_provider: None,
                required_capabilities: vec![],
                scores: vec![],
                reason: Some(format!("bad request: {e}")),
            },
        };
        if let (Some(reply), Ok(body)) = (msg.reply, serde_json::to_vec(&diagnosis))
            && let Err(e) = nats.publish(reply, body.into()).await
        {
            warn!(service = SERVICE, error = %e, "diagnose reply failed");
        }
    }
    Ok(())
}
