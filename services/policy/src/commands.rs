//! Approve, deny, cancel and the single-action check: request/reply on core
//! NATS subjects (`skynet.cmd.job.*`, `skynet.policy.check`), served by every
//! policy instance in one queue group. Each command is validated against the
//! job's state by `decide`; the reply says whether it took effect and, if not,
//! why, with a stable code.

use async_nats::Message;
use chrono::Utc;
use futures::StreamExt;
use skynet_bus::principals::Principals;
use skynet_bus::{Jobs, Outcome};
use skynet_contract::JobId;
use skynet_contract::commands::{self, Approve, Cancel, CommandReply, Deny, PolicyCheck, PolicyCheckReply};
use skynet_contract::ids::event_id;
use skynet_contract::principal::PrincipalRole;
use skynet_contract::system;
use skynet_job::{Command, Rejection, Status, decide};
use skynet_rules::PolicyRules;
use tracing::{info, warn};

use crate::deadlines::Deadlines;

/// A command body, as sent.
enum Body {
    Approve(Approve),
    Deny(Deny),
    Cancel(Cancel),
}

/// The largest command body (a comment or reason is text for a person, and
/// it lands in the log).
const MAX_COMMAND_BYTES: usize = 8 * 1024;

/// Queue group shared by all policy instances.
pub const QUEUE: &str = "skynet-policy";

/// What the command handlers need.
#[derive(Clone)]
pub struct CommandDeps {
    pub nats: async_nats::Client,
    pub jobs: Jobs,
    pub rules: std::sync::Arc<PolicyRules>,
    pub deadlines: Deadlines,
    /// Who holds which token: approvers, deniers and cancellers are principals.
    pub principals: std::sync::Arc<Principals>,
}

/// Serves commands until `shutdown` resolves.
pub async fn serve(
    deps: CommandDeps,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), async_nats::Error> {
    let subs = futures::stream::select_all([
        deps.nats.queue_subscribe(commands::APPROVE, QUEUE.into()).await?,
        deps.nats.queue_subscribe(commands::DENY, QUEUE.into()).await?,
        deps.nats.queue_subscribe(commands::CANCEL, QUEUE.into()).await?,
        deps.nats.queue_subscribe(commands::POLICY_CHECK, QUEUE.into()).await?,
        deps.nats.queue_subscribe(system::PAUSE, QUEUE.into()).await?,
        deps.nats.queue_subscribe(system::RESUME, QUEUE.into()).await?,
    ]);
    subs.take_until(shutdown)
        .for_each_concurrent(32, |msg| {
            let deps = deps.clone();
            async move {
                let reply = answer(&deps, &msg).await;
                if let Some(to) = msg.reply.clone()
                    && let Err(e) = deps.nats.publish(to, reply.into()).await
                {
                    warn!(service = "policy", error = %e, "could not send a command reply");
                }
            }
        })
        .await;
    Ok(())
}

/// The reply body for one command message.
pub async fn answer(deps: &CommandDeps, msg: &Message) -> Vec<u8> {
    let subject = msg.subject.as_str();
    if subject == commands::POLICY_CHECK {
        let reply = match serde_json::from_slice::<PolicyCheck>(&msg.payload) {
            Ok(check) => {
                let c = deps.rules.check_action(&check.action);
                PolicyCheckReply {
                    allowed: c.allowed,
                    reason: c.reason,
                    requires_approval: c.requires_approval,
                    risk_level: c.risk_level.into(),
                }
            }
            Err(e) => PolicyCheckReply {
                allowed: false,
                reason: format!("bad request: {e}"),
                requires_approval: false,
                risk_level: "high".into(),
            },
        };
        return serde_json::to_vec(&reply).unwrap_or_default();
    }
    if subject == system::PAUSE || subject == system::RESUME {
        if msg.payload.len() > MAX_COMMAND_BYTES {
            let reply = refused(None, "bad_request", format!("a command is at most {MAX_COMMAND_BYTES} bytes"));
            return serde_json::to_vec(&reply).unwrap_or_default();
        }
        let reply = crate::system::switch(deps, subject == system::PAUSE, &msg.payload).await;
        return serde_json::to_vec(&reply).unwrap_or_default();
    }
    let reply = match handle(deps, subject, &msg.payload).await {
        Ok(r) | Err(r) => r,
    };
    serde_json::to_vec(&reply).unwrap_or_default()
}

async fn handle(deps: &CommandDeps, subject: &str, payload: &[u8]) -> Result<CommandReply, CommandReply> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(refused(None, "bad_request", format!("a command is at most {MAX_COMMAND_BYTES} bytes")));
    }
    let bad = |e: serde_json::Error| refused(None, "bad_request", format!("invalid command body: {e}"));
    let body = match subject {
        commands::APPROVE => serde_json::from_slice(payload).map(Body::Approve),
        commands::DENY => serde_json::from_slice(payload).map(Body::Deny),
        commands::CANCEL => serde_json::from_slice(payload).map(Body::Cancel),
        other => return Err(refused(None, "bad_request", format!("no command on {other}"))),
    }
    .map_err(bad)?;
    let (job, token, verb) = match &body {
        Body::Approve(a) => (a.job_id, a.token.as_str(), "approve"),
        Body::Deny(d) => (d.job_id, d.token.as_str(), "deny"),
        Body::Cancel(c) => (c.job_id, c.token.as_str(), "cancel"),
    };
    // Who is asking is the principal holding the token, never a name in the body.
    let principal = match deps.principals.verify(token).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(refused(Some(job), "unauthorized", format!("cannot {verb}: unknown token"))),
        Err(e) => return Err(refused(Some(job), "unavailable", format!("cannot {verb} now: {e}"))),
    };
    let forbidden = |why: String| refused(Some(job), "forbidden", format!("cannot {verb}: {why}"));
    let command = match body {
        Body::Approve(a) => {
            if !principal.has(PrincipalRole::Approve) {
                return Err(forbidden(format!("{} does not hold the approve role", principal.name)));
            }
            Command::Approve {
                approver: principal.name.clone(),
                comment: a.comment,
                confirmation: a.confirmation,
                phrase_required: Some(deps.rules.approval.confirmation_phrase.clone()),
                self_approval: deps.rules.approval.allow_self_approval,
            }
        }
        Body::Deny(d) => {
            if !principal.has(PrincipalRole::Approve) {
                return Err(forbidden(format!("{} does not hold the approve role", principal.name)));
            }
            Command::Deny { by: principal.name.clone(), reason: d.reason }
        }
        Body::Cancel(c) => {
            if !principal.has(PrincipalRole::Approve) {
                // A submitter may cancel only a job it requested.
                if !principal.has(PrincipalRole::Submit) {
                    return Err(forbidden(format!("{} holds neither the approve nor the submit role", principal.name)));
                }
                let requester = match deps.jobs.load(job).await {
                    Ok((Some(state), _)) => state.request.requested_by.map(|r| r.trim().to_lowercase()),
                    Ok((None, _)) => {
                        return Err(refused(Some(job), "not_found", "cannot cancel: job does not exist".into()));
                    }
                    Err(e) => return Err(refused(Some(job), "unavailable", format!("cannot cancel now: {e}"))),
                };
                if requester.as_deref() != Some(principal.name.as_str()) {
                    return Err(forbidden(format!(
                        "{} did not request this job and is not an approver",
                        principal.name
                    )));
                }
            }
            Command::Cancel { by: principal.name.clone(), reason: c.reason }
        }
    };
    // Identical retries of one command get identical event ids (stored once).
    // Built from the job and the command (who and what), never from the
    // token: event ids are public.
    let cause = event_id(&[subject, &job.to_string(), &format!("{command:?}")]);
    let outcome = deps.jobs.execute(job, &cause, Utc::now(), |s| decide(s, command.clone())).await;
    match outcome {
        Ok(Outcome::Appended { state, .. }) => {
            // The append returns the job as it now is: no need to read it back.
            let status = Some(state.status);
            if status != Some(Status::AwaitingApproval)
                && let Err(e) = deps.deadlines.clear(job).await
            {
                warn!(service = "policy", job_id = %job, error = %e, "could not clear an approval deadline; the sweeper will");
            }
            info!(service = "policy", job_id = %job, verb, status = ?status, "command accepted");
            Ok(CommandReply {
                accepted: true,
                job_id: Some(job),
                status: status.map(|s| s.as_str().to_owned()),
                code: None,
                message: format!("{verb} accepted"),
            })
        }
        Ok(Outcome::Rejected(r)) => {
            let code = match &r {
                Rejection::NoSuchJob => "not_found",
                Rejection::ConfirmationRequired => "confirmation_required",
                Rejection::ConfirmationMismatch => "confirmation_mismatch",
                Rejection::SelfApproval(_) | Rejection::UnknownRequester => "forbidden",
                _ => "conflict",
            };
            info!(service = "policy", job_id = %job, verb, reason = %r, "command refused");
            Err(refused(Some(job), code, format!("cannot {verb}: {r}")))
        }
        Err(e) => Err(refused(Some(job), "unavailable", format!("cannot {verb} now: {e}"))),
    }
}

fn refused(job: Option<JobId>, code: &str, message: String) -> CommandReply {
    CommandReply { accepted: false, job_id: job, status: None, code: Some(code.into()), message }
}
