//! The planner's consumer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, Message};
use chrono::Utc;
use skynet_bus::codec;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition};
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::{Jobs, Outcome};
use skynet_contract::job::{JobEvent, Planned, Requested};
use skynet_contract::memory::{PastJob, SIMILAR_SUBJECT, SimilarJobs, SimilarQuery};
use skynet_job::{Command, Rejection, decide, evolve};
use skynet_rules::PolicyRules;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::config::{Backend, Config};
use crate::llm::LlmPlanner;
use crate::rules;

const SERVICE: &str = "planner";

/// What the planner needs.
#[derive(Clone)]
pub struct Deps {
    pub js: jetstream::Context,
    /// Core NATS, for the memory request/reply.
    pub nats: async_nats::Client,
    pub jobs: Jobs,
    /// Risk labels for rule-planned steps (the policy service decides the real ones).
    pub rules: Arc<PolicyRules>,
}

/// The planner with its configuration resolved.
#[derive(Clone)]
struct Planner {
    config: Config,
    llm: Option<LlmPlanner>,
    deps: Deps,
}

/// Runs the planner until `shutdown` resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), async_nats::Error> {
    let spec =
        ConsumerSpec { stream: EVENTS_STREAM, durable: "planner", service: SERVICE, concurrency: config.concurrency };
    let llm = (config.backend == Backend::Llm).then(|| LlmPlanner::new(config.llm.clone()));
    info!(service = SERVICE, backend = ?config.backend, llm = ?llm, "planner running");
    let js = deps.js.clone();
    let planner = Planner { config, llm, deps };
    consumer::run(
        js,
        spec,
        move |msg| {
            let p = planner.clone();
            async move { handle_with(&p, msg).await }
        },
        shutdown,
    )
    .await
}

/// Handles one `requested` event (public so tests can deliver a message twice).
pub async fn handle(config: &Config, deps: &Deps, msg: Message) -> Disposition {
    let llm = (config.backend == Backend::Llm).then(|| LlmPlanner::new(config.llm.clone()));
    handle_with(&Planner { config: config.clone(), llm, deps: deps.clone() }, msg).await
}

async fn handle_with(p: &Planner, msg: Message) -> Disposition {
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
    let env = match codec::decode(msg.headers.as_ref(), &msg.payload) {
        Ok(env) => env,
        Err(e) => {
            return Disposition::DeadLetter { code: "undecodable", reason: e.to_string() };
        }
    };
    let (job, event) = match env.job_event() {
        Ok((job, ev @ JobEvent::Requested(_))) => (job, ev),
        Ok((_, other)) => {
            return Disposition::DeadLetter {
                code: "unexpected_type",
                reason: format!("{:?} on the requested consumer", other.kind()),
            };
        }
        Err(e) => {
            return Disposition::DeadLetter { code: "undecodable", reason: e.to_string() };
        }
    };
    let JobEvent::Requested(request) = &event else {
        return Disposition::Ack;
    };
    let span = info_span!("plan", service = SERVICE, job_id = %job, event_id = %env.id);
    async {
        // The consumed event is the job's first: its state is known without a
        // replay. If anything happened since, the append conflicts and replays.
        let known = evolve(None, &event).ok().map(|s| (Some(s), seq));
        let command = plan(p, request).await;
        match p.deps.jobs.execute_from(job, known, &env.id, Utc::now(), |s| decide(s, command.clone())).await {
            Ok(Outcome::Appended { events, .. }) => {
                info!(kind = ?events.first().map(JobEvent::kind), "planning recorded");
                Disposition::Ack
            }
            Ok(Outcome::Rejected(r @ (Rejection::AlreadyPlanned(_) | Rejection::AlreadyFinished(_)))) => {
                debug!(reason = %r, "already past planning");
                Disposition::Ack
            }
            Ok(Outcome::Rejected(r)) => {
                warn!(reason = %r, "plan refused by the job");
                Disposition::Ack
            }
            Err(e) => Disposition::Retry(e.to_string()),
        }
    }
    .instrument(span)
    .await
}

/// Plans with the configured backend; the LLM falls back to the rules.
async fn plan(p: &Planner, r: &Requested) -> Command {
    let rules_plan = || rules::plan(&r.intent, r.working_dir.as_deref(), &p.deps.rules);
    let Some(llm) = &p.llm else {
        return match rules_plan() {
            Ok(plan) => Command::RecordPlan(Planned { plan, planner: "rules".into(), fallback_reason: None }),
            Err(reason) => Command::FailPlanning { reason },
        };
    };
    let memories = similar_jobs(&p.deps.nats, &r.intent, Duration::from_millis(p.config.memory_timeout_ms)).await;
    match llm.plan(&r.intent, r.working_dir.as_deref(), &memories).await {
        Ok(plan) => Command::RecordPlan(Planned { plan, planner: llm.name(), fallback_reason: None }),
        Err(e) => {
            warn!(error = %e, "LLM planning failed; falling back to the rules");
            let fallback_reason = format!("{} failed: {e}; planned by rules instead", llm.name());
            match rules_plan() {
                Ok(plan) => Command::RecordPlan(Planned {
                    plan,
                    planner: "rules".into(),
                    fallback_reason: Some(fallback_reason),
                }),
                Err(reason) => {
                    Command::FailPlanning { reason: format!("{fallback_reason}, which also failed: {reason}") }
                }
            }
        }
    }
}

/// Similar past jobs from the memory service, or none if it does not answer in time.
async fn similar_jobs(nats: &async_nats::Client, intent: &str, timeout: Duration) -> Vec<PastJob> {
    let Ok(body) = serde_json::to_vec(&SimilarQuery { intent: intent.to_owned(), limit: 5 }) else {
        return vec![];
    };
    match tokio::time::timeout(timeout, nats.request(SIMILAR_SUBJECT, body.into())).await {
        Ok(Ok(reply)) => serde_json::from_slice::<SimilarJobs>(&reply.payload).map(|s| s.jobs).unwrap_or_default(),
        Ok(Err(e)) => {
            debug!(error = %e, "no memory service; planning without past jobs");
            vec![]
        }
        Err(_) => {
            debug!("memory service did not answer in time; planning without past jobs");
            vec![]
        }
    }
}
