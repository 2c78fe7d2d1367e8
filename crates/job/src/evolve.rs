//! `evolve`: apply one recorded event to a job. No decisions here, only the
//! lifecycle's shape: every (status, event) pair is either a transition listed in
//! the `match` below or an [`IllegalTransition`].

use skynet_contract::JobId;
use skynet_contract::job::{JobEvent, JobEventKind};

use crate::state::{Job, Status, StepState, StepStatus};

/// Why an event cannot be applied to the current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IllegalTransition {
    /// Only `requested` can open a job.
    #[error("job has no events yet; it must start with `requested`, not `{event:?}`")]
    NotOpened { event: JobEventKind },
    /// The event cannot follow the job's status.
    #[error("`{event:?}` cannot follow status `{}` of job {job}", status.as_str())]
    Illegal { job: JobId, status: Status, event: JobEventKind },
    /// A step event names a step the spec does not have.
    #[error("job {job} has no step {step} (it has {steps})")]
    NoSuchStep { job: JobId, step: u32, steps: usize },
    /// A step event from an executor whose lease is not the current one (fencing).
    #[error("job {job}: lease {got} is not the current lease {current:?}")]
    StaleLease { job: JobId, got: u64, current: Option<u64> },
    /// The same approver approved twice.
    #[error("job {job}: {approver} already approved")]
    DuplicateApprover { job: JobId, approver: String },
}

/// Replays a job's events from the beginning. `None` for an empty history.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a JobEvent>) -> Result<Option<Job>, IllegalTransition> {
    let mut state = None;
    for e in events {
        state = Some(evolve(state, e)?);
    }
    Ok(state)
}

/// Applies `event` to `state` (`None` = no events yet, which only `Requested`
/// may follow). The job id of a new job is derived from its request, exactly as
/// the intake derived it, so the state never disagrees with the subject.
pub fn evolve(state: Option<Job>, event: &JobEvent) -> Result<Job, IllegalTransition> {
    let Some(mut job) = state else {
        return match event {
            JobEvent::Requested(r) => Ok(open(r.clone())),
            other => Err(IllegalTransition::NotOpened { event: other.kind() }),
        };
    };
    use JobEvent as E;
    use Status as S;
    let illegal = |job: &Job| IllegalTransition::Illegal { job: job.id, status: job.status, event: event.kind() };
    let next = match (job.status, event) {
        (s, _) if s.is_terminal() => return Err(illegal(&job)),
        (S::Requested, E::Planned(p)) => {
            job.plan = Some(p.plan.clone());
            S::Planned
        }
        (S::Requested, E::PlanningFailed(_)) => S::Failed,
        (S::Planned, E::PolicyDecided(d)) => {
            job.policy = Some(d.clone());
            if !d.allowed {
                S::Denied
            } else if d.requires_approval && !d.auto_approved {
                S::AwaitingApproval
            } else {
                S::Approved
            }
        }
        (S::AwaitingApproval, E::Approved(a)) => {
            if job.approvers.contains(&a.approver) {
                return Err(IllegalTransition::DuplicateApprover { job: job.id, approver: a.approver.clone() });
            }
            job.approvers.push(a.approver.clone());
            let needed = job.policy.as_ref().map_or(1, |p| p.approvals_required.max(1));
            if job.approvers.len() >= usize::from(needed) { S::Approved } else { S::AwaitingApproval }
        }
        (S::AwaitingApproval, E::Denied(_)) => S::Denied,
        (S::Approved, E::Dispatched(d)) => {
            job.steps = d
                .spec
                .steps
                .iter()
                .map(|s| StepState {
                    status: StepStatus::Pending,
                    continue_on_error: s.continue_on_error,
                    output_chunks: 0,
                })
                .collect();
            job.spec = Some(d.spec.clone());
            S::Dispatched
        }
        (S::Dispatched, E::Scheduled(s)) => {
            job.provider = Some(s.provider.clone());
            S::Scheduled
        }
        // A second `started` is a new executor taking over after the old lease expired.
        (S::Scheduled | S::Running, E::Started(s)) => {
            if let Some(cur) = job.lease_token().filter(|cur| s.lease <= *cur) {
                return Err(IllegalTransition::StaleLease { job: job.id, got: s.lease, current: Some(cur) });
            }
            job.lease = Some((s.executor.clone(), s.lease));
            S::Running
        }
        (S::Running | S::Cancelling, E::StepStarted(s)) => {
            check_lease(&job, s.lease)?;
            step_mut(&mut job, s.step)?.status = StepStatus::Running;
            job.status
        }
        (S::Running | S::Cancelling, E::StepOutput(o)) => {
            step_mut(&mut job, o.step)?.output_chunks += 1;
            job.status
        }
        (S::Running | S::Cancelling, E::StepSucceeded(s)) => {
            check_lease(&job, s.lease)?;
            step_mut(&mut job, s.step)?.status = StepStatus::Succeeded;
            job.status
        }
        (S::Running | S::Cancelling, E::StepFailed(f)) => {
            check_lease(&job, f.lease)?;
            let step = step_mut(&mut job, f.step)?;
            step.status = StepStatus::Failed;
            step.continue_on_error = f.continue_on_error;
            job.status
        }
        (S::Running | S::Cancelling, E::ArtifactStored(a)) => {
            check_lease(&job, a.lease)?;
            job.status
        }
        (S::Running | S::Cancelling, E::Succeeded(_)) => S::Succeeded,
        (S::Running, E::CancelRequested(_)) => S::Cancelling,
        // Nothing runs yet: a cancel ends the job at once. Running jobs go through
        // `Cancelling` so the executor can stop the process first — except when
        // the executor stopped it itself (an emergency stop), and says so.
        (
            S::Running
            | S::Requested
            | S::Planned
            | S::AwaitingApproval
            | S::Approved
            | S::Dispatched
            | S::Scheduled
            | S::Cancelling,
            E::Cancelled(_),
        ) => S::Cancelled,
        (S::Dispatched | S::Scheduled | S::Running | S::Cancelling, E::TimedOut(_)) => S::TimedOut,
        // Any stage may fail a job that has not finished: a stage that cannot go
        // on, or a log that does not replay (`Stage::Integrity`). Failing is the
        // one direction that never runs anything.
        (_, E::Failed(_)) => S::Failed,
        _ => return Err(illegal(&job)),
    };
    job.status = next;
    job.version += 1;
    Ok(job)
}

/// Applies the opening `requested` event.
fn open(r: skynet_contract::job::Requested) -> Job {
    Job {
        id: JobId::for_request(&r.request_source, &r.request_id),
        status: Status::Requested,
        request: r,
        plan: None,
        policy: None,
        approvers: Vec::new(),
        spec: None,
        provider: None,
        lease: None,
        steps: Vec::new(),
        version: 1,
    }
}

fn check_lease(job: &Job, lease: u64) -> Result<(), IllegalTransition> {
    match job.lease_token() {
        Some(cur) if cur == lease => Ok(()),
        current => Err(IllegalTransition::StaleLease { job: job.id, got: lease, current }),
    }
}

fn step_mut(job: &mut Job, step: u32) -> Result<&mut StepState, IllegalTransition> {
    let (id, steps) = (job.id, job.steps.len());
    job.steps.get_mut(step as usize).ok_or(IllegalTransition::NoSuchStep { job: id, step, steps })
}
