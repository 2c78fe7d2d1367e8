//! The dispatcher's consumer: `policy_decided` (auto-approved jobs) and
//! `approved` (jobs a person approved) lead here.

use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream::{self, Message};
use chrono::Utc;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition, Received};
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::pause::PauseWatch;
use skynet_bus::{Jobs, Outcome};
use skynet_contract::job::Stage;
use skynet_job::{Command, Status, decide};
use skynet_rules::PolicyRules;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::spec::build_spec;

const SERVICE: &str = "dispatcher";

/// What the dispatcher needs.
#[derive(Clone)]
pub struct Deps {
    pub js: jetstream::Context,
    pub jobs: Jobs,
    pub rules: Arc<PolicyRules>,
    /// The system-wide pause: while it holds, approved jobs wait here.
    pub pause: PauseWatch,
}

/// Runs the dispatcher until `shutdown` resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), async_nats::Error> {
    let mut spec = ConsumerSpec::new(EVENTS_STREAM, "dispatcher", SERVICE, config.concurrency)
        .failing_jobs(deps.jobs.clone(), skynet_contract::job::Stage::Dispatch);
    // One message per free handler: while the system is paused, handlers
    // hold their jobs, and a message waiting in a buffer behind them would
    // be redelivered each ack wait, its delivery count rising for nothing.
    spec.prefetch = false;
    info!(service = SERVICE, "dispatcher running");
    let js = deps.js.clone();
    let stop = consumer::stop_token(shutdown);
    let stopping = stop.clone();
    // Shared by every message's handling, not cloned for each.
    let deps = std::sync::Arc::new(deps);
    consumer::run(
        js,
        spec,
        move |msg| {
            let (deps, stop) = (deps.clone(), stopping.clone());
            async move { handle_until(&deps, msg, &stop).await }
        },
        stop.cancelled_owned(),
    )
    .await
}

/// Dispatches the job a message is about, if it is approved (public so tests
/// can deliver a message twice).
pub async fn handle(deps: &Deps, msg: Message) -> Disposition {
    handle_until(deps, msg, &CancellationToken::new()).await
}

/// [`handle`], giving up a held job (for redelivery) when `stop` is cancelled.
async fn handle_until(deps: &Deps, msg: Message, stop: &CancellationToken) -> Disposition {
    let Received { env, job, seq: at, .. } = match consumer::receive(&msg, None) {
        Ok(r) => r,
        Err(d) => return d,
    };
    let span = info_span!("dispatch", service = SERVICE, job_id = %job, event_id = %env.id);
    async {
        let (mut state, mut seq) = match deps.jobs.load_at(job, at).await {
            Ok(loaded) => loaded,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let approved = |s: &Option<skynet_job::Job>| s.as_ref().is_some_and(|j| j.status == Status::Approved);
        if approved(&state) && deps.pause.current().paused {
            if !hold(&deps.pause, &msg, stop).await {
                return Disposition::Retry("shutting down while the system is paused".into());
            }
            // Cancelled or denied meanwhile? The log says.
            (state, seq) = match deps.jobs.load_at(job, at).await {
                Ok(loaded) => loaded,
                Err(e) => return Disposition::Retry(e.to_string()),
            };
        }
        // Waiting for more approvers, denied, or already dispatched: nothing to do.
        let Some(current) = state.as_ref().filter(|j| j.status == Status::Approved) else { return Disposition::Ack };
        let command = match build_spec(current, &deps.rules) {
            Ok(spec) => Command::Dispatch(spec),
            Err(reason) => {
                warn!(%reason, "dispatch refused");
                Command::Fail { stage: Stage::Dispatch, reason, step: None }
            }
        };
        match deps.jobs.execute_from(job, Some((state, seq)), &env.id, Utc::now(), |s| decide(s, command.clone())).await
        {
            Ok(Outcome::Appended { events, .. }) => {
                info!(kind = ?events.first().map(|e| e.kind()), "dispatch recorded");
                Disposition::Ack
            }
            Ok(Outcome::Rejected(_)) => Disposition::Ack,
            Err(e) => Disposition::Retry(e.to_string()),
        }
    }
    .instrument(span)
    .await
}

/// Holds an approved job while the system is paused: the delivery stays ours
/// (progress acks well inside the consumer's 30 s ack wait), so the job waits
/// in JetStream, not in a list of our own; after a restart the server delivers
/// it again and it waits again. False when the service stops first.
async fn hold(pause: &PauseWatch, msg: &Message, stop: &CancellationToken) -> bool {
    info!("system paused: the job waits for a resume");
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    let running = pause.running();
    let mut running = std::pin::pin!(running);
    loop {
        tokio::select! {
            () = &mut running => break,
            () = stop.cancelled() => return false,
            _ = tick.tick() => {
                if let Err(e) = msg.ack_with(async_nats::jetstream::AckKind::Progress).await {
                    warn!(error = %e, "progress ack failed while holding a job");
                }
            }
        }
    }
    info!("system resumed: dispatching");
    true
}
