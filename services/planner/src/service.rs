//! The planner's consumer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, Message};
use chrono::Utc;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition, Received};
use skynet_bus::definitions::EVENTS_STREAM;
use skynet_bus::{Jobs, Outcome};
use skynet_contract::Plan;
use skynet_contract::job::{JobEvent, JobEventKind, Planned, Requested};
use skynet_contract::memory::{SIMILAR_SUBJECT, SimilarJobs, SimilarQuery};
use skynet_contract::task::{PLAN_PREVIEW, PlanPreview, PlanPreviewReply};
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
    let spec = ConsumerSpec::new(EVENTS_STREAM, "planner", SERVICE, config.concurrency)
        .failing_jobs(deps.jobs.clone(), skynet_contract::job::Stage::Planning);
    let llm = (config.backend == Backend::Llm).then(|| LlmPlanner::new(config.llm.clone()));
    info!(service = SERVICE, backend = ?config.backend, llm = ?llm, "planner running");
    let js = deps.js.clone();
    let planner = Planner { config, llm, deps };
    let (stop, ended) = consumer::service_stop(shutdown);
    let previews = serve_previews(planner.clone(), stop.clone());
    // Shared by every message's handling, not cloned for each.
    let planner = std::sync::Arc::new(planner);
    let consume = consumer::run(
        js,
        spec,
        move |msg| {
            let p = planner.clone();
            async move { handle_with(&p, msg).await }
        },
        stop,
    );
    let (consumed, previewed) = tokio::join!(consumer::ending(consume, &ended), previews);
    consumed.and(previewed)
}

/// Handles one `requested` event (public so tests can deliver a message twice).
pub async fn handle(config: &Config, deps: &Deps, msg: Message) -> Disposition {
    let llm = (config.backend == Backend::Llm).then(|| LlmPlanner::new(config.llm.clone()));
    handle_with(&Planner { config: config.clone(), llm, deps: deps.clone() }, msg).await
}

async fn handle_with(p: &Planner, msg: Message) -> Disposition {
    let Received { env, job, event, seq } = match consumer::receive(&msg, Some(JobEventKind::Requested)) {
        Ok(r) => r,
        Err(d) => return d,
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

/// The planning command for a request.
async fn plan(p: &Planner, r: &Requested) -> Command {
    match make_plan(p, &r.intent, r.working_dir.as_deref(), r.plan.as_ref()).await {
        Ok(planned) => Command::RecordPlan(planned),
        Err(reason) => Command::FailPlanning { reason },
    }
}

/// Plans with the configured backend (the LLM falls back to the rules), or
/// checks a plan the submitter supplied; then notes what memory said.
async fn make_plan(
    p: &Planner,
    intent: &str,
    working_dir: Option<&str>,
    supplied: Option<&Plan>,
) -> Result<Planned, String> {
    // Past runs only for a backend that reads them (the LLM); the rules plan
    // from the words alone, so they ask only for known failures.
    let past_runs = if p.llm.is_some() && supplied.is_none() { 5 } else { 0 };
    let budget = Duration::from_millis(p.config.memory_timeout_ms);
    let memory = consult_memory(&p.deps.nats, intent, working_dir, past_runs, budget).await;
    let mut planned = backend_plan(p, intent, working_dir, supplied, &memory).await?;
    remember(&mut planned, &memory, working_dir);
    Ok(planned)
}

async fn backend_plan(
    p: &Planner,
    intent: &str,
    working_dir: Option<&str>,
    supplied: Option<&Plan>,
    memory: &SimilarJobs,
) -> Result<Planned, String> {
    let planned = |plan, planner: String, fallback_reason| Planned {
        plan,
        planner,
        fallback_reason,
        memories: vec![],
        warnings: vec![],
    };
    if let Some(plan) = supplied {
        return check_supplied(plan).map(|plan| planned(plan, "client".into(), None));
    }
    let rules_plan = || rules::plan(intent, working_dir, &p.deps.rules);
    let Some(llm) = &p.llm else {
        return rules_plan().map(|plan| planned(plan, "rules".into(), None));
    };
    match llm.plan_knowing(intent, working_dir, &memory.jobs, &memory.failures).await {
        Ok(plan) => Ok(planned(plan, llm.name(), None)),
        Err(e) => {
            warn!(error = %e, "LLM planning failed; falling back to the rules");
            let fallback_reason = format!("{} failed: {e}; planned by rules instead", llm.name());
            match rules_plan() {
                Ok(plan) => Ok(planned(plan, "rules".into(), Some(fallback_reason))),
                Err(reason) => Err(format!("{fallback_reason}, which also failed: {reason}")),
            }
        }
    }
}

/// Records what memory contributed: the past runs consulted (ids, scores)
/// and a warning for every known failure of an action this plan runs in
/// this directory. The plan itself is not changed.
fn remember(planned: &mut Planned, memory: &SimilarJobs, working_dir: Option<&str>) {
    use skynet_contract::memory::{MemoryKind, MemoryUsed};
    planned.memories = memory
        .jobs
        .iter()
        .filter_map(|j| Some(MemoryUsed { id: j.id.clone()?, kind: MemoryKind::TaskExecution, score: j.score? }))
        .collect();
    let actions: Vec<&str> = planned.plan.steps.iter().filter_map(|s| s.action.as_deref()).collect();
    for f in memory.failures.iter().filter(|f| actions.contains(&f.action.as_str())) {
        let dir = working_dir.unwrap_or("this directory");
        let runs = if f.count == 1 { "a run".to_owned() } else { format!("{} runs", f.count) };
        planned.warnings.push(format!(
            "{runs} of `{}` in {dir} failed with \"{}\" (last {}): failure pattern {}",
            f.action,
            f.message,
            f.last_seen.format("%Y-%m-%d %H:%M UTC"),
            f.id
        ));
        planned.memories.push(MemoryUsed { id: f.id.clone(), kind: MemoryKind::FailurePattern, score: f.count as f64 });
    }
}

/// A supplied plan must name a catalog action for every step, with only the
/// parameters that action takes, each of its kind.
fn check_supplied(plan: &Plan) -> Result<Plan, String> {
    if plan.steps.is_empty() {
        return Err("the supplied plan has no steps".into());
    }
    // Artifacts are files the job produces in its own directory.
    if let Some(a) = plan.artifacts.iter().find(|a| {
        let p = std::path::Path::new(a.as_str());
        a.is_empty() || p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_)))
    }) {
        return Err(format!("artifact {a:?} of the supplied plan is not a plain path inside the job's directory"));
    }
    let mut plan = plan.clone();
    for (i, s) in plan.steps.iter_mut().enumerate() {
        let action = s.action.as_deref().map(|a| a.trim().to_ascii_lowercase()).unwrap_or_default();
        let Some(entry) = skynet_rules::catalog::action(&action) else {
            return Err(format!("step {i} ({:?}) of the supplied plan has no known action ({action:?})", s.title));
        };
        skynet_rules::catalog::check_params(entry, &s.params)
            .map_err(|e| format!("step {i} ({:?}) of the supplied plan: {e}", s.title))?;
        s.action = Some(action);
    }
    Ok(plan)
}

/// Answers plan previews (no job is created) until `shutdown`.
async fn serve_previews(p: Planner, shutdown: impl Future<Output = ()>) -> Result<(), async_nats::Error> {
    use futures::StreamExt;
    let sub = p.deps.nats.queue_subscribe(PLAN_PREVIEW, "skynet-planner".into()).await?;
    let mut sub = std::pin::pin!(sub.take_until(shutdown));
    while let Some(msg) = sub.next().await {
        let reply = match serde_json::from_slice::<PlanPreview>(&msg.payload) {
            Ok(req) => match make_plan(&p, &req.intent, req.working_dir.as_deref(), None).await {
                Ok(pl) => PlanPreviewReply {
                    plan: Some(pl.plan),
                    planner: pl.planner,
                    fallback_reason: pl.fallback_reason,
                    error: None,
                },
                Err(e) => {
                    PlanPreviewReply { plan: None, planner: "rules".into(), fallback_reason: None, error: Some(e) }
                }
            },
            Err(e) => PlanPreviewReply {
                plan: None,
                planner: String::new(),
                fallback_reason: None,
                error: Some(format!("bad request: {e}")),
            },
        };
        if let (Some(to), Ok(body)) = (msg.reply, serde_json::to_vec(&reply)) {
            let _ = p.deps.nats.publish(to, body.into()).await;
        }
    }
    Ok(())
}

/// Similar past jobs and known failures from the memory service, or nothing
/// if it does not answer in time.
async fn consult_memory(
    nats: &async_nats::Client,
    intent: &str,
    working_dir: Option<&str>,
    past_runs: u32,
    timeout: Duration,
) -> SimilarJobs {
    let none = SimilarJobs { jobs: vec![], failures: vec![] };
    let q = SimilarQuery { intent: intent.to_owned(), limit: past_runs, working_dir: working_dir.map(str::to_owned) };
    let Ok(body) = serde_json::to_vec(&q) else { return none };
    match tokio::time::timeout(timeout, nats.request(SIMILAR_SUBJECT, body.into())).await {
        Ok(Ok(reply)) => serde_json::from_slice::<SimilarJobs>(&reply.payload).unwrap_or(none),
        Ok(Err(e)) => {
            debug!(error = %e, "no memory service; planning without past jobs");
            none
        }
        Err(_) => {
            debug!("memory service did not answer in time; planning without past jobs");
            none
        }
    }
}
