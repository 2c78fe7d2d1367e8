//! The intake's consumer: one submission in, one job or one dead letter out.

use std::future::Future;

use async_nats::jetstream::{self, Message};
use chrono::Utc;
use skynet_bus::consumer::{self, ConsumerSpec, Disposition};
use skynet_bus::definitions::INTAKE_STREAM;
use skynet_bus::dlq::{self, DeadLetter};
use skynet_bus::{Jobs, Outcome};
use skynet_contract::ids::event_id;
use skynet_contract::task::{TASK_REJECTED, TaskRejected};
use skynet_contract::{Envelope, JobId, subjects};
use skynet_job::{Command, Rejection, decide};
use tracing::{Instrument, info, info_span, warn};

use std::sync::Arc;

use skynet_contract::task::RejectionCode;
use skynet_rules::PolicyRules;

use crate::config::Config;
use crate::ratelimit::RateLimiter;
use crate::validate::{Refusal, check_channel, validate};

const SERVICE: &str = "intake";

/// What the intake needs from the outside world.
#[derive(Clone)]
pub struct Deps {
    /// For dead letters and rejection events.
    pub js: jetstream::Context,
    /// The job repository; the intake only ever opens jobs.
    pub jobs: Jobs,
    /// Rate limits per requester (from the policy rules file).
    pub rules: Arc<PolicyRules>,
    pub limiter: RateLimiter,
    /// Who holds which token: an authenticated client submits as its principal.
    pub principals: Arc<skynet_bus::principals::Principals>,
}

/// Runs the intake until `shutdown` resolves.
pub async fn run(
    config: Config,
    deps: Deps,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), async_nats::Error> {
    let spec = ConsumerSpec::new(INTAKE_STREAM, "intake", SERVICE, config.concurrency);
    info!(service = SERVICE, concurrency = config.concurrency, "intake running");
    let js = deps.js.clone();
    let (stop, ended) = consumer::service_stop(shutdown);
    let sync = deps.limiter.clone().run_sync(stop.clone());
    let handler = move |msg: Message| {
        let deps = deps.clone();
        async move { handle(&deps, msg).await }
    };
    let (consumed, ()) = tokio::join!(consumer::ending(consumer::run(js, spec, handler, stop), &ended), sync);
    consumed
}

/// Handles one submission. Public so tests can deliver the same message twice.
pub async fn handle(deps: &Deps, msg: Message) -> Disposition {
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
    match validate(msg.headers.as_ref(), &msg.payload).and_then(|a| check_channel(&msg.subject, &a).map(|()| a)) {
        Ok(mut accepted) => {
            let span =
                info_span!("open", service = SERVICE, job_id = %accepted.job, event_id = %accepted.request_event_id);
            async {
                // Who is asking: on the client channel, the principal of the
                // token if one came, else only a claim; SKYNET's own services
                // (the API) name the principal they authenticated.
                let requester = if msg.subject.as_str() == subjects::INTAKE_CLIENT {
                    match identify(deps, &msg, &accepted).await {
                        Ok(Some(principal)) => {
                            accepted.requested.requested_by = Some(principal.clone());
                            principal
                        }
                        Ok(None) => {
                            let claim = accepted.requested.requested_by.take();
                            accepted.requested.requested_by = claim.map(|c| format!("{c}{}", skynet_job::UNVERIFIED));
                            format!("source:{}", accepted.requested.request_source)
                        }
                        Err(d) => return d,
                    }
                } else {
                    accepted.requested.requested_by.clone().unwrap_or_else(|| accepted.requested.request_source.clone())
                };
                if let Err(reason) = deps.limiter.admit(&requester, deps.rules.rate_limit(&requester), Utc::now()) {
                    let request = Some((accepted.requested.request_source.clone(), accepted.request_event_id.clone()));
                    return reject(deps, &msg, seq, Refusal { code: RejectionCode::RateLimited, reason, request })
                        .await;
                }
                let requested = accepted.requested.clone();
                // Most submissions open a new job: the first attempt expects the
                // job to have no event yet, without reading the log to see. If
                // it has one, the append conflicts (or is answered as the
                // duplicate it is) and the retry reads the log as before.
                let outcome = deps
                    .jobs
                    .execute_from(accepted.job, Some((None, 0)), &accepted.request_event_id, Utc::now(), |s| {
                        decide(s, Command::Open(requested.clone()))
                    })
                    .await;
                match outcome {
                    Ok(Outcome::Appended { fresh: true, .. }) => {
                        info!("job opened");
                        Disposition::Ack
                    }
                    // The same submission again (a client retry, a redelivery): one job.
                    Ok(
                        Outcome::Appended { fresh: false, .. }
                        | Outcome::Rejected(Rejection::AlreadyExists | Rejection::AlreadyFinished(_)),
                    ) => {
                        info!("duplicate submission; job already exists");
                        Disposition::Ack
                    }
                    Ok(Outcome::Rejected(other)) => {
                        let refusal = Refusal {
                            code: skynet_contract::task::RejectionCode::InvalidData,
                            reason: other.to_string(),
                            request: Some((
                                accepted.requested.request_source.clone(),
                                accepted.request_event_id.clone(),
                            )),
                        };
                        reject(deps, &msg, seq, refusal).await
                    }
                    Err(e) => Disposition::Retry(format!("opening job {}: {e}", accepted.job)),
                }
            }
            .instrument(span)
            .await
        }
        Err(refusal) => reject(deps, &msg, seq, refusal).await,
    }
}

/// The principal of a client submission's `Authorization: Bearer` token, if
/// it carries one; an unknown token is refused.
async fn identify(
    deps: &Deps,
    msg: &Message,
    accepted: &crate::validate::Accepted,
) -> Result<Option<String>, Disposition> {
    let Some(token) = skynet_bus::codec::header(msg.headers.as_ref(), "Authorization")
        .map(|v| skynet_contract::principal::bearer_token(v).unwrap_or(v.trim()))
    else {
        return Ok(None);
    };
    match deps.principals.verify(token).await {
        Ok(Some(p)) => Ok(Some(p.name)),
        Ok(None) => {
            let request = Some((accepted.requested.request_source.clone(), accepted.request_event_id.clone()));
            let reason = "the Authorization token belongs to no principal".to_owned();
            let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
            Err(reject(deps, msg, seq, Refusal { code: RejectionCode::Unauthorized, reason, request }).await)
        }
        Err(e) => Err(Disposition::Retry(format!("verifying a token: {e}"))),
    }
}

/// Dead-letters the original message and records a `task.rejected` event.
/// Both are deduplicated by the submission's stream sequence, so a redelivery
/// after a crash stores neither twice.
async fn reject(deps: &Deps, msg: &Message, seq: u64, refusal: Refusal) -> Disposition {
    let job = refusal.request.as_ref().map(|(source, id)| JobId::for_request(source, id));
    warn!(service = SERVICE, code = refusal.code.as_str(), reason = %refusal.reason, job_id = ?job, "submission rejected");
    let dl = DeadLetter {
        origin: SERVICE,
        service: SERVICE,
        subject: msg.subject.as_str(),
        headers: msg.headers.as_ref(),
        payload: msg.payload.clone(),
        code: refusal.code.as_str(),
        reason: &refusal.reason,
        deliveries: msg.info().map(|i| i.delivered).unwrap_or(1),
        dedupe_key: format!("{INTAKE_STREAM}:{seq}"),
    };
    let dlq_seq = match dlq::dead_letter(&deps.js, dl).await {
        Ok(s) => s,
        Err(e) => return Disposition::Retry(format!("dead-lettering: {e}")),
    };
    let data = TaskRejected {
        code: refusal.code,
        reason: refusal.reason,
        job_id: job,
        request_source: refusal.request.as_ref().map(|r| r.0.clone()),
        request_id: refusal.request.as_ref().map(|r| r.1.clone()),
        dead_letter_seq: Some(dlq_seq),
    };
    let id = event_id(&["task.rejected", INTAKE_STREAM, &seq.to_string()]);
    let env = match Envelope::new(TASK_REJECTED, id, "skynet/intake", job.map(|j| j.to_string()), Utc::now(), &data) {
        Ok(env) => env,
        Err(e) => return Disposition::Retry(format!("encoding rejection: {e}")),
    };
    match skynet_bus::publish(&deps.js, subjects::TASK_REJECTED, &env).await {
        Ok(_) => Disposition::Ack,
        Err(e) => Disposition::Retry(format!("recording rejection: {e}")),
    }
}
