//! One evaluation: read the ledger and the facts, ask each strategy, and for
//! each that triggers record the decision — submitted, or held by a limit —
//! then submit the task through the front door. The decision is appended
//! *before* the submission, with the ledger position it was made at as its
//! expectation; a conflict (another process decided, a person paused) means
//! reading everything again and deciding again.

use chrono::{DateTime, Duration, Utc};
use skynet_contract::ids::event_id;
use skynet_contract::initiative::{self, Decided, Outcome, Strategy};
use skynet_contract::task::{TASK_REQUESTED, TaskRequested};
use skynet_contract::{Envelope, JobId, subjects};
use tracing::{Instrument, info, info_span, warn};

use crate::config::Config;
use crate::facts;
use crate::ledger::{Ledger, Submitted, limit_reached};
use crate::service::{Deps, SERVICE};
use crate::store::{AppendError, LedgerStore};
use crate::strategies::{self, Verdict};

/// Times an evaluation reads again after a conflict before giving up until
/// the next interval.
const ATTEMPTS: usize = 8;
/// A submission is sent again while neither a job nor a refusal shows for
/// it, from this age on: a crash between the decision and the submission
/// loses nothing. The intake opens one job however often it comes.
const RESUBMIT_AFTER: Duration = Duration::seconds(5);
/// How much earlier than the window the ledger is read: the window is read by
/// the stream's clock, the limits counted by the deciding processes' clocks.
const CLOCK_SLACK: Duration = Duration::hours(1);

/// Everything one evaluation saw and concluded.
pub struct Look {
    pub ledger: Ledger,
    pub observed: facts::Observed,
    pub running: u32,
}

/// Reads the ledger and the facts at `now`.
pub async fn look(
    deps: &Deps,
    store: &LedgerStore,
    config: &Config,
    now: DateTime<Utc>,
    started: DateTime<Utc>,
) -> Result<Look, String> {
    // The window is read by the stream's clock (the events' storage time);
    // the fold then counts by the events' own time.
    let ledger =
        store.load(Utc::now() - config.window() - CLOCK_SLACK).await.map_err(|e| format!("reading the ledger: {e}"))?;
    let errors_since = ledger.last_submitted.get(&Strategy::Recovery).copied().unwrap_or(now - Duration::hours(24));
    let own: Vec<JobId> = ledger.submitted.iter().map(|s| s.job).collect();
    let mut observed = facts::observe(&deps.db, &deps.nats, now, errors_since, started, &own).await?;
    for s in Strategy::ALL {
        if let Some(h) = ledger.hours_since(s, now) {
            observed.facts.hours_since_last.insert(s, (h * 10.0).round() / 10.0);
        }
    }
    let running = ledger.submitted.iter().filter(|s| observed.running(s.job)).count() as u32;
    Ok(Look { ledger, observed, running })
}

/// Evaluates every strategy once and returns the decisions recorded.
pub async fn evaluate_once(deps: &Deps, config: &Config, started: DateTime<Utc>) -> Result<Vec<Decided>, String> {
    let store = LedgerStore::open(deps.js.clone(), deps.nats.clone()).await.map_err(|e| e.to_string())?;
    'attempt: for _ in 0..ATTEMPTS {
        let now = (deps.clock)();
        let Look { ledger, observed, running } = look(deps, &store, config, now, started).await?;
        if ledger.paused {
            return Ok(Vec::new());
        }
        resubmit_unopened(deps, &ledger, &observed, now).await;
        let mut counts = ledger.counts(now, running, &config.limits);
        let mut expected = ledger.last_seq;
        let mut decided = Vec::new();
        for strategy in Strategy::ALL {
            let Verdict::Trigger(reason) = strategies::evaluate(strategy, config, &observed.facts, &ledger, now) else {
                continue;
            };
            let limit = limit_reached(&counts);
            let mut data = Decided {
                strategy,
                outcome: if limit.is_some() { Outcome::Limited } else { Outcome::Submitted },
                reason: reason.clone(),
                limit,
                facts: observed.facts.clone(),
                counts,
                job_id: None,
                intent: None,
                plan: None,
                working_dir: None,
            };
            if data.outcome == Outcome::Submitted {
                let (intent, plan, dir) = strategies::proposal(strategy, config, &observed.facts, &reason);
                (data.intent, data.plan, data.working_dir) = (Some(intent), Some(plan), dir);
            }
            // The same decision at the same ledger position is the same event,
            // whichever process makes it (the log stores it once); a different
            // one (other facts, other limits) is another event, and conflicts.
            let content = serde_json::to_string(&data).map_err(|e| format!("encoding a decision: {e}"))?;
            let id = event_id(&["initiative", strategy.as_str(), &expected.to_string(), &content]);
            if data.outcome == Outcome::Submitted {
                data.job_id = Some(JobId::for_request(initiative::SOURCE, &id));
            }
            let span = info_span!("decide", service = SERVICE, event_id = %id, job_id = ?data.job_id, strategy = strategy.as_str());
            let env = Envelope::new(
                initiative::DECIDED,
                id.clone(),
                initiative::SOURCE,
                Some(strategy.as_str().into()),
                now,
                &data,
            )
            .map_err(|e| format!("encoding a decision: {e}"))?;
            match store.append(&initiative::decided_subject(strategy), &env, expected).instrument(span.clone()).await {
                Ok(seq) => expected = seq,
                Err(AppendError::Conflict) => continue 'attempt,
                Err(AppendError::Publish(e)) => return Err(e),
            }
            if data.outcome == Outcome::Submitted {
                counts.last_hour += 1;
                counts.last_day += 1;
                counts.running += 1;
                let task = Submitted {
                    at: now,
                    strategy,
                    job: JobId::for_request(initiative::SOURCE, &id),
                    event_id: id,
                    decided: Box::new(data.clone()),
                };
                async {
                    info!(reason = %data.reason, "initiative task decided");
                    submit(deps, &task).await;
                }
                .instrument(span)
                .await;
            } else {
                info!(parent: &span, limit = ?data.limit, "initiative held by a limit");
            }
            decided.push(data);
        }
        return Ok(decided);
    }
    Err(format!("the initiative ledger kept moving; {ATTEMPTS} attempts"))
}

/// Sends again the submissions for which neither a job nor a refusal shows,
/// in case the process that decided them died before sending (or the send
/// failed). Harmless when it did arrive: the job id is the decision's.
async fn resubmit_unopened(deps: &Deps, ledger: &Ledger, observed: &facts::Observed, now: DateTime<Utc>) {
    for task in &ledger.submitted {
        if observed.unopened(task.job) && now - task.at >= RESUBMIT_AFTER {
            submit(deps, task).await;
        }
    }
}

/// Submits `task` like any client would, on the intake's trusted channel,
/// with the decision's id as the submission's (so its job id is the one the
/// decision names, and a second send opens nothing new).
async fn submit(deps: &Deps, task: &Submitted) {
    let d = &task.decided;
    let data = TaskRequested {
        intent: d.intent.clone().unwrap_or_default(),
        working_dir: d.working_dir.clone(),
        project: Some("initiative".into()),
        requested_by: Some("initiative".into()),
        constraints: [(
            "initiative".to_owned(),
            serde_json::json!({ "strategy": d.strategy, "reason": d.reason, "decision": task.event_id }),
        )]
        .into(),
        plan: d.plan.clone(),
    };
    let sent = match Envelope::new(TASK_REQUESTED, task.event_id.clone(), initiative::SOURCE, None, task.at, &data) {
        Ok(env) => skynet_bus::publish(&deps.js, subjects::INTAKE_TASK, &env).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = sent {
        warn!(service = SERVICE, job_id = %task.job, error = %e, "submitting an initiative task failed; sent again next evaluation");
    }
}
