//! `decide`: every business rule of the job lifecycle. A command either yields
//! the events to record or a [`Rejection`] that says why not, in words a person
//! can act on. The resulting events are always checked against [`evolve`], so
//! `decide` can never emit an event the state machine would refuse.

use skynet_contract::job::{
    Approved, CancelRequested, Cancelled, Denied, Dispatched, Failed, JobEvent, Planned, PlanningFailed, PolicyDecided,
    Requested, Scheduled, Stage, Started, StepFailed, StepOutput, StepStarted, StepSucceeded, Succeeded, TimedOut,
};
use skynet_contract::{ExecSpec, Risk};

use crate::evolve::{IllegalTransition, evolve};
use crate::state::{Job, Status, StepStatus};

/// Something a service asks of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Open the job (intake).
    Open(Requested),
    /// Record the plan (planner).
    RecordPlan(Planned),
    /// Record that no plan could be made (planner).
    FailPlanning { reason: String },
    /// Record the policy's decision (policy).
    DecidePolicy(PolicyDecided),
    /// A principal approves. `phrase_required` is the ADMIN confirmation phrase
    /// from the policy's configuration; the approver must type it followed by
    /// the job's short id ([`confirmation_for`]), so a typed-ahead constant
    /// cannot confirm a job its approver has not seen. A requester may approve
    /// their own WRITE or ADMIN job only when `self_approval` allows it.
    Approve {
        approver: String,
        comment: Option<String>,
        confirmation: Option<String>,
        phrase_required: Option<String>,
        self_approval: bool,
    },
    /// A person denies.
    Deny { by: String, reason: String },
    /// Record the execution spec (dispatcher).
    Dispatch(ExecSpec),
    /// Dispatch or scheduling failed.
    Fail { stage: Stage, reason: String, step: Option<u32> },
    /// Record the chosen provider (scheduler).
    Schedule(Scheduled),
    /// An executor takes the job under a new lease.
    Start { executor: String, lease: u64 },
    /// An executor begins a step.
    StartStep { step: u32, executor: String, lease: u64 },
    /// A chunk of live output.
    RecordOutput(StepOutput),
    /// A step ended well.
    StepSucceeded(StepSucceeded),
    /// A step ended badly.
    StepFailed(StepFailed),
    /// The executor finished its work: decide the job's outcome from its steps.
    Finish { duration_ms: u64 },
    /// The executor stored an artifact the plan named.
    RecordArtifact(skynet_contract::job::ArtifactStored),
    /// Someone wants the job stopped.
    Cancel { by: String, reason: String },
    /// The executor stopped the process of a cancelling job.
    ConfirmCancel { by: String, reason: String },
    /// A time limit ran out.
    TimeOut(TimedOut),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("job does not exist")]
    NoSuchJob,
    #[error("job already exists")]
    AlreadyExists,
    #[error("job is already planned (status `{}`); a job is planned once", .0.as_str())]
    AlreadyPlanned(Status),
    #[error("job is `{}`, not awaiting approval", .0.as_str())]
    NotAwaitingApproval(Status),
    #[error("job already finished as `{}`", .0.as_str())]
    AlreadyFinished(Status),
    #[error("job is already being cancelled")]
    AlreadyCancelling,
    #[error("approving an ADMIN job requires the confirmation phrase")]
    ConfirmationRequired,
    #[error("the confirmation does not match: type the phrase and the job's short id")]
    ConfirmationMismatch,
    #[error("{0} requested this job and may not approve it")]
    SelfApproval(String),
    #[error("nobody authenticated requested this job, so its approver could be its requester; submit it with a token")]
    UnknownRequester,
    #[error("not every step has finished; cannot decide the outcome yet")]
    StepsUnfinished,
    #[error("intent must not be empty")]
    EmptyIntent,
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
}

/// Decides what `cmd` means for the job in `state` (`None` = not opened).
pub fn decide(state: Option<&Job>, cmd: Command) -> Result<Vec<JobEvent>, Rejection> {
    use Command as C;
    if let Some(job) = state {
        // Finished jobs refuse everything, with the clearest reason first
        // (the predecessor let finished jobs be cancelled or denied, §19.11).
        if job.status.is_terminal() {
            return Err(Rejection::AlreadyFinished(job.status));
        }
    }
    let events = match (state, cmd) {
        (None, C::Open(r)) => {
            if r.intent.trim().is_empty() {
                return Err(Rejection::EmptyIntent);
            }
            vec![JobEvent::Requested(r)]
        }
        (Some(_), C::Open(_)) => return Err(Rejection::AlreadyExists),
        (None, _) => return Err(Rejection::NoSuchJob),
        (Some(job), C::RecordPlan(p)) => {
            not_planned(job)?;
            vec![JobEvent::Planned(p)]
        }
        (Some(job), C::FailPlanning { reason }) => {
            not_planned(job)?;
            vec![JobEvent::PlanningFailed(PlanningFailed { reason })]
        }
        (Some(_), C::DecidePolicy(d)) => vec![JobEvent::PolicyDecided(d)],
        (Some(job), C::Approve { approver, comment, confirmation, phrase_required, self_approval }) => {
            if job.status != Status::AwaitingApproval {
                return Err(Rejection::NotAwaitingApproval(job.status));
            }
            let risk = job.policy.as_ref().map_or(Risk::Admin, |p| p.risk);
            // The requester is known only when a principal submitted it: an
            // anonymous or merely claimed requester could be the approver.
            let requester = job
                .request
                .requested_by
                .as_deref()
                .filter(|r| !r.ends_with(UNVERIFIED))
                .map(|r| r.trim().to_lowercase());
            if !self_approval && risk >= Risk::Write {
                match requester.as_deref() {
                    Some(r) if r == approver => return Err(Rejection::SelfApproval(approver)),
                    Some(_) => {}
                    None => return Err(Rejection::UnknownRequester),
                }
            }
            if let (true, Some(phrase)) = (risk >= Risk::Admin, phrase_required) {
                match confirmation {
                    None => return Err(Rejection::ConfirmationRequired),
                    Some(c) if !words_eq(&c, &confirmation_for(&phrase, job.id)) => {
                        return Err(Rejection::ConfirmationMismatch);
                    }
                    Some(_) => {}
                }
            }
            vec![JobEvent::Approved(Approved { approver, comment })]
        }
        (Some(job), C::Deny { by, reason }) => {
            if job.status != Status::AwaitingApproval {
                return Err(Rejection::NotAwaitingApproval(job.status));
            }
            vec![JobEvent::Denied(Denied { by, reason })]
        }
        (Some(_), C::Dispatch(spec)) => vec![JobEvent::Dispatched(Dispatched { spec })],
        (Some(job), C::Fail { stage, reason, step }) => {
            let provider = if stage == Stage::Execution { job.provider.clone() } else { None };
            vec![JobEvent::Failed(Failed { stage, reason, step, provider })]
        }
        (Some(_), C::RecordArtifact(a)) => vec![JobEvent::ArtifactStored(a)],
        (Some(_), C::Schedule(s)) => vec![JobEvent::Scheduled(s)],
        (Some(_), C::Start { executor, lease }) => {
            vec![JobEvent::Started(Started { executor, lease })]
        }
        (Some(_), C::StartStep { step, executor, lease }) => {
            vec![JobEvent::StepStarted(StepStarted { step, executor, lease })]
        }
        (Some(_), C::RecordOutput(o)) => vec![JobEvent::StepOutput(o)],
        (Some(_), C::StepSucceeded(s)) => vec![JobEvent::StepSucceeded(s)],
        (Some(job), C::StepFailed(mut f)) => {
            // The spec, not the executor, says whether a failure is tolerated.
            f.continue_on_error =
                job.spec.as_ref().and_then(|s| s.steps.get(f.step as usize)).is_some_and(|s| s.continue_on_error);
            vec![JobEvent::StepFailed(f)]
        }
        (Some(job), C::Finish { duration_ms }) => finish(job, duration_ms)?,
        (Some(job), C::Cancel { by, reason }) => match job.status {
            Status::Running => vec![JobEvent::CancelRequested(CancelRequested { by, reason })],
            Status::Cancelling => return Err(Rejection::AlreadyCancelling),
            _ => vec![JobEvent::Cancelled(Cancelled { by, reason })],
        },
        (Some(_), C::ConfirmCancel { by, reason }) => {
            vec![JobEvent::Cancelled(Cancelled { by, reason })]
        }
        (Some(_), C::TimeOut(t)) => vec![JobEvent::TimedOut(t)],
    };
    // Whatever was decided must be a legal continuation of the state.
    let mut s = state.cloned();
    for e in &events {
        s = Some(evolve(s, e)?);
    }
    Ok(events)
}

/// The mark of a requester a submitter merely claimed (the intake appends it).
pub const UNVERIFIED: &str = " (unverified)";

/// What an approver of an ADMIN job types: the phrase and the job's short id
/// (its first 8 characters), e.g. `execute 1a2b3c4d`.
pub fn confirmation_for(phrase: &str, job: skynet_contract::JobId) -> String {
    format!("{} {}", phrase.trim(), &job.to_string()[..8])
}

/// Equal ignoring case and runs of whitespace.
fn words_eq(a: &str, b: &str) -> bool {
    let words = |s: &str| s.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>();
    words(a) == words(b)
}

fn not_planned(job: &Job) -> Result<(), Rejection> {
    if job.status == Status::Requested { Ok(()) } else { Err(Rejection::AlreadyPlanned(job.status)) }
}

/// The outcome of a job whose executor has run every step it will run.
fn finish(job: &Job, duration_ms: u64) -> Result<Vec<JobEvent>, Rejection> {
    if let Some((i, _)) =
        job.steps.iter().enumerate().find(|(_, s)| s.status == StepStatus::Failed && !s.continue_on_error)
    {
        return Ok(vec![JobEvent::Failed(Failed {
            stage: Stage::Execution,
            reason: format!("step {i} failed"),
            step: Some(i as u32),
            provider: job.provider.clone(),
        })]);
    }
    if !job.all_steps_done() {
        return Err(Rejection::StepsUnfinished);
    }
    let tolerated =
        job.steps.iter().enumerate().filter(|(_, s)| s.status == StepStatus::Failed).map(|(i, _)| i as u32).collect();
    Ok(vec![JobEvent::Succeeded(Succeeded {
        tolerated_failures: tolerated,
        provider: job.provider.clone(),
        duration_ms,
    })])
}
