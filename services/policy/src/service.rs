//! The policy service's processes: the `planned` consumer, the command server
//! and the deadline sweeper, all stopped by one shutdown signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, Message};
use chrono::Utc;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition, Received};
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::{Jobs, Outcome};
use skynet_contract::job::JobEventKind;
use skynet_job::{Command, Status, decide};
use skynet_rules::PolicyRules;
use tracing::{Instrument, info, info_span, warn};

use crate::commands::{self, CommandDeps};
use crate::config::Config;
use crate::deadlines::{self, Deadlines};
use crate::decision::{decide_plan, restrict_initiative};

const SERVICE: &str = "policy";

/// What the policy service needs.
#[derive(Clone)]
pub struct Deps {
    pub js: jetstream::Context,
    /// Core NATS, for commands.
    pub nats: async_nats::Client,
    pub jobs: Jobs,
    /// The validated rules file.
    pub rules: Arc<PolicyRules>,
}

/// Runs the consumer, the command server and the sweeper until `shutdown`.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), async_nats::Error> {
    let deadlines = deadlines::open(&deps.js).await?;
    let (stop, ended) = consumer::service_stop(shutdown);
    let spec = ConsumerSpec::new(EVENTS_STREAM, "policy", SERVICE, config.concurrency)
        .failing_jobs(deps.jobs.clone(), skynet_contract::job::Stage::Policy);
    let command_deps = CommandDeps {
        nats: deps.nats.clone(),
        jobs: deps.jobs.clone(),
        rules: deps.rules.clone(),
        deadlines: deadlines.clone(),
        principals: std::sync::Arc::new(skynet_bus::principals::Principals::open(&deps.js).await?),
    };
    info!(service = SERVICE, "policy running");
    // Shared by every message's handling, not cloned for each.
    let consumer_deps = std::sync::Arc::new((deps.clone(), deadlines.clone()));
    let consume = consumer::run(
        deps.js.clone(),
        spec,
        move |msg| {
            let shared = consumer_deps.clone();
            async move { handle_planned(&shared.0, &shared.1, msg).await }
        },
        stop.clone(),
    );
    let sweep = deadlines::run_sweeper(
        deadlines,
        deps.jobs.clone(),
        Duration::from_millis(config.sweep_interval_ms),
        stop.clone(),
    );
    let (consumed, served, ()) =
        tokio::join!(consumer::ending(consume, &ended), commands::serve(command_deps, stop), sweep);
    consumed.and(served)
}

/// Classifies one planned job (public so tests can deliver a message twice).
pub async fn handle_planned(deps: &Deps, deadlines: &Deadlines, msg: Message) -> Disposition {
    let Received { env, job, seq: at, .. } = match consumer::receive(&msg, Some(JobEventKind::Planned)) {
        Ok(r) => r,
        Err(d) => return d,
    };
    let span = info_span!("decide", service = SERVICE, job_id = %job, event_id = %env.id);
    async {
        let (state, seq) = match deps.jobs.load_at(job, at).await {
            Ok(loaded) => loaded,
            Err(e) => return Disposition::Retry(e.to_string()),
        };
        let Some(current) = state.as_ref().filter(|j| j.status == Status::Planned) else {
            return Disposition::Ack; // already decided (redelivery) or cancelled meanwhile
        };
        let Some(plan) = &current.plan else { return Disposition::Ack };
        let mut decision = decide_plan(plan, current.request.working_dir.as_deref(), &deps.rules);
        // The intake refuses this source from clients, so only the initiative
        // service's own submissions carry it.
        if current.request.request_source == skynet_contract::initiative::SOURCE {
            restrict_initiative(&mut decision, plan, &deps.rules);
        }
        if decision.requires_approval && decision.risk >= skynet_contract::Risk::Admin {
            // What the approver must type, shown with the request (job-specific).
            let phrase = skynet_job::confirmation_for(&deps.rules.approval.confirmation_phrase, job);
            decision.reasons.push(format!("to approve, confirm with {phrase:?}"));
        }
        if let Some(secs) = decision.approval_timeout_secs.filter(|_| decision.requires_approval) {
            // Deadline first: if we crash after appending, it is already there.
            let at = Utc::now() + chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000));
            if let Err(e) = deadlines.set(job, at).await {
                return Disposition::Retry(format!("storing the approval deadline: {e}"));
            }
        }
        let outcome = deps
            .jobs
            .execute_from(job, Some((state, seq)), &env.id, Utc::now(), |s| {
                decide(s, Command::DecidePolicy(decision.clone()))
            })
            .await;
        match outcome {
            Ok(Outcome::Appended { .. }) => {
                info!(
                    allowed = decision.allowed,
                    risk = decision.risk.as_str(),
                    approval = decision.requires_approval,
                    "policy decided"
                );
                Disposition::Ack
            }
            Ok(Outcome::Rejected(r)) => {
                warn!(reason = %r, "decision refused by the job");
                Disposition::Ack
            }
            Err(e) => Disposition::Retry(e.to_string()),
        }
    }
    .instrument(span)
    .await
}
